//! SQLite's writes on a connection of this process's own, run where they are called.
//!
//! sqlx runs each SQLite connection on a thread of its own and sends it every statement: a
//! round trip of two thread switches per statement (measured on the project's machine: 47 µs
//! of CPU for a look-up by key on a held connection, against a few microseconds of SQLite's
//! own work), and about a hundred of them per job. SQLite's writers already take turns in the
//! process (`write_turns.rs`), so one writer at a time needs a connection: this module keeps
//! that one connection (`rusqlite`, on the same SQLite library as sqlx's) and runs a write
//! transaction's statements on the task that runs the transaction, with no hop to another
//! thread.
//!
//! Only what can wait leaves the task's thread:
//! - `COMMIT`, which waits for the disk (`synchronous = FULL`), runs on the runtime's blocking
//!   threads (`spawn_blocking`), the connection moved there and back: one hop per
//!   transaction.
//! - `BEGIN IMMEDIATE` is tried without waiting (the connection's busy timeout is 0). If
//!   another process holds the write lock, the wait for it (SQLite's busy handler, at most the
//!   store's busy timeout) runs on a blocking thread too.
//! - Inside a transaction that holds the write lock, statements read and write pages of
//!   SQLite's cache (the WAL is written at `COMMIT`): work of the CPU, as the rest of the task's.
//!
//! A transaction dropped while open is rolled back where it is dropped (rolling back a WAL
//! transaction drops its pages; it writes nothing), before its turn is given to the next
//! writer. A connection lost half-way (a `COMMIT` whose task was dropped, a failed rollback)
//! is closed, and the next writer opens another.
//!
//! Rows come back as sqlx's `AnyRow`, built as sqlx's SQLite driver builds them (each value by
//! its own type: integers as 64-bit, floats as doubles, text, blobs), so the store's row types
//! read them as they read sqlx's. Errors are sqlx's `Error::Database`, with SQLite's extended
//! code, as sqlx's driver reports them.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use sqlx::any::{AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue};
use sqlx_core::any::{AnyColumn, AnyValueKind};
use sqlx_core::ext::ustr::UStr;

/// Statements prepared and kept per connection (the store writes a few hundred distinct ones;
/// built batches differ by their row count).
const STATEMENT_CACHE: usize = 512;

/// A statement slower than this is logged, as sqlx logs its slow statements.
const SLOW_STATEMENT: Duration = Duration::from_secs(1);

/// The write connection of one SQLite file, and how to open another.
#[derive(Debug)]
pub(crate) struct Direct {
    path: PathBuf,
    /// Statements run after a connection opens.
    pragmas: Vec<String>,
    /// The longest a writer waits for another process's write lock.
    busy_timeout: Duration,
    /// The connection between two writers; `None` while one holds it (or before the first).
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    conn: Option<rusqlite::Connection>,
    closed: bool,
}

impl Direct {
    /// The writer of the database file at `path`: its connections open with `pragmas`.
    pub(crate) fn new(path: &Path, pragmas: Vec<String>, busy_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_path_buf(),
            pragmas,
            busy_timeout,
            idle: Mutex::new(Idle::default()),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The kept connection, if any. The caller holds the writers' turn, so no one else holds
    /// it.
    fn take_kept(&self) -> Result<Option<rusqlite::Connection>, sqlx::Error> {
        let mut idle = self.idle();
        if idle.closed {
            return Err(sqlx::Error::PoolClosed);
        }
        Ok(idle.conn.take())
    }

    /// Opens a connection (blocking: run on a blocking thread).
    fn open(&self) -> Result<rusqlite::Connection, sqlx::Error> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(to_sqlx)?;
        // The settings read the schema, which may wait for another process's lock.
        conn.busy_timeout(self.busy_timeout).map_err(to_sqlx)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        for pragma in &self.pragmas {
            conn.execute_batch(pragma).map_err(to_sqlx)?;
        }
        // From here waits for another process's lock run off the runtime's threads (see
        // `DirectConn::begin_here`).
        conn.busy_timeout(Duration::ZERO).map_err(to_sqlx)?;
        Ok(conn)
    }

    /// Keeps `conn` for the next writer (closed if the store was closed meanwhile).
    fn give_back(&self, conn: rusqlite::Connection) {
        let mut idle = self.idle();
        if !idle.closed {
            idle.conn = Some(conn);
        }
    }

