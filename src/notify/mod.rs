//! Notifications: which sinks hear about a job ([`routes_for`]), the outbox worker that
//! delivers them with retries ([`Notifier`]), and the sinks themselves.
//!
//! Outbox rows are written by the store in the same transaction as the terminal status that
//! causes them; this module only delivers. A delivery that keeps failing becomes a dead letter,
//! visible in the job's timeline. Sinks are an enum: a new kind of sink is a new variant.

mod console;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clock::{Clock, ms};
use crate::config::{Config, SinkConfig};
use crate::job::{JobSpec, JobStatus, spec::NotifyOn};
use crate::store::{JobRow, NotificationRow, OutboxEntry, Store, StoreError};

pub use console::ConsoleSink;

/// Why a sink could not deliver.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink is unavailable: {0}")]
    Unavailable(String),
}

/// What a sink is told: the job as it ended.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// `job.completed`, `job.failed`, …
    pub event: &'a str,
    pub job: &'a JobRow,
}

/// A configured sink.
#[derive(Debug)]
pub enum Sink {
    Console(ConsoleSink),
}

impl Sink {
    pub fn from_config(name: &str, cfg: &SinkConfig) -> Self {
        match cfg {
            SinkConfig::Console {} => Sink::Console(ConsoleSink::new(name)),
        }
    }

    /// Delivers one message.
    pub async fn deliver(&self, msg: &Message<'_>) -> Result<(), SinkError> {
        match self {
            Sink::Console(s) => s.deliver(msg),
        }
    }
}

/// The outbox rows a job's terminal status should create: its own `notify:` list, else the
/// config's `notify.default`.
pub fn routes_for(spec: &JobSpec, config: &Config) -> Vec<OutboxEntry> {
    let to_status = |on: &NotifyOn| match on {
        NotifyOn::Completed => JobStatus::Completed,
        NotifyOn::Failed => JobStatus::Failed,
        NotifyOn::Incomplete => JobStatus::Incomplete,
        NotifyOn::Cancelled => JobStatus::Cancelled,
    };
    match &spec.notify {
        Some(routes) => routes
            .iter()
            .map(|r| OutboxEntry {
                sink: r.sink.clone(),
                on: r.on.iter().map(to_status).collect(),
            })
            .collect(),
        None => config
            .notify
            .default
            .iter()
            .map(|s| OutboxEntry {
                sink: s.clone(),
                on: NotifyOn::ALL.iter().map(to_status).collect(),
            })
            .collect(),
    }
}

/// Delivers due outbox rows. Retries with exponential backoff; after `max_attempts` a row
/// becomes a dead letter.
pub struct Notifier {
    store: Store,
    clock: Clock,
    sinks: BTreeMap<String, Sink>,
    max_attempts: i64,
}

impl Notifier {
    pub fn new(store: Store, clock: Clock, config: &Config) -> Self {
        let sinks = config
            .sinks
            .iter()
            .map(|(n, c)| (n.clone(), Sink::from_config(n, c)))
            .collect();
        Self {
            store,
            clock,
            sinks,
            max_attempts: 8,
        }
    }

    /// Delivers every due notification once; returns how many were attempted.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let rows = self.store.claim_notifications(now, 60_000, 32).await?;
        for row in &rows {
            self.deliver(row).await?;
        }
        Ok(rows.len())
    }

    async fn deliver(&self, row: &NotificationRow) -> Result<(), StoreError> {
        let result = match (
            self.sinks.get(&row.sink),
            self.store.get_job(&row.job_id).await?,
        ) {
            (Some(sink), Some(job)) => {
                sink.deliver(&Message {
                    event: &row.event,
                    job: &job,
                })
                .await
            }
            (None, _) => Err(SinkError::Unavailable(format!(
                "no sink named `{}` is configured",
                row.sink
            ))),
            (_, None) => Err(SinkError::Unavailable("the job no longer exists".into())),
        };
        let now = self.clock.now_ms();
        match result {
            Ok(()) => self.store.mark_notification_delivered(row, now).await,
            Err(e) => {
                let retry_at = (row.attempts < self.max_attempts).then(|| {
                    let delay =
                        Duration::from_secs(2u64.saturating_pow(row.attempts.clamp(0, 12) as u32));
                    now + ms(delay.min(Duration::from_secs(3600)))
                });
                tracing::warn!(job_id = %row.job_id, sink = %row.sink, attempts = row.attempts, error = %e, "notification failed");
                self.store
                    .mark_notification_failed(row, &e.to_string(), retry_at, now)
                    .await
            }
        }
    }
}
