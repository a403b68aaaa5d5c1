//! `/v1/notifications`: the outbox, its dead letters, and retrying them.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::extract::{ApiPath, ApiQuery};
use super::params::RowLimit;
use super::{ApiError, ApiState};
use crate::job::JobId;
use crate::store::NotificationRow;

/// A list of notifications, newest first.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct NotificationList {
    pub object: String,
    pub data: Vec<NotificationRow>,
}

/// Where a notification is in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    Pending,
    Delivered,
    Dead,
}

impl NotificationState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

/// `/v1/notifications/{id}/retry`.
#[derive(Deserialize)]
pub struct NotificationPath {
    id: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationParams {
    /// `pending`, `delivered` or `dead` (dead letters).
    #[param(inline)]
    pub state: Option<NotificationState>,
    /// Only this job's notifications (an id that names no job lists none).
    pub job_id: Option<String>,
    /// At most this many (1 to 500, default 100).
    #[param(inline)]
    pub limit: Option<RowLimit>,
}

/// List notifications (`state=dead` for dead letters).
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", params(NotificationParams),
    responses((status = 200, body = NotificationList), (status = 400, body = ErrorBody)))]
pub async fn list_notifications(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<NotificationParams>,
) -> Result<Json<NotificationList>, ApiError> {
    let limit = RowLimit::get(p.limit);
    let job_id = p.job_id.as_deref().map(JobId::parse);
    let data = match job_id {
        Some(Err(_)) => Vec::new(),
        job_id => {
            state
                .store
                .list_notifications(
                    p.state.map(NotificationState::as_str),
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
    ApiPath(NotificationPath { id }): ApiPath<NotificationPath>,
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