    /// Whether a connection is kept between writers.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> bool {
        self.idle().conn.is_some()
    }

    /// Closes the kept connection; writers after this fail as on a closed pool.
    pub(crate) fn close(&self) {
        let conn = {
            let mut idle = self.idle();
            idle.closed = true;
            idle.conn.take()
        };
        drop(conn);
    }
}

/// Read-only connections for the hot look-ups (a job's row by id, the workers' next-due
/// times, counts kept by triggers), each run where it is called, like the writer's statements.
/// Only indexed, bounded reads take this way (`Lending::quick`); the API's listings,
/// searches and stats run on sqlx's read pool, off the runtime's threads. A look-up that finds
/// no connection free (one per concurrent look-up is enough: a look-up never waits with one)
/// or that would have to wait for a lock goes to sqlx's read pool instead.
#[derive(Debug)]
pub(crate) struct Readers {
    idle: Mutex<Vec<rusqlite::Connection>>,
    closed: std::sync::atomic::AtomicBool,
}

impl Readers {
    /// Opens `n` read-only connections to the file at `path` (on a blocking thread: opening
    /// reads the schema).
    pub(crate) async fn open(path: &Path, n: usize) -> Result<Arc<Self>, sqlx::Error> {
        let path = path.to_path_buf();
        let conns = tokio::task::spawn_blocking(move || {
            (0..n)
                .map(|_| {
                    use rusqlite::OpenFlags;
                    let conn = rusqlite::Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                    conn.execute_batch("PRAGMA temp_store = memory")?;
                    conn.busy_timeout(Duration::ZERO)?;
                    Ok(conn)
                })
                .collect::<Result<Vec<_>, rusqlite::Error>>()
        })
        .await
        .map_err(|e| sqlx::Error::AnyDriverError(Box::new(e)))?
        .map_err(to_sqlx)?;
        Ok(Arc::new(Self {
            idle: Mutex::new(conns),
            closed: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Runs the read `sql` with `args` on a free connection, or answers `None` (no free
    /// connection, or SQLite would have it wait): the caller reads through sqlx's pool.
    pub(crate) fn run(
        &self,
        sql: &str,
        args: &[AnyValueKind],
        one: bool,
    ) -> Option<Result<(Vec<AnyRow>, AnyQueryResult), sqlx::Error>> {
        let conn = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()?;
        let out = match run(&conn, sql, args, one) {
            Err(e) if is_busy(&e) => None,
            Err(e) => Some(Err(to_sqlx(e))),
            Ok(out) => Some(out),
        };
        if conn.is_autocommit() {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Under the list's lock, so a close either comes first (and this one closes
            // here) or after (and takes it).
            if !self.closed.load(std::sync::atomic::Ordering::Relaxed) {
                idle.push(conn);
            }
        }
        out
    }

    /// Takes every free connection (for tests of the way through sqlx's pool).
    #[cfg(test)]
    fn take_all(&self) -> Vec<rusqlite::Connection> {
        std::mem::take(&mut *self.idle.lock().unwrap())
    }

    /// Closes the connections.
    pub(crate) fn close(&self) {
        let conns = {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.closed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            std::mem::take(&mut *idle)
        };
        drop(conns);
    }
}

/// The write connection, held by one writer (in its turn).
#[derive(Debug)]
pub(crate) struct DirectConn {
    conn: Option<rusqlite::Connection>,
    home: Arc<Direct>,
}

impl DirectConn {
    /// Takes the connection (the kept one, or a new one opened on a blocking thread: opening
    /// reads the schema, which may wait for another process's lock).
    pub(crate) async fn acquire(home: &Arc<Direct>) -> Result<Self, sqlx::Error> {
        let conn = match home.take_kept()? {
            Some(c) => c,
            None => {
                let opener = Arc::clone(home);
                tokio::task::spawn_blocking(move || opener.open())
                    .await
                    .map_err(|e| sqlx::Error::AnyDriverError(Box::new(e)))??
            }
        };
        Ok(Self {
            conn: Some(conn),
            home: Arc::clone(home),
        })
    }

    /// Takes the connection and begins a write transaction (`BEGIN IMMEDIATE`).
    pub(crate) async fn begin(home: &Arc<Direct>) -> Result<Self, sqlx::Error> {
        let mut this = Self::acquire(home).await?;
        this.begin_here().await?;
        Ok(this)
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE`) on the held connection.
    pub(crate) async fn begin_here(&mut self) -> Result<(), sqlx::Error> {
        match self.conn()?.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => Ok(()),
            Err(e) if is_busy(&e) => {
                // Another process writes: wait for its lock as SQLite's busy handler would,
                // on a blocking thread.
                let timeout = self.home.busy_timeout;
                self.blocking(move |conn| begin_waiting(conn, timeout))
                    .await
            }
            Err(e) => Err(to_sqlx(e)),
        }
    }

    /// Runs `f` with the connection on a blocking thread. If this future is dropped
    /// meanwhile, `f` runs to its end and the connection is closed after it (the next writer
    /// opens another).
    async fn blocking<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, sqlx::Error> + Send + 'static,
    ) -> Result<T, sqlx::Error> {
        let mut conn = self.conn.take().ok_or(sqlx::Error::PoolClosed)?;
        let (conn, out) = tokio::task::spawn_blocking(move || {
            let out = f(&mut conn);
            (conn, out)
        })
        .await
        .map_err(|e| sqlx::Error::AnyDriverError(Box::new(e)))?;
        self.conn = Some(conn);
        out
    }

    /// Whether `sql` only reads (it may then run outside a transaction): a `SELECT` (or
    /// `WITH`) SQLite finds read-only. (SQLite also calls `SAVEPOINT`, `REINDEX` and `PRAGMA
    /// optimize` read-only, which write or hold locks.)
    pub(crate) fn is_read_only(&mut self, sql: &str) -> Result<bool, sqlx::Error> {
        let head = sql
            .trim_start()
            .get(..6)
            .unwrap_or_default()
            .to_ascii_uppercase();
        if !(head.starts_with("SELECT") || head.starts_with("WITH")) {
            return Ok(false);
        }
        Ok(self
            .conn()?
            .prepare_cached(sql)
            .map_err(to_sqlx)?
            .readonly())
    }

    /// Runs `sql` with `args` and commits, both on a blocking thread (a statement that may
    /// change many rows), and returns how many rows it changed.
    pub(crate) async fn execute_and_commit(
        &mut self,
        sql: String,
        args: Vec<AnyValueKind>,
    ) -> Result<u64, sqlx::Error> {
        self.blocking(move |conn| {
            let mut done = run_then_commit(conn, &[(sql, args)])?;
            Ok(done.pop().map_or(0, |(_, done)| done.rows_affected))
        })
        .await
    }

    /// Runs each statement in order and commits, all on a blocking thread in one hop (a
    /// batch that writes many rows), and returns each statement's rows.
    pub(crate) async fn fetch_all_then_commit(
        &mut self,
        statements: Vec<(String, Vec<AnyValueKind>)>,
    ) -> Result<Vec<Vec<AnyRow>>, sqlx::Error> {
        self.blocking(move |conn| {
            Ok(run_then_commit(conn, &statements)?
                .into_iter()
                .map(|(rows, _)| rows)
                .collect())
        })
        .await
    }

    /// Runs write transactions one after another on a blocking thread, in one hop: `next`
    /// gives each one's statements (`None`: no more), reading what it needs for them through
    /// its [`Peek`] (outside the transaction, which begins after it), and `done` gets its rows
    /// once it has committed, or its error once it was rolled back (a failed one ends the
    /// run). Each begins with `BEGIN IMMEDIATE`, waiting there for another process's lock.
    /// Returns `state`, and whether `next` or `done` panicked (what was under way is rolled
    /// back and the run ends). If this future is dropped, the run ends after the transaction under
    /// way (it would otherwise go on without the writer's turn).
    pub(crate) async fn each_then_commit<S: Send + 'static>(
        &mut self,
        mut state: S,
        mut next: impl FnMut(&mut S, &mut Peek<'_>) -> Option<Vec<(String, Vec<AnyValueKind>)>>
        + Send
        + 'static,
        mut done: impl FnMut(&mut S, Result<Vec<Vec<AnyRow>>, sqlx::Error>) + Send + 'static,
    ) -> Result<(S, bool), sqlx::Error> {
        let timeout = self.home.busy_timeout;
        let abandoned = Arc::new(AtomicBool::new(false));
        let _abandon_on_drop = AbandonOnDrop(Arc::clone(&abandoned));
        self.blocking(move |conn| {
            let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
                while !abandoned.load(Ordering::Acquire)
                    && let Some(statements) = next(&mut state, &mut Peek(conn))
                {
                    let result = begin_waiting(conn, timeout).and_then(|()| {
                        Ok(run_then_commit(conn, &statements)?
                            .into_iter()
                            .map(|(rows, _)| rows)
                            .collect())
                    });
                    let failed = result.is_err();
                    if failed && !conn.is_autocommit() {
                        // A rollback that fails leaves the transaction to the connection's
                        // drop, which closes the connection rather than hand it on so.
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    done(&mut state, result);
                    if failed {
                        break;
                    }
                }
            }));
            if ran.is_err() && !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Ok((state, ran.is_err()))
        })
        .await
    }

    fn conn(&mut self) -> Result<&mut rusqlite::Connection, sqlx::Error> {
        // Only a `COMMIT` dropped half-way leaves no connection, and nothing runs after it.
        self.conn.as_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// Commits, waiting for the disk on a blocking thread.
    pub(crate) async fn commit(&mut self) -> Result<(), sqlx::Error> {
        self.blocking(|conn| conn.execute_batch("COMMIT").map_err(to_sqlx))
            .await
    }

    /// Rolls back.
    pub(crate) fn rollback(&mut self) -> Result<(), sqlx::Error> {
        self.conn()?.execute_batch("ROLLBACK").map_err(to_sqlx)
    }

    /// Runs `sql` with `args` (bound to `?1`, `?2`, …) and returns its rows (at most one
    /// when `one`) and how many rows it changed.
    pub(crate) fn run(
        &mut self,
        sql: &str,
        args: &[AnyValueKind],
        one: bool,
    ) -> Result<(Vec<AnyRow>, AnyQueryResult), sqlx::Error> {
        run_timed(self.conn()?, sql, args, one)
    }
}

/// [`run`], with a warning if it was slow.
fn run_timed(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[AnyValueKind],
    one: bool,
) -> Result<(Vec<AnyRow>, AnyQueryResult), sqlx::Error> {
    let started = Instant::now();
    let out = run(conn, sql, args, one).map_err(to_sqlx);
    warn_if_slow(sql, started.elapsed());
    out?
}

impl Drop for DirectConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // By the connection's own state, not `open`: whatever left a transaction open, it is
        // never handed to the next writer.
        if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
            // Closed rather than kept with its transaction open.
            return;
        }
        self.home.give_back(conn);
    }
}

/// Reads for a run of write transactions ([`DirectConn::each_then_commit`]) on its
/// connection, between its transactions: what one reads may change before the next begins.
pub(crate) struct Peek<'c>(&'c rusqlite::Connection);

impl Peek<'_> {
    /// The rows of `query`, a read.
    pub(crate) fn fetch_all(
        &mut self,
        query: super::sql::Query,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        let (sql, args) = query.into_direct()?;
        Ok(run_timed(self.0, &sql, &args, false)?.0)
    }
}

