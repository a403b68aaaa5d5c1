//! Standard Webhooks (the scheme OpenAI signs with and our webhook sink signs with): the
//! header names, the accepted keys, and verification. A [`Verified`] delivery can only come out
//! of [`Keys::verify`] (its fields are private), and it is what the store records
//! (`Store::record_delivery`): an unverified request cannot reach the ledger.
//!
//! Depends on nothing of respool but the clock, so the store can take a [`Verified`] and the
//! receiver (`inbound`) can keep the keys current from the store.

use std::sync::{PoisonError, RwLock};

use axum::http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::clock::Clock;

/// Header names of Standard Webhooks.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Why a delivery was refused. Every variant answers 400 but `SecretsUnavailable` (503, so the
/// sender retries); none is written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the stored webhook secrets cannot be read; try again")]
    SecretsUnavailable,
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

/// One accepted secret, and when it stops being accepted (unix ms; `None`: never).
struct Key {
    hook: standardwebhooks::Webhook,
    expires_at: Option<i64>,
}

impl Key {
    fn live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// Parses secrets into keys; secrets that do not parse are skipped (config validation reports
/// them).
fn keys<'a>(secrets: impl IntoIterator<Item = (&'a SecretString, Option<i64>)>) -> Vec<Key> {
    secrets
        .into_iter()
        .filter_map(|(s, expires_at)| {
            let hook = standardwebhooks::Webhook::new(s.expose_secret()).ok()?;
            Some(Key { hook, expires_at })
        })
        .collect()
}

/// A delivery whose signature checked out. Built only by [`Keys::verify`].
#[derive(Debug)]
pub struct Verified {
    webhook_id: String,
    event_id: Option<String>,
    event_type: String,
    /// `data.id`: for `response.*` events, the response id.
    object_id: Option<String>,
    body: String,
}

impl Verified {
    /// `webhook-id`: the same across the sender's retries (the dedupe key).
    pub fn webhook_id(&self) -> &str {
        &self.webhook_id
    }

    /// The event's `id`.
    pub fn event_id(&self) -> Option<&str> {
        self.event_id.as_deref()
    }

    /// The event's `type` (`response.completed`, …).
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// `data.id`: for `response.*` events, the response id.
    pub fn object_id(&self) -> Option<&str> {
        self.object_id.as_deref()
    }

    /// The body as received.
    pub fn body(&self) -> &str {
        &self.body
    }
}

/// The accepted secrets (several during a rotation): the config's and the stored ones, each
/// replaceable while requests are verified. The `RwLock`s are never held across an `.await`.
pub struct Keys {
    configured: RwLock<Vec<Key>>,
    stored: RwLock<Vec<Key>>,
    clock: Clock,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count =
            |keys: &RwLock<Vec<Key>>| keys.read().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Keys")
            .field("configured", &count(&self.configured))
            .field("stored", &count(&self.stored))
            .finish()
    }
}

impl Keys {
    /// The config's secrets, on the system clock, with no stored secrets yet.
    pub fn new(secrets: &[SecretString]) -> Self {
        Self {
            configured: RwLock::new(keys(secrets.iter().map(|s| (s, None)))),
            stored: RwLock::new(Vec::new()),
            clock: Clock::system(),
        }
    }

    /// Uses `clock` to tell when a stored secret has expired.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock expiry is judged on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Replaces the config's secrets (a reload).
    pub fn set_configured(&self, secrets: &[SecretString]) {
        let new = keys(secrets.iter().map(|s| (s, None)));
        *self
            .configured
            .write()
            .unwrap_or_else(PoisonError::into_inner) = new;
    }

    /// Replaces the stored secrets: each with when it stops being accepted (unix ms).
    pub fn set_stored<'a>(
        &self,
        secrets: impl IntoIterator<Item = (&'a SecretString, Option<i64>)>,
    ) {
        let new = keys(secrets);
        *self.stored.write().unwrap_or_else(PoisonError::into_inner) = new;
    }

