//! The pools, lending their connections without sqlx's round trip on return.
//!
//! sqlx tests every connection given back to a pool with a ping; on SQLite that is a round
//! trip to the connection's thread (two thread switches), as dear as the statement itself for
//! a look-up by key (measured: 70 µs of CPU per look-up through the pool, 47 µs on a held
//! connection), and a write transaction pays it once more after its `COMMIT`. So the
//! connections of SQLite's two pools (reads, writes) are lent from here: a statement that ran
//! to its end, or a transaction that committed or rolled back, gives its connection back to a
//! list kept here, ready for the next one, without the ping. A statement that failed, a
//! transaction left open, or anything abandoned half-way (its future dropped) gives it back to
//! sqlx's pool, which tests it (and so finishes the rollback sqlx queued) as before.
//!
//! A semaphore with as many permits as the pool has connections keeps the connections lent
//! plus those kept here within the pool's size, so a borrower that finds none kept always gets
//! one from the pool: at most it waits for a failed borrower's connection to finish going back
//! to the pool (one ping), never for a connection kept here. Every user of a lending pool
//! borrows through it (the store's statements have no other way to its pools; only tests reach
//! past it, `Store::pool_for_tests`, with fewer connections than the pool has), so nothing
//! takes from the pool behind the lender's back. A borrower waits at most the pool's acquire timeout, as it would
//! for the pool itself. Kept connections are never retired by the pool's idle timeout or
//! lifetime; a SQLite connection is a file handle of this process, which nothing breaks between
//! uses.
//!
//! Only SQLite's file pools lend this way; an in-memory database (one pool for reads and
//! writes) and PostgreSQL (whose connections are sockets the server may close, and whose pool's
//! test matters) take from the pool as before.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Database, SqlSafeStr};
use sqlx_core::transaction::TransactionManager;

use super::Backend;
use super::direct::{Direct, DirectConn, Readers};
use super::write_turns::{Turn, WriteTurns, Writer};

/// A pool the store's statements take their connections from.
#[derive(Clone, Debug)]
pub(crate) struct Lending {
    pool: AnyPool,
    backend: Backend,
    lender: Option<Arc<Lender>>,
    /// SQLite's write pool: the writers' queue a statement of its own takes its turn in (see
    /// `write_turns.rs`), and the longest it waits there.
    turns: Option<(Arc<WriteTurns>, std::time::Duration)>,
    /// SQLite's write pool of a file: the process's own writer, which its transactions and
    /// statements run on (see `direct.rs`); the pool is left for the readiness probe and
    /// `VACUUM`.
    direct: Option<Arc<Direct>>,
    /// SQLite's read pool of a file: connections for the hot look-ups (see `direct.rs`).
    readers: Option<Arc<Readers>>,
}

/// A read pool, for a hot look-up (see [`Lending::quick`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quick<'a>(pub(crate) &'a Lending);

#[derive(Debug)]
struct Lender {
    idle: Mutex<Vec<PoolConnection<Any>>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Lending {
    /// A pool whose connections are taken from it as any pool's (shared, or not SQLite's).
    pub(crate) fn shared(pool: AnyPool) -> Self {
        Self {
            backend: Backend::of_url(pool.connect_options().database_url.as_str()),
            pool,
            lender: None,
            turns: None,
            direct: None,
            readers: None,
        }
    }

    /// A pool of at most `size` connections that only this lends from: its connections are
    /// lent and kept here between uses.
    pub(crate) fn own(pool: AnyPool, size: u32) -> Self {
        Self {
            backend: Backend::of_url(pool.connect_options().database_url.as_str()),
            pool,
            lender: Some(Arc::new(Lender {
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(size as usize)),
            })),
            turns: None,
            direct: None,
            readers: None,
        }
    }

    /// A write pool whose statements of their own take a turn in `turns` (waiting at most
    /// `timeout` for it) before they run; transactions take theirs before they borrow.
    pub(crate) fn with_turns(
        mut self,
        turns: Arc<WriteTurns>,
        timeout: std::time::Duration,
    ) -> Self {
        self.turns = Some((turns, timeout));
        self
    }

    /// A write pool whose transactions and statements run on `direct`.
    pub(crate) fn with_direct(mut self, direct: Arc<Direct>) -> Self {
        self.direct = Some(direct);
        self
    }

    /// A read pool whose hot look-ups run on `readers`.
    pub(crate) fn with_readers(mut self, readers: Arc<Readers>) -> Self {
        self.readers = Some(readers);
        self
    }

