//! The `schedules` and `schedule_runs` tables: schedules kept in step with the jobs file, and
//! one row per tick handled.
//!
//! A tick's run is recorded in the same transaction as the job it creates, under a unique
//! (schedule, tick) key: a restart, or a second daemon on the same database, finds the row and
//! creates nothing. The transaction also decides overlap (is an earlier run unfinished?), so
//! two ticks cannot both see "nothing running".

use crate::store::sql;
use sqlx::FromRow;

use super::events::{EventKind, add_event};
use super::jobs::{InsertOutcome, NewJob, insert_job_in};
use super::{Store, StoreError};
use crate::job::schedule::{CatchUp, Overlap, ScheduleSpec};
use crate::job::{JobId, JobSpec};

/// `next_check_at` of a run that waits for its previous run: never due by time. The claim also
/// checks `schedule_runs.waiting`, so the hold does not depend on this value alone.
const WAITING_UNTIL: i64 = i64::MAX;

/// SQL: a job status that is not terminal.
const UNFINISHED: &str = "j.status NOT IN ('completed', 'failed', 'incomplete', 'cancelled')";

/// A schedule as the jobs file has it, ready to be synced.
#[derive(Debug, Clone)]
pub struct ScheduleDef {
    /// The job's name in the jobs file.
    pub name: String,
    /// Hash of the whole entry (template and schedule).
    pub spec_hash: String,
    /// The job each tick creates (without its schedule).
    pub template: JobSpec,
    pub schedule: ScheduleSpec,
    /// The first tick to handle if the schedule is new, came back, or its timing changed.
    pub first_run_at: Option<i64>,
}

/// What syncing the schedules with the jobs file did (names).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// A row of `schedules`.
#[derive(Debug, Clone, FromRow)]
pub struct ScheduleRow {
    pub name: String,
    pub spec_hash: String,
    #[sqlx(try_from = "crate::store::sql::JsonText<JobSpec>")]
    pub spec: JobSpec,
    pub cron: String,
    pub timezone: String,
    pub catch_up: String,
    pub overlap: String,
    pub active: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_scheduled_for: Option<i64>,
    pub next_run_at: Option<i64>,
    pub last_skipped_for: Option<i64>,
    pub last_skip_reason: Option<String>,
    pub skipped_count: i64,
}

impl ScheduleRow {
    /// The schedule, rebuilt (and checked again) from its columns.
    pub fn schedule(&self) -> Result<ScheduleSpec, StoreError> {
        let corrupt =
            |what: &str| StoreError::Corrupt(format!("schedule `{}`: bad {what}", self.name));
        let catch_up = CatchUp::parse(&self.catch_up).ok_or_else(|| corrupt("catch_up"))?;
        let overlap = Overlap::parse(&self.overlap).ok_or_else(|| corrupt("overlap"))?;
        ScheduleSpec::new(&self.cron, &self.timezone, catch_up, overlap)
            .map_err(|(_, m)| StoreError::Corrupt(format!("schedule `{}`: {m}", self.name)))
    }
}

/// The run of one tick, to record with its job.
pub struct NewRun {
    pub schedule: String,
    pub scheduled_for: i64,
    pub overlap: Overlap,
    /// The job to create (its idempotency key names the schedule and the tick).
    pub job: NewJob,
}

/// What recording a tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// A job was created; `waiting` when it waits for the previous run (`overlap: queue`).
    Created { job_id: JobId, waiting: bool },
    /// Skipped: the previous run (`blocked_by`) is unfinished and `overlap` is `skip`.
    Skipped { blocked_by: String },
    /// The tick was recorded before (by a daemon before a restart, or another daemon).
    AlreadyHandled,
}

/// A tick a schedule handled.
#[derive(Debug, Clone, FromRow, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ScheduleRunRow {
    pub schedule_name: String,
    /// The tick (unix ms).
    pub scheduled_for: i64,
    pub job_id: Option<String>,
    /// `created` or `skipped`.
    pub outcome: String,
    pub reason: Option<String>,
    /// The job's status now (none when skipped, or when the job was pruned).
    pub status: Option<String>,
    /// Whether the job waits for the previous run to finish.
    pub waiting: i64,
    pub created_at: i64,
}

/// A schedule with its latest run and counts, for listings.
#[derive(Debug, Clone)]
pub struct ScheduleListing {
    pub row: ScheduleRow,
    /// The latest tick that created a job.
    pub last_run: Option<ScheduleRunRow>,
    /// Jobs created so far.
    pub runs: i64,
}

