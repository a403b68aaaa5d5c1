//! The scheduler: turns the due ticks of the jobs file's schedules into jobs, in each round of
//! the ledger worker's housekeeping (at most every 250 ms).
//! (Not to be confused with [`super::schedule`], the polling schedule of one job.)
//!
//! The `schedules` table says which tick of each schedule comes next; a pass plans the due
//! ticks ([`ScheduleSpec::plan`]: ticks missed while respool was down follow `catch_up`), then
//! records each one with its job in one transaction keyed by (schedule, tick), so a restart or a
//! second daemon never runs a tick twice, and finally moves the schedule to its next tick with a
//! write conditional on the tick it started from. Runs held by `overlap: queue` are let go here
//! too, once their previous run has finished.

use std::sync::Mutex;

use super::{Orchestrator, spec_hash};
use crate::clock::ms;
use crate::job::schedule::{ScheduleSpec, utc_string};
use crate::job::{JobId, JobSpec};
use crate::store::{NewJob, NewRun, RunOutcome, ScheduleDef, ScheduleRow, StoreError, SyncReport};
use crate::telemetry::chain;

/// A pass more than this long after the previous one means respool was stalled (suspended,
/// or its database stuck): ticks older than the current pass count as missed.
const STALL_MS: i64 = 10_000;
/// A tick this close before the previous pass (clock jitter between the plan and the pass)
/// still counts as on time.
const SLACK_MS: i64 = 1_000;

/// The scheduler's memory between passes. Only an optimisation of what counts as "missed":
/// correctness (one job per tick) rests on the store's unique key.
#[derive(Debug, Default)]
pub(super) struct SchedulerState {
    /// When the previous pass ran (unix ms).
    last_pass: Mutex<Option<i64>>,
}

impl SchedulerState {
    /// Ticks after the returned time came due while this process was watching: they run
    /// whatever the catch-up policy. Older ones were missed.
    fn live_from(&self, now: i64) -> i64 {
        let mut last = self.last_pass.lock().unwrap_or_else(|p| p.into_inner());
        let from = match *last {
            Some(p) if p <= now && now - p <= STALL_MS => p,
            _ => now,
        };
        *last = Some(now);
        from - SLACK_MS
    }
}

impl Orchestrator {
    /// Makes the stored schedules match the templates of a jobs file (entries with
    /// `schedule:`; other entries are ignored). New schedules start at their next tick.
    pub async fn sync_schedules(&self, templates: &[JobSpec]) -> Result<SyncReport, StoreError> {
        let now = self.now();
        let defs: Vec<ScheduleDef> = templates
            .iter()
            .filter_map(|t| {
                let schedule = t.schedule.clone()?;
                let mut template = t.clone();
                template.schedule = None;
                Some(ScheduleDef {
                    name: t.name.clone(),
                    spec_hash: spec_hash(t),
                    template,
                    first_run_at: schedule.next_after(now),
                    schedule,
                })
            })
            .collect();
        let report = self.inner.store.sync_schedules(&defs, now).await?;
        if report != SyncReport::default() {
            tracing::info!(
                added = ?report.added, changed = ?report.changed, removed = ?report.removed,
                "schedules updated from the jobs file"
            );
        }
        self.wake();
        Ok(report)
    }

    /// One pass of the scheduler: release waiting runs, then run every due schedule.
    pub(super) async fn run_schedules(&self) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let now = self.now();
        let live_from = self.inner.scheduler.live_from(now);
        let released = store.release_waiting_runs(now).await?;
        for job_id in &released {
            tracing::info!(job_id = %job_id, "scheduled run released: its previous run finished");
        }
        if !released.is_empty() {
            self.inner.wakes.submit.notify_one();
        }
        for row in store.due_schedules(now).await? {
            if let Err(e) = self.run_schedule(&row, now, live_from).await {
                tracing::error!(schedule = %row.name, error = %chain(&e), "schedule pass failed");
            }
        }
        Ok(())
    }

    async fn run_schedule(
        &self,
        row: &ScheduleRow,
        now: i64,
        live_from: i64,
    ) -> Result<(), StoreError> {
        let Some(next_due) = row.next_run_at else {
            return Ok(());
        };
        let spec = row.schedule()?;
        let plan = spec.plan(next_due, now, live_from);
        for &tick in &plan.run {
            self.create_run(row, &spec, tick).await?;
        }
        if plan.skipped > 0 {
            tracing::info!(
                schedule = %row.name, skipped = plan.skipped, catch_up = %spec.catch_up(),
                last_skipped = %plan.last_skipped.map(utc_string).unwrap_or_default(),
                "missed ticks skipped"
            );
        }
        if plan.next.is_none() {
            tracing::warn!(schedule = %row.name, cron = %spec.cron(), "the schedule never fires again");
        }
        self.inner
            .store
            .advance_schedule(
                &row.name,
                next_due,
                plan.next,
                plan.skipped,
                plan.last_skipped,
                self.now(),
            )
            .await?;
        Ok(())
    }

    /// Records one tick with the job it creates (or as skipped, by the overlap policy).
    async fn create_run(
        &self,
        row: &ScheduleRow,
        spec: &ScheduleSpec,
        tick: i64,
    ) -> Result<RunOutcome, StoreError> {
        let at = utc_string(tick);
        let mut job = row.spec.clone();
        job.schedule = None;
        job.idempotency_key = Some(format!("schedule:{}:{at}", row.name));
        let config = self.config();
        let now = self.now();
        let timeout = job.timeout.or(config.jobs.default_timeout);
        let new = NewJob {
            id: JobId::generate(),
            spec_hash: spec_hash(&job),
            deadline_at: timeout.map(|t| now + ms(t)),
            spec: job,
            now,
            origin: format!("schedule `{}` (tick {at})", row.name),
        };
        let outcome = self
            .inner
            .store
            .record_schedule_run(NewRun {
                schedule: row.name.clone(),
                scheduled_for: tick,
                overlap: spec.overlap(),
                job: new,
            })
            .await?;
        match &outcome {
            RunOutcome::Created { job_id, waiting } => {
                tracing::info!(schedule = %row.name, tick = %at, job_id = %job_id, waiting, "scheduled run created");
                self.wake();
            }
            RunOutcome::Skipped { blocked_by } => {
                tracing::info!(schedule = %row.name, tick = %at, blocked_by = %blocked_by,
                    "scheduled run skipped: the previous run is unfinished (overlap: skip)");
            }
            RunOutcome::AlreadyHandled => {
                tracing::debug!(schedule = %row.name, tick = %at, "tick already handled");
            }
        }
        Ok(outcome)
    }
}