/// Tells a run of transactions on a blocking thread that its caller is gone, when dropped.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// `BEGIN IMMEDIATE`, waiting at most `timeout` for another process's lock (on a blocking
/// thread); the connection waits no more after it.
fn begin_waiting(conn: &rusqlite::Connection, timeout: Duration) -> Result<(), sqlx::Error> {
    match conn.execute_batch("BEGIN IMMEDIATE") {
        Ok(()) => Ok(()),
        Err(e) if is_busy(&e) => {
            let began = conn
                .busy_timeout(timeout)
                .and_then(|()| conn.execute_batch("BEGIN IMMEDIATE"));
            let reset = conn.busy_timeout(Duration::ZERO);
            began.and(reset).map_err(to_sqlx)
        }
        Err(e) => Err(to_sqlx(e)),
    }
}

/// Runs each statement on `conn` (in its open transaction), then `COMMIT`; on a blocking
/// thread. A statement's error leaves the transaction open: the connection's drop rolls it
/// back.
fn run_then_commit(
    conn: &rusqlite::Connection,
    statements: &[(String, Vec<AnyValueKind>)],
) -> Result<Vec<(Vec<AnyRow>, AnyQueryResult)>, sqlx::Error> {
    let mut out = Vec::with_capacity(statements.len());
    for (sql, args) in statements {
        let started = Instant::now();
        out.push(run(conn, sql, args, false).map_err(to_sqlx)??);
        warn_if_slow(sql, started.elapsed());
    }
    conn.execute_batch("COMMIT").map_err(to_sqlx)?;
    Ok(out)
}

