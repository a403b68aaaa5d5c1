//! The orchestrator: the workers that submit jobs, poll them, time them out, resolve
//! uncertain creates, hand webhook hints to jobs and deliver notifications.
//!
//! The store is the queue. Every pass reads what is due from the `jobs` table, claims it with a
//! conditional write and does the work outside any transaction; so a crash at any instant
//! leaves the ledger saying exactly what is known, and a restart simply carries on. (apalis was
//! the planned executor; it would have been a second queue to reconcile with the ledger, with
//! nothing to add that these claims do not already give. See `docs/design.md`, "The ledger
//! rules".)
//!
//! Three workers run side by side, each in its own loop with its own wake-up, so no kind of
//! work waits behind another: the *ledger* worker (timeouts, cancels, uncertain creates, the
//! hand-off of webhook deliveries, duplicates, retention, schedules and polls), the *submit*
//! worker (create calls) and the *outbox* worker (notifications). A backlog of thousands of
//! jobs waiting to be submitted never delays recording a finished job or telling its owner.
//! Each worker sleeps until its own next due time (at most a second) or until woken: by new
//! work (a job, a webhook, a cancel) or by a slot that frees up (a create, a poll or a
//! delivery that ends).
//!
//! Work is bounded by semaphores (create calls, polls) and caps on jobs in flight (overall and
//! per model); budgets hold jobs and nearly used-up rate-limit windows defer them (`limits.rs`,
//! `budget.rs`); retention prunes old records hourly (`retention.rs`). Every task is owned by a
//! [`TaskTracker`] and drained on shutdown.

mod artifacts;
pub(crate) mod attachments;
mod budget;
mod chains;
mod cron;
mod handlers;
mod intake;
mod job_retry;
pub mod journal;
mod limits;
mod maintenance;
mod milestones;
mod peers;
mod poll;
pub mod poll_interval;
mod progress;
mod reconfigure;
mod retention;
mod submit;
mod turns;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use budget::{BudgetStatus, PeriodSpend, period_starts};
pub use intake::{AcceptError, spec_hash};
pub use job_retry::RetryError;
pub use retention::PruneReport;

use crate::clock::{Clock, ms};
use crate::config::{self, Config};
use crate::notify::Notifier;
use crate::store::{Store, StoreError, UncertainWait};
use crate::telemetry::chain;
use crate::upstream;
use poll_interval::WebhookHealth;

/// How long an uncertain create of a job without a `timeout` waits for a webhook to reveal
/// its response, unless `upstream.uncertain_create_wait` says otherwise: long enough for a
/// deep research run to finish and its webhook to arrive.
pub const DEFAULT_UNCERTAIN_WAIT: Duration = Duration::from_secs(2 * 3600);

/// The orchestrator's workers (see the module's docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Worker {
    Ledger,
    Submit,
    Outbox,
}

impl Worker {
    const ALL: [Worker; 3] = [Worker::Ledger, Worker::Submit, Worker::Outbox];

    fn name(self) -> &'static str {
        match self {
            Worker::Ledger => "ledger",
            Worker::Submit => "submit",
            Worker::Outbox => "outbox",
        }
    }

    /// The least time between the starts of two passes. A pass costs a dozen queries whatever
    /// it finds; woken by every poll, create and delivery that ends, a worker would pay that
    /// hundreds of times a second under load. The gaps add at most this much delay to any
    /// one piece of work, far inside the targets (a finished job recorded within 2 s, its
    /// notification out within 1 s). The ledger's 50 ms (25 before) hands off twice the
    /// webhooks per page and claims twice the polls per transaction under load (10,000 jobs:
    /// 3.9 s of CPU per 1,000 against 4.1–4.6 s, recorded p99 under 1 s). The outbox's 25 ms
    /// (10 before) was measured at 50 too: less CPU again, but notification p99 doubled.
    fn min_gap(self) -> Duration {
        match self {
            Worker::Ledger => Duration::from_millis(50),
            Worker::Submit => Duration::from_millis(5),
            Worker::Outbox => Duration::from_millis(25),
        }
    }
}