    /// This pool for a hot look-up: an indexed, bounded read that runs where it is called
    /// (on SQLite's read connections of `direct.rs`, if the pool has them), not on sqlx's
    /// connection threads. Not for listings, searches or stats.
    pub(crate) fn quick(&self) -> Quick<'_> {
        Quick(self)
    }

    /// The read connections for hot look-ups, if any.
    pub(crate) fn readers(&self) -> Option<&Arc<Readers>> {
        self.readers.as_ref()
    }

    /// The process's own writer, if transactions and statements run on it.
    pub(crate) fn direct(&self) -> Option<&Arc<Direct>> {
        self.direct.as_ref()
    }

    /// A turn in the writers' queue for a statement of its own, if the pool has one.
    pub(crate) async fn statement_turn(&self) -> Result<Option<Turn>, sqlx::Error> {
        Ok(match &self.turns {
            Some((turns, timeout)) => Some(turns.take(Writer::Background, *timeout).await?),
            None => None,
        })
    }

    /// The pool itself (for tests that reach past the store's statements).
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The database the pool is on.
    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection for statements of their own (each its own transaction): on a write pool
    /// with a writers' queue, after a worker's turn in it, held until the connection is given
    /// back.
    pub(crate) async fn lend_for_statements(&self) -> Result<Lent, sqlx::Error> {
        let turn = self.statement_turn().await?;
        let mut lent = self.lend().await?;
        lent.turn = turn;
        Ok(lent)
    }

    /// A connection for a transaction ([`WriteTx::begin`]; the caller took its turn), or for
    /// reads. Waits at most the pool's acquire timeout.
    pub(crate) async fn lend(&self) -> Result<Lent, sqlx::Error> {
        let Some(lender) = &self.lender else {
            return Ok(Lent {
                conn: Some(self.pool.acquire().await?),
                lender: None,
                permit: None,
                done: false,
                turn: None,
            });
        };
        let permit = tokio::time::timeout(
            self.pool.options().get_acquire_timeout(),
            Arc::clone(&lender.permits).acquire_owned(),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
        .map_err(|_| sqlx::Error::PoolClosed)?;
        let kept = lender
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let conn = match kept {
            Some(c) => c,
            None => self.pool.acquire().await?,
        };
        Ok(Lent {
            conn: Some(conn),
            lender: Some(Arc::clone(lender)),
            permit: Some(permit),
            done: false,
            turn: None,
        })
    }

    /// Gives the kept connections back to the pool and closes it, waiting for those lent.
    pub(crate) async fn close(&self) {
        if let Some(direct) = &self.direct {
            direct.close();
        }
        if let Some(readers) = &self.readers {
            readers.close();
        }
        if let Some(lender) = &self.lender {
            // Under the list's lock, so that a connection given back meanwhile either comes
            // before (and is taken here) or sees the lender closed (and goes to the pool).
            let kept = {
                let mut idle = lender
                    .idle
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                lender.permits.close();
                std::mem::take(&mut *idle)
            };
            drop(kept);
        }
        self.pool.close().await;
    }
}

/// A lent connection: kept for the next borrower when [`Lent::done`] was called (its
/// statements ran to their end), else given back to sqlx's pool.
pub(crate) struct Lent {
    conn: Option<PoolConnection<Any>>,
    lender: Option<Arc<Lender>>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    done: bool,
    /// The writer's turn its statements run in, if they took one: given up after the
    /// connection.
    turn: Option<Turn>,
}

impl Lent {
    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        self.conn
            .as_deref_mut()
            .expect("a lent connection is held until dropped")
    }

    /// Its statements ran to their end: the connection is in a state to run the next one.
    pub(crate) fn done(&mut self) {
        self.done = true;
    }

    /// Closes the connection when it is dropped, rather than giving it back (its settings
    /// were changed and could not be set back).
    pub(crate) fn close_on_drop(&mut self) {
        self.done = false;
        if let Some(c) = self.conn.as_mut() {
            c.close_on_drop();
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let (true, Some(lender)) = (self.done, &self.lender) {
            let mut idle = lender
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !lender.permits.is_closed()
                && let Some(conn) = self.conn.take()
            {
                idle.push(conn);
            }
        }
        // Otherwise the connection (if still here) goes back to sqlx's pool, tested there;
        // the permit is given back after it.
        drop(self.conn.take());
        drop(self.permit.take());
        drop(self.turn.take());
    }
}