/// A statement that took [`SLOW_STATEMENT`] or longer is logged as a warning; any other at
/// trace level.
fn warn_if_slow(sql: &str, took: std::time::Duration) {
    if took >= SLOW_STATEMENT {
        tracing::warn!(
            statement = %summary(sql),
            took_ms = took.as_millis() as u64,
            "slow statement"
        );
    } else {
        tracing::trace!(statement = %summary(sql), took_us = took.as_micros() as u64, "statement");
    }
}

/// The statement's first line, for logs.
fn summary(sql: &str) -> Cow<'_, str> {
    let line = sql.trim_start().lines().next().unwrap_or_default();
    if line.len() > 120 {
        let mut end = 120;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        Cow::Owned(format!("{}…", &line[..end]))
    } else {
        Cow::Borrowed(line)
    }
}

fn run(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[AnyValueKind],
    one: bool,
) -> Result<Result<(Vec<AnyRow>, AnyQueryResult), sqlx::Error>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(sql)?;
    if let Err(e) = bind(&mut stmt, sql, args)? {
        return Ok(Err(e));
    }
    let names: Vec<UStr> = stmt.column_names().into_iter().map(UStr::new).collect();
    let column_names: Arc<sqlx_core::HashMap<UStr, usize>> = Arc::new(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect(),
    );
    let columns: Vec<AnyColumn> = names
        .into_iter()
        .enumerate()
        .map(|(ordinal, name)| AnyColumn {
            ordinal,
            name,
            type_info: AnyTypeInfo {
                kind: AnyTypeInfoKind::Null,
            },
        })
        .collect();
    let mut out = Vec::new();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let kind = match row.get_ref(i)? {
                ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
                ValueRef::Integer(n) => AnyValueKind::BigInt(n),
                ValueRef::Real(r) => AnyValueKind::Double(r),
                ValueRef::Text(t) => match std::str::from_utf8(t) {
                    Ok(s) => AnyValueKind::Text(Arc::new(s.to_owned())),
                    Err(e) => {
                        return Ok(Err(sqlx::Error::ColumnDecode {
                            index: i.to_string(),
                            source: Box::new(e),
                        }));
                    }
                },
                ValueRef::Blob(b) => AnyValueKind::Blob(Arc::new(b.to_vec())),
            };
            values.push(AnyValue { kind });
        }
        out.push(AnyRow {
            column_names: Arc::clone(&column_names),
            columns: columns.clone(),
            values,
        });
        if one {
            break;
        }
    }
    drop(rows);
    let result = AnyQueryResult {
        rows_affected: conn.changes(),
        last_insert_id: None,
    };
    Ok(Ok((out, result)))
}