const SCHEDULE_COLUMNS: &str = "name, spec_hash, spec, cron, timezone, catch_up, overlap, active, \
    created_at, updated_at, last_scheduled_for, next_run_at, last_skipped_for, last_skip_reason, \
    skipped_count";

const RUN_COLUMNS: &str = "r.schedule_name, r.scheduled_for, r.job_id, r.outcome, r.reason, \
    j.status, r.waiting, r.created_at";

impl Store {
    /// Makes the `schedules` table match the jobs file: adds new schedules, updates edited
    /// ones (a changed cron or time zone restarts from `first_run_at`; a changed template or
    /// policy keeps the next tick), and deactivates those no longer in the file.
    pub async fn sync_schedules(
        &self,
        defs: &[ScheduleDef],
        now: i64,
    ) -> Result<SyncReport, StoreError> {
        let mut report = SyncReport::default();
        let mut tx = self.begin_write().await?;
        for d in defs {
            let spec_json = serde_json::to_string(&d.template)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let existing: Option<(String, String, String, i64, Option<i64>)> = sql::query_as(
                "SELECT spec_hash, cron, timezone, active, next_run_at FROM schedules WHERE name = ?",
            )
            .bind(&d.name)
            .fetch_optional(&mut *tx)
            .await?;
            let tz = d.schedule.timezone().name().to_string();
            match existing {
                None => {
                    sql::query(
                        "INSERT INTO schedules (name, spec_hash, spec, cron, timezone, catch_up, overlap, \
                         active, created_at, updated_at, next_run_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                    )
                    .bind(&d.name)
                    .bind(&d.spec_hash)
                    .bind(&spec_json)
                    .bind(d.schedule.cron())
                    .bind(&tz)
                    .bind(d.schedule.catch_up().as_str())
                    .bind(d.schedule.overlap().as_str())
                    .bind(now)
                    .bind(now)
                    .bind(d.first_run_at)
                    .execute(&mut *tx)
                    .await?;
                    report.added.push(d.name.clone());
                }
                Some((hash, cron, old_tz, active, next)) => {
                    if hash == d.spec_hash && active == 1 {
                        continue;
                    }
                    let restart =
                        active == 0 || next.is_none() || cron != d.schedule.cron() || old_tz != tz;
                    sql::query(
                        "UPDATE schedules SET spec_hash = ?, spec = ?, cron = ?, timezone = ?, catch_up = ?, \
                         overlap = ?, active = 1, updated_at = ?, \
                         next_run_at = CASE WHEN ? THEN ? ELSE next_run_at END WHERE name = ?",
                    )
                    .bind(&d.spec_hash)
                    .bind(&spec_json)
                    .bind(d.schedule.cron())
                    .bind(&tz)
                    .bind(d.schedule.catch_up().as_str())
                    .bind(d.schedule.overlap().as_str())
                    .bind(now)
                    .bind(restart)
                    .bind(d.first_run_at)
                    .bind(&d.name)
                    .execute(&mut *tx)
                    .await?;
                    if active == 1 {
                        report.changed.push(d.name.clone());
                    } else {
                        report.added.push(d.name.clone());
                    }
                }
            }
        }
        let active: Vec<String> =
            sql::query_scalar("SELECT name FROM schedules WHERE active = 1 ORDER BY name")
                .fetch_all(&mut *tx)
                .await?;
        for name in active {
            if defs.iter().any(|d| d.name == name) {
                continue;
            }
            sql::query(
                "UPDATE schedules SET active = 0, next_run_at = NULL, updated_at = ? WHERE name = ?",
            )
            .bind(now)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
            report.removed.push(name);
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Active schedules whose next tick is due.
    pub async fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleRow>, StoreError> {
        Ok(sql::query_as::<ScheduleRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE active = 1 AND next_run_at <= ? \
             ORDER BY next_run_at, name"
        )))
        .bind(now)
        .fetch_all(&self.reads)
        .await?)
    }

    /// When the next tick of any active schedule is due (for the orchestrator's sleep).
    pub async fn next_schedule_at(&self) -> Result<Option<i64>, StoreError> {
        Ok(
            sql::query_scalar("SELECT MIN(next_run_at) FROM schedules WHERE active = 1")
                .fetch_one(self.reads.quick())
                .await?,
        )
    }

