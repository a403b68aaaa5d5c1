//! The API's error type and its JSON shape.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer: `{"error": {"message", "type", "param"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "not_found_error",
            message: message.into(),
            param: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "authentication_error",
            message: message.into(),
            param: None,
        }
    }

    pub fn conflict(message: impl Into<String>, param: Option<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            kind: "idempotency_error",
            message: message.into(),
            param,
        }
    }

    /// A failure of ours: logged with its chain, answered without details.
    pub fn internal(e: &dyn std::error::Error) -> Self {
        tracing::error!(error = %crate::telemetry::chain(e), "request failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            message: "internal error; see the daemon's log".into(),
            param: None,
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_decode() {
            // One bad row (edited by hand, written by a newer respool): say so, so the
            // operator looks at that job's timeline and the log rather than at the daemon.
            tracing::error!(error = %crate::telemetry::chain(&e), "a row does not decode");
            return Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                kind: "server_error",
                message: "this job's row in the database does not decode (edited by hand, or \
                          written by a newer respool?); the daemon has set it aside: its \
                          timeline (`/v1/jobs/{id}/events`) and the daemon's log say why"
                    .into(),
                param: None,
            };
        }
        Self::internal(&e)
    }
}

impl From<crate::store::filter::FilterError> for ApiError {
    fn from(e: crate::store::filter::FilterError) -> Self {
        Self::invalid(e.to_string(), Some(e.param().into()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                message: self.message,
                kind: self.kind.into(),
                param: self.param,
            },
        };
        (self.status, Json(body)).into_response()
    }
}