/// Binds `args` to the statement's parameters as sqlx's SQLite driver does: `?NNN` and `$NNN`
/// take argument NNN (SQLite numbers a `$NNN` by where it first appears, not by NNN), a bare
/// `?` the next one; parameters past the arguments stay NULL.
fn bind(
    stmt: &mut rusqlite::Statement<'_>,
    sql: &str,
    args: &[AnyValueKind],
) -> Result<Result<(), sqlx::Error>, rusqlite::Error> {
    let slots = match slots(stmt, sql) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    for (i, &n) in slots.iter().enumerate() {
        let at = i + 1;
        let Some(arg) = args.get(n - 1) else {
            break;
        };
        match arg {
            AnyValueKind::Null(_) => stmt.raw_bind_parameter(at, rusqlite::types::Null)?,
            AnyValueKind::Bool(b) => stmt.raw_bind_parameter(at, i64::from(*b))?,
            AnyValueKind::SmallInt(n) => stmt.raw_bind_parameter(at, i64::from(*n))?,
            AnyValueKind::Integer(n) => stmt.raw_bind_parameter(at, i64::from(*n))?,
            AnyValueKind::BigInt(n) => stmt.raw_bind_parameter(at, *n)?,
            AnyValueKind::Real(r) => stmt.raw_bind_parameter(at, f64::from(*r))?,
            AnyValueKind::Double(d) => stmt.raw_bind_parameter(at, *d)?,
            AnyValueKind::Text(t) => stmt.raw_bind_parameter(at, t.as_str())?,
            AnyValueKind::TextSlice(t) => stmt.raw_bind_parameter(at, &**t)?,
            AnyValueKind::Blob(b) => stmt.raw_bind_parameter(at, b.as_slice())?,
            other => {
                return Ok(Err(sqlx::Error::Encode(
                    format!("SQLite takes no argument like {other:?}").into(),
                )));
            }
        }
    }
    Ok(Ok(()))
}