    /// Whether any secret is accepted now, so webhooks can arrive at all.
    pub fn is_configured(&self) -> bool {
        let now = self.clock.now_ms();
        [&self.configured, &self.stored].iter().any(|keys| {
            keys.read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|k| k.live(now))
        })
    }

    /// Checks headers, timestamp window (300 s) and signature in constant time against every
    /// accepted secret, then parses the event.
    pub fn verify(&self, body: &[u8], headers: &HeaderMap) -> Result<Verified, VerifyError> {
        if !self.is_configured() {
            return Err(VerifyError::NotConfigured);
        }
        for h in [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            if headers.get(h).is_none_or(|v| v.is_empty()) {
                return Err(VerifyError::MissingHeader(h));
            }
        }
        let now = self.clock.now_ms();
        let mut last = VerifyError::BadSignature;
        let mut ok = false;
        for keys in [&self.configured, &self.stored] {
            let keys = keys.read().unwrap_or_else(PoisonError::into_inner);
            for key in keys.iter().filter(|k| k.live(now)) {
                match key.hook.verify(body, headers) {
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
            if ok {
                break;
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
        let v = Keys::new(&[SecretString::from(other), SecretString::from(SECRET)]);
        let body =
            r#"{"id":"evt_1","type":"response.completed","created_at":1,"data":{"id":"resp_9"}}"#;
        let got = v
            .verify(body.as_bytes(), &signed(body, now(), SECRET))
            .unwrap();
        assert_eq!(got.object_id(), Some("resp_9"));
        assert_eq!(got.event_type(), "response.completed");
    }

    #[test]
    fn refuses_tampered_stale_and_unsigned() {
        let v = Keys::new(&[SecretString::from(SECRET)]);
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
            Keys::new(&[]).verify(body.as_bytes(), &h).unwrap_err(),
            VerifyError::NotConfigured
        );
    }

    fn stored(secret: &str, expires_at: Option<i64>) -> (SecretString, Option<i64>) {
        (SecretString::from(secret), expires_at)
    }

    #[test]
    fn stored_secrets_verify_until_they_expire() {
        let old = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let clock = Clock::system();
        let v = Keys::new(&[]).with_clock(clock.clone());
        assert!(!v.is_configured());
        let expiry = clock.now_ms() + 60_000;
        let pairs = [stored(SECRET, None), stored(old, Some(expiry))];
        v.set_stored(pairs.iter().map(|(s, e)| (s, *e)));
        assert!(v.is_configured());
        let body =
            r#"{"id":"evt_1","type":"response.completed","created_at":1,"data":{"id":"resp_9"}}"#;
        assert!(v.verify(body.as_bytes(), &signed(body, now(), old)).is_ok());
        assert!(
            v.verify(body.as_bytes(), &signed(body, now(), SECRET))
                .is_ok()
        );
        clock.advance(std::time::Duration::from_secs(61));
        assert_eq!(
            v.verify(body.as_bytes(), &signed(body, now(), old))
                .unwrap_err(),
            VerifyError::BadSignature
        );
        assert!(
            v.verify(body.as_bytes(), &signed(body, now(), SECRET))
                .is_ok()
        );
        // A reload replaces the config's secrets and leaves the stored ones alone.
        v.set_configured(&[SecretString::from(old)]);
        assert!(v.verify(body.as_bytes(), &signed(body, now(), old)).is_ok());
        v.set_stored([]);
        assert!(
            v.verify(body.as_bytes(), &signed(body, now(), SECRET))
                .is_err()
        );
        v.set_configured(&[]);
        assert!(!v.is_configured());
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("whsec_") && !dbg.contains("C2FV"), "{dbg}");
    }

    #[test]
    fn refuses_signed_garbage() {
        let v = Keys::new(&[SecretString::from(SECRET)]);
        let body = "not json";
        assert!(matches!(
            v.verify(body.as_bytes(), &signed(body, now(), SECRET)),
            Err(VerifyError::BadBody(_))
        ));
    }
}
