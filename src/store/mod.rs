//! The SQLite store: the schema (sqlx migrations in `migrations/`, embedded and run at start)
//! and every SQL statement of respool. Nothing outside this module writes SQL.
//!
//! The `jobs` table is the ledger and the only source of truth. Writes that move a job are
//! conditional (`WHERE status = ? AND attempt = ?`), so a stale worker changes nothing, and the
//! follow-up work they cause (timeline events, outbox rows) is written in the same short
//! transaction. No transaction is ever held across an HTTP call.

#[doc(hidden)]
pub mod bench;
mod budget;
mod duplicates;
mod events;
mod jobs;
mod limits;
mod notifications;
mod observations;
mod rate_limits;
mod retention;
mod schedules;
mod stats;
mod submissions;
mod webhook_secrets;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use budget::ModelUsage;
pub use duplicates::{DuplicateRow, NewDuplicate};
pub use events::EventRow;
pub use jobs::{
    ApplyContext, ApplyOutcome, InsertOutcome, JobFilter, JobRow, NewJob, PollClaim, RetryOutcome,
    SubmitClaim, SubmitState, UncertainJob,
};
pub use limits::{ClaimLimits, RATE_LIMIT_WAIT};
pub use notifications::{NotificationRow, OutboxEntry};
pub use retention::{PrunableJob, QueueDepths};
pub use schedules::{
    NewRun, RunOutcome, ScheduleDef, ScheduleListing, ScheduleRow, ScheduleRunRow, SyncReport,
};
pub use stats::{STATS_BUCKET_MS, StatsRow};
pub use submissions::{Attach, AttachContext, Claimed, UncertainWait};
pub use webhook_secrets::StoredSecret;
pub use webhooks::{DeliveryRow, NewDelivery};

/// A store failure. The database error is kept as the source for the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether a row could not be decoded (a status, spec or JSON column that no longer
    /// parses): a problem of that row, not of the database, so the rest of the work goes on.
    pub fn is_decode(&self) -> bool {
        matches!(
            self,
            Self::Corrupt(_) | Self::Db(sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_))
        )
    }
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database at `url`, in WAL mode with a busy timeout, and
    /// runs the embedded migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed job survives power loss too, not just a killed process.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Checks that the database answers and accepts writes (for `/readyz`).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("CREATE TEMP TABLE IF NOT EXISTS respool_probe (x INTEGER)")
            .execute(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