/// One wake-up per worker. A wake sent while the worker is busy is kept (a `Notify` permit),
/// so it looks again as soon as its pass ends.
#[derive(Default)]
struct Wakes {
    ledger: Notify,
    submit: Notify,
    outbox: Notify,
}

impl Wakes {
    fn of(&self, w: Worker) -> &Notify {
        match w {
            Worker::Ledger => &self.ledger,
            Worker::Submit => &self.submit,
            Worker::Outbox => &self.outbox,
        }
    }
}

/// Look-ups of unknown responses named by webhooks in flight at once.
const ADOPT_LOOKUPS: usize = 8;

/// The longest a worker sleeps with nothing due: what it checks besides due times (a budget
/// period ending, a job's timeout, a row another daemon wrote) is seen within this long.
const MAX_SLEEP: Duration = Duration::from_secs(1);

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
    config: config::Live,
    clock: Clock,
    wakes: Wakes,
    /// Wake-ups to and from the other daemons on the database (PostgreSQL).
    peers: peers::Peers,
    submit_permits: Arc<Semaphore>,
    poll_permits: Arc<Semaphore>,
    /// Look-ups of responses that webhooks named and no job knows (see `maintenance.rs`).
    adopt_permits: Arc<Semaphore>,
    /// Deliveries whose look-up is queued or running (webhook ids).
    looking_up: Mutex<std::collections::HashSet<String>>,
    /// Taken by a hand-off pass (see `maintenance::hand_off_deliveries`): one at a time.
    hand_offs: tokio::sync::Mutex<()>,
    health: WebhookHealth,
    /// Jobs in flight as the submit worker last counted them: spreads polls (see
    /// [`poll_interval::spread`]).
    in_flight: std::sync::atomic::AtomicI64,
    /// Whether respool holds stored webhook secrets (endpoints it registered itself), which
    /// make webhooks configured even with no `webhook.secrets`.
    stored_webhook_secrets: AtomicBool,
    /// Swapped by a reload (new sinks); in-flight deliveries keep the one they started with.
    notifier: ArcSwap<Notifier>,
    tracker: TaskTracker,
    /// Rate-limit windows, spend and retention state (see `limits.rs`).
    governor: limits::Governor,
    scheduler: cron::SchedulerState,
    /// This daemon's create journal (none for an in-memory database, or before [`run`]).
    ///
    /// [`run`]: Orchestrator::run
    journal: std::sync::OnceLock<journal::Journal>,
    /// The group-committed intake writer (see `intake.rs`), started on first use.
    intake: std::sync::OnceLock<
        crate::batch::Batcher<
            crate::store::NewJob,
            Result<crate::store::InsertOutcome, StoreError>,
        >,
    >,
    /// The group-committed writer of poll results (see `poll.rs`), started on first use.
    applier: std::sync::OnceLock<
        crate::batch::Batcher<
            crate::store::ObservationWrite,
            Result<crate::store::ApplyOutcome, StoreError>,
        >,
    >,
    /// The group-committed writer of response ids (see `submit.rs`), started on first use: a
    /// burst of creates' answers is recorded in one transaction.
    attacher: std::sync::OnceLock<
        crate::batch::Batcher<
            crate::store::AttachRequest,
            Result<crate::store::Attach, StoreError>,
        >,
    >,
    /// The group-committed writer of rate-limit windows (see `limits.rs`), started on first
    /// use: a burst of creates records their windows in one transaction.
    windows:
        std::sync::OnceLock<crate::batch::Batcher<crate::upstream::RateWindow, Result<(), String>>>,
    /// Response ids whose ledger write failed (with how they were found): retried each pass.
    unrecorded: Mutex<Vec<(journal::Entry, String)>>,
    /// When a ledger pass last did the housekeeping (see [`Orchestrator::housekeeping_due`]).
    housekept_at: Mutex<Option<std::time::Instant>>,
    /// Jobs whose actions are being answered here, and the handlers' permits (`turns.rs`).
    acting: turns::Acting,
    /// Jobs whose artifacts are being fetched here (`artifacts.rs`): one fetch per job.
    fetching: Arc<Mutex<std::collections::BTreeSet<crate::job::JobId>>>,
    /// Whether the last ledger pass skipped the housekeeping (see
    /// [`Orchestrator::housekeeping_left`]).
    housekeeping_skipped: AtomicBool,
    /// When the journals were last searched for a daemon that died (see [`ORPHAN_LOOK_EVERY`]);
    /// a monotonic instant, so a wall clock set back does not stop the looks.
    orphans_looked_at: Mutex<Option<std::time::Instant>>,
    /// The followers of response streams (`progress.rs`).
    followers: progress::Followers,
}