/// Which argument (numbered from 1) each parameter of a statement takes, by statement text.
/// SQLite finds a parameter's name by walking a list, so asking it for every parameter of a
/// batch's statement costs the square of their number (a batch of 1,024 deliveries has 7,168):
/// asked once per text, and kept.
fn slots(stmt: &rusqlite::Statement<'_>, sql: &str) -> Result<Arc<[usize]>, sqlx::Error> {
    /// The most bytes of texts and slots kept (built statements differ by their rows' count,
    /// and a batch's text may be hundreds of kilobytes): past it, the cache starts again.
    const KEPT_BYTES: usize = 8 << 20;
    #[derive(Default)]
    struct Kept {
        slots: std::collections::HashMap<String, Arc<[usize]>>,
        bytes: usize,
    }
    static SLOTS: std::sync::LazyLock<Mutex<Kept>> = std::sync::LazyLock::new(Default::default);
    let lock = || {
        SLOTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(s) = lock().slots.get(sql) {
        return Ok(Arc::clone(s));
    }
    let mut next = 0;
    let mut slots = Vec::with_capacity(stmt.parameter_count());
    for at in 1..=stmt.parameter_count() {
        slots.push(match stmt.parameter_name(at) {
            None => {
                next += 1;
                next
            }
            Some(name) => name
                .strip_prefix('?')
                .or_else(|| name.strip_prefix('$'))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    sqlx::Error::Protocol(format!("unsupported SQL parameter: {name}"))
                })?,
        });
    }
    let slots: Arc<[usize]> = slots.into();
    let size = sql.len() + slots.len() * std::mem::size_of::<usize>();
    let mut kept = lock();
    if kept.bytes + size > KEPT_BYTES {
        *kept = Kept::default();
    }
    if size <= KEPT_BYTES
        && kept
            .slots
            .insert(sql.to_owned(), Arc::clone(&slots))
            .is_none()
    {
        kept.bytes += size;
    }
    Ok(slots)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy)
    )
}

/// rusqlite's error as sqlx's SQLite driver reports it.
fn to_sqlx(e: rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(f, message) => {
            sqlx::Error::Database(Box::new(DirectError {
                code: f.extended_code,
                message: message.unwrap_or_else(|| f.to_string()),
            }))
        }
        other => sqlx::Error::AnyDriverError(Box::new(other)),
    }
}

/// An error SQLite returned, with its extended result code.
#[derive(Debug)]
pub(crate) struct DirectError {
    code: i32,
    message: String,
}

impl std::fmt::Display for DirectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for DirectError {}

