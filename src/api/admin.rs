//! `/v1/admin`: operating the daemon. `POST /v1/admin/reload` re-reads the config file and the
//! jobs file, as SIGHUP does.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::error::ErrorBody;
use super::{ApiError, ApiState};
use crate::reload::{ReloadError, ReloadReport};

/// Reload the config and the jobs file. A bad file changes nothing: 400 with every problem
/// (file:line) in `error.message`, one per line.
#[utoipa::path(post, path = "/v1/admin/reload", tag = "admin",
    responses((status = 200, body = ReloadReport), (status = 400, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn reload(State(state): State<ApiState>) -> Result<Json<ReloadReport>, ApiError> {
    match state.reloader.reload().await {
        Ok(report) => Ok(Json(report)),
        Err(ReloadError::Refused(lines)) => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_config_error",
            message: lines.join("\n"),
            param: None,
            code: Some("invalid_config"),
        }),
        Err(ReloadError::Failed(e)) => Err(e.into()),
    }
}
