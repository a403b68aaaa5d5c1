//! The webhook receiver: verify (Standard Webhooks, every configured secret), dedupe by
//! `webhook-id`, record, answer 200, and wake the orchestrator. No business logic: the
//! webhook is only a hint, the orchestrator fetches the response and decides.
//!
//! An unverified request cannot reach the store: [`Verifier::verify`] is the only way to get a
//! [`Verified`] delivery, and only a `Verified` can be recorded.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::api::AppState;
use crate::store::NewDelivery;

/// Header names of Standard Webhooks.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Why a delivery was refused. Every variant answers 400; none is written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("no webhook signing secret is configured")]
    NotConfigured,
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    #[error("the timestamp is outside the tolerance window or malformed")]
    BadTimestamp,
    #[error("no signature matches")]
    BadSignature,
    #[error("the body is not a webhook event: {0}")]
    BadBody(String),
}

/// Verifies deliveries against every configured secret (several during a rotation).
pub struct Verifier {
    hooks: Vec<standardwebhooks::Webhook>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.hooks.len())
            .finish()
    }
}

/// A delivery whose signature checked out.
#[derive(Debug)]
pub struct Verified {
    pub webhook_id: String,
    pub event_id: Option<String>,
    pub event_type: String,
    /// `data.id`: for `response.*` events, the response id.
    pub object_id: Option<String>,
    pub body: String,
}

impl Verifier {
    /// Builds a verifier; secrets that do not parse are skipped (config validation reports them).
    pub fn new(secrets: &[SecretString]) -> Self {
        let hooks = secrets
            .iter()
            .filter_map(|s| standardwebhooks::Webhook::new(s.expose_secret()).ok())
            .collect();
        Self { hooks }
    }

    /// Checks headers, timestamp window (300 s) and signature in constant time, then parses
    /// the event.
    pub fn verify(&self, body: &[u8], headers: &HeaderMap) -> Result<Verified, VerifyError> {
        if self.hooks.is_empty() {
            return Err(VerifyError::NotConfigured);
        }
        for h in [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            if headers.get(h).is_none_or(|v| v.is_empty()) {
                return Err(VerifyError::MissingHeader(h));
            }
        }
        let mut last = VerifyError::BadSignature;
        let mut ok = false;
        for hook in &self.hooks {
            match hook.verify(body, headers) {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(e) => {
                    last = match e {
                        standardwebhooks::WebhookError::InvalidTimestamp
                        | standardwebhooks::WebhookError::TimestampTooOldError
                        | standardwebhooks::WebhookError::FutureTimestampError => {
                            VerifyError::BadTimestamp
                        }
                        standardwebhooks::WebhookError::InvalidPayload => {
                            VerifyError::BadBody("the body is not UTF-8".into())
                        }
                        _ => VerifyError::BadSignature,
                    }
                }
            }
        }
        if !ok {
            return Err(last);
        }
        let body = std::str::from_utf8(body)
            .map_err(|_| VerifyError::BadBody("the body is not UTF-8".into()))?;
        let event: Value =
            serde_json::from_str(body).map_err(|e| VerifyError::BadBody(e.to_string()))?;
        let event_type = event
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| VerifyError::BadBody("no `type`".into()))?
            .to_string();
        let webhook_id = headers
            .get(HEADER_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 256)
            .ok_or(VerifyError::MissingHeader(HEADER_ID))?
            .to_string();
        Ok(Verified {
            webhook_id,
            event_id: event.get("id").and_then(Value::as_str).map(str::to_string),
            object_id: event
                .pointer("/data/id")
                .and_then(Value::as_str)
                .map(str::to_string),
            event_type,
            body: body.to_string(),
        })
    }
}

/// `POST {webhook.path}`.
pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let verified = match state.verifier.verify(&body, &headers) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(reason = %e, "webhook refused");
            return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": {"message": e.to_string(), "type": "invalid_webhook", "param": null}})))
                .into_response();
        }
    };
    let now = state.orchestrator.clock().now_ms();
    let delivery = NewDelivery {
        webhook_id: &verified.webhook_id,
        received_at: now,
        event_id: verified.event_id.as_deref(),
        event_type: &verified.event_type,
        object_id: verified.object_id.as_deref(),
        body: &verified.body,
    };
    match state.orchestrator.store().record_delivery(&delivery).await {
        Ok(new) => {
            tracing::info!(
                webhook_id = %verified.webhook_id,
                event_type = %verified.event_type,
                object_id = verified.object_id.as_deref().unwrap_or(""),
                duplicate = !new,
                "webhook received"
            );
            if new {
                state.orchestrator.wake();
            }
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({"received": true})),
            )
                .into_response()
        }
        Err(e) => {
            // Not recorded: answer 500 so the sender retries.
            tracing::error!(error = %crate::orchestrator::chain(&e), "cannot record a webhook delivery");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c=";

    fn signed(body: &str, ts: i64, secret: &str) -> HeaderMap {
        let hook = standardwebhooks::Webhook::new(secret).unwrap();
        let sig = hook.sign("wh_1", ts, body.as_bytes()).unwrap();
        let mut h = HeaderMap::new();
        h.insert(HEADER_ID, "wh_1".parse().unwrap());
        h.insert(HEADER_TIMESTAMP, ts.to_string().parse().unwrap());
        h.insert(HEADER_SIGNATURE, sig.parse().unwrap());
        h
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn accepts_any_configured_secret() {
        let other = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let v = Verifier::new(&[SecretString::from(other), SecretString::from(SECRET)]);
        let body =
            r#"{"id":"evt_1","type":"response.completed","created_at":1,"data":{"id":"resp_9"}}"#;
        let got = v
            .verify(body.as_bytes(), &signed(body, now(), SECRET))
            .unwrap();
        assert_eq!(got.object_id.as_deref(), Some("resp_9"));
        assert_eq!(got.event_type, "response.completed");
    }

    #[test]
    fn refuses_tampered_stale_and_unsigned() {
        let v = Verifier::new(&[SecretString::from(SECRET)]);
        let body =
            r#"{"id":"evt_1","type":"response.completed","created_at":1,"data":{"id":"resp_9"}}"#;
        let h = signed(body, now(), SECRET);
        assert_eq!(
            v.verify(body.replace("resp_9", "resp_8").as_bytes(), &h)
                .unwrap_err(),
            VerifyError::BadSignature
        );
        assert_eq!(
            v.verify(body.as_bytes(), &signed(body, now() - 301, SECRET))
                .unwrap_err(),
            VerifyError::BadTimestamp
        );
        assert!(
            v.verify(body.as_bytes(), &signed(body, now() - 299, SECRET))
                .is_ok()
        );
        assert_eq!(
            v.verify(body.as_bytes(), &HeaderMap::new()).unwrap_err(),
            VerifyError::MissingHeader(HEADER_ID)
        );
        let forged = signed(body, now(), "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        assert_eq!(
            v.verify(body.as_bytes(), &forged).unwrap_err(),
            VerifyError::BadSignature
        );
        assert_eq!(
            Verifier::new(&[]).verify(body.as_bytes(), &h).unwrap_err(),
            VerifyError::NotConfigured
        );
    }

    #[test]
    fn refuses_signed_garbage() {
        let v = Verifier::new(&[SecretString::from(SECRET)]);
        let body = "not json";
        assert!(matches!(
            v.verify(body.as_bytes(), &signed(body, now(), SECRET)),
            Err(VerifyError::BadBody(_))
        ));
    }
}
