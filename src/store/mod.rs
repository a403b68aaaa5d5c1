//! The SQLite store: the schema (sqlx migrations in `migrations/`, embedded and run at start)
//! and every SQL statement of respool. Nothing outside this module writes SQL.
//!
//! The `jobs` table is the ledger and the only source of truth. Writes that move a job are
//! conditional (`WHERE status = ? AND attempt = ?`), so a stale worker changes nothing, and the
//! follow-up work they cause (timeline events, outbox rows) is written in the same short
//! transaction. No transaction is ever held across an HTTP call.

mod artifacts;
mod attachments;
#[doc(hidden)]
#[cfg(feature = "bench")]
pub mod bench;
mod budget;
mod chains;
mod deliveries;
mod direct;
mod duplicates;
mod endpoint_secrets;
mod events;
pub mod filter;
mod follow;
mod ids;
mod jobs;
mod knowledge;
mod lending;
mod limits;
mod notifications;
mod observations;
mod peers;
#[cfg(test)]
mod plans;
mod progress;
mod rate_limits;
mod retention;
mod schedules;
pub(crate) mod sql;
mod stats;
mod submissions;
mod tokens;
mod tool_usage;
mod turns;
mod write_turns;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection};

pub use artifacts::{ArtifactFile, ArtifactRow, NewArtifact};
pub use attachments::{StaleUpload, UploadClaim};
pub use budget::ModelUsage;
pub use chains::{ChainContext, ChainMember, ConversationClaim, Settled};
/// Helpers for tests outside the store that write deliveries and hand them off.
#[cfg(test)]
pub(crate) use deliveries::tests as delivery_tests;
pub use deliveries::{
    DeliveryBatches, DeliveryRow, HandOff, LookPace, LookPacer, MAX_LOOKS, named_response,
};
pub use duplicates::{DuplicateRow, NewDuplicate};
pub use endpoint_secrets::StoredSecret;
pub use events::{EventKind, EventRow, events_written};
pub use jobs::{
    ApplyContext, ApplyOutcome, InsertOutcome, JobFilter, JobRow, NewJob, PollClaim, RetryOutcome,
    SubmitClaim, SubmitState, UncertainJob,
};
pub use knowledge::{KnowledgeFile, StoreClaim};
pub use limits::ClaimLimits;
pub use notifications::{Close, NotificationRow, OutboxEntry, SinkFilter};
pub use observations::ObservationWrite;
pub use peers::{CHANNEL as PEER_CHANNEL, PeerListener};
pub use progress::{LiveStream, Milestone, StreamState};
pub use retention::{PrunableJob, QueueDepths};
pub use schedules::{
    NewRun, RunOutcome, ScheduleDef, ScheduleListing, ScheduleRow, ScheduleRunRow, SyncReport,
};
pub use stats::{STATS_BUCKET_MS, StatsRow};
pub use submissions::{
    Attach, AttachContext, AttachRequest, Claimed, ClaimedMany, Lease, UncertainWait,
};
pub use tokens::TokenCounts;
pub use tool_usage::ToolColumns;
pub use turns::{
    ActingClaim, ActingEnd, ActionRow, HandlerAnswer, PersonAnswer, Responded, Settle,
};

/// A store failure. The database error is kept as the source for the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The transaction of a batch (group commit) failed; each item of it gets this.
    #[error("the batch's transaction failed: {0}")]
    BatchFailed(String),
}

