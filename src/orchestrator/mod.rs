//! The orchestrator: the workers that submit jobs, poll them, time them out, resolve
//! uncertain creates, hand webhook hints to jobs and deliver notifications.
//!
//! The store is the queue. Every pass reads what is due from the `jobs` table, claims it with a
//! conditional write and does the work outside any transaction; so a crash at any instant
//! leaves the ledger saying exactly what is known, and a restart simply carries on. (apalis was
//! the planned executor; it would have been a second queue to reconcile with the ledger, with
//! nothing to add that these claims do not already give. See the README's design notes.)
//!
//! Work is bounded by semaphores (create calls, polls) and caps on jobs in flight (overall and
//! per model); budgets hold jobs and nearly used-up rate-limit windows defer them (`limits.rs`,
//! `budget.rs`); retention prunes old records hourly (`retention.rs`). Every task is owned by a
//! [`TaskTracker`] and drained on shutdown.

mod budget;
mod intake;
mod limits;
mod maintenance;
mod poll;
mod reconfigure;
mod retention;
mod retry;
pub mod schedule;
mod schedules;
mod submit;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use budget::{BudgetStatus, PeriodSpend, period_starts};
pub use intake::{AcceptError, spec_hash};
pub use retention::PruneReport;
pub use retry::RetryError;

use crate::clock::{Clock, ms};
use crate::config::Config;
use crate::notify::Notifier;
use crate::store::{Store, StoreError};
use crate::upstream;
use schedule::WebhookHealth;

/// Drives jobs through their life. Cheap to clone.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Swapped whole by a reload; readers take a snapshot with [`Orchestrator::client`].
    client: ArcSwap<upstream::Client>,
    /// Swapped whole by a reload; readers take a snapshot with [`Orchestrator::config`].
    config: ArcSwap<Config>,
    clock: Clock,
    wake: Notify,
    submit_permits: Arc<Semaphore>,
    poll_permits: Arc<Semaphore>,
    health: WebhookHealth,
    /// Whether respool holds stored webhook secrets (endpoints it registered itself), which
    /// make webhooks configured even with no `webhook.secrets`.
    stored_webhook_secrets: AtomicBool,
    /// Swapped by a reload (new sinks); in-flight deliveries keep the one they started with.
    notifier: ArcSwap<Notifier>,
    tracker: TaskTracker,
    /// When each unknown-response delivery was last looked up (webhook id → unix ms).
    adopt_tries: Mutex<HashMap<String, (i64, u32)>>,
    /// Rate-limit windows, spend and retention state (see `limits.rs`).
    governor: limits::Governor,
    scheduler: schedules::SchedulerState,
}

impl Orchestrator {
    pub fn new(
        store: Store,
        client: upstream::Client,
        config: Arc<Config>,
        clock: Clock,
        notifier: Notifier,
    ) -> Self {
        let inner = Inner {
            submit_permits: Arc::new(Semaphore::new(config.limits.max_concurrent_submissions)),
            poll_permits: Arc::new(Semaphore::new(config.limits.max_concurrent_polls)),
            health: WebhookHealth::new(!config.webhook.secrets.is_empty()),
            stored_webhook_secrets: AtomicBool::new(false),
            notifier: ArcSwap::from_pointee(notifier),
            wake: Notify::new(),
            tracker: TaskTracker::new(),
            adopt_tries: Mutex::new(HashMap::new()),
            governor: limits::Governor::new(),
            scheduler: schedules::SchedulerState::default(),
            store,
            client: ArcSwap::from_pointee(client),
            config: ArcSwap::new(config),
            clock,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Asks the workers to look for work now (a new job, a webhook, a cancel).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Runs until `shutdown` is cancelled, then waits (up to the configured shutdown timeout)
    /// for the work in flight to write its results.
    pub async fn run(&self, shutdown: CancellationToken) {
        let now = self.now();
        match self
            .inner
            .store
            .expire_submission_leases(i64::MAX, now + self.uncertain_wait_ms())
            .await
        {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(
                    count = ids.len(),
                    "jobs were mid-submit when respool last stopped; their create outcome is uncertain"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %chain(&e), "cannot reconcile interrupted submissions")
            }
        }
        loop {
            match self.tick().await {
                // The watchdog hears from a loop that works: a pass that cannot reach the
                // database does not ping, so systemd restarts a daemon stuck that way.
                Ok(_) => crate::systemd::watchdog(),
                Err(e) => tracing::error!(error = %chain(&e), "orchestrator pass failed"),
            }
            let sleep = self.sleep_hint().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        self.inner.tracker.close();
        let grace = self.config().shutdown_timeout;
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.inner.tracker.len(),
                "shutdown timeout reached with work in flight; it resumes on the next start"
            );
        }
    }

