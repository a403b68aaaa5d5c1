//! `/v1/notifications`: the outbox, its dead letters, and retrying them.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::{ApiError, ApiState};
use crate::job::JobId;
use crate::store::NotificationRow;

/// A list of notifications, newest first.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct NotificationList {
    pub object: String,
    pub data: Vec<NotificationRow>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct NotificationParams {
    /// `pending`, `delivered` or `dead` (dead letters).
    pub state: Option<String>,
    /// Only this job's notifications.
    pub job_id: Option<String>,
    /// At most this many (1 to 500, default 100).
    pub limit: Option<i64>,
}

/// List notifications (`state=dead` for dead letters).
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", params(NotificationParams),
    responses((status = 200, body = NotificationList), (status = 400, body = ErrorBody)))]
pub async fn list_notifications(
    State(state): State<ApiState>,
    Query(p): Query<NotificationParams>,
) -> Result<Json<NotificationList>, ApiError> {
    if let Some(s) = &p.state
        && !matches!(s.as_str(), "pending" | "delivered" | "dead")
    {
        return Err(ApiError::invalid(
            "`state` must be pending, delivered or dead",
            Some("state".into()),
        ));
    }
    let limit = p.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid(
            "`limit` must be between 1 and 500",
            Some("limit".into()),
        ));
    }
    // A `job_id` that cannot be a job id names no job: nothing matches.
    let job_id = p.job_id.as_deref().map(JobId::parse);
    let data = match job_id {
        Some(Err(_)) => Vec::new(),
        job_id => {
            state
                .store
                .list_notifications(
                    p.state.as_deref(),
                    job_id.and_then(Result::ok).as_ref(),
                    limit,
                )
                .await?
        }
    };
    Ok(Json(NotificationList {
        object: "list".into(),
        data,
    }))
}

/// Send a notification again (a dead letter, or a delivered one).
#[utoipa::path(post, path = "/v1/notifications/{id}/retry", tag = "notifications", params(("id" = i64, Path)),
    responses((status = 200, body = NotificationRow), (status = 404, body = ErrorBody)))]
pub async fn retry_notification(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<NotificationRow>, ApiError> {
    let now = state.clock.now_ms();
    let row = state
        .store
        .retry_notification(id, now)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no notification with id {id}")))?;
    state.orchestrator.wake();
    Ok(Json(row))
}
