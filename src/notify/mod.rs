//! Notifications: which sinks hear about a job ([`routes_for`]), the outbox worker that
//! delivers them with retries ([`Notifier`]), the message context and templates, and the sinks.
//!
//! Outbox rows are written by the store in the same transaction as the terminal status that
//! causes them; this module only delivers. Each row is delivered at least once; sinks that can
//! dedupe get a stable id per (job, event). A row that keeps failing becomes a dead letter,
//! visible in `respool notifications list --failed` and in the job's timeline, and can be
//! retried. Sinks are an enum: a new kind of sink is a new variant and a file.

pub(crate) mod chat;
pub(crate) mod command;
mod console;
pub mod context;
mod discord;
mod email;
mod file;
mod http;
pub mod markdown;
mod ntfy;
mod sample;
mod slack;
pub mod templates;
mod webhook_sink;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::batch::Batcher;
use crate::clock::{Clock, ms};
use crate::config::{Config, SinkConfig};
use crate::job::{JobSpec, JobStatus, spec::NotifyOn};
use crate::store::{Close, JobRow, NotificationRow, OutboxEntry, SinkFilter, Store, StoreError};

pub use context::{Context, human_bytes};
pub use templates::{Part, Templates};

/// Why a sink could not deliver.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth another try later (the sink is down, rate limited, timed out).
    #[error("{message}")]
    Temporary {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Will not work by retrying (refused, not found, bad request): a dead letter at once.
    #[error("{0}")]
    Permanent(String),
    /// The sink's settings or templates are wrong.
    #[error("sink misconfigured: {0}")]
    Config(String),
}

impl SinkError {
    pub fn temporary(message: impl Into<String>) -> Self {
        Self::Temporary {
            message: message.into(),
            retry_after: None,
        }
    }

    /// Maps an HTTP answer of a sink endpoint: 408/429/5xx are temporary (with `Retry-After`),
    /// other 4xx permanent.
    pub fn from_http_status(status: u16, retry_after: Option<Duration>, body: &str) -> Self {
        let snippet: String = body.chars().take(200).collect();
        let message = format!("the endpoint answered {status}: {snippet}");
        if status == 408 || status == 429 || status >= 500 {
            Self::Temporary {
                message,
                retry_after,
            }
        } else {
            Self::Permanent(message)
        }
    }
}

/// One notification to deliver.
#[derive(Debug)]
pub struct Notification<'a> {
    /// The outbox row id (0 for `notify test`).
    pub id: i64,
    /// `job.completed`, `job.failed`, `job.incomplete`, `job.cancelled`.
    pub event: &'a str,
    pub job: &'a JobRow,
    /// The whole stored Response JSON, if any.
    pub response: Option<&'a Value>,
    /// What templates see.
    pub ctx: &'a Context,
    /// The artifacts an email attaches (kept, within `artifacts.email_max_bytes`).
    pub artifacts: &'a [ArtifactFile],
}

/// An artifact file to attach to an email.
#[derive(Debug, Clone)]
pub struct ArtifactFile {
    pub name: String,
    pub media_type: String,
    /// Where it is on disk.
    pub path: std::path::PathBuf,
}

impl Notification<'_> {
    /// The JSON event machine sinks carry (stable `id` per job and event), the job's cost as
    /// the context priced it.
    pub fn event_json(&self) -> Value {
        context::event_json(self.event, self.job, self.response, self.ctx)
    }
}

impl Sink {
    /// Whether it sends a job's artifacts as attachments (email); the others link them.
    pub fn attaches_files(&self) -> bool {
        matches!(self, Sink::Email(_))
    }
}

/// A configured sink.
#[derive(Debug)]
pub enum Sink {
    Console(console::ConsoleSink),
    Email(email::EmailSink),
    Slack(slack::SlackSink),
    Webhook(webhook_sink::WebhookSink),
    File(file::FileSink),
    Discord(discord::DiscordSink),
    Ntfy(ntfy::NtfySink),
    Command(command::CommandSink),
}

impl Sink {
    /// Builds a sink: reads its secret files, compiles its templates, prepares its client.
    pub fn build(name: &str, cfg: &SinkConfig, http: &reqwest::Client) -> Result<Self, SinkError> {
        Ok(match cfg {
            SinkConfig::Console {} => Sink::Console(console::ConsoleSink::new(name)),
            SinkConfig::Email(c) => Sink::Email(email::EmailSink::new(name, c)?),
            SinkConfig::Slack(c) => Sink::Slack(slack::SlackSink::new(name, c, http.clone())?),
            SinkConfig::Webhook(c) => {
                Sink::Webhook(webhook_sink::WebhookSink::new(name, c, http.clone())?)
            }
            SinkConfig::File(c) => Sink::File(file::FileSink::new(name, c)?),
            SinkConfig::Discord(c) => {
                Sink::Discord(discord::DiscordSink::new(name, c, http.clone())?)
            }
            SinkConfig::Ntfy(c) => Sink::Ntfy(ntfy::NtfySink::new(name, c, http.clone())?),
            SinkConfig::Command(c) => Sink::Command(command::CommandSink::new(name, c)?),
        })
    }

