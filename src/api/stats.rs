//! `GET /v1/stats`: the [`crate::stats`] fold over the jobs created since a time.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ErrorBody;
use super::extract::ApiQuery;
use super::params::Since;
use super::{ApiError, ApiState};
use crate::stats::{GroupBy, StatsReport, fold};
use crate::store::filter::parse_since;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Count jobs created since: a duration back from now (`7d`), an RFC 3339 time or unix
    /// seconds (default `30d`).
    #[param(inline)]
    pub since: Option<Since>,
    /// Group by `model` (default), `day` (in `budget.timezone`) or `name`.
    #[param(inline)]
    pub by: Option<GroupBy>,
}

/// Jobs, statuses, tokens and cost since a time (pruned jobs included), in groups.
#[utoipa::path(get, path = "/v1/stats", tag = "stats", params(StatsParams),
    responses((status = 200, body = StatsReport), (status = 400, body = ErrorBody)))]
pub async fn get_stats(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<StatsParams>,
) -> Result<Json<StatsReport>, ApiError> {
    let by = p.by.unwrap_or(GroupBy::Model);
    let now = state.clock.now_ms();
    let since = parse_since(p.since.as_ref().map_or("30d", |s| s.as_str()), now)?;
    let config = state.config.get();
    let rows = state.store.stats_since(since).await?;
    let (totals, groups) = fold(&rows, by, config.budget.tz(), &config.pricing());
    Ok(Json(StatsReport {
        object: "stats".into(),
        since: since.div_euclid(1000),
        by,
        timezone: config.budget.tz().name().to_string(),
        totals,
        groups,
    }))
}
