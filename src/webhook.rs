//! The webhook receiver: verify (Standard Webhooks, every accepted secret), dedupe by
//! `webhook-id`, record, answer 200, and wake the orchestrator. No business logic: the
//! webhook is only a hint, the orchestrator fetches the response and decides.
//!
//! An unverified request cannot reach the store: [`Verifier::verify`] is the only way to get a
//! [`Verified`] delivery, and only a `Verified` can be recorded.
//!
//! The secrets accepted are those of the config (`webhook.secrets`) plus those respool stored
//! when it registered or rotated a webhook endpoint itself (the `webhook_secrets` table, see
//! `api::webhook_admin`); a stored secret kept through a rotation is accepted until it expires.
//!
//! The stored secrets come from the database, not from whichever daemon served the register
//! or rotate call: several daemons on one database accept the same deliveries. The verifier
//! keeps them in memory and reads them again when they are [`STORED_MAX_AGE`] old, or when a
//! delivery does not verify with them (at most every [`RELOAD_ON_MISS_GAP`], so forged
//! requests cannot turn into a stream of database reads). A reload only reads; nothing of an
//! unverified request is written.

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::api::AppState;
use crate::clock::{Clock, ms};
use crate::store::{NewDelivery, Store, StoreError, StoredSecret};

/// How old the stored secrets may be when a delivery verifies with them: a rotation or an
/// expiry recorded by another daemon takes effect here within this long.
pub const STORED_MAX_AGE: Duration = Duration::from_secs(10);
/// A delivery that does not verify with the stored secrets held makes them be read again,
/// unless they were read less than this long ago: a secret just registered through another
/// daemon verifies its first delivery here (or, within this gap, the sender's retry).
pub const RELOAD_ON_MISS_GAP: Duration = Duration::from_secs(1);

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

/// Verifies deliveries against every accepted secret (several during a rotation): the
/// config's and the stored ones. Both sets can be replaced while requests are verified:
/// [`Verifier::set_configured`] by a config reload, the stored ones by
/// [`Verifier::reload_stored`] from the database (at start, after a register or a rotation,
/// and as [`Verifier::verify_current`] needs). The `RwLock`s are never held across an `.await`.
pub struct Verifier {
    configured: RwLock<Vec<Key>>,
    stored: RwLock<Vec<Key>>,
    /// Where the stored secrets come from; `None`: only [`Verifier::set_stored`] sets them.
    store: Option<Store>,
    /// When the stored secrets were last read (unix ms on `clock`; `i64::MIN`: never). Held
    /// across a reload's read, so reloads run one at a time and a slower, older read cannot
    /// replace a newer one.
    loaded_at: tokio::sync::Mutex<i64>,
    clock: Clock,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count =
            |keys: &RwLock<Vec<Key>>| keys.read().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Verifier")
            .field("configured", &count(&self.configured))
            .field("stored", &count(&self.stored))
            .finish()
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
    /// Builds a verifier from the config's secrets, on the system clock, with no stored
    /// secrets yet.
    pub fn new(secrets: &[SecretString]) -> Self {
        Self {
            configured: RwLock::new(keys(secrets.iter().map(|s| (s, None)))),
            stored: RwLock::new(Vec::new()),
            store: None,
            loaded_at: tokio::sync::Mutex::new(i64::MIN),
            clock: Clock::system(),
        }
    }

    /// Reads the stored secrets from `store` (see [`Verifier::reload_stored`]).
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses `clock` to tell when a stored secret has expired.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the config's secrets (a reload).
    pub fn set_configured(&self, secrets: &[SecretString]) {
        let new = keys(secrets.iter().map(|s| (s, None)));
        *self
            .configured
            .write()
            .unwrap_or_else(PoisonError::into_inner) = new;
    }

    /// Replaces the stored secrets (for a verifier with no store).
    pub fn set_stored(&self, secrets: &[StoredSecret]) {
        let new = keys(secrets.iter().map(|s| (&s.secret, s.expires_at)));
        *self.stored.write().unwrap_or_else(PoisonError::into_inner) = new;
    }

    /// Reads the stored secrets accepted now from the database and installs them; returns
    /// them (empty with no store).
    pub async fn reload_stored(&self) -> Result<Vec<StoredSecret>, StoreError> {
        let mut loaded_at = self.loaded_at.lock().await;
        self.reload_locked(&mut loaded_at).await
    }

    async fn reload_locked(&self, loaded_at: &mut i64) -> Result<Vec<StoredSecret>, StoreError> {
        let Some(store) = &self.store else {
            return Ok(Vec::new());
        };
        let now = self.clock.now_ms();
        let stored = store.active_webhook_secrets(now).await?;
        self.set_stored(&stored);
        *loaded_at = now;
        Ok(stored)
    }

    /// Reloads the stored secrets if they were read more than `max_age` ago (or never).
    /// Concurrent callers wait for one read rather than each making their own.
    async fn reload_if_older(&self, max_age: Duration) -> Result<(), StoreError> {
        if self.store.is_none() {
            return Ok(());
        }
        let mut loaded_at = self.loaded_at.lock().await;
        if self.clock.now_ms().saturating_sub(*loaded_at) < ms(max_age) {
            return Ok(());
        }
        self.reload_locked(&mut loaded_at).await.map(|_| ())
    }

