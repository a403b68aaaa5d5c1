//! `/v1/schedules`: the jobs file's schedules, their next and last runs, and their ticks.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::extract::{ApiPath, ApiQuery};
use super::params::RowLimit;
use super::{ApiError, ApiState};
use crate::job::schedule::utc_string;
use crate::store::{ScheduleListing, ScheduleRunRow};

/// A schedule as the API shows it. Times are unix seconds, with RFC 3339 copies.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    /// Always `schedule`.
    pub object: String,
    /// The job's name in the jobs file (its runs carry it too).
    pub name: String,
    pub cron: String,
    /// The cron in words.
    pub description: Option<String>,
    /// The IANA time zone the cron is read in.
    pub timezone: String,
    /// `none`, `latest` or `all`.
    pub catch_up: String,
    /// `skip`, `queue` or `allow`.
    pub overlap: String,
    /// False once the jobs file no longer has it.
    pub active: bool,
    pub model: String,
    pub next_run_at: Option<i64>,
    /// The next tick in the schedule's time zone (`2026-03-29T03:00:00+02:00`).
    pub next_run_local: Option<String>,
    /// The next tick in UTC (`2026-03-29T01:00:00Z`).
    pub next_run_utc: Option<String>,
    /// The latest tick handled (run or skipped).
    pub last_scheduled_for: Option<i64>,
    /// The latest tick that created a job, with that job's status now.
    pub last_run: Option<ScheduleRunView>,
    /// The latest skipped tick and why.
    pub last_skipped: Option<SkippedView>,
    /// Ticks skipped so far (by catch-up or overlap).
    pub skipped_count: i64,
    /// Jobs created so far.
    pub runs: i64,
}

/// A tick a schedule handled.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleRunView {
    /// The tick, unix seconds.
    pub scheduled_for: i64,
    pub scheduled_for_utc: String,
    pub job_id: Option<String>,
    /// `created` or `skipped`.
    pub outcome: String,
    pub reason: Option<String>,
    /// The job's status now.
    pub status: Option<String>,
    /// The job waits for the previous run to finish (`overlap: queue`).
    pub waiting: bool,
}

/// The latest skipped tick.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SkippedView {
    pub scheduled_for: i64,
    pub scheduled_for_utc: String,
    pub reason: Option<String>,
}

/// The schedules, active first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    pub object: String,
    pub data: Vec<ScheduleView>,
}

/// The ticks of one schedule, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleRunList {
    pub object: String,
    pub data: Vec<ScheduleRunView>,
}

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

impl From<&ScheduleRunRow> for ScheduleRunView {
    fn from(r: &ScheduleRunRow) -> Self {
        Self {
            scheduled_for: secs(r.scheduled_for),
            scheduled_for_utc: utc_string(r.scheduled_for),
            job_id: r.job_id.clone(),
            outcome: r.outcome.clone(),
            reason: r.reason.clone(),
            status: r.status.clone(),
            waiting: r.waiting == 1,
        }
    }
}

impl From<&ScheduleListing> for ScheduleView {
    fn from(l: &ScheduleListing) -> Self {
        let r = &l.row;
        // Rows are checked when written; a row that no longer parses still lists, plainly.
        let spec = r.schedule().ok();
        Self {
            object: "schedule".into(),
            name: r.name.clone(),
            cron: r.cron.clone(),
            description: spec.as_ref().map(|s| s.describe()),
            timezone: r.timezone.clone(),
            catch_up: r.catch_up.clone(),
            overlap: r.overlap.clone(),
            active: r.active == 1,
            model: r.spec.model().to_string(),
            next_run_at: r.next_run_at.map(secs),
            next_run_local: r
                .next_run_at
                .and_then(|t| spec.as_ref().and_then(|s| s.local_time(t))),
            next_run_utc: r.next_run_at.map(utc_string),
            last_scheduled_for: r.last_scheduled_for.map(secs),
            last_run: l.last_run.as_ref().map(ScheduleRunView::from),
            last_skipped: r.last_skipped_for.map(|t| SkippedView {
                scheduled_for: secs(t),
                scheduled_for_utc: utc_string(t),
                reason: r.last_skip_reason.clone(),
            }),
            skipped_count: r.skipped_count,
            runs: l.runs,
        }
    }
}

/// List the schedules of the jobs file (and those removed from it), with their next and last
/// runs.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses((status = 200, body = ScheduleList)))]
pub async fn list_schedules(State(state): State<ApiState>) -> Result<Json<ScheduleList>, ApiError> {
    let data = state
        .store
        .list_schedules()
        .await?
        .iter()
        .map(ScheduleView::from)
        .collect();
    Ok(Json(ScheduleList {
        object: "list".into(),
        data,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunParams {
    /// At most this many (1 to 500, default 100).
    #[param(inline)]
    pub limit: Option<RowLimit>,
}

/// `/v1/schedules/{name}/runs`.
#[derive(Deserialize)]
pub struct SchedulePath {
    name: String,
}

/// The ticks a schedule handled (runs and skips), newest first.
#[utoipa::path(get, path = "/v1/schedules/{name}/runs", tag = "schedules",
    params(("name" = String, Path), RunParams),
    responses((status = 200, body = ScheduleRunList), (status = 400, body = ErrorBody),
        (status = 404, description = "No schedule has that name", body = ErrorBody)))]
pub async fn list_runs(
    State(state): State<ApiState>,
    ApiPath(SchedulePath { name }): ApiPath<SchedulePath>,
    ApiQuery(p): ApiQuery<RunParams>,
) -> Result<Json<ScheduleRunList>, ApiError> {
    let limit = RowLimit::get(p.limit);
    if !state.store.schedule_exists(&name).await? {
        return Err(ApiError::not_found(format!("no schedule named `{name}`")));
    }
    let data = state
        .store
        .list_schedule_runs(&name, limit)
        .await?
        .iter()
        .map(ScheduleRunView::from)
        .collect();
    Ok(Json(ScheduleRunList {
        object: "list".into(),
        data,
    }))
}