impl Deref for Lent {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.conn
            .as_deref()
            .expect("a lent connection is held until dropped")
    }
}

impl DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn()
    }
}

impl std::fmt::Debug for Lent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lent").field("done", &self.done).finish()
    }
}

type Manager = <Any as Database>::TransactionManager;

/// A write transaction's connection: a lent one (PostgreSQL, an in-memory database), or the
/// process's own SQLite writer (`direct.rs`).
#[derive(Debug)]
pub(crate) enum Conn {
    Pooled(Lent),
    Direct(DirectConn),
}

/// A transaction on a lent connection, or on the process's own SQLite writer. Committed or
/// rolled back, its connection is kept for the next borrower; dropped while open, a lent one
/// queues sqlx's rollback and goes back to the pool, whose test runs that rollback before
/// anyone else has it (sqlx's own `Transaction` on a pool's connection gives it back to the
/// pool at its end, ping included), and the direct one rolls back where it is dropped.
pub(crate) struct WriteTx {
    conn: Conn,
    open: bool,
    /// The writer's turn (see the store's `write_turns`), given up when the transaction ends
    /// (declared after `conn`, so dropped after it: a direct transaction dropped open is rolled
    /// back before the next writer's turn).
    turn: Option<Turn>,
}

impl WriteTx {
    /// Begins a transaction on `lent`, with `statement` (such as SQLite's `BEGIN IMMEDIATE`)
    /// or the backend's plain `BEGIN`.
    pub(crate) async fn begin(
        mut lent: Lent,
        statement: Option<&'static str>,
    ) -> Result<Self, sqlx::Error> {
        Manager::begin(lent.conn(), statement.map(SqlSafeStr::into_sql_str)).await?;
        Ok(Self {
            conn: Conn::Pooled(lent),
            open: true,
            turn: None,
        })
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE`) on the process's own SQLite writer.
    pub(crate) async fn begin_direct(direct: &Arc<Direct>) -> Result<Self, sqlx::Error> {
        Ok(Self {
            conn: Conn::Direct(DirectConn::begin(direct).await?),
            open: true,
            turn: None,
        })
    }

    /// Holds `turn` until the transaction ends.
    pub(crate) fn holding(mut self, turn: Option<Turn>) -> Self {
        self.turn = turn;
        self
    }

    /// Commits; the connection is kept for the next borrower.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        match &mut self.conn {
            Conn::Pooled(lent) => {
                Manager::commit(lent.conn()).await?;
                lent.done();
            }
            Conn::Direct(d) => d.commit().await?,
        }
        self.open = false;
        Ok(())
    }

    /// Runs `statements` in order, then commits, and returns each one's rows. On the
    /// process's own SQLite writer they and the `COMMIT` run on a blocking thread in one hop:
    /// for statements that write many rows (a batch), which would hold the runtime's thread.
    pub(crate) async fn fetch_all_then_commit(
        mut self,
        statements: Vec<super::sql::Query>,
    ) -> Result<Vec<Vec<sqlx::any::AnyRow>>, sqlx::Error> {
        if let Conn::Direct(d) = &mut self.conn {
            let statements = statements
                .into_iter()
                .map(super::sql::Query::into_direct)
                .collect::<Result<Vec<_>, _>>()?;
            let rows = d.fetch_all_then_commit(statements).await?;
            self.open = false;
            return Ok(rows);
        }
        let mut rows = Vec::with_capacity(statements.len());
        for statement in statements {
            rows.push(statement.fetch_all(&mut self.conn).await?);
        }
        self.commit().await?;
        Ok(rows)
    }

    /// Rolls back; the connection is kept for the next borrower.
    pub(crate) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        match &mut self.conn {
            Conn::Pooled(lent) => {
                Manager::rollback(lent.conn()).await?;
                lent.done();
            }
            Conn::Direct(d) => d.rollback()?,
        }
        self.open = false;
        Ok(())
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open
            && let Conn::Pooled(lent) = &mut self.conn
        {
            // Run by the connection before its next command: the pool's test, as it goes back.
            Manager::start_rollback(lent.conn());
        }
        // A direct connection rolls back as it drops, before the turn is given up.
    }
}

impl Deref for WriteTx {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

impl std::fmt::Debug for WriteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx").field("open", &self.open).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::store::jobs::tests::store;
    use crate::store::{Store, sql};

    fn kept_in(pool: &super::Lending) -> usize {
        pool.lender.as_ref().unwrap().idle.lock().unwrap().len()
    }

    fn kept(store: &Store) -> usize {
        kept_in(&store.reads)
    }

    /// The connections the write pool keeps.
    fn writes_kept(store: &Store) -> usize {
        kept_in(&store.pool)
    }

    /// A table of its own for the write tests, and its rows counted through the read pool.
    async fn scratch(store: &Store) {
        sql::query("CREATE TABLE scratch (x INTEGER NOT NULL)")
            .execute(&store.pool)
            .await
            .unwrap();
    }

    async fn scratch_rows(store: &Store) -> Vec<i64> {
        sql::query_scalar("SELECT x FROM scratch ORDER BY x")
            .fetch_all(&store.reads)
            .await
            .unwrap()
    }

    async fn insert(tx: &mut super::WriteTx, x: i64) {
        sql::query("INSERT INTO scratch (x) VALUES (?)")
            .bind(x)
            .execute(&mut **tx)
            .await
            .unwrap();
    }

    /// Whether the process's own SQLite writer keeps its connection between writers.
    fn direct_kept(store: &Store) -> bool {
        store
            .pool
            .direct()
            .expect("a file's writes run direct")
            .kept()
    }

    /// A write transaction that committed, rolled back or was dropped open keeps the writer's
    /// connection for the next writer, and nothing of the rolled back or dropped one stays
    /// (the drop rolls back where it happens). One abandoned during its `COMMIT` (which runs on
    /// a blocking thread) leaves its connection to finish the `COMMIT` and close: the next
    /// writer opens another, waits for that lock if it is still held, and writes.
    #[tokio::test]
    async fn a_finished_write_transaction_keeps_its_connection_and_an_abandoned_one_leaves_nothing()
    {
        let (_dir, store) = store().await;
        scratch(&store).await;
        assert!(
            direct_kept(&store),
            "the statement that made the table kept it"
        );

        let mut tx = store.begin_write().await.unwrap();
        assert!(!direct_kept(&store), "the writer holds it");
        insert(&mut tx, 1).await;
        tx.commit().await.unwrap();
        assert!(direct_kept(&store), "the committed one is kept again");

        let mut tx = store.begin_write().await.unwrap();
        insert(&mut tx, 2).await;
        tx.rollback().await.unwrap();
        assert!(direct_kept(&store), "the rolled back one is kept again");
        assert_eq!(scratch_rows(&store).await, [1]);

        let mut tx = store.begin_write().await.unwrap();
        insert(&mut tx, 3).await;
        drop(tx);
        assert!(
            direct_kept(&store),
            "one dropped open is rolled back and kept"
        );
        assert_eq!(scratch_rows(&store).await, [1]);

        // Abandoned at its first wait: the `COMMIT` on its blocking thread.
        let mut tx = store.begin_write().await.unwrap();
        insert(&mut tx, 6).await;
        let f = tx.commit();
        assert!(
            futures::FutureExt::now_or_never(f).is_none(),
            "a commit waits for its blocking thread"
        );
        assert!(
            !direct_kept(&store),
            "the abandoned commit's connection is not kept"
        );

        for x in [4, 5] {
            let mut tx = store.begin_write().await.unwrap();
            insert(&mut tx, x).await;
            tx.commit().await.unwrap();
        }
        assert_eq!(
            scratch_rows(&store).await,
            [1, 4, 5, 6],
            "nothing of the transactions rolled back or dropped; the abandoned COMMIT ran"
        );
        assert!(direct_kept(&store));
        store
            .check_writable(1)
            .await
            .expect("the probe borrows too");
    }

    /// A batch run with its commit in one hop: each statement's rows come back in order and
    /// all are committed; one that fails leaves nothing of the batch (the statements before
    /// it included), and the writer's connection is kept for the next writer, which writes.
    #[tokio::test]
    async fn a_batch_and_its_commit_in_one_hop_commit_all_or_nothing() {
        let (_dir, store) = store().await;
        scratch(&store).await;
        let returning = |x: i64| {
            sql::query("INSERT INTO scratch (x) VALUES (?), (? + 1) RETURNING x")
                .bind(x)
                .bind(x)
        };
        let tx = store.begin_write().await.unwrap();
        let rows = tx
            .fetch_all_then_commit(vec![returning(10), returning(20)])
            .await
            .unwrap();
        let xs: Vec<Vec<i64>> = rows
            .iter()
            .map(|rows| {
                rows.iter()
                    .map(|r| sqlx::Row::try_get::<i64, _>(r, 0).unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(xs, [[10, 11], [20, 21]]);
        assert_eq!(scratch_rows(&store).await, [10, 11, 20, 21]);
        assert!(direct_kept(&store), "the committed batch kept it");

        let tx = store.begin_write().await.unwrap();
        let failed = tx
            .fetch_all_then_commit(vec![
                returning(30),
                sql::query("INSERT INTO no_such_table (x) VALUES (1)"),
                returning(40),
            ])
            .await;
        assert!(failed.is_err());
        assert!(
            direct_kept(&store),
            "the failed batch rolled back and kept it"
        );
        assert_eq!(scratch_rows(&store).await, [10, 11, 20, 21]);

        let mut tx = store.begin_write().await.unwrap();
        insert(&mut tx, 50).await;
        tx.commit().await.unwrap();
        assert_eq!(scratch_rows(&store).await, [10, 11, 20, 21, 50]);
        store.close().await;
    }

    /// Another process's write lock: the writer's `BEGIN IMMEDIATE` finds it taken and waits
    /// for it off the runtime's threads (the runtime's one thread keeps running other tasks
    /// meanwhile), then writes once it is given up.
    #[tokio::test(flavor = "current_thread")]
    async fn a_writer_waits_for_another_connections_lock_without_stopping_the_runtime() {
        let (dir, store) = store().await;
        scratch(&store).await;
        let path = dir.path().join("j.db");
        // Another process's connection, as far as SQLite's locks go.
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO scratch (x) VALUES (7)")
            .unwrap();
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = {
            let ticks = std::sync::Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        });
        let mut tx = store.begin_write().await.unwrap();
        let waited = ticks.load(std::sync::atomic::Ordering::Relaxed);
        insert(&mut tx, 8).await;
        tx.commit().await.unwrap();
        release.join().unwrap();
        ticker.abort();
        assert!(
            waited >= 10,
            "the runtime ran other tasks while the writer waited: {waited} ticks of 10 ms"
        );
        assert_eq!(scratch_rows(&store).await, [7, 8]);
    }

    /// The readiness probe's write takes its turn among the writers: with writers keeping the
    /// lock busy back to back (transactions and statements of their own), it still proves the
    /// database takes a write within its second. (Outside the queue it would rely on finding
    /// the lock free between two of them; on this test's load SQLite's busy handler still
    /// does, so this guards the probe under load rather than telling the two apart.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_probe_proves_a_write_while_writers_keep_the_lock_busy() {
        let (_dir, store) = store().await;
        scratch(&store).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..4_i64 {
            let (store, stop) = (store.clone(), std::sync::Arc::clone(&stop));
            writers.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut tx = store.begin_write().await.unwrap();
                    insert(&mut tx, w * 1_000_000 + n).await;
                    tx.commit().await.unwrap();
                    // A statement of its own, in the same queue.
                    sql::query("UPDATE scratch SET x = x WHERE x = ?")
                        .bind(n)
                        .execute(&store.pool)
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            }));
        }
        for i in 0..10 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            store
                .check_writable(i)
                .await
                .unwrap_or_else(|e| panic!("probe {i}: {e}"));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut written = 0;
        for w in writers {
            written += w.await.unwrap();
        }
        assert!(written > 10, "the writers kept writing: {written}");
        assert_eq!(scratch_rows(&store).await.len() as i64, written);
    }

    /// Many writers at once, some committing, some rolling back, some dropped open or
    /// abandoned during their `COMMIT`: every one gets the connection in its turn (a new one
    /// after an abandoned `COMMIT`), exactly the committed rows are there (an abandoned
    /// `COMMIT` runs to its end), and `close` returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_writers_at_once_never_wait_for_a_kept_connection() {
        let (_dir, store) = store().await;
        scratch(&store).await;
        let mut tasks = Vec::new();
        for i in 0..120_i64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = store.begin_write().await.unwrap();
                match i % 4 {
                    0 => {
                        insert(&mut tx, i).await;
                        tx.commit().await.unwrap();
                    }
                    1 => {
                        insert(&mut tx, i).await;
                        tx.rollback().await.unwrap();
                    }
                    2 => {
                        insert(&mut tx, i).await;
                        drop(tx);
                    }
                    _ => {
                        // Abandoned during its `COMMIT`, which runs on to its end.
                        insert(&mut tx, i).await;
                        let _ = futures::FutureExt::now_or_never(tx.commit());
                    }
                }
            }));
        }
        let all = async {
            for t in tasks {
                t.await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("every writer got a connection");
        // The last abandoned `COMMIT` may still be running: the next writer waits for it.
        let tx = store.begin_write().await.unwrap();
        tx.rollback().await.unwrap();
        let committed: Vec<i64> = (0..120).filter(|i| i % 4 == 0 || i % 4 == 3).collect();
        assert_eq!(scratch_rows(&store).await, committed);
        assert_eq!(
            writes_kept(&store),
            0,
            "the write pool's connections are not used"
        );
        tokio::time::timeout(Duration::from_secs(30), store.close())
            .await
            .expect("closing gives the kept connections back and returns");
        assert!(!direct_kept(&store));
        assert!(store.begin_write().await.is_err(), "closed: refused");
    }

    /// The jobs, counted through the read pool.
    async fn count_jobs(store: &Store) -> i64 {
        sql::query_scalar("SELECT COUNT(*) FROM jobs")
            .fetch_one(&store.reads)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_finished_statement_keeps_its_connection_for_the_next_and_a_failed_one_does_not() {
        let (_dir, store) = store().await;
        assert_eq!(kept(&store), 0);
        assert_eq!(count_jobs(&store).await, 0);
        assert_eq!(kept(&store), 1, "kept for the next reader");
        // The next statement takes the kept one: still one kept after it.
        sql::query_scalar::<i64>("SELECT 1")
            .fetch_one(&store.reads)
            .await
            .unwrap();
        assert_eq!(kept(&store), 1);
        // A statement that fails gives its connection to the pool (which tests it).
        let e = sql::query_scalar::<i64>("SELECT nothing FROM no_such_table")
            .fetch_one(&store.reads)
            .await;
        assert!(e.is_err());
        assert_eq!(
            kept(&store),
            0,
            "a failed statement's connection is not kept"
        );
        // A lend dropped before its statement ended (a cancelled future) is not kept either.
        let lent = store.reads.lend().await.unwrap();
        drop(lent);
        assert_eq!(kept(&store), 0);
        // A statement abandoned at its first wait (polled once, then dropped): not kept. The
        // statement counts to a million on the connection's thread, so no machine answers it
        // between the send and the first poll, however busy (a quick one could be answered at
        // once on a loaded machine, and then nothing was abandoned). A fresh cooperative
        // budget (the yield) lets the first poll reach the connection's thread.
        tokio::task::yield_now().await;
        let slow = sql::query_scalar::<i64>(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) \
             SELECT COUNT(*) FROM c",
        )
        .fetch_one(&store.reads);
        assert!(
            futures::FutureExt::now_or_never(slow).is_none(),
            "a statement waits for its connection's thread"
        );
        assert_eq!(kept(&store), 0);
        // Reads still work after both, and see what the write pool committed meanwhile.
        store
            .insert_job(crate::store::jobs::tests::job("seen", None, "x"))
            .await
            .unwrap();
        assert_eq!(count_jobs(&store).await, 1);
        assert_eq!(kept(&store), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_readers_at_once_never_wait_for_a_kept_connection_and_close_returns() {
        let (_dir, store) = store().await;
        // Far more readers than the pool's connections, some failing, some abandoned: none may
        // wait for a connection kept aside (the pool would have none left to give).
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                match i % 10 {
                    0 => {
                        let _ = sql::query_scalar::<i64>("SELECT x FROM missing")
                            .fetch_one(&store.reads)
                            .await;
                    }
                    1 => {
                        // Abandoned half-way: the future is dropped at its first wait.
                        let f = sql::query_scalar::<i64>("SELECT COUNT(*) FROM jobs")
                            .fetch_one(&store.reads);
                        let _ = futures::FutureExt::now_or_never(f);
                    }
                    _ => assert_eq!(count_jobs(&store).await, 0),
                }
            }));
        }
        let all = async {
            for t in tasks {
                t.await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("every reader got a connection");
        assert!(kept(&store) <= super::super::READ_CONNECTIONS as usize);
        tokio::time::timeout(Duration::from_secs(30), store.close())
            .await
            .expect("closing gives the kept connections back and returns");
        assert_eq!(kept(&store), 0);
        // Closed: a read is refused rather than kept waiting.
        assert!(
            sql::query_scalar::<i64>("SELECT 1")
                .fetch_one(&store.reads)
                .await
                .is_err()
        );
    }
}