/// How often a running daemon looks for the journal of another daemon on the same database
/// that died (a lock that came free), to replay it and end its leases: a directory listing
/// and a lock attempt per file.
const ORPHAN_LOOK_EVERY: Duration = Duration::from_secs(30);

/// How often the ledger worker does its housekeeping at most. Under load it passes many times
/// a second (every poll and webhook wakes it), and the housekeeping is a dozen statements
/// whose work is never that urgent: a timeout, a lease, an uncertain create or a schedule's
/// tick that falls due is seen within this long (a pass that skipped it sleeps no longer).
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(250);

impl Orchestrator {
    pub fn new(
        store: Store,
        client: upstream::Client,
        config: config::Live,
        clock: Clock,
        notifier: Notifier,
    ) -> Self {
        let now = config.get();
        let inner = Inner {
            submit_permits: Arc::new(Semaphore::new(now.limits.max_concurrent_submissions)),
            poll_permits: Arc::new(Semaphore::new(now.limits.max_concurrent_polls)),
            adopt_permits: Arc::new(Semaphore::new(ADOPT_LOOKUPS)),
            looking_up: Mutex::default(),
            hand_offs: tokio::sync::Mutex::new(()),
            health: WebhookHealth::new(!now.webhook.secrets.is_empty()),
            in_flight: std::sync::atomic::AtomicI64::new(0),
            stored_webhook_secrets: AtomicBool::new(false),
            notifier: ArcSwap::from_pointee(notifier),
            wakes: Wakes::default(),
            peers: peers::Peers::default(),
            tracker: TaskTracker::new(),
            governor: limits::Governor::new(),
            scheduler: cron::SchedulerState::default(),
            journal: std::sync::OnceLock::new(),
            unrecorded: Mutex::new(Vec::new()),
            orphans_looked_at: Mutex::new(None),
            housekept_at: Mutex::new(None),
            acting: turns::Acting::new(now.actions.max_concurrent.get()),
            fetching: Arc::default(),
            housekeeping_skipped: AtomicBool::new(false),
            followers: progress::Followers::default(),
            intake: std::sync::OnceLock::new(),
            applier: std::sync::OnceLock::new(),
            windows: std::sync::OnceLock::new(),
            attacher: std::sync::OnceLock::new(),
            store,
            client: ArcSwap::from_pointee(client),
            config,
            clock,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Asks every worker to look for work now (a new job, a webhook, a cancel).
    pub fn wake(&self) {
        for w in Worker::ALL {
            self.inner.wakes.of(w).notify_one();
        }
        // The other daemons on the database may take some of it (PostgreSQL).
        self.inner.peers.tell();
    }

    /// A webhook delivery was recorded: the ledger worker hands it to its job.
    pub fn webhook_recorded(&self) {
        self.inner.wakes.ledger.notify_one();
    }

    /// Tells the worker that holds a kind of slot that one freed up (a create or a poll
    /// ended). A create that ended may also have ended its job (a refused create: its
    /// notifications are due), so the outbox hears of it too; a poll that ended its job woke
    /// the others when it wrote that end.
    fn wake_after(&self, w: Worker) {
        self.inner.wakes.of(w).notify_one();
        if w == Worker::Submit {
            self.inner.wakes.outbox.notify_one();
        }
    }

    /// Runs until `shutdown` is cancelled, then waits (up to the configured shutdown timeout)
    /// for the work in flight to write its results.
    pub async fn run(&self, shutdown: CancellationToken) {
        if let Err(e) = self.open_journal().await {
            tracing::error!(error = %chain(&e), "cannot open the create journal");
        }
        if let Err(e) = self.replay_journals().await {
            tracing::error!(error = %chain(&e), "cannot replay the create journals of stopped daemons");
        }
        if let Err(e) = self.resume_streams().await {
            tracing::error!(error = %chain(&e), "cannot resume the response streams of running jobs");
        }
        tokio::join!(
            self.work(Worker::Ledger, &shutdown),
            self.work(Worker::Submit, &shutdown),
            self.work(Worker::Outbox, &shutdown),
            self.peers(&shutdown),
        );
        self.inner.followers.stop();
        self.inner.tracker.close();
        let grace = self.config().shutdown_timeout;
        let drained = tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                in_flight = self.inner.tracker.len(),
                "shutdown timeout reached with work in flight; it resumes on the next start"
            );
        }
        // With calls still in flight the journal stays: the next start finds it orphaned and
        // ends the leases those calls hold at once.
        if drained
            && let Some(j) = self.journal()
            && let Err(e) = tokio::task::spawn_blocking(move || j.close()).await
        {
            tracing::warn!(error = %e, "cannot close the create journal");
        }
    }