    /// Records one tick and, unless overlap says skip, creates its job, in one transaction.
    pub async fn record_schedule_run(&self, run: NewRun) -> Result<RunOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let seen: Option<i64> = sql::query_scalar(
            "SELECT id FROM schedule_runs WHERE schedule_name = ? AND scheduled_for = ?",
        )
        .bind(&run.schedule)
        .bind(run.scheduled_for)
        .fetch_optional(&mut *tx)
        .await?;
        if seen.is_some() {
            tx.commit().await?;
            return Ok(RunOutcome::AlreadyHandled);
        }
        let unfinished: Option<String> = sql::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT r.job_id FROM schedule_runs r JOIN jobs j ON j.id = r.job_id \
             WHERE r.schedule_name = ? AND {UNFINISHED} ORDER BY r.scheduled_for DESC LIMIT 1"
        )))
        .bind(&run.schedule)
        .fetch_optional(&mut *tx)
        .await?;
        let now = run.job.now;
        if let (Some(blocked_by), Overlap::Skip) = (&unfinished, run.overlap) {
            let reason = format!("overlap: run {blocked_by} was unfinished");
            sql::query(
                "INSERT INTO schedule_runs (schedule_name, scheduled_for, outcome, reason, created_at) \
                 VALUES (?, ?, 'skipped', ?, ?)",
            )
            .bind(&run.schedule)
            .bind(run.scheduled_for)
            .bind(&reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sql::query(
                "UPDATE schedules SET last_scheduled_for = MAX(COALESCE(last_scheduled_for, ?), ?), \
                 last_skipped_for = MAX(COALESCE(last_skipped_for, ?), ?), last_skip_reason = ?, \
                 skipped_count = skipped_count + 1 WHERE name = ?",
            )
            .bind(run.scheduled_for)
            .bind(run.scheduled_for)
            .bind(run.scheduled_for)
            .bind(run.scheduled_for)
            .bind(&reason)
            .bind(&run.schedule)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(RunOutcome::Skipped {
                blocked_by: blocked_by.clone(),
            });
        }
        let (job_id, created) = match insert_job_in(&mut tx, &run.job).await? {
            InsertOutcome::Created(row) => (row.id, true),
            // The tick's key was used before (a client using it): that job is the tick's run.
            InsertOutcome::Existing(row) | InsertOutcome::KeyConflict(row) => (row.id, false),
        };
        let waiting = created && unfinished.is_some() && run.overlap == Overlap::Queue;
        if waiting {
            sql::query("UPDATE jobs SET next_check_at = ? WHERE id = ? AND status = 'pending'")
                .bind(WAITING_UNTIL)
                .bind(&job_id)
                .execute(&mut *tx)
                .await?;
            let msg = format!(
                "waiting for the previous run {} of schedule `{}` to finish (overlap: queue)",
                unfinished.as_deref().unwrap_or("?"),
                run.schedule
            );
            add_event(&mut tx, &job_id, now, EventKind::Waiting, &msg, None).await?;
        }
        sql::query(
            "INSERT INTO schedule_runs (schedule_name, scheduled_for, job_id, outcome, waiting, created_at) \
             VALUES (?, ?, ?, 'created', ?, ?)",
        )
        .bind(&run.schedule)
        .bind(run.scheduled_for)
        .bind(&job_id)
        .bind(i64::from(waiting))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sql::query(
            "UPDATE schedules SET last_scheduled_for = MAX(COALESCE(last_scheduled_for, ?), ?) \
             WHERE name = ?",
        )
        .bind(run.scheduled_for)
        .bind(run.scheduled_for)
        .bind(&run.schedule)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RunOutcome::Created { job_id, waiting })
    }

    /// Moves a schedule past the ticks it handled: the next tick, and the ticks catch-up
    /// skipped. Conditional on `next_run_at` still being `expected`, so a daemon that lost a
    /// race changes nothing. Returns whether it wrote.
    pub async fn advance_schedule(
        &self,
        name: &str,
        expected: i64,
        next: Option<i64>,
        skipped: u64,
        last_skipped: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let skipped = i64::try_from(skipped).unwrap_or(i64::MAX);
        let done = sql::query(
            "UPDATE schedules SET next_run_at = ?, updated_at = ?, \
             skipped_count = skipped_count + ?, \
             last_skipped_for = CASE WHEN ? IS NOT NULL AND (last_skipped_for IS NULL OR last_skipped_for < ?) \
                                THEN ? ELSE last_skipped_for END, \
             last_skip_reason = CASE WHEN ? IS NOT NULL AND (last_skipped_for IS NULL OR last_skipped_for < ?) \
                                THEN 'catch_up: missed while respool was not running' ELSE last_skip_reason END, \
             last_scheduled_for = CASE WHEN ? IS NOT NULL AND (last_scheduled_for IS NULL OR last_scheduled_for < ?) \
                                  THEN ? ELSE last_scheduled_for END \
             WHERE name = ? AND active = 1 AND next_run_at = ?",
        )
        .bind(next)
        .bind(now)
        .bind(skipped)
        .bind(last_skipped)
        .bind(last_skipped)
        .bind(last_skipped)
        .bind(last_skipped)
        .bind(last_skipped)
        .bind(last_skipped)
        .bind(last_skipped)
        .bind(last_skipped)
        .bind(name)
        .bind(expected)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        Ok(done)
    }

    /// Lets waiting runs (`overlap: queue`) go once no earlier run of their schedule is
    /// unfinished: the oldest waiting run of each schedule, one at a time. Returns the job ids
    /// released.
    pub async fn release_waiting_runs(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        let ready: Vec<(i64, String, String)> = sql::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT r.id, r.job_id, r.schedule_name FROM schedule_runs r WHERE r.waiting = 1 \
             AND NOT EXISTS (SELECT 1 FROM schedule_runs p JOIN jobs j ON j.id = p.job_id \
                 WHERE p.schedule_name = r.schedule_name AND p.scheduled_for < r.scheduled_for \
                 AND {UNFINISHED})"
        )))
        .fetch_all(&mut *tx)
        .await?;
        let mut released = Vec::new();
        for (run_id, job_id, schedule) in ready {
            sql::query("UPDATE schedule_runs SET waiting = 0 WHERE id = ?")
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
            let moved = sql::query(
                "UPDATE jobs SET next_check_at = ?, updated_at = ? WHERE id = ? AND next_check_at = ?",
            )
            .bind(now)
            .bind(now)
            .bind(&job_id)
            .bind(WAITING_UNTIL)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 1 {
                let msg = format!("the previous run of schedule `{schedule}` finished; submitting");
                add_event(&mut tx, &job_id, now, EventKind::Released, &msg, None).await?;
            }
            released.push(job_id);
        }
        tx.commit().await?;
        Ok(released)
    }

    /// Every schedule (active first, then by name), with its latest run.
    pub async fn list_schedules(&self) -> Result<Vec<ScheduleListing>, StoreError> {
        let rows = sql::query_as::<ScheduleRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY active DESC, name"
        )))
        .fetch_all(&self.reads)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let last_run = sql::query_as::<ScheduleRunRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {RUN_COLUMNS} FROM schedule_runs r LEFT JOIN jobs j ON j.id = r.job_id \
                 WHERE r.schedule_name = ? AND r.job_id IS NOT NULL \
                 ORDER BY r.scheduled_for DESC LIMIT 1"
            )))
            .bind(&row.name)
            .fetch_optional(&self.reads)
            .await?;
            // Runs retention deleted are counted in `runs_pruned`.
            let runs: i64 = sql::query_scalar(
                "SELECT COUNT(*) + (SELECT runs_pruned FROM schedules WHERE name = ?) \
                 FROM schedule_runs WHERE schedule_name = ? AND job_id IS NOT NULL",
            )
            .bind(&row.name)
            .bind(&row.name)
            .fetch_one(&self.reads)
            .await?;
            out.push(ScheduleListing {
                row,
                last_run,
                runs,
            });
        }
        Ok(out)
    }

    /// Whether the table has a schedule of that name (active or not).
    pub async fn schedule_exists(&self, name: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = sql::query_scalar("SELECT 1 FROM schedules WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reads)
            .await?;
        Ok(found.is_some())
    }

    /// The ticks a schedule handled, newest first.
    pub async fn list_schedule_runs(
        &self,
        name: &str,
        limit: i64,
    ) -> Result<Vec<ScheduleRunRow>, StoreError> {
        Ok(sql::query_as::<ScheduleRunRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM schedule_runs r LEFT JOIN jobs j ON j.id = r.job_id \
             WHERE r.schedule_name = ? ORDER BY r.scheduled_for DESC LIMIT ?"
        )))
        .bind(name)
        .bind(limit)
        .fetch_all(&self.reads)
        .await?)
    }
}