    /// Whether the sink reads [`Notification::ctx`] (templates, the report, the timeline).
    /// The others send the event JSON of the job and its response, and are given an empty
    /// context: building one costs a timeline read and a Markdown and HTML render.
    pub fn uses_context(&self) -> bool {
        match self {
            Sink::Email(_) | Sink::Slack(_) | Sink::File(_) | Sink::Discord(_) | Sink::Ntfy(_) => {
                true
            }
            Sink::Console(_) | Sink::Webhook(_) | Sink::Command(_) => false,
        }
    }

    /// Delivers one notification.
    pub async fn deliver(&self, n: &Notification<'_>) -> Result<(), SinkError> {
        match self {
            Sink::Console(s) => s.deliver(n),
            Sink::Email(s) => s.deliver(n).await,
            Sink::Slack(s) => s.deliver(n).await,
            Sink::Webhook(s) => s.deliver(n).await,
            Sink::File(s) => s.deliver(n).await,
            Sink::Discord(s) => s.deliver(n).await,
            Sink::Ntfy(s) => s.deliver(n).await,
            Sink::Command(s) => s.deliver(n).await,
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
        NotifyOn::RequiresAction => JobStatus::RequiresAction,
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

/// The delay before try `attempts + 1`: `initial · 2^(attempts−1)`, ±20% jitter, capped; a
/// sink's `Retry-After` wins when longer (still capped). `r` in [0, 1).
pub fn retry_delay(
    attempts: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    r: f64,
) -> Duration {
    let exp = initial.saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(20)));
    let jittered = exp.mul_f64(0.8 + 0.4 * r.clamp(0.0, 1.0)).min(max);
    match retry_after {
        Some(ra) if ra > jittered => ra.min(max),
        _ => jittered,
    }
}

/// Delivers due outbox rows, a bounded number at a time.
pub struct Notifier {
    store: Store,
    clock: Clock,
    config: Arc<Config>,
    sinks: Arc<BTreeMap<String, Sink>>,
    /// Deliveries in flight, all sinks together (`notify.max_concurrent`).
    permits: Arc<Semaphore>,
    /// Deliveries in flight to each configured sink (its `max_concurrent`).
    sink_permits: Arc<BTreeMap<String, Arc<Semaphore>>>,
    /// Which sink claims first in the next pass (they take turns).
    turn: Arc<std::sync::atomic::AtomicUsize>,
    /// The hard limit on one delivery (building its message and sending it), shorter than
    /// the lease: see [`delivery_limits`].
    deliver_timeout: Duration,
    /// How long a claimed row is left alone. If the daemon dies mid-delivery, the row is tried
    /// again after it.
    lease_ms: i64,
    /// The group-committed writer of delivery results (started on first use, on the caller's
    /// runtime): deliveries that end together share one transaction and its fsync.
    closes: Arc<std::sync::OnceLock<Batcher<Close, Result<bool, StoreError>>>>,
}

/// Delivery results written per transaction, at most.
const MAX_CLOSE_BATCH: usize = 256;

/// What a lease leaves after a delivery's hard timeout, for its closing write: longer than a
/// write may wait for the write lock (10 s, the store's busy timeout), with 5 s to spare for
/// the commit and for clocks of daemons on other machines that run a little ahead. With
/// several daemons on PostgreSQL, claims do not wait for that lock; a close still waiting for
/// it when the lease ran out would see the row claimed and sent again by another daemon.
const LEASE_MARGIN: Duration = Duration::from_secs(15);
/// The shortest hard timeout of a delivery (a sink configured with no timeout still gets this).
const MIN_DELIVERY_TIMEOUT: Duration = Duration::from_secs(1);

/// The hard timeout of one delivery and the lease of its claim, from the slowest sink's own
/// timeout: twice that (a sink may make two calls, such as a connect and a send), and the
/// lease a margin longer. A delivery still running at its timeout is abandoned (a temporary
/// failure), so no worker is still sending when the lease runs out and another worker claims
/// the row again; the claim's fencing token keeps a closing write that comes later than that
/// from changing anything.
pub fn delivery_limits(slowest_sink: Duration) -> (Duration, Duration) {
    let timeout = slowest_sink.saturating_mul(2).max(MIN_DELIVERY_TIMEOUT);
    (timeout, timeout + LEASE_MARGIN)
}

impl Notifier {
    /// Builds every configured sink; a sink that cannot be built (a bad template, an unreadable
    /// secret file) stops the start.
    pub fn new(
        store: Store,
        clock: Clock,
        config: Arc<Config>,
    ) -> Result<Self, (String, SinkError)> {
        let permits = Arc::new(Semaphore::new(config.notify.max_concurrent.get()));
        Self::with_permits(store, clock, config, permits, &BTreeMap::new())
    }

