//! Bearer-token authentication for `/v1`. With no tokens configured, only loopback clients
//! are served.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};

/// Compares two strings in time independent of where they differ (hashing first makes the
/// lengths equal too).
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The rule when no tokens are configured: only loopback peers are served (the web pages use
/// it too).
pub(crate) fn is_loopback_peer(req: &Request) -> bool {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback())
}

/// Whether `given` is one of the configured API tokens.
pub(crate) fn is_valid_token(tokens: &[secrecy::SecretString], given: &str) -> bool {
    tokens
        .iter()
        .any(|k| constant_time_eq(k.expose_secret(), given))
}

pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let config = state.orchestrator.config();
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

#[cfg(test)]
mod tests {
    #[test]
    fn ct_eq() {
        assert!(super::constant_time_eq("abc", "abc"));
        assert!(!super::constant_time_eq("abc", "abd"));
        assert!(!super::constant_time_eq("abc", "abcd"));
    }
}