    /// One pass of every worker, waiting for the work it started. For tests and `demo`.
    pub async fn run_once(&self) -> Result<(), StoreError> {
        for handle in self.tick().await? {
            let _ = handle.await;
        }
        Ok(())
    }

    /// Starts every kind of due work; returns the handles of the tasks it spawned.
    async fn tick(&self) -> Result<Vec<JoinHandle<()>>, StoreError> {
        let mut handles = Vec::new();
        self.sync_stored_webhook_secrets().await;
        self.maintain(&mut handles).await?;
        self.start_retention(&mut handles);
        crate::telemetry::upkeep(u64::try_from(self.now() / 1000).unwrap_or(0));
        self.run_schedules().await?;
        self.start_submissions(&mut handles).await?;
        self.start_polls(&mut handles).await?;
        self.inner
            .notifier
            .load_full()
            .start_due(&self.inner.tracker, &mut handles)
            .await?;
        Ok(handles)
    }

    /// How long the loop may sleep: until the next due job, at most a second (the outbox and
    /// other workers write due times too).
    async fn sleep_hint(&self) -> Duration {
        let max = Duration::from_millis(1000);
        let job = self.inner.store.next_check_at().await.ok().flatten();
        // A schedule's next tick is due work too: wake for it on time, not up to a second late.
        let tick = self.inner.store.next_schedule_at().await.ok().flatten();
        match job.into_iter().chain(tick).min() {
            Some(at) => {
                let wait = at - self.now();
                if wait <= 0 {
                    Duration::from_millis(20)
                } else {
                    Duration::from_millis(wait as u64).min(max)
                }
            }
            None => max,
        }
    }

    fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// How long an uncertain create waits for a webhook to reveal its response.
    fn uncertain_wait_ms(&self) -> i64 {
        if self.webhooks_configured() {
            ms(self.config().upstream.uncertain_create_wait)
        } else {
            0
        }
    }

    /// Whether webhooks can arrive at all: a secret in the config, or one stored when respool
    /// registered an endpoint itself.
    pub fn webhooks_configured(&self) -> bool {
        !self.config().webhook.secrets.is_empty()
            || self.inner.stored_webhook_secrets.load(Ordering::Relaxed)
    }

    /// Reads whether the database holds accepted webhook secrets (registered through any
    /// daemon on it), each pass; on a read error the last answer stands.
    async fn sync_stored_webhook_secrets(&self) {
        match self
            .inner
            .store
            .has_active_webhook_secrets(self.now())
            .await
        {
            Ok(any) => self.set_stored_webhook_secrets(any),
            Err(e) => tracing::warn!(error = %chain(&e), "cannot read the stored webhook secrets"),
        }
    }

    /// Tells the orchestrator whether respool holds stored webhook secrets (at start, after
    /// `respool webhook register`, and each pass from the database).
    pub fn set_stored_webhook_secrets(&self, any: bool) {
        self.inner
            .stored_webhook_secrets
            .store(any, Ordering::Relaxed);
        self.inner.health.set_configured(self.webhooks_configured());
    }

    /// The store, for the API.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The config in force now: a snapshot, so hold it for one piece of work and ask again
    /// for the next (a reload swaps it).
    pub fn config(&self) -> Arc<Config> {
        self.inner.config.load_full()
    }

    /// The upstream client in force now (a reload may replace it).
    pub fn client(&self) -> Arc<upstream::Client> {
        self.inner.client.load_full()
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }
}

/// An error and its sources on one line, for logs.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