    /// A notifier for a reloaded config: every sink built anew from `config`, the store and
    /// clock shared with this one, and the delivery slots too where their limits did not change
    /// (deliveries in flight keep their old sink and slot; a changed limit starts afresh, so
    /// for a moment the old deliveries and the new limit's may both be in flight).
    pub fn reconfigured(&self, config: Arc<Config>) -> Result<Self, (String, SinkError)> {
        let permits = if self.config.notify.max_concurrent == config.notify.max_concurrent {
            self.permits.clone()
        } else {
            Arc::new(Semaphore::new(config.notify.max_concurrent.get()))
        };
        let kept: BTreeMap<String, Arc<Semaphore>> = self
            .sink_permits
            .iter()
            .filter(|(name, _)| {
                let limit = |c: &Config| c.sinks.get(*name).map(SinkConfig::max_concurrent);
                limit(&self.config) == limit(&config)
            })
            .map(|(name, sem)| (name.clone(), sem.clone()))
            .collect();
        Self::with_permits(
            self.store.clone(),
            self.clock.clone(),
            config,
            permits,
            &kept,
        )
    }

    fn with_permits(
        store: Store,
        clock: Clock,
        config: Arc<Config>,
        permits: Arc<Semaphore>,
        kept: &BTreeMap<String, Arc<Semaphore>>,
    ) -> Result<Self, (String, SinkError)> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("respool/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // A redirect is an answer, not a delivery: following a 303 would turn a POST into
            // a GET whose 200 looks like success.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| (String::new(), SinkError::Config(e.to_string())))?;
        let mut sinks = BTreeMap::new();
        let mut sink_permits = BTreeMap::new();
        for (name, cfg) in &config.sinks {
            let sink = Sink::build(name, cfg, &http).map_err(|e| (name.clone(), e))?;
            sinks.insert(name.clone(), sink);
            let sem = kept
                .get(name)
                .cloned()
                .unwrap_or_else(|| Arc::new(Semaphore::new(cfg.max_concurrent())));
            sink_permits.insert(name.clone(), sem);
        }
        let slowest = config
            .sinks
            .values()
            .map(SinkConfig::timeout)
            .max()
            .unwrap_or_default();
        let (deliver_timeout, lease) = delivery_limits(slowest);
        Ok(Self {
            store,
            clock,
            config,
            sinks: Arc::new(sinks),
            permits,
            sink_permits: Arc::new(sink_permits),
            turn: Arc::default(),
            deliver_timeout,
            lease_ms: ms(lease),
            closes: Arc::default(),
        })
    }

