//! `POST /v1/webhook/test`: has OpenAI send a test event to an endpoint now, and reports both
//! what the endpoint answered OpenAI and whether the event arrived at this daemon and verified.
//!
//! The receiver records every verified delivery (and only those), so "arrived and verified" is
//! a recorded delivery of the test's event type, received since the test began, that names no
//! job's response ([`Store::find_test_delivery`](crate::store::Store::find_test_delivery)).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::endpoints::{pick, refresh, upstream_error};
use super::error::ErrorBody;
use super::extract::OptionalJson;
use super::params::{EndpointId, EventType};
use super::{ApiError, ApiState};
use crate::clock::ms;
use crate::upstream::UpstreamError;

/// How long `test` waits, at most, for the test delivery to show up here.
const DEFAULT_TEST_WAIT: Duration = Duration::from_secs(5);

/// `POST /v1/webhook/test`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// The endpoint (default: the only one respool holds a secret for).
    #[schema(inline)]
    pub endpoint_id: Option<EndpointId>,
    /// The event type to send (default `response.completed`).
    #[schema(inline)]
    pub event_type: Option<EventType>,
    /// How long to wait for the delivery to arrive here, in milliseconds (default 5000, at most
    /// 30000).
    #[schema(inline)]
    pub wait_ms: Option<WaitMs>,
}

/// `wait_ms`: 0 to 30000.
#[derive(Debug, Clone, Copy)]
pub struct WaitMs(u64);

impl<'de> Deserialize<'de> for WaitMs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = super::params::whole_number(d)?;
        if (0..=MAX_TEST_WAIT_MS as i64).contains(&n) {
            Ok(Self(n.unsigned_abs()))
        } else {
            Err(serde::de::Error::custom(format!(
                "must be 0 to {MAX_TEST_WAIT_MS} (milliseconds), not {n}"
            )))
        }
    }
}

impl utoipa::PartialSchema for WaitMs {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .minimum(Some(0))
            .maximum(Some(MAX_TEST_WAIT_MS))
            .default(Some(ms(DEFAULT_TEST_WAIT).into()))
            .into()
    }
}

impl utoipa::ToSchema for WaitMs {}

/// The longest `wait_ms`.
const MAX_TEST_WAIT_MS: u64 = 30_000;

/// The answer of `test`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TestReport {
    /// Always `webhook.test`.
    pub object: String,
    pub endpoint_id: String,
    pub event_type: String,
    /// What the endpoint answered OpenAI's test delivery; `None`: OpenAI could not reach it.
    pub upstream_status_code: Option<u16>,
    /// Whether OpenAI counts the test as delivered (a 2xx).
    pub upstream_success: bool,
    /// Whether the test delivery arrived at this daemon and its signature verified.
    pub verified: bool,
    /// Its `webhook-id`, when it arrived.
    pub webhook_id: Option<String>,
    /// What happened, in words.
    pub message: String,
}

/// Ask OpenAI to send a test event to an endpoint; report its answer and whether the
/// delivery arrived here and verified.
#[utoipa::path(post, path = "/v1/webhook/test", tag = "webhook", request_body(content = TestRequest, description = "Optional: without a body, `response.completed` to the only endpoint respool holds a secret for"),
    responses((status = 200, body = TestReport), (status = 400, body = ErrorBody),
        (status = 404, description = "OpenAI has no endpoint with that id", body = ErrorBody),
        (status = 409, description = "respool holds no endpoint's secret yet, or several and none is named", body = ErrorBody),
        (status = 502, body = ErrorBody)))]
pub async fn test(
    State(state): State<ApiState>,
    OptionalJson(req): OptionalJson<TestRequest>,
) -> Result<Json<TestReport>, ApiError> {
    let stored = refresh(&state).await?;
    let id = pick(req.endpoint_id, &stored)?;
    let event_type = req
        .event_type
        .map_or_else(|| "response.completed".to_string(), EventType::into_string);
    let wait = req
        .wait_ms
        .map_or(DEFAULT_TEST_WAIT, |w| Duration::from_millis(w.0));
    let clock = state.clock.clone();
    let since = clock.now_ms();
    let answer = match state
        .orchestrator
        .client()
        .test_webhook_endpoint(&id, &event_type)
        .await
    {
        Ok(answer) => answer,
        // A test OpenAI could not deliver at all comes back as a refusal that names no param
        // of ours: report it as a test that did not arrive.
        Err(UpstreamError::Api {
            status: 400 | 422,
            param: None,
            message,
            ..
        }) => {
            tracing::info!(endpoint_id = %id, event_type, reason = %message, "webhook test not delivered");
            return Ok(Json(TestReport {
                object: "webhook.test".into(),
                endpoint_id: id,
                event_type,
                upstream_status_code: None,
                upstream_success: false,
                verified: false,
                webhook_id: None,
                message: format!(
                    "the test event did not arrive: OpenAI could not deliver it ({message})"
                ),
            }));
        }
        Err(e) => return Err(upstream_error("send a test event", &e)),
    };
    let accepted = answer.status_code.is_some_and(|c| (200..300).contains(&c));
    // OpenAI answers once the endpoint has, and the receiver records a delivery before it
    // answers 200: an accepted test is normally found at once. Wait a little anyway (a proxy
    // in between may answer first), but not when the endpoint refused it.
    let deadline = tokio::time::Instant::now() + if accepted { wait } else { Duration::ZERO };
    let store = state.store;
    let found = loop {
        if let Some(d) = store.find_test_delivery(&event_type, since).await? {
            break Some(d);
        }
        if tokio::time::Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let message = match (&found, answer.status_code) {
        (Some(_), _) => "the test event arrived here and its signature verified".to_string(),
        (None, None) => "the test event did not arrive: OpenAI could not reach the endpoint".into(),
        (None, Some(400)) => "the endpoint answered 400: if it is this daemon, the signature \
                              verified with no secret it holds (or the clocks disagree)"
            .into(),
        (None, Some(code)) if accepted => format!(
            "the endpoint answered {code}, but no verified test event reached this daemon: does \
             the URL point at another server?"
        ),
        (None, Some(code)) => format!("the test event was refused: the endpoint answered {code}"),
    };
    tracing::info!(endpoint_id = %id, event_type, status_code = ?answer.status_code, verified = found.is_some(), "webhook test");
    Ok(Json(TestReport {
        object: "webhook.test".into(),
        endpoint_id: id,
        event_type,
        upstream_status_code: answer.status_code,
        upstream_success: answer.success,
        verified: found.is_some(),
        webhook_id: found.map(|d| d.webhook_id),
        message,
    }))
}
