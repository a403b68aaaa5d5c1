//! `GET /v1/stats`: the [`crate::stats`] fold over the jobs created since a time.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ErrorBody;
use super::{ApiError, ApiState};
use crate::stats::{GroupBy, StatsReport, fold};
use crate::store::filter::parse_since;

#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct StatsParams {
    /// Count jobs created since: a duration back from now (`7d`), an RFC 3339 time or unix
    /// seconds (default `30d`).
    pub since: Option<String>,
    /// Group by `model` (default), `day` (in `budget.timezone`) or `name`.
    pub by: Option<String>,
}

impl StatsParams {
    fn parse(raw: Option<&str>) -> Self {
        let mut p = StatsParams::default();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "since" => p.since = Some(v.into_owned()),
                "by" => p.by = Some(v.into_owned()),
                _ => {}
            }
        }
        p
    }
}

/// Jobs, statuses, tokens and cost since a time (pruned jobs included), in groups.
#[utoipa::path(get, path = "/v1/stats", tag = "stats", params(StatsParams),
    responses((status = 200, body = StatsReport), (status = 400, body = ErrorBody)))]
pub async fn get_stats(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<StatsReport>, ApiError> {
    let p = StatsParams::parse(raw.as_deref());
    let by =
        p.by.as_deref()
            .filter(|s| !s.is_empty())
            .map_or(Ok(GroupBy::Model), str::parse)
            .map_err(|m| ApiError::invalid(m, Some("by".into())))?;
    let now = state.clock.now_ms();
    let since = parse_since(p.since.as_deref().unwrap_or("30d"), now)?;
    let config = state.config.get();
    let rows = state.store.stats_since(since).await?;
    let (totals, groups) = fold(&rows, by, config.budget.tz(), config.prices());
    Ok(Json(StatsReport {
        object: "stats".into(),
        since: since.div_euclid(1000),
        by,
        timezone: config.budget.tz().name().to_string(),
        totals,
        groups,
    }))
}
