//! The API's error type and its JSON shape: `{"error": {"message", "type", "param", "code"}}`,
//! the shape OpenAI's own API answers with. Every error the API gives is one of these, including
//! an extractor's rejection (see [`super::extract`]) and what the router answers by itself
//! (see `http::envelope`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// The parameter at fault (a query or path parameter, a body field as a dotted path, or a
    /// header), when one is.
    pub param: Option<String>,
    /// A machine-readable reason, finer than `type` (e.g. `invalid_value`, `not_found`).
    pub code: Option<&'static str>,
}

/// Every error the API answers.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": {"message": "`limit` must be between 1 and 100", "type": "invalid_request_error", "param": "limit", "code": "invalid_value"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// For a person: what is wrong and, where it helps, what to do.
    pub message: String,
    /// The class of error: `invalid_request_error`, `authentication_error`,
    /// `permission_error`, `not_found_error`, `conflict_error`, `idempotency_error`,
    /// `not_terminal`, `invalid_config_error`, `upstream_error`, `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The parameter at fault, when one is.
    pub param: Option<String>,
    /// A finer, machine-readable reason, when there is one.
    pub code: Option<String>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param,
            code: Some("invalid_value"),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "not_found_error",
            message: message.into(),
            param: None,
            code: Some("not_found"),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "authentication_error",
            message: message.into(),
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    pub fn conflict(message: impl Into<String>, param: Option<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            kind: "idempotency_error",
            message: message.into(),
            param,
            code: Some("idempotency_key_reused"),
        }
    }

    /// The request is well formed, but what it asks for conflicts with the daemon's state
    /// (nothing to rotate yet, a sink the config no longer has).
    pub fn state_conflict(message: impl Into<String>, param: Option<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            kind: "conflict_error",
            message: message.into(),
            param,
            code: Some("state_conflict"),
        }
    }

    /// The request is well formed, but this daemon's config does not allow what it asks.
    pub fn forbidden(message: impl Into<String>, param: Option<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            kind: "permission_error",
            message: message.into(),
            param,
            code: Some("not_allowed"),
        }
    }

    /// The same error with another `code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// A failure of ours: logged with its chain, answered without details.
    pub fn internal(e: &dyn std::error::Error) -> Self {
        tracing::error!(error = %crate::telemetry::chain(e), "request failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            message: "internal error; see the daemon's log".into(),
            param: None,
            code: None,
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
                code: Some("row_does_not_decode"),
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
                code: self.code.map(str::to_string),
            },
        };
        (self.status, Json(body)).into_response()
    }
}
