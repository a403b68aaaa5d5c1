//! Bearer-token authentication for `/v1`. With no tokens configured, only loopback clients
//! are served.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};
use crate::auth::{is_loopback_peer, is_valid_token};

pub async fn require_token(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let config = state.config.get();
    let tokens = &config.api.tokens;
    if tokens.is_empty() {
        return match is_loopback_peer(&req) {
            true => next.run(req).await,
            false => ApiError {
                status: axum::http::StatusCode::FORBIDDEN,
                kind: "permission_error",
                message: "no API tokens are configured, so the API only serves loopback clients"
                    .into(),
                param: None,
                code: Some("no_api_tokens"),
            }
            .into_response(),
        };
    }
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        None => {
            ApiError::unauthorized("missing `Authorization: Bearer <token>` header").into_response()
        }
        Some(t) if is_valid_token(tokens, t) => next.run(req).await,
        Some(_) => ApiError::unauthorized("invalid API token").into_response(),
    }
}