    /// [`Verifier::verify`] with the stored secrets as the database holds them: read again
    /// first when they are [`STORED_MAX_AGE`] old, and once more when the delivery does not
    /// verify with those held (unless read in the last [`RELOAD_ON_MISS_GAP`]). A delivery
    /// that fails only because the secrets could not be read is `SecretsUnavailable`.
    pub async fn verify_current(
        &self,
        body: &[u8],
        headers: &HeaderMap,
    ) -> Result<Verified, VerifyError> {
        let mut unavailable = false;
        if let Err(e) = self.reload_if_older(STORED_MAX_AGE).await {
            tracing::warn!(error = %crate::telemetry::chain(&e), "cannot read the stored webhook secrets");
            unavailable = true;
        }
        match self.verify(body, headers) {
            Err(VerifyError::BadSignature | VerifyError::NotConfigured) if self.store.is_some() => {
                if let Err(e) = self.reload_if_older(RELOAD_ON_MISS_GAP).await {
                    tracing::warn!(error = %crate::telemetry::chain(&e), "cannot read the stored webhook secrets");
                    unavailable = true;
                }
                match self.verify(body, headers) {
                    Err(VerifyError::BadSignature | VerifyError::NotConfigured) if unavailable => {
                        Err(VerifyError::SecretsUnavailable)
                    }
                    other => other,
                }
            }
            other => other,
        }
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

/// `POST {webhook.path}`.
pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let verified = match state.verifier.verify_current(&body, &headers).await {
        Ok(v) => v,
        Err(VerifyError::SecretsUnavailable) => {
            crate::telemetry::webhook_delivery("rejected", Some("secrets_unavailable"));
            let e = VerifyError::SecretsUnavailable;
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"error": {"message": e.to_string(), "type": "server_error", "param": null}})))
                .into_response();
        }
        Err(e) => {
            crate::telemetry::webhook_delivery(
                "rejected",
                Some(match e {
                    VerifyError::SecretsUnavailable => "secrets_unavailable",
                    VerifyError::NotConfigured => "not_configured",
                    VerifyError::MissingHeader(_) => "missing_header",
                    VerifyError::BadTimestamp => "bad_timestamp",
                    VerifyError::BadSignature => "bad_signature",
                    VerifyError::BadBody(_) => "bad_body",
                }),
            );
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
            crate::telemetry::webhook_delivery(if new { "accepted" } else { "duplicate" }, None);
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
            tracing::error!(error = %crate::telemetry::chain(&e), "cannot record a webhook delivery");
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

    fn stored(secret: &str, expires_at: Option<i64>) -> StoredSecret {
        StoredSecret {
            id: 1,
            endpoint_id: "we_1".into(),
            secret: SecretString::from(secret),
            created_at: 0,
            expires_at,
        }
    }

    #[test]
    fn stored_secrets_verify_until_they_expire() {
        let old = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let clock = Clock::system();
        let v = Verifier::new(&[]).with_clock(clock.clone());
        assert!(!v.is_configured());
        let expiry = clock.now_ms() + 60_000;
        v.set_stored(&[stored(SECRET, None), stored(old, Some(expiry))]);
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
        v.set_stored(&[]);
        assert!(
            v.verify(body.as_bytes(), &signed(body, now(), SECRET))
                .is_err()
        );
        v.set_configured(&[]);
        assert!(!v.is_configured());
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("whsec_") && !dbg.contains("C2FV"), "{dbg}");
    }

    /// Two verifiers on one database (two daemons): a secret stored through one verifies at
    /// the other, which reads the table again on a miss, at most once per gap; a rotation
    /// recorded elsewhere shortens an old secret's life here once the held copy is old.
    #[tokio::test]
    async fn stored_secrets_come_from_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("v.db").display());
        let store = Store::connect(&url).await.unwrap();
        let clock = Clock::system();
        let verifier = |store: &Store| {
            Verifier::new(&[])
                .with_clock(clock.clone())
                .with_store(store.clone())
        };
        let (a, b) = (verifier(&store), verifier(&store));
        assert!(b.reload_stored().await.unwrap().is_empty());
        let body =
            r#"{"id":"evt_1","type":"response.completed","created_at":1,"data":{"id":"resp_9"}}"#;

        // Stored through A: B held no secret and reads the table again (its read is older
        // than the gap).
        store
            .insert_webhook_secret("we_1", SECRET, clock.now_ms())
            .await
            .unwrap();
        assert_eq!(a.reload_stored().await.unwrap().len(), 1);
        clock.advance(RELOAD_ON_MISS_GAP);
        let h = signed(body, now(), SECRET);
        assert_eq!(
            b.verify(body.as_bytes(), &h).unwrap_err(),
            VerifyError::NotConfigured
        );
        assert!(b.verify_current(body.as_bytes(), &h).await.is_ok());

        // A forged delivery just after a read does not read again: a second secret stored
        // meanwhile waits for the gap (or the sender's retry).
        let other = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        store
            .insert_webhook_secret("we_2", other, clock.now_ms())
            .await
            .unwrap();
        let h2 = signed(body, now(), other);
        assert_eq!(
            b.verify_current(body.as_bytes(), &h2).await.unwrap_err(),
            VerifyError::BadSignature
        );
        clock.advance(RELOAD_ON_MISS_GAP);
        assert!(b.verify_current(body.as_bytes(), &h2).await.is_ok());

        // A rotation of we_1 recorded through A: B's held copy still says "never expires", and
        // is read again once it is STORED_MAX_AGE old; the old secret then lasts until its
        // expiry, like at A.
        let rotated = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40g=";
        let t = clock.now_ms();
        store
            .rotate_webhook_secret("we_1", rotated, t, t + 60_000)
            .await
            .unwrap();
        clock.advance(STORED_MAX_AGE);
        clock.advance(std::time::Duration::from_secs(60));
        assert_eq!(
            b.verify_current(body.as_bytes(), &signed(body, now(), SECRET))
                .await
                .unwrap_err(),
            VerifyError::BadSignature
        );
        assert!(
            b.verify_current(body.as_bytes(), &signed(body, now(), rotated))
                .await
                .is_ok()
        );
        store.close().await;
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