    /// Claims due notifications (as many as there are free delivery slots) and starts them.
    ///
    /// `freed` is called when a delivery ends and its slot is free again (so the caller can
    /// claim more at once, rather than at its next pass).
    pub async fn start_due(
        &self,
        tracker: &TaskTracker,
        handles: &mut Vec<JoinHandle<()>>,
        freed: impl Fn() + Clone + Send + 'static,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        if self.permits.available_permits() == 0 {
            return Ok(());
        }
        // Only the sinks with rows due are claimed for (a read first: a pass with nothing due
        // writes nothing). Each takes as many rows as it and the overall limit have free
        // slots, starting from a different sink each pass so that, when the overall limit is
        // what binds, the sinks take turns at the slots that free up. Then the rows of sinks
        // no longer configured (they end as dead letters, see `attempt`).
        let due = self.store.due_notification_sinks(now).await?;
        if due.is_empty() {
            return Ok(());
        }
        let mut plan: Vec<(SinkFilter<'_>, Option<&Arc<Semaphore>>)> = self
            .sink_permits
            .iter()
            .filter(|(name, _)| due.contains(name))
            .map(|(name, sem)| (SinkFilter::Only(name.as_str()), Some(sem)))
            .collect();
        if !plan.is_empty() {
            let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let len = plan.len();
            plan.rotate_left(turn % len);
        }
        let configured: Vec<String> = self.sink_permits.keys().cloned().collect();
        if due.iter().any(|sink| !self.sink_permits.contains_key(sink)) {
            plan.push((SinkFilter::NoneOf(&configured), None));
        }
        for (filter, sink_sem) in plan {
            let free = self
                .permits
                .available_permits()
                .min(sink_sem.map_or(usize::MAX, |s| s.available_permits()));
            if free == 0 {
                continue;
            }
            let rows = self
                .store
                .claim_notifications_of(now, self.lease_ms, free as i64, filter)
                .await?;
            for row in rows {
                // Nothing else takes these slots while this pass holds them (one outbox
                // worker), so both are free; if not, the row's lease makes it due again.
                let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                    break;
                };
                let sink_permit = match sink_sem.map(|s| s.clone().try_acquire_owned()) {
                    Some(Err(_)) => break,
                    Some(Ok(p)) => Some(p),
                    None => None,
                };
                let me = self.clone_parts();
                let freed = freed.clone();
                handles.push(tracker.spawn(async move {
                    // The sink's slot is free once the sink answered (or the attempt was
                    // abandoned at its timeout, when the sink may still be at work on it):
                    // writing down how it went (group-committed, behind other writers) is the
                    // daemon's work, not the sink's, so the next row may go to the sink
                    // meanwhile. The overall slot is held until the write is done, and the
                    // row stays leased until then, so it is not claimed again.
                    let sent = {
                        let freed = freed.clone();
                        move || {
                            drop(sink_permit);
                            freed();
                        }
                    };
                    if let Err(e) = me.deliver_row(&row, sent).await {
                        tracing::error!(error = %crate::telemetry::chain(&e), notification = row.id, "recording a delivery failed");
                    }
                    drop(permit);
                    freed();
                }));
            }
        }
        Ok(())
    }

    fn clone_parts(&self) -> Self {
        Self {
            store: self.store.clone(),
            clock: self.clock.clone(),
            config: self.config.clone(),
            sinks: self.sinks.clone(),
            permits: self.permits.clone(),
            sink_permits: self.sink_permits.clone(),
            turn: self.turn.clone(),
            deliver_timeout: self.deliver_timeout,
            lease_ms: self.lease_ms,
            closes: self.closes.clone(),
        }
    }

    /// Writes how a delivery ended, group-committed with the others that end meanwhile.
    async fn close(&self, close: Close) -> Result<bool, StoreError> {
        let store = self.store.clone();
        self.closes
            .get_or_init(|| {
                Batcher::start(MAX_CLOSE_BATCH, move |closes: Vec<Close>| {
                    let store = store.clone();
                    async move { store.close_notifications(&closes).await }
                })
            })
            .call(close)
            .await
            .map_err(|_| StoreError::BatchFailed("the daemon is stopping".into()))?
    }

    async fn deliver_row(
        &self,
        row: &NotificationRow,
        sent: impl FnOnce(),
    ) -> Result<(), StoreError> {
        let result = match tokio::time::timeout(self.deliver_timeout, self.attempt(row)).await {
            Ok(r) => r?,
            Err(_) => Err(SinkError::temporary(format!(
                "the delivery took longer than {} and was abandoned",
                humantime::format_duration(self.deliver_timeout)
            ))),
        };
        sent();
        let now = self.clock.now_ms();
        let applied = match result {
            Ok(()) => {
                let applied = self
                    .close(Close::Delivered {
                        row: row.clone(),
                        now,
                    })
                    .await?;
                if applied {
                    crate::telemetry::notification(&row.sink, "delivered");
                    tracing::info!(job_id = %row.job_id, sink = %row.sink, event = %row.event, "notification delivered");
                }
                applied
            }
            Err(e) => {
                let cfg = &self.config.notify;
                let attempts = u32::try_from(row.attempts).unwrap_or(u32::MAX);
                let retry_at = match &e {
                    SinkError::Temporary { retry_after, .. } if attempts < cfg.max_attempts => {
                        let d = retry_delay(
                            attempts,
                            cfg.initial_backoff,
                            cfg.max_backoff,
                            *retry_after,
                            rand::random(),
                        );
                        Some(now + ms(d))
                    }
                    _ => None,
                };
                let applied = self
                    .close(Close::Failed {
                        row: row.clone(),
                        error: e.to_string(),
                        retry_at,
                        now,
                    })
                    .await?;
                if applied {
                    crate::telemetry::notification(
                        &row.sink,
                        if retry_at.is_some() { "retry" } else { "dead" },
                    );
                    tracing::warn!(
                        job_id = %row.job_id, sink = %row.sink, attempts, error = %e,
                        dead = retry_at.is_none(), "notification failed"
                    );
                }
                applied
            }
        };
        if !applied {
            tracing::warn!(
                job_id = %row.job_id, sink = %row.sink, event = %row.event, notification = row.id,
                claim = row.claim,
                "stale delivery result ignored: the notification was claimed again or closed since"
            );
        }
        Ok(())
    }