impl sqlx::error::DatabaseError for DirectError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                sqlx::error::ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => sqlx::error::ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => sqlx::error::ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => sqlx::error::ErrorKind::CheckViolation,
            _ => sqlx::error::ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::store::jobs::tests::store;
    use crate::store::sql;

    /// A lock held too long (SQLite's BUSY or LOCKED, with or without an extended code, or a
    /// wait for the turn that timed out) is a lock wait; a constraint is not.
    #[test]
    fn lock_waits_are_told_from_other_errors() {
        use crate::store::StoreError;
        let sqlite = |code: i32| {
            StoreError::Db(super::to_sqlx(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            )))
        };
        assert!(sqlite(5).is_lock_wait(), "BUSY");
        assert!(sqlite(517).is_lock_wait(), "BUSY_SNAPSHOT");
        assert!(sqlite(6).is_lock_wait(), "LOCKED");
        assert!(!sqlite(2067).is_lock_wait(), "CONSTRAINT_UNIQUE");
        assert!(!sqlite(13).is_lock_wait(), "FULL");
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "turn");
        assert!(StoreError::Db(sqlx::Error::Io(timed_out)).is_lock_wait());
        assert!(!StoreError::Corrupt("x".into()).is_lock_wait());
    }

    /// Transactions one after another in one hop: each committed one is told its rows; one
    /// that fails is rolled back (nothing of it stays), told its error, and ends the run; a
    /// panic in the caller's code ends the run with its state returned and the connection
    /// kept; and the next writer writes.
    #[tokio::test]
    async fn transactions_one_after_another_stop_at_the_first_that_fails_or_panics() {
        let (_dir, store) = store().await;
        sql::query("CREATE TABLE scratch (x INTEGER NOT NULL CHECK (x <> 13))")
            .execute(&store.pool)
            .await
            .unwrap();
        let direct = store.pool.direct().unwrap();
        let insert = |x: i64| {
            sql::query("INSERT INTO scratch (x) VALUES (?), (? + 100) RETURNING x")
                .bind(x)
                .bind(x)
                .into_direct()
                .unwrap()
        };
        // 1 and 2 commit; 13 fails its check; 3 never runs.
        let mut conn = super::DirectConn::acquire(direct).await.unwrap();
        let planned = vec![insert(1), insert(2), insert(13), insert(3)];
        let (told, panicked) = conn
            .each_then_commit(
                (planned.into_iter(), Vec::new()),
                |(planned, _), _| planned.next().map(|s| vec![s]),
                |(_, told), result| {
                    told.push(result.map(|rows| rows[0].len()).map_err(|e| e.to_string()));
                },
            )
            .await
            .unwrap();
        drop(conn);
        assert!(!panicked);
        assert_eq!(told.1.len(), 3, "{:?}", told.1);
        assert_eq!(told.1[..2], [Ok(2), Ok(2)]);
        assert!(
            told.1[2].as_ref().unwrap_err().contains("CHECK"),
            "{:?}",
            told.1
        );
        let rows = || async {
            sql::query_scalar::<i64>("SELECT x FROM scratch ORDER BY x")
                .fetch_all(&store.reads)
                .await
                .unwrap()
        };
        assert_eq!(rows().await, [1, 2, 101, 102]);
        assert!(direct.kept(), "the failed run kept its connection");

        // A panic in the caller's code between two transactions.
        let mut conn = super::DirectConn::acquire(direct).await.unwrap();
        let (calls, panicked) = conn
            .each_then_commit(
                0_u32,
                move |calls, _| {
                    *calls += 1;
                    assert!(*calls < 2, "the second batch is poisoned");
                    Some(vec![insert(4)])
                },
                |_, result| {
                    result.unwrap();
                },
            )
            .await
            .unwrap();
        drop(conn);
        assert!(panicked);
        assert_eq!(calls, 2);
        assert_eq!(rows().await, [1, 2, 4, 101, 102, 104]);
        assert!(direct.kept(), "the panicked run kept its connection");
        let mut tx = store.begin_write().await.unwrap();
        sql::query("INSERT INTO scratch (x) VALUES (5)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(rows().await, [1, 2, 4, 5, 101, 102, 104]);
        store.close().await;
    }

    /// Numbered parameters take the argument of their number wherever they stand (SQLite
    /// numbers `$N` by first appearance, which must not matter), a bare `?` the next one,
    /// and values of every kind come back as they went in: ASCII, non-ASCII, empty, huge,
    /// NULL, negative and large integers, floats and blobs.
    #[tokio::test]
    async fn arguments_bind_by_their_number_and_values_come_back_whole() {
        let (_dir, store) = store().await;
        let huge = "x\n".repeat(300_000);
        for text in ["plain", "Größe – 完了 ✅ \u{1F600}", "", huge.as_str()] {
            let mut tx = store.begin_write().await.unwrap();
            let row: (String, i64, Option<i64>, f64, Vec<u8>, i64) =
                sql::query_as("SELECT ?3, ?1, ?5, ?2, ?4, ?1 + 1")
                    .bind(-9_007_199_254_740_993_i64)
                    .bind(0.25_f64)
                    .bind(text)
                    .bind(vec![0_u8, 255, 7])
                    .bind(None::<i64>)
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
            tx.rollback().await.unwrap();
            assert_eq!(
                row,
                (
                    text.to_owned(),
                    -9_007_199_254_740_993,
                    None,
                    0.25,
                    vec![0, 255, 7],
                    -9_007_199_254_740_992
                )
            );
        }
        let mut tx = store.begin_write().await.unwrap();
        let (a, b): (i64, i64) = sql::query_as("SELECT ?2, ?")
            .bind(1_i64)
            .bind(2_i64)
            .bind(3_i64)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            (a, b),
            (2, 3),
            "a bare ? follows the largest number before it"
        );
        let missing: Option<i64> = sql::query_scalar("SELECT ?2")
            .bind(1_i64)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            missing, None,
            "a parameter past the arguments is NULL, as in sqlx"
        );
        // A batch's statement with thousands of parameters, twice (its slots are kept).
        for _ in 0..2 {
            let text = format!(
                "SELECT SUM(column1) FROM (VALUES {})",
                vec!["(?)"; 5_000].join(", ")
            );
            let mut q = sql::query_scalar::<i64>(sqlx::AssertSqlSafe(text));
            for i in 1..=5_000_i64 {
                q = q.bind(i);
            }
            assert_eq!(q.fetch_one(&mut *tx).await.unwrap(), 12_502_500);
        }
        let err = sql::query("INSERT INTO no_such_table VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no_such_table"), "{err}");
        tx.commit().await.unwrap();
    }

    /// A statement of its own that only reads takes no write lock: it answers while another
    /// connection holds it. One that writes waits for it.
    #[tokio::test(flavor = "current_thread")]
    async fn a_read_of_its_own_takes_no_write_lock() {
        let (dir, store) = store().await;
        let other = rusqlite::Connection::open(dir.path().join("j.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = Instant::now();
        let n: i64 = sql::query_scalar("SELECT COUNT(*) FROM jobs")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
        assert!(started.elapsed() < Duration::from_secs(5));
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            other.execute_batch("COMMIT").unwrap();
        });
        let started = Instant::now();
        sql::query("UPDATE health SET checked_at = 5 WHERE id = 1")
            .execute(&store.pool)
            .await
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "the write waited for the other connection's lock"
        );
        release.join().unwrap();
    }

    /// A hot look-up sees what was committed before it and nothing of a transaction still
    /// open; with no read connection free it answers the same through sqlx's pool.
    #[tokio::test]
    async fn a_look_up_sees_commits_only_and_answers_without_a_free_connection() {
        let (_dir, store) = store().await;
        sql::query("CREATE TABLE scratch (x INTEGER NOT NULL)")
            .execute(&store.pool)
            .await
            .unwrap();
        let count = async || -> i64 {
            sql::query_scalar("SELECT COUNT(*) FROM scratch")
                .fetch_one(store.reads.quick())
                .await
                .unwrap()
        };
        assert_eq!(count().await, 0);
        let mut tx = store.begin_write().await.unwrap();
        sql::query("INSERT INTO scratch (x) VALUES (1), (2)")
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(count().await, 0, "nothing of an open transaction");
        tx.commit().await.unwrap();
        assert_eq!(count().await, 2, "the commit at once");
        let readers = store.reads.readers().expect("a file has readers");
        let held = readers.take_all();
        assert!(!held.is_empty());
        assert_eq!(count().await, 2, "through sqlx's pool");
        let err = sql::query_scalar::<i64>("SELECT COUNT(*) FROM no_such_table")
            .fetch_one(store.reads.quick())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no_such_table"), "{err}");
        readers.idle.lock().unwrap().extend(held);
        let err = sql::query_scalar::<i64>("SELECT COUNT(*) FROM no_such_table")
            .fetch_one(store.reads.quick())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no_such_table"), "{err}");
        assert_eq!(count().await, 2);
    }

    /// Only a `SELECT` (or `WITH`) SQLite finds read-only runs outside a transaction: not
    /// the statements SQLite also calls read-only that write or hold locks.
    #[tokio::test]
    async fn only_selects_count_as_reads() {
        let (_dir, store) = store().await;
        let direct = store.pool.direct().unwrap();
        let mut conn = super::DirectConn::acquire(direct).await.unwrap();
        for (sql, read) in [
            ("SELECT 1", true),
            ("  with x AS (SELECT 1 AS a) SELECT a FROM x", true),
            ("select id from jobs", true),
            ("SAVEPOINT item", false),
            ("REINDEX", false),
            ("PRAGMA optimize", false),
            ("UPDATE health SET checked_at = 1", false),
        ] {
            assert_eq!(conn.is_read_only(sql).unwrap(), read, "{sql}");
        }
    }
}
