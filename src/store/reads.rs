//! The read pool, lending its connections without sqlx's round trip on return.
//!
//! sqlx tests every connection given back to a pool with a ping; on SQLite that is a round
//! trip to the connection's thread (two thread switches), as dear as the statement itself for
//! a look-up by key (measured: 70 µs of CPU per look-up through the pool, 47 µs on a held
//! connection). The reads that stand alone (the workers' look-ups, the API, the pages) are
//! most of the daemon's statements, so their connections are lent from here: a statement that
//! ran to its end gives its connection back to a list kept here, ready for the next one,
//! without the ping. A statement that failed or was abandoned half-way (its future dropped)
//! gives it back to sqlx's pool, which tests it as before.
//!
//! A semaphore with as many permits as the pool has connections keeps the connections lent
//! plus those kept here within the pool's size, so a reader that finds none kept always gets
//! one from the pool: at most it waits for a failed reader's connection to finish going back
//! to the pool (one ping), never for a connection kept here. Kept connections are never
//! retired by the pool's idle timeout or lifetime; a SQLite connection is a file handle of
//! this process, which nothing breaks between uses.
//! Only SQLite's separate read pool lends this way; where reads share the write pool (an
//! in-memory database, PostgreSQL) they take from the pool as before, so writers' transactions,
//! which take from it directly, never wait for connections kept here.

use std::sync::{Arc, Mutex};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool};

/// The pool the stand-alone reads take their connections from.
#[derive(Clone, Debug)]
pub(crate) struct Reads {
    pool: AnyPool,
    lender: Option<Arc<Lender>>,
}

#[derive(Debug)]
struct Lender {
    idle: Mutex<Vec<PoolConnection<Any>>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Reads {
    /// Reads that take from `pool` as any statement does (it is shared with writers).
    pub(crate) fn shared(pool: AnyPool) -> Self {
        Self { pool, lender: None }
    }

    /// Reads that have `pool` (of at most `size` connections) to themselves: its connections
    /// are lent and kept here between statements.
    pub(crate) fn own(pool: AnyPool, size: u32) -> Self {
        Self {
            pool,
            lender: Some(Arc::new(Lender {
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(size as usize)),
            })),
        }
    }

    /// The pool itself (for what needs a pool, such as its options).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection for one statement, or for a few in a row.
    pub(crate) async fn lend(&self) -> Result<Lent, sqlx::Error> {
        let Some(lender) = &self.lender else {
            return Ok(Lent {
                conn: Some(self.pool.acquire().await?),
                lender: None,
                permit: None,
                done: false,
            });
        };
        let permit = Arc::clone(&lender.permits)
            .acquire_owned()
            .await
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
        })
    }

    /// Gives the kept connections back to the pool and closes it, waiting for those lent.
    pub(crate) async fn close(&self) {
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

/// A lent connection: kept for the next reader when [`Lent::done`] was called (its statements
/// ran to their end), else given back to sqlx's pool.
pub(crate) struct Lent {
    conn: Option<PoolConnection<Any>>,
    lender: Option<Arc<Lender>>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    done: bool,
}

impl Lent {
    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        self.conn
            .as_deref_mut()
            .expect("a lent connection is held until dropped")
    }

    /// Its statements ran to their end: the connection is in a state to run the next one.
    pub(crate) fn done(&mut self) {
        self.done = true;
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
    }
}

impl std::fmt::Debug for Lent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lent").field("done", &self.done).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::store::jobs::tests::store;
    use crate::store::{Store, sql};

    fn kept(store: &Store) -> usize {
        store
            .reads
            .lender
            .as_ref()
            .unwrap()
            .idle
            .lock()
            .unwrap()
            .len()
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
        // A statement abandoned at its first wait (polled once, then dropped): not kept. (On a
        // busy machine its answer may be there at the first poll: then it is tried again, on
        // the connection it kept.)
        let abandoned = (0..1000).any(|_| {
            let f = sql::query_scalar::<i64>("SELECT COUNT(*) FROM jobs").fetch_one(&store.reads);
            futures::FutureExt::now_or_never(f).is_none()
        });
        assert!(abandoned, "a statement waits for its connection's thread");
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