impl StoreError {
    /// Whether the write waited too long for a lock or for its turn (another writer held
    /// it): the same write may succeed later, and writing its rows one by one would wait as
    /// long for each.
    pub fn is_lock_wait(&self) -> bool {
        const SQLITE_BUSY: i64 = 5;
        const SQLITE_LOCKED: i64 = 6;
        match self {
            Self::Db(sqlx::Error::Database(d)) => {
                let code = d.code();
                let code = code.as_deref().unwrap_or_default();
                // PostgreSQL: lock_not_available, query_canceled (the lock's statement timeout).
                matches!(code, "55P03" | "57014")
                    || code
                        .parse::<i64>()
                        .is_ok_and(|c| matches!(c & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
            }
            Self::Db(sqlx::Error::PoolTimedOut) => true,
            Self::Db(sqlx::Error::Io(e)) => e.kind() == std::io::ErrorKind::TimedOut,
            _ => false,
        }
    }

    /// Whether a row could not be decoded (a status, spec or JSON column that no longer
    /// parses): a problem of that row, not of the database, so the rest of the work goes on.
    pub fn is_decode(&self) -> bool {
        matches!(
            self,
            Self::Corrupt(_) | Self::Db(sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_))
        )
    }
}

/// How long a write waits for the lock held by another writer before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the readiness write waits for the lock: a database whose lock is held longer than
/// this is not ready to take the daemon's writes.
pub const PROBE_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the database does not take a write (for `/readyz`).
#[derive(Debug, thiserror::Error)]
pub enum NotWritable {
    /// Another connection holds the write lock (a `VACUUM`, a backup tool, a stuck writer).
    #[error("the database is locked by another writer (a VACUUM or a long transaction?)")]
    Locked(#[source] sqlx::Error),
    /// The file, its directory or its file system does not allow writes.
    #[error("the database is read-only (check the file's permissions and its file system)")]
    ReadOnly(#[source] sqlx::Error),
    /// The disk is full.
    #[error("the disk holding the database is full")]
    Full(#[source] sqlx::Error),
    /// Anything else (the pool timed out, an I/O error, …).
    #[error("the database does not accept writes")]
    Failed(#[source] sqlx::Error),
}

impl NotWritable {
    /// Sorts a database error by SQLite's primary result code.
    fn from_db(e: sqlx::Error) -> Self {
        const SQLITE_BUSY: i64 = 5;
        const SQLITE_LOCKED: i64 = 6;
        const SQLITE_READONLY: i64 = 8;
        const SQLITE_FULL: i64 = 13;
        // PostgreSQL's SQLSTATEs: lock_not_available, read_only_sql_transaction, disk_full.
        let state = match &e {
            sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
            _ => None,
        };
        match state.as_deref() {
            Some("55P03" | "57014") => return Self::Locked(e),
            Some("25006") => return Self::ReadOnly(e),
            Some("53100") => return Self::Full(e),
            _ => {}
        }
        let primary = match &e {
            sqlx::Error::Database(d)
                if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
            {
                d.code()
                    .and_then(|c| c.parse::<i64>().ok())
                    .map(|c| c & 0xff)
            }
            _ => None,
        };
        match primary {
            Some(SQLITE_BUSY | SQLITE_LOCKED) => Self::Locked(e),
            Some(SQLITE_READONLY) => Self::ReadOnly(e),
            Some(SQLITE_FULL) => Self::Full(e),
            _ => Self::Failed(e),
        }
    }
}

/// The pool connection the readiness write borrows, closed rather than returned to the pool
/// unless its busy timeout was set back.
struct ProbeConnection {
    conn: lending::Lent,
    restored: bool,
}

impl Drop for ProbeConnection {
    fn drop(&mut self) {
        if self.restored {
            self.conn.done();
        } else {
            self.conn.close_on_drop();
        }
    }
}

/// A handle on the database; cheap to clone.
///
/// Two pools: `pool` for writes (and the reads inside them), `reads` for the reads that stand
/// alone (the API, the pages, stats, the workers' look-ups). Writers waiting for SQLite's one
/// write lock hold their connections while they wait; with one pool, a burst of them (the
/// outbox's deliveries closing, the polls recording) would leave a page view waiting for a
/// connection behind them. In WAL mode a reader never waits for a writer, so with a pool of
/// their own reads never wait behind writes.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    pool: lending::Lending,
    reads: lending::Lending,
    /// The task that checkpoints the WAL (none for an in-memory database).
    checkpoints: Option<std::sync::Arc<Checkpointer>>,
    /// SQLite: this process's write transactions take turns here before `BEGIN IMMEDIATE`
    /// (see `write_turns.rs`).
    write_turns: Option<std::sync::Arc<write_turns::WriteTurns>>,
    /// Where the bytes of jobs' artifacts are kept, one folder per job (none for an
    /// in-memory database unless configured): `artifacts/` beside the database file.
    artifact_dir: Option<std::sync::Arc<std::path::PathBuf>>,
    /// Where this host's create journal is kept when there is no database file to keep it
    /// beside (PostgreSQL): set by the caller, in the state directory.
    journal_dir: Option<std::sync::Arc<std::path::PathBuf>>,
    /// PostgreSQL: the URL a listener for other daemons' wake-ups connects to.
    listen_url: Option<peers::ListenUrl>,
    /// The pace of look-ups of responses no job knows, shared by the receiver (which books
    /// the deliveries it records) and the hand-off (see [`LookPace`]).
    look_pace: LookPace,
}

/// Checkpoints the WAL from a connection of its own, every [`CHECKPOINT_EVERY`].
///
/// Left to SQLite, the checkpoint runs inside whichever commit makes the WAL pass 1,000
/// pages: that commit copies the WAL into the file and syncs it while holding the write lock,
/// so every writer queued behind it (a batch of webhook deliveries waiting for its `200`)
/// waits several milliseconds more. A passive checkpoint on another connection runs beside
/// the writers instead. SQLite's own checkpoint stays as a backstop at [`BACKSTOP_PAGES`],
/// should this task fall behind.
#[derive(Debug)]
struct Checkpointer {
    stop: tokio_util::sync::CancellationToken,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// 1, 10, 100, …
fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

/// How often the WAL is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// The WAL size (in pages) at which a commit checkpoints it itself.
const BACKSTOP_PAGES: u32 = 10_000;

impl Checkpointer {
    fn start(mut conn: sqlx::SqliteConnection) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut failures = 0u64;
            loop {
                tokio::select! {
                    () = stopped.cancelled() => break,
                    () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
                }
                match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&mut conn)
                    .await
                {
                    Ok(_) => failures = 0,
                    Err(e) => {
                        failures += 1;
                        // The 1st, 10th, 100th… failure in a row: a full disk is not logged
                        // every second.
                        if is_power_of_ten(failures) {
                            tracing::warn!(error = %crate::telemetry::chain(&e), failures, "cannot checkpoint the database's WAL");
                        }
                    }
                }
            }
            let _ = conn.close().await;
        });
        Self {
            stop,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Connections for writes, and for stand-alone reads (SQLite).
const WRITE_CONNECTIONS: u32 = 4;
const READ_CONNECTIONS: u32 = 4;
/// Read connections for the hot look-ups, run where they are called (`direct.rs`): one per
/// runtime thread that may look up at once is enough.
const QUICK_READERS: usize = 2;
/// Connections to a PostgreSQL server, unless `database_pool` says otherwise.
pub const POSTGRES_CONNECTIONS: u32 = 10;
/// The advisory lock every PostgreSQL write transaction holds (see [`Store::begin_write`]):
/// a session holding it (`pg_advisory_lock`) stops the writes of every daemon on the database.
pub const WRITE_LOCK: i64 = 0x0072_6573_706f_6f6c; // "respool"

/// Takes the write lock ([`WRITE_LOCK`]) in the PostgreSQL transaction open on `conn`, held
/// until it ends. Waits at most `timeout` for it, as SQLite's busy timeout: a writer stuck
/// holding the lock fails the others' writes after this long instead of stopping them for good.
async fn lock_for_write(
    conn: &mut sqlx::AnyConnection,
    timeout: Duration,
) -> Result<(), sqlx::Error> {
    sql::query(AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = {}",
        timeout.as_millis()
    )))
    .execute(&mut *conn)
    .await?;
    sql::query("SELECT 1 FROM pg_advisory_xact_lock(?)")
        .bind(WRITE_LOCK)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Which backend a `database` URL names: `postgres://` and `postgresql://` are
    /// PostgreSQL, anything else SQLite.
    pub fn of_url(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }

    /// Its name in metrics and `/readyz`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// How a store connects.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// PostgreSQL: the most connections the daemon opens (default
    /// [`POSTGRES_CONNECTIONS`]). SQLite: ignored.
    pub pool_size: Option<u32>,
}

/// Installs sqlx's `Any` drivers (SQLite and PostgreSQL), once per process.
fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// The settings every SQLite connection gets when it opens.
const SQLITE_PRAGMAS: &[&str] = &[
    // FULL: a committed job survives power loss too, not just a killed process.
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    // The statement journals of savepoints (a batch writes each item in one) and of
    // multi-row statements stay in memory instead of a temp file.
    "PRAGMA temp_store = memory",
];

impl Store {
    /// Opens (creating if needed) the database at `url` and runs the embedded migrations:
    /// a SQLite file (WAL mode, a busy timeout) or a PostgreSQL database.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// [`Store::connect`], with options.
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Self, StoreError> {
        install_drivers();
        let store = match Backend::of_url(url) {
            Backend::Sqlite => Self::connect_sqlite(url).await?,
            Backend::Postgres => Self::connect_postgres(url, options).await?,
        };
        limits::repair_in_flight_counts(&store).await?;
        Ok(store)
    }

