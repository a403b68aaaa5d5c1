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
use std::path::{Path, PathBuf};
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

    /// The connection: the one kept, or a new one. The caller holds the writers' turn, so
    /// no one else holds it.
    fn take(&self) -> Result<rusqlite::Connection, sqlx::Error> {
        let kept = {
            let mut idle = self.idle();
            if idle.closed {
                return Err(sqlx::Error::PoolClosed);
            }
            idle.conn.take()
        };
        match kept {
            Some(c) => Ok(c),
            None => self.open(),
        }
    }

    fn open(&self) -> Result<rusqlite::Connection, sqlx::Error> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(to_sqlx)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        for pragma in &self.pragmas {
            conn.execute_batch(pragma).map_err(to_sqlx)?;
        }
        // Waits for another process's lock run off the runtime's threads (see `begin`).
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

/// The write connection, held by one writer (in its turn).
#[derive(Debug)]
pub(crate) struct DirectConn {
    conn: Option<rusqlite::Connection>,
    home: Arc<Direct>,
    /// A transaction is open on it.
    open: bool,
}

impl DirectConn {
    /// Takes the connection and begins a write transaction (`BEGIN IMMEDIATE`).
    pub(crate) async fn begin(home: &Arc<Direct>) -> Result<Self, sqlx::Error> {
        let conn = home.take()?;
        let mut this = Self {
            conn: Some(conn),
            home: Arc::clone(home),
            open: false,
        };
        match this.conn()?.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {}
            Err(e) if is_busy(&e) => {
                // Another process writes: wait for its lock as SQLite's busy handler would,
                // on a blocking thread.
                let conn = this.conn.take().ok_or(sqlx::Error::PoolClosed)?;
                let timeout = home.busy_timeout;
                let (conn, began) = tokio::task::spawn_blocking(move || {
                    let began = conn
                        .busy_timeout(timeout)
                        .and_then(|()| conn.execute_batch("BEGIN IMMEDIATE"));
                    let reset = conn.busy_timeout(Duration::ZERO);
                    (conn, began.and(reset))
                })
                .await
                .map_err(|e| sqlx::Error::AnyDriverError(Box::new(e)))?;
                this.conn = Some(conn);
                began.map_err(to_sqlx)?;
            }
            Err(e) => return Err(to_sqlx(e)),
        }
        this.open = true;
        Ok(this)
    }

    fn conn(&mut self) -> Result<&mut rusqlite::Connection, sqlx::Error> {
        // Only a `COMMIT` dropped half-way leaves no connection, and nothing runs after it.
        self.conn.as_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// Commits, waiting for the disk on a blocking thread.
    pub(crate) async fn commit(&mut self) -> Result<(), sqlx::Error> {
        let conn = self.conn.take().ok_or(sqlx::Error::PoolClosed)?;
        // If this future is dropped while the `COMMIT` runs, the connection is closed when
        // it ends, and the next writer opens another.
        let (conn, committed) = tokio::task::spawn_blocking(move || {
            let committed = conn.execute_batch("COMMIT");
            (conn, committed)
        })
        .await
        .map_err(|e| sqlx::Error::AnyDriverError(Box::new(e)))?;
        self.conn = Some(conn);
        if committed.is_ok() || self.conn()?.is_autocommit() {
            self.open = false;
        }
        committed.map_err(to_sqlx)
    }

    /// Rolls back.
    pub(crate) fn rollback(&mut self) -> Result<(), sqlx::Error> {
        let rolled_back = self.conn()?.execute_batch("ROLLBACK");
        if rolled_back.is_ok() || self.conn()?.is_autocommit() {
            self.open = false;
        }
        rolled_back.map_err(to_sqlx)
    }

    /// Runs `sql` with `args` (bound to `?1`, `?2`, …) and returns its rows (at most one
    /// when `one`) and how many rows it changed.
    pub(crate) fn run(
        &mut self,
        sql: &str,
        args: &[AnyValueKind],
        one: bool,
    ) -> Result<(Vec<AnyRow>, AnyQueryResult), sqlx::Error> {
        let started = Instant::now();
        let conn = self.conn()?;
        let out = run(conn, sql, args, one).map_err(to_sqlx);
        let took = started.elapsed();
        if took >= SLOW_STATEMENT {
            tracing::warn!(
                statement = %summary(sql),
                took_ms = took.as_millis() as u64,
                "slow statement"
            );
        } else {
            tracing::trace!(statement = %summary(sql), took_us = took.as_micros() as u64, "statement");
        }
        out?
    }
}

impl Drop for DirectConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.open && !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
            // Closed rather than kept with its transaction open.
            return;
        }
        self.home.give_back(conn);
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
    for (i, arg) in args.iter().enumerate() {
        let at = i + 1;
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

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
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