    /// One try at delivering `row`: builds its message and sends it through its sink.
    async fn attempt(&self, row: &NotificationRow) -> Result<Result<(), SinkError>, StoreError> {
        Ok(
            match (
                self.sinks.get(&row.sink),
                self.store.get_job(&row.job_id).await?,
            ) {
                (Some(sink), Some(job)) => {
                    let response = self.store.get_response(&job.id).await?;
                    // Only a sink that shows the context or attaches files reads the files.
                    let artifacts = if sink.uses_context() || sink.attaches_files() {
                        self.store.artifacts(&job.id).await?
                    } else {
                        Vec::new()
                    };
                    let ctx = if sink.uses_context() {
                        let events = self.store.list_events(&job.id).await?;
                        let actions = match row.event.as_str() {
                            "job.requires_action" => {
                                self.store.turn_actions(&job.id, job.turn).await?
                            }
                            _ => Vec::new(),
                        };
                        Context::build(&row.event, &job, response.as_ref(), &events, &self.config)
                            .with_artifacts(&artifacts, &self.config, sink.attaches_files())
                            .with_actions(&actions)
                    } else {
                        Context::default()
                    };
                    // The files an email attaches, where they are on disk.
                    let files: Vec<ArtifactFile> = artifacts
                        .iter()
                        .filter(|_| sink.attaches_files())
                        .zip(context::attached(
                            &artifacts,
                            self.config.artifacts.email_max_bytes,
                        ))
                        .filter(|(_, attach)| *attach)
                        .filter_map(|(a, _)| {
                            Some(ArtifactFile {
                                path: self.store.artifact_path(&job.id, a)?,
                                name: a.name.clone(),
                                media_type: a.media_type.clone(),
                            })
                        })
                        .collect();
                    let n = Notification {
                        id: row.id,
                        event: &row.event,
                        job: &job,
                        response: response.as_ref(),
                        ctx: &ctx,
                        artifacts: &files,
                    };
                    sink.deliver(&n).await
                }
                (None, _) => Err(SinkError::Permanent(format!(
                    "no sink named `{}` is configured",
                    row.sink
                ))),
                (_, None) => Err(SinkError::Permanent("the job no longer exists".into())),
            },
        )
    }

    /// Sends a sample notification through a sink now (for `respool notify test`).
    pub async fn test_sink(&self, name: &str) -> Result<(), SinkError> {
        let sink = self
            .sinks
            .get(name)
            .ok_or_else(|| SinkError::Config(format!("no sink named `{name}`")))?;
        sample::send(sink, &self.config).await
    }

    /// The names of the configured sinks.
    pub fn sink_names(&self) -> impl Iterator<Item = &str> {
        self.sinks.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn retry_delays_grow_with_jitter_and_cap() {
        assert_eq!(retry_delay(1, 5 * S, 3600 * S, None, 0.5), 5 * S);
        assert_eq!(retry_delay(2, 5 * S, 3600 * S, None, 0.5), 10 * S);
        assert_eq!(retry_delay(3, 5 * S, 3600 * S, None, 0.0), 16 * S);
        assert_eq!(retry_delay(30, 5 * S, 3600 * S, None, 0.99), 3600 * S);
        assert_eq!(retry_delay(1, 5 * S, 3600 * S, Some(30 * S), 0.5), 30 * S);
    }

    #[test]
    fn a_delivery_gives_up_before_its_lease_runs_out() {
        for slowest in [Duration::ZERO, S, 10 * S, 120 * S] {
            let (timeout, lease) = delivery_limits(slowest);
            assert!(timeout >= slowest, "{slowest:?}");
            assert!(timeout >= MIN_DELIVERY_TIMEOUT);
            assert!(lease > timeout, "{slowest:?}: {timeout:?} vs {lease:?}");
        }
        assert_eq!(delivery_limits(10 * S), (20 * S, 35 * S));
    }

    #[test]
    fn http_status_mapping() {
        assert!(matches!(
            SinkError::from_http_status(503, None, ""),
            SinkError::Temporary { .. }
        ));
        assert!(matches!(
            SinkError::from_http_status(429, Some(S), ""),
            SinkError::Temporary {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            SinkError::from_http_status(404, None, ""),
            SinkError::Permanent(_)
        ));
    }
}