    async fn connect_sqlite(url: &str) -> Result<Self, StoreError> {
        // A database opened read-only (`?mode=ro`) stays so: the daemon starts, and
        // `/readyz` says it does not take writes.
        let read_only = url.contains("mode=ro");
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(!read_only)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // An in-memory database is one per connection: there, reads share the write pool.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // The file, with its folder's real path: the `Any` driver takes a URL, and a URL's
        // path loses `..` segments and a relative path's first one (it becomes a host), so
        // the pools open the file by its canonical, fully escaped path, checked to read back
        // as the same file.
        let opts = if in_memory {
            opts
        } else {
            let file = opts.get_filename().to_path_buf();
            let dir = match file.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
            let dir = std::fs::canonicalize(&dir).map_err(|e| {
                StoreError::Corrupt(format!(
                    "the database's folder {} cannot be opened: {e}",
                    dir.display()
                ))
            })?;
            let name = file.file_name().ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the database path {} names no file",
                    file.display()
                ))
            })?;
            opts.filename(dir.join(name))
        };
        let any = |o: &SqliteConnectOptions, mode: &str| -> Result<AnyConnectOptions, StoreError> {
            const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
                .remove(b'/')
                .remove(b'-')
                .remove(b'_')
                .remove(b'~');
            let path = o.get_filename();
            let encoded =
                percent_encoding::percent_encode(path.as_os_str().as_encoded_bytes(), KEEP);
            let url = format!("sqlite://{encoded}?mode={mode}");
            let parsed = AnyConnectOptions::from_str(&url)?;
            let reparsed = SqliteConnectOptions::from_str(parsed.database_url.as_str())?;
            if reparsed.get_filename() != path {
                return Err(StoreError::Corrupt(format!(
                    "the database path {} cannot be opened through a URL",
                    path.display()
                )));
            }
            Ok(parsed)
        };
        let write_url = if in_memory {
            // One shared in-memory database per store, named for this process.
            static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            AnyConnectOptions::from_str(&format!(
                "sqlite:file:respool-memory-{}-{n}?mode=memory&cache=shared",
                std::process::id()
            ))?
        } else {
            any(&opts, if read_only { "ro" } else { "rwc" })?
        };
        if !in_memory {
            // WAL is a property of the file: set once, by a connection of its own, before the
            // pools open (a read-only connection cannot set it).
            let first = sqlx::SqliteConnection::connect_with(&opts).await?;
            first.close().await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(WRITE_CONNECTIONS)
            // A SQLite connection is a file handle in this process: nothing can break it
            // between uses, and the test is a round trip to its thread on every acquire.
            .test_before_acquire(false)
            // The shared in-memory database lives as long as one connection to it does.
            .idle_timeout((!in_memory).then_some(Duration::from_secs(600)))
            .max_lifetime((!in_memory).then_some(Duration::from_secs(1800)))
            .min_connections(u32::from(in_memory))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in SQLITE_PRAGMAS {
                        sqlx::query(*pragma).execute(&mut *conn).await?;
                    }
                    sqlx::query(AssertSqlSafe(format!(
                        "PRAGMA busy_timeout = {}",
                        BUSY_TIMEOUT.as_millis()
                    )))
                    .execute(&mut *conn)
                    .await?;
                    // No `mmap_size`: mapping the file saved a few copies of pages but counted
                    // every page read into the daemon's resident memory (120 MB peak for
                    // 10,000 jobs).
                    sqlx::query(AssertSqlSafe(format!(
                        "PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}"
                    )))
                    .execute(&mut *conn)
                    .await?;
                    // After a burst, the WAL file is cut back to this size once checkpointed.
                    sqlx::query(AssertSqlSafe(format!(
                        "PRAGMA journal_size_limit = {}",
                        64u64 << 20
                    )))
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .connect_with(write_url)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let turns = std::sync::Arc::new(write_turns::WriteTurns::new());
        let (pool, reads, checkpoints) = if in_memory {
            // One pool for reads and writes: taken from as any pool (reads without a turn:
            // they may run while their task's transaction holds one).
            let reads = lending::Lending::shared(pool.clone());
            let pool = lending::Lending::shared(pool)
                .with_turns(std::sync::Arc::clone(&turns), BUSY_TIMEOUT);
            (pool, reads, None)
        } else {
            let reads = AnyPoolOptions::new()
                .max_connections(READ_CONNECTIONS)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::query(AssertSqlSafe(format!(
                            "PRAGMA busy_timeout = {}",
                            BUSY_TIMEOUT.as_millis()
                        )))
                        .execute(&mut *conn)
                        .await?;
                        // Sorts of large reads (stats, listings) stay in memory.
                        sqlx::query("PRAGMA temp_store = memory")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .connect_with(any(&opts, "ro")?)
                .await?;
            let conn = sqlx::SqliteConnection::connect_with(&opts).await?;
            let mut writes = lending::Lending::own(pool, WRITE_CONNECTIONS)
                .with_turns(std::sync::Arc::clone(&turns), BUSY_TIMEOUT);
            if !read_only {
                // The writers run on the process's own connection (`direct.rs`), set as the
                // pool's (the busy timeout aside: see there).
                let pragmas = SQLITE_PRAGMAS
                    .iter()
                    .map(|p| (*p).to_owned())
                    .chain([
                        format!("PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}"),
                        format!("PRAGMA journal_size_limit = {}", 64u64 << 20),
                    ])
                    .collect();
                writes = writes.with_direct(direct::Direct::new(
                    opts.get_filename(),
                    pragmas,
                    BUSY_TIMEOUT,
                ));
            }
            (
                writes,
                lending::Lending::own(reads, READ_CONNECTIONS)
                    .with_readers(direct::Readers::open(opts.get_filename(), QUICK_READERS).await?),
                Some(std::sync::Arc::new(Checkpointer::start(conn))),
            )
        };
        let artifact_dir = (!in_memory)
            .then(|| opts.get_filename().parent().map(|d| d.join("artifacts")))
            .flatten()
            .map(std::sync::Arc::new);
        Ok(Self {
            backend: Backend::Sqlite,
            journal_dir: None,
            listen_url: None,
            artifact_dir,
            pool,
            reads,
            checkpoints,
            write_turns: Some(turns),
            look_pace: LookPace::default(),
        })
    }

    async fn connect_postgres(url: &str, options: &ConnectOptions) -> Result<Self, StoreError> {
        let opts: AnyConnectOptions = url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(options.pool_size.unwrap_or(POSTGRES_CONNECTIONS).max(2))
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            backend: Backend::Postgres,
            // A server's database has no folder beside it: artifacts are kept where
            // `artifacts.dir` says (set by the caller).
            artifact_dir: None,
            journal_dir: None,
            listen_url: Some(peers::ListenUrl(url.into())),
            reads: lending::Lending::shared(pool.clone()),
            pool: lending::Lending::shared(pool),
            checkpoints: None,
            write_turns: None,
            look_pace: LookPace::default(),
        })
    }

    /// The database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Keeps this host's create journal in `dir` (for a database with no file beside which to
    /// keep it: PostgreSQL).
    pub fn with_journal_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.journal_dir = Some(std::sync::Arc::new(dir));
        self
    }

    /// Where the create journal is kept when there is no database file: see
    /// [`Store::with_journal_dir`].
    pub fn journal_dir(&self) -> Option<&std::path::Path> {
        self.journal_dir.as_deref().map(std::path::PathBuf::as_path)
    }

    /// Begins a write transaction: one writer at a time, as SQLite has it.
    ///
    /// On SQLite, `BEGIN IMMEDIATE` takes the write lock at once (a deferred transaction that
    /// reads first and writes later can fail with `SQLITE_BUSY` when it upgrades). On
    /// PostgreSQL, every write transaction takes one advisory lock first, so the store's
    /// read-then-write transactions (in-flight counts, budgets, claims) keep SQLite's
    /// serial semantics when several daemons share the database.
    pub(crate) async fn begin_write(&self) -> Result<lending::WriteTx, sqlx::Error> {
        self.begin_write_as(write_turns::Writer::Background).await
    }

    /// [`Store::begin_write`] for `writer` (on SQLite, its place in this process's queue of
    /// writers: see `write_turns.rs`).
    pub(crate) async fn begin_write_as(
        &self,
        writer: write_turns::Writer,
    ) -> Result<lending::WriteTx, sqlx::Error> {
        let turn = match &self.write_turns {
            Some(turns) => Some(turns.take(writer, BUSY_TIMEOUT).await?),
            None => None,
        };
        if let Some(direct) = self.pool.direct() {
            return Ok(lending::WriteTx::begin_direct(direct).await?.holding(turn));
        }
        let lent = self.pool.lend().await?;
        match self.backend() {
            Backend::Sqlite => Ok(lending::WriteTx::begin(lent, Some("BEGIN IMMEDIATE"))
                .await?
                .holding(turn)),
            Backend::Postgres => {
                let mut tx = lending::WriteTx::begin(lent, None).await?;
                if let lending::Conn::Pooled(lent) = &mut *tx {
                    lock_for_write(lent.conn(), BUSY_TIMEOUT).await?;
                }
                Ok(tx)
            }
        }
    }

    /// Begins a transaction without the write lock (PostgreSQL's claims of rows taken with
    /// `FOR UPDATE SKIP LOCKED`, which several daemons run side by side).
    pub(crate) async fn begin_unlocked(&self) -> Result<lending::WriteTx, sqlx::Error> {
        lending::WriteTx::begin(self.pool.lend().await?, None).await
    }

    /// Runs one statement in a write transaction of its own, under the write lock (see
    /// [`Store::begin_write`]), and returns how many rows it changed. For a statement whose
    /// condition reads rows it does not change (on PostgreSQL, under READ COMMITTED, another
    /// daemon's commit to them would not be seen), or that changes many rows another daemon's
    /// transaction may take in another order (a deadlock).
    pub(crate) async fn execute_locked(&self, statement: sql::Query) -> Result<u64, StoreError> {
        if let Some(direct) = self.pool.direct() {
            // Many rows: the statement and its `COMMIT` run on a blocking thread, not the
            // runtime's (see `direct.rs`), in a writer's turn given up after the connection.
            let _turn = self.pool.statement_turn().await?;
            let mut conn = direct::DirectConn::begin(direct).await?;
            let (text, args) = statement.into_direct()?;
            return Ok(conn.execute_and_commit(text, args).await?);
        }
        let mut tx = self.begin_write().await?;
        let changed = statement.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(changed)
    }

    /// Proves that the main database takes a write (for `/readyz`): updates the one row of
    /// `health` in a write transaction, waiting at most [`PROBE_BUSY_TIMEOUT`] for the write
    /// lock. A read-only file, a write lock held by someone else (a `VACUUM`, a stuck
    /// writer) or a full disk answers an error saying which.
    pub async fn check_writable(&self, now: i64) -> Result<(), NotWritable> {
        // In the writers' queue, as a writer a client waits on: outside it, the probe would
        // have to find the lock free between two writers handing it over, and would rarely
        // find it so under load. Waiting longer than the lock may be held counts as locked.
        let _turn = match &self.write_turns {
            Some(turns) => Some(
                turns
                    .take(write_turns::Writer::Foreground, PROBE_BUSY_TIMEOUT)
                    .await
                    .map_err(NotWritable::Locked)?,
            ),
            None => None,
        };
        // Every write connection busy for as long as the lock may be held counts as locked.
        let conn = tokio::time::timeout(PROBE_BUSY_TIMEOUT, self.pool.lend())
            .await
            .map_err(|_| NotWritable::Locked(sqlx::Error::PoolTimedOut))?
            .map_err(NotWritable::from_db)?;
        let mut probe = ProbeConnection {
            conn,
            restored: false,
        };
        if self.backend() == Backend::Postgres {
            let written = async {
                let mut tx = probe.conn.begin().await?;
                lock_for_write(&mut tx, PROBE_BUSY_TIMEOUT).await?;
                sql::query("UPDATE health SET checked_at = ? WHERE id = 1")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }
            .await;
            probe.restored = true;
            return written.map_err(NotWritable::from_db);
        }
        let set_timeout =
            |t: Duration| AssertSqlSafe(format!("PRAGMA busy_timeout = {}", t.as_millis()));
        sqlx::query(set_timeout(PROBE_BUSY_TIMEOUT))
            .execute(&mut *probe.conn)
            .await
            .map_err(NotWritable::from_db)?;
        let written = async {
            let mut tx = probe.conn.begin_with("BEGIN IMMEDIATE").await?;
            sql::query("UPDATE health SET checked_at = ? WHERE id = 1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await;
        // The pool's connections wait the long timeout: set it back before this one returns
        // (if that fails, or this future is dropped first, the connection is closed instead).
        if sqlx::query(set_timeout(BUSY_TIMEOUT))
            .execute(&mut *probe.conn)
            .await
            .is_ok()
        {
            probe.restored = true;
        }
        written.map_err(NotWritable::from_db)
    }

    /// The pool, for tests that reach past the store's statements.
    #[cfg(test)]
    pub(crate) fn pool_for_tests(&self) -> sqlx::AnyPool {
        self.pool.pool().clone()
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        if let Some(c) = &self.checkpoints {
            c.stop().await;
        }
        self.reads.close().await;
        self.pool.close().await;
    }
}
