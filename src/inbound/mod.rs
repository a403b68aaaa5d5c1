//! The inbound webhook receiver (OpenAI's deliveries to us; not the webhook *sink*, which is
//! `notify`'s, nor the endpoint management, which is `api::endpoints`): verify (Standard
//! Webhooks, every accepted secret), dedupe by `webhook-id`, record, answer 200, and wake the
//! orchestrator. No business logic: the webhook is only a hint, the orchestrator fetches the
//! response and decides.
//!
//! An unverified request cannot reach the store: [`crate::signing::Keys::verify`] is the only
//! way to get a [`Verified`] delivery, and `Store::record_deliveries` takes only `Verified`s.
//!
//! Deliveries are group-committed ([`recorder`]): each request queues its verified delivery
//! for one writer, which records what has queued up in one transaction, and is answered `200`
//! only once that transaction is durable.
//!
//! The secrets accepted are those of the config (`webhook.secrets`) plus those respool stored
//! when it registered or rotated a webhook endpoint itself (the `webhook_secrets` table, see
//! `api::endpoints`); a stored secret kept through a rotation is accepted until it expires.
//!
//! The stored secrets come from the database, not from whichever daemon served the register
//! or rotate call: several daemons on one database accept the same deliveries. The verifier
//! keeps them in memory and reads them again when they are [`STORED_MAX_AGE`] old, or when a
//! delivery does not verify with them (at most every [`RELOAD_ON_MISS_GAP`], so forged
//! requests cannot turn into a stream of database reads). A reload only reads; nothing of an
//! unverified request is written.

mod recorder;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::SecretString;
use tower_http::limit::RequestBodyLimitLayer;

use crate::clock::{Clock, ms};
use crate::orchestrator::Orchestrator;
use crate::signing::Keys;
pub use crate::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Verified, VerifyError};
use crate::store::{Store, StoreError, StoredSecret};
pub use recorder::{MAX_BATCH, RecordError, Recorder};

/// How old the stored secrets may be when a delivery verifies with them: a rotation or an
/// expiry recorded by another daemon takes effect here within this long.
pub const STORED_MAX_AGE: Duration = Duration::from_secs(10);
/// A delivery that does not verify with the stored secrets held makes them be read again,
/// unless they were read less than this long ago: a secret just registered through another
/// daemon verifies its first delivery here (or, within this gap, the sender's retry).
pub const RELOAD_ON_MISS_GAP: Duration = Duration::from_secs(1);

/// The accepted keys kept current: the config's (replaced by a reload) and the stored ones,
/// read from the database by [`Verifier::reload_stored`] (at start, after a register or a
/// rotation, and as [`Verifier::verify_current`] needs).
pub struct Verifier {
    keys: Keys,
    /// Where the stored secrets come from; `None`: only [`Verifier::set_stored`] sets them.
    store: Option<Store>,
    /// When the stored secrets were last read (unix ms on the clock; `i64::MIN`: never). Held
    /// across a reload's read, so reloads run one at a time and a slower, older read cannot
    /// replace a newer one.
    loaded_at: tokio::sync::Mutex<i64>,
    /// A copy of `loaded_at` read without the lock: a delivery verified with fresh secrets
    /// (nearly all of them) does not queue behind the other requests for the mutex.
    loaded_at_hint: AtomicI64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys)
            .finish()
    }
}

impl Verifier {
    /// Builds a verifier from the config's secrets, on the system clock, with no stored
    /// secrets yet.
    pub fn new(secrets: &[SecretString]) -> Self {
        Self {
            keys: Keys::new(secrets),
            store: None,
            loaded_at: tokio::sync::Mutex::new(i64::MIN),
            loaded_at_hint: AtomicI64::new(i64::MIN),
        }
    }

    /// Reads the stored secrets from `store` (see [`Verifier::reload_stored`]).
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses `clock` to tell when a stored secret has expired.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.keys = self.keys.with_clock(clock);
        self
    }

    /// Replaces the config's secrets (a reload).
    pub fn set_configured(&self, secrets: &[SecretString]) {
        self.keys.set_configured(secrets);
    }

    /// Replaces the stored secrets (for a verifier with no store).
    pub fn set_stored(&self, secrets: &[StoredSecret]) {
        self.keys
            .set_stored(secrets.iter().map(|s| (&s.secret, s.expires_at)));
    }

    /// Whether any secret is accepted now, so webhooks can arrive at all.
    pub fn is_configured(&self) -> bool {
        self.keys.is_configured()
    }

    /// Verifies with the keys held now (see [`Keys::verify`]).
    pub fn verify(&self, body: &[u8], headers: &HeaderMap) -> Result<Verified, VerifyError> {
        self.keys.verify(body, headers)
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
        let now = self.keys.clock().now_ms();
        let stored = store.active_webhook_secrets(now).await?;
        self.set_stored(&stored);
        *loaded_at = now;
        self.loaded_at_hint.store(now, Ordering::Release);
        Ok(stored)
    }

    /// Reloads the stored secrets if they were read more than `max_age` ago (or never).
    /// Concurrent callers wait for one read rather than each making their own.
    async fn reload_if_older(&self, max_age: Duration) -> Result<(), StoreError> {
        if self.store.is_none() {
            return Ok(());
        }
        let fresh = |at: i64| self.keys.clock().now_ms().saturating_sub(at) < ms(max_age);
        if fresh(self.loaded_at_hint.load(Ordering::Acquire)) {
            return Ok(());
        }
        let mut loaded_at = self.loaded_at.lock().await;
        if fresh(*loaded_at) {
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
}

/// What the receiver reaches: the keys, the writer that records deliveries, the clock, and
/// the orchestrator to wake.
#[derive(Clone)]
pub struct ReceiverState {
    pub verifier: Arc<Verifier>,
    pub recorder: Recorder,
    pub clock: Clock,
    pub orchestrator: Orchestrator,
}

/// The receiver's one route, `POST {path}`, with its own body limit (not the API's).
pub fn router(state: ReceiverState, path: &str, max_body_bytes: usize) -> Router {
    Router::new()
        .route(path, post(receive))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .with_state(state)
}

/// The answer to a recorded delivery.
const RECEIVED: &str = r#"{"received":true}"#;

/// `POST {webhook.path}`.
async fn receive(State(state): State<ReceiverState>, mut request: Request) -> Response {
    // The headers taken from the request, not copied (axum's `HeaderMap` extractor clones
    // them); the body read as the `Bytes` extractor reads it, with its rejections.
    let headers = std::mem::take(request.headers_mut());
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
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
    let now = state.clock.now_ms();
    let (webhook_id, event_type, object_id) = (
        verified.webhook_id().to_owned(),
        verified.event_type().to_owned(),
        verified.object_id().map(str::to_owned),
    );
    match state.recorder.record(verified, now).await {
        Ok(new) => {
            crate::telemetry::webhook_delivery(if new { "accepted" } else { "duplicate" }, None);
            // At debug level: under a burst, a line per delivery costs the receiver more
            // than its verification; the deliveries are in the database, counted in the
            // metrics, and noted in their jobs' timelines.
            tracing::debug!(
                webhook_id = %webhook_id,
                event_type = %event_type,
                object_id = object_id.as_deref().unwrap_or(""),
                duplicate = !new,
                "webhook received"
            );
            if new {
                state.orchestrator.webhook_recorded();
            }
            (
                StatusCode::OK,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                RECEIVED,
            )
                .into_response()
        }
        Err(e) => {
            // Not recorded (the writer logged why): answer 500 so the sender retries.
            tracing::warn!(webhook_id = %webhook_id, error = %e, "webhook delivery not recorded; answered 500");
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
}