    /// Opens this daemon's create journal next to the database file, or (PostgreSQL) in the
    /// state directory (none for a database in memory).
    pub async fn open_journal(&self) -> Result<(), StoreError> {
        if self.inner.journal.get().is_some() {
            return Ok(());
        }
        let dir = match self.inner.store.database_file().await? {
            Some(db) => journal::dir_for(&db),
            None => match self.inner.store.journal_dir() {
                Some(dir) => dir.to_path_buf(),
                None => return Ok(()),
            },
        };
        let opened = tokio::task::spawn_blocking(move || journal::Journal::open(&dir))
            .await
            .map_err(|e| StoreError::Corrupt(format!("journal task failed: {e}")))?
            .map_err(|e| StoreError::Corrupt(format!("cannot open the create journal: {e}")))?;
        let _ = self.inner.journal.set(opened);
        Ok(())
    }

    /// Runs `work`, calling `beat` every `every` until it ends (not before the first
    /// interval): the heartbeat that keeps a lease while an upload or a download runs.
    pub(crate) async fn beating<T, F: std::future::Future<Output = ()>>(
        every: Duration,
        work: impl std::future::Future<Output = T>,
        mut beat: impl FnMut() -> F,
    ) -> T {
        tokio::pin!(work);
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = ticks.tick() => beat().await,
            }
        }
    }

    fn journal(&self) -> Option<journal::Journal> {
        self.inner.journal.get().cloned()
    }

    /// Whether this ledger pass does the housekeeping (timeouts, cancels, expired leases,
    /// uncertain creates, duplicates, retention, schedules, stored secrets): at most every
    /// [`HOUSEKEEPING_EVERY`]. Passes in between, woken by a poll or a webhook, only hand off
    /// deliveries and claim polls.
    fn housekeeping_due(&self) -> bool {
        let mut last = self
            .inner
            .housekept_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let due = !last.is_some_and(|t| t.elapsed() < HOUSEKEEPING_EVERY);
        if due {
            *last = Some(std::time::Instant::now());
        }
        self.inner
            .housekeeping_skipped
            .store(!due, Ordering::Relaxed);
        due
    }

    /// After a ledger pass that skipped the housekeeping, how long until it may run: the
    /// worker sleeps no longer, so a timeout, a lease or an uncertain create that fell due
    /// meanwhile waits at most [`HOUSEKEEPING_EVERY`] (the sleep hint does not count work
    /// already due).
    fn housekeeping_left(&self) -> Option<Duration> {
        if !self.inner.housekeeping_skipped.load(Ordering::Relaxed) {
            return None;
        }
        let last = *self
            .inner
            .housekept_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(last.map_or(Duration::ZERO, |t| {
            HOUSEKEEPING_EVERY.saturating_sub(t.elapsed())
        }))
    }

    /// Replays the journals of daemons that died beside this one, every [`ORPHAN_LOOK_EVERY`].
    async fn look_for_orphans(&self) {
        let last = *self
            .inner
            .orphans_looked_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < ORPHAN_LOOK_EVERY) {
            return;
        }
        if let Err(e) = self.replay_journals().await {
            tracing::error!(error = %chain(&e), "cannot replay the create journals of stopped daemons");
        }
    }

    /// Replays the journals of daemons that stopped (crashed or not) into the ledger: every
    /// response id they received and may not have recorded is attached now, and the creates
    /// they were still making become uncertain at once (their leases are theirs:
    /// `lease_owner`).
    pub async fn replay_journals(&self) -> Result<usize, StoreError> {
        let Some(j) = self.journal() else {
            return Ok(0);
        };
        *self
            .inner
            .orphans_looked_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(std::time::Instant::now());
        let orphans = tokio::task::spawn_blocking(move || j.orphans())
            .await
            .map_err(|e| StoreError::Corrupt(format!("journal task failed: {e}")))?
            .map_err(|e| StoreError::Corrupt(format!("cannot read the create journals: {e}")))?;
        let mut replayed = 0;
        for orphan in orphans {
            let mut ok = true;
            for entry in &orphan.entries {
                match self
                    .record_response(
                        &entry.job_id,
                        &entry.response_id,
                        None,
                        None,
                        "journal: recorded by a daemon that stopped before writing it",
                    )
                    .await
                {
                    Ok(()) => replayed += 1,
                    Err(e) => {
                        ok = false;
                        tracing::error!(error = %chain(&e), job_id = %entry.job_id, "cannot replay a journal entry");
                    }
                }
            }
            if !ok {
                // An id of its journal is not in the ledger yet (it is retried each pass): its
                // job must not turn uncertain (and, under `resubmit`, be POSTed again) while
                // the id is in hand. The file stays; the next look tries it again.
                continue;
            }
            // Whatever of its claims the journal did not resolve, nobody is making those
            // calls any more: they are uncertain now, not when their leases run out.
            let now = self.now();
            match self
                .inner
                .store
                .expire_leases_of(&orphan.instance, now, self.uncertain_wait(now))
                .await
            {
                Ok(ids) if !ids.is_empty() => tracing::warn!(
                    count = ids.len(),
                    "submissions of a daemon that is gone; outcome uncertain"
                ),
                Ok(_) => {}
                Err(e) => {
                    ok = false;
                    tracing::error!(error = %chain(&e), "cannot end the submission leases of a daemon that is gone");
                }
            }
            if ok && let Err(e) = tokio::task::spawn_blocking(move || orphan.remove()).await {
                tracing::warn!(error = %e, "cannot remove a replayed journal");
            }
        }
        Ok(replayed)
    }

    /// One pass of every worker, waiting for the work it started. For tests and `demo`.
    pub async fn run_once(&self) -> Result<(), StoreError> {
        for handle in self.tick().await? {
            let _ = handle.await;
        }
        Ok(())
    }

    /// One worker's loop: a pass, then sleep until its next due time or a wake-up, and at
    /// least the worker's [`Worker::min_gap`] after the last pass began.
    async fn work(&self, w: Worker, shutdown: &CancellationToken) {
        loop {
            let began = tokio::time::Instant::now();
            let mut handles = Vec::new();
            crate::telemetry::worker_pass(w.name());
            match self.pass(w, &mut handles).await {
                // The watchdog hears from a loop that works: a pass that cannot reach the
                // database does not ping, so systemd restarts a daemon stuck that way.
                Ok(()) if w == Worker::Ledger => crate::systemd::watchdog(),
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(worker = w.name(), error = %chain(&e), "orchestrator pass failed");
                }
            }
            // The tasks started run on (the tracker owns them).
            drop(handles);
            let mut sleep = self.sleep_hint(w).await;
            if w == Worker::Ledger
                && let Some(left) = self.housekeeping_left()
            {
                sleep = sleep.min(left);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.inner.wakes.of(w).notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
            // Wake-ups that come faster than the gap are served by one pass: under load each
            // pass finds more work (a page of hand-offs, several free slots) for the same
            // fixed cost of looking.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(began + w.min_gap()) => {}
            }
        }
    }

    /// Starts every kind of due work (each worker's pass in turn); returns the handles of the
    /// tasks it spawned. Each worker runs whatever the others did, and the first error is
    /// returned.
    async fn tick(&self) -> Result<Vec<JoinHandle<()>>, StoreError> {
        // A tick does everything that is due, housekeeping included, however recent the last.
        *self
            .inner
            .housekept_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let mut handles = Vec::new();
        let mut first: Option<StoreError> = None;
        for w in Worker::ALL {
            if let Err(e) = self.pass(w, &mut handles).await {
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) => {
                // The tasks started this pass still run (the tracker owns them).
                drop(handles);
                Err(e)
            }
            None => Ok(handles),
        }
    }

    /// One pass of worker `w`: starts its due work and pushes the handles of the tasks it
    /// spawned. Each stage runs whatever the others did: a failing one (a row that does not
    /// decode, a query that fails) is logged and the pass goes on, and the first error is
    /// returned so the watchdog hears about a pass that did not work.
    async fn pass(&self, w: Worker, handles: &mut Vec<JoinHandle<()>>) -> Result<(), StoreError> {
        let mut first: Option<StoreError> = None;
        let mut note = |stage: &str, r: Result<(), StoreError>| {
            if let Err(e) = r {
                tracing::error!(stage, error = %chain(&e), "an orchestrator worker failed this pass");
                first.get_or_insert(e);
            }
        };
        match w {
            Worker::Ledger => {
                if self.housekeeping_due() {
                    self.sync_stored_webhook_secrets().await;
                    self.retry_unrecorded().await;
                    self.look_for_orphans().await;
                    note("maintenance", self.maintain(handles).await);
                    note("duplicates", self.check_duplicates().await);
                    self.start_retention(handles);
                    crate::telemetry::upkeep(u64::try_from(self.now() / 1000).unwrap_or(0));
                    note("schedules", self.run_schedules().await);
                } else {
                    note("hand-offs", self.hand_off_deliveries(handles).await);
                }
                note("polls", self.start_polls(handles).await);
                note("actions", self.start_actions(handles).await);
                note("chains", self.settle_chains().await);
                note("conversations", self.start_conversations(handles).await);
                // What the pass wrote may have made notifications due (a timeout, a cancel,
                // a failed create). The outbox's look is one cheap read; the submit worker is
                // woken where a place in flight frees up (a job's end), not after every pass:
                // with 10,000 jobs waiting upstream that cost an empty claim per poll.
                self.inner.wakes.outbox.notify_one();
            }
            Worker::Submit => note("submissions", self.start_submissions(handles).await),
            Worker::Outbox => {
                let me = self.clone();
                let freed = move || me.inner.wakes.outbox.notify_one();
                note(
                    "notifications",
                    self.inner
                        .notifier
                        .load_full()
                        .start_due(&self.inner.tracker, handles, freed)
                        .await,
                );
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// How long worker `w` may sleep: until its next due work, at most [`MAX_SLEEP`].
    async fn sleep_hint(&self, w: Worker) -> Duration {
        let now = self.now();
        let store = &self.inner.store;
        let next = match w {
            Worker::Ledger => {
                let job = store.next_ledger_check_after(now).await.ok().flatten();
                // A schedule's next tick and a delivery's next look-up are due work too.
                let tick = store.next_schedule_at().await.ok().flatten();
                let look = store.next_delivery_look_after(now).await.ok().flatten();
                let conversation = store.next_conversation_after(now).await.ok().flatten();
                job.into_iter()
                    .chain(tick)
                    .chain(look)
                    .chain(conversation)
                    .min()
            }
            Worker::Submit => store.next_submit_after(now).await.ok().flatten(),
            Worker::Outbox => store.next_notification_after(now).await.ok().flatten(),
        };
        match next {
            Some(at) if at <= now => Duration::from_millis(20),
            Some(at) => Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(MAX_SLEEP),
            None => MAX_SLEEP,
        }
    }

    pub(crate) fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// How long an uncertain create waits for a webhook to reveal its response: the
    /// configured `upstream.uncertain_create_wait`, else until the job's deadline (its
    /// `timeout`), else [`DEFAULT_UNCERTAIN_WAIT`]; no wait when no webhook can arrive.
    pub(crate) fn uncertain_wait(&self, now: i64) -> UncertainWait {
        if !self.webhooks_configured() {
            return UncertainWait::none(now);
        }
        UncertainWait {
            fixed: self
                .config()
                .upstream
                .uncertain_create_wait
                .map(|w| now.saturating_add(ms(w))),
            fallback: now.saturating_add(ms(DEFAULT_UNCERTAIN_WAIT)),
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
        self.inner.config.get()
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
