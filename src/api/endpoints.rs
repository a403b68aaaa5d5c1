//! `/v1/webhook`: the webhook endpoints respool manages upstream for itself, so that
//! `respool webhook register|rotate|list` (and `test`, in `endpoint_test.rs`) need no trip to
//! the dashboard.
//!
//! The daemon makes the upstream calls with its own API key (which must be allowed to manage
//! the project's webhooks), stores each signing secret it receives in the `webhook_secrets`
//! table and reloads the receiver's [`Verifier`](crate::inbound::Verifier) from it, so a
//! delivery signed with the new secret verifies here as soon as the call returns (and at the
//! other daemons on the same database when their verifier reads the table again: see
//! `inbound`). A rotation keeps
//! the old secret, upstream and here, for [`ROTATION_OVERLAP`]. Answers show secrets by their
//! last four characters only.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::extract::{ApiJson, OptionalJson};
use super::params::{EndpointId, EndpointUrl, EventType, Name};
use super::{ApiError, ApiState};
use crate::clock::ms;
use crate::store::StoredSecret;
use crate::upstream::UpstreamError;
use crate::upstream::endpoints::WebhookEndpoint;

/// How long OpenAI keeps signing with the old secret after a rotation that keeps it, and so
/// how long respool keeps accepting it.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// The event types `register` subscribes to unless told otherwise: the ends of a response.
pub const DEFAULT_EVENTS: &[&str] = &[
    "response.completed",
    "response.failed",
    "response.incomplete",
    "response.cancelled",
];

/// `POST /v1/webhook/register`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Where OpenAI sends the events: this daemon's receiver, as the internet reaches it.
    #[schema(inline)]
    pub url: EndpointUrl,
    /// The endpoint's name upstream (default `respool`).
    #[schema(inline)]
    pub name: Option<Name>,
    /// The event types to subscribe to (default: a response's four endings).
    #[schema(inline, min_items = 1)]
    pub events: Option<Vec<EventType>>,
}

/// `POST /v1/webhook/rotate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// The endpoint (default: the only one respool holds a secret for).
    #[schema(inline)]
    pub endpoint_id: Option<EndpointId>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SecretView {
    pub hint: String,
    /// Unix seconds.
    pub created_at: i64,
    /// When it stops being accepted (an old secret kept through a rotation), unix seconds.
    pub expires_at: Option<i64>,
}

/// A webhook endpoint: what OpenAI says of it and the secrets respool holds for it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub name: Option<String>,
    /// `None` when the upstream could not be asked.
    pub url: Option<String>,
    pub event_types: Vec<String>,
    /// Whether respool holds a secret for it (registered or rotated through respool).
    pub managed: bool,
    /// The secrets accepted for it, newest first.
    pub secrets: Vec<SecretView>,
}

/// `GET /v1/webhook`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookOverview {
    /// Always `webhook`.
    pub object: String,
    /// The receiver's path (`webhook.path`).
    pub receiver_path: String,
    /// How many signing secrets the config gives (`webhook.secrets`).
    pub config_secrets: usize,
    /// The project's endpoints upstream and those respool holds secrets for.
    pub endpoints: Vec<EndpointView>,
    /// Why the upstream could not be listed, if it could not.
    pub upstream_error: Option<String>,
}

/// The answer of `register` and `rotate`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointChange {
    /// `webhook.registered` or `webhook.rotated`.
    pub object: String,
    pub endpoint: EndpointView,
}

/// Parses a JSON body; an empty one is the default request.
fn hint(secret: &SecretString) -> String {
    let s = secret.expose_secret();
    let tail: String = s
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

fn secret_views(endpoint_id: &str, stored: &[StoredSecret]) -> Vec<SecretView> {
    stored
        .iter()
        .filter(|s| s.endpoint_id == endpoint_id)
        .map(|s| SecretView {
            hint: hint(&s.secret),
            created_at: s.created_at.div_euclid(1000),
            expires_at: s.expires_at.map(|e| e.div_euclid(1000)),
        })
        .collect()
}

fn view(endpoint: &WebhookEndpoint, stored: &[StoredSecret]) -> EndpointView {
    let secrets = secret_views(&endpoint.id, stored);
    EndpointView {
        id: endpoint.id.clone(),
        name: endpoint.name.clone(),
        url: Some(endpoint.url.clone()),
        event_types: endpoint.event_types.clone(),
        managed: !secrets.is_empty(),
        secrets,
    }
}

/// An upstream failure as an answer: OpenAI's refusal of what was asked (400, 404) as ours,
/// anything else as a 502. OpenAI's messages name no secret.
pub(super) fn upstream_error(action: &str, e: &UpstreamError) -> ApiError {
    tracing::warn!(error = %e.describe(), action, "webhook endpoint call failed");
    match e {
        UpstreamError::Api {
            status: 400 | 422,
            message,
            param,
            ..
        } => ApiError::invalid(
            format!("cannot {action}: OpenAI refused it: {message}"),
            param.as_deref().map(|p| {
                if p.starts_with("event_types") {
                    "events".to_string()
                } else {
                    p.to_string()
                }
            }),
        ),
        UpstreamError::Api {
            status: 404,
            message,
            ..
        } => ApiError::not_found(format!("cannot {action}: {message}")),
        _ => {
            let hint = match e {
                UpstreamError::Api {
                    status: 401 | 403, ..
                } => " (the API key needs permission to manage the project's webhooks)",
                _ => "",
            };
            ApiError {
                status: StatusCode::BAD_GATEWAY,
                kind: "upstream_error",
                message: format!("cannot {action}: {e}{hint}"),
                param: None,
                code: Some("upstream_failed"),
            }
        }
    }
}

/// Reloads the verifier's stored secrets from the database (retiring expired ones first), and
/// tells the orchestrator whether there are any.
pub(super) async fn refresh(state: &ApiState) -> Result<Vec<StoredSecret>, ApiError> {
    let now = state.clock.now_ms();
    state.store.retire_expired_webhook_secrets(now).await?;
    let stored = state.verifier.reload_stored().await?;
    state
        .orchestrator
        .set_stored_webhook_secrets(!stored.is_empty());
    Ok(stored)
}

/// The endpoint asked for, or the only one respool holds a secret for.
/// The endpoint a rotation or a test is for: the one named, or the only one respool holds a
/// secret for. Having none, or several and no name, is a conflict with what is stored, not a
/// malformed request.
pub(super) fn pick(
    requested: Option<EndpointId>,
    stored: &[StoredSecret],
) -> Result<String, ApiError> {
    if let Some(id) = requested {
        return Ok(id.as_str().to_string());
    }
    let mut ids: Vec<&str> = Vec::new();
    for s in stored {
        if !ids.contains(&s.endpoint_id.as_str()) {
            ids.push(&s.endpoint_id);
        }
    }
    match ids.as_slice() {
        [] => Err(ApiError::state_conflict(
            "respool holds no webhook endpoint's secret: register one first (`respool webhook register URL`)",
            Some("endpoint_id".into()),
        )),
        [one] => Ok((*one).to_string()),
        many => Err(ApiError::state_conflict(
            format!(
                "respool holds secrets for several endpoints ({}): name one with `endpoint_id`",
                many.join(", ")
            ),
            Some("endpoint_id".into()),
        )),
    }
}

/// The endpoints upstream (first pages) and respool's secrets for each.
#[utoipa::path(get, path = "/v1/webhook", tag = "webhook",
    responses((status = 200, body = WebhookOverview)))]
pub async fn overview(State(state): State<ApiState>) -> Result<Json<WebhookOverview>, ApiError> {
    let stored = refresh(&state).await?;
    let config = state.config.get();
    let mut endpoints = Vec::new();
    let mut upstream_error = None;
    let client = state.orchestrator.client();
    let mut after: Option<String> = None;
    // A project has a handful of endpoints; ten pages of 100 is plenty.
    for _ in 0..10 {
        match client.list_webhook_endpoints(after.as_deref(), 100).await {
            Ok(page) => {
                endpoints.extend(page.data.iter().map(|e| view(e, &stored)));
                match page.last_id {
                    Some(last) if page.has_more => after = Some(last),
                    _ => break,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e.describe(), "cannot list webhook endpoints");
                upstream_error = Some(e.to_string());
                break;
            }
        }
    }
    // Endpoints we hold secrets for that the upstream did not list (deleted, or not asked).
    for s in &stored {
        if !endpoints.iter().any(|e| e.id == s.endpoint_id) {
            endpoints.push(EndpointView {
                id: s.endpoint_id.clone(),
                name: None,
                url: None,
                event_types: Vec::new(),
                managed: true,
                secrets: secret_views(&s.endpoint_id, &stored),
            });
        }
    }
    Ok(Json(WebhookOverview {
        object: "webhook".into(),
        receiver_path: config.webhook.path.clone(),
        config_secrets: config.webhook.secrets.len(),
        endpoints,
        upstream_error,
    }))
}

/// Register a webhook endpoint upstream and keep its secret, so deliveries verify.
#[utoipa::path(post, path = "/v1/webhook/register", tag = "webhook",
    request_body(content = RegisterRequest, example = json!({"url": "https://respool.example.com/webhooks/openai", "name": "respool", "events": ["response.completed", "response.failed"]})),
    responses((status = 201, body = EndpointChange), (status = 400, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn register(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<EndpointChange>), ApiError> {
    let url = req.url.as_str();
    if !url::Url::parse(url).is_ok_and(|u| u.host().is_some()) {
        return Err(ApiError::invalid(
            "`url` must be an http(s) URL, e.g. https://respool.example.com/webhooks/openai",
            Some("url".into()),
        ));
    }
    if req.events.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::invalid(
            "`events` must name at least one event type (or be left out for the default)",
            Some("events".into()),
        ));
    }
    let name = req.name.as_ref().map_or("respool", |n| n.as_str().trim());
    let mut events: Vec<String> = Vec::new();
    for e in req.events.map_or_else(
        || {
            DEFAULT_EVENTS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        },
        |es| es.into_iter().map(EventType::into_string).collect(),
    ) {
        if !events.contains(&e) {
            events.push(e);
        }
    }
    let created = state
        .orchestrator
        .client()
        .create_webhook_endpoint(name, url, &events)
        .await
        .map_err(|e| upstream_error("register the webhook endpoint", &e))?;
    let id = created.endpoint.id.clone();
    let now = state.clock.now_ms();
    if let Err(e) = state
        .store
        .insert_webhook_secret(&id, created.signing_secret.expose_secret(), now)
        .await
    {
        // The endpoint exists upstream but its secret is lost: say which, so it can be rotated
        // (which stores a new one) or deleted.
        tracing::error!(error = %crate::telemetry::chain(&e), endpoint_id = %id, "cannot store a webhook secret");
        return Err(ApiError {
            message: format!(
                "endpoint {id} was registered but its secret could not be stored; run `respool webhook rotate --endpoint {id}`"
            ),
            ..ApiError::internal(&e)
        });
    }
    let stored = refresh(&state).await?;
    tracing::info!(endpoint_id = %id, url, secret = %hint(&created.signing_secret), "webhook endpoint registered");
    Ok((
        StatusCode::CREATED,
        Json(EndpointChange {
            object: "webhook.registered".into(),
            endpoint: view(&created.endpoint, &stored),
        }),
    ))
}

/// Rotate an endpoint's secret; the old one stays accepted (upstream and here) for 24 hours.
#[utoipa::path(post, path = "/v1/webhook/rotate", tag = "webhook", request_body(content = RotateRequest, description = "Optional: without a body, the only endpoint respool holds a secret for"),
    responses((status = 200, body = EndpointChange), (status = 400, body = ErrorBody),
        (status = 404, description = "OpenAI has no endpoint with that id", body = ErrorBody),
        (status = 409, description = "respool holds no endpoint's secret yet, or several and none is named", body = ErrorBody),
        (status = 502, body = ErrorBody)))]
pub async fn rotate(
    State(state): State<ApiState>,
    OptionalJson(req): OptionalJson<RotateRequest>,
) -> Result<Json<EndpointChange>, ApiError> {
    let stored = refresh(&state).await?;
    let id = pick(req.endpoint_id, &stored)?;
    let rotated = state
        .orchestrator
        .client()
        .rotate_webhook_secret(&id, true)
        .await
        .map_err(|e| upstream_error("rotate the webhook secret", &e))?;
    let now = state.clock.now_ms();
    state
        .store
        .rotate_webhook_secret(
            &id,
            rotated.signing_secret.expose_secret(),
            now,
            now + ms(ROTATION_OVERLAP),
        )
        .await?;
    let stored = refresh(&state).await?;
    tracing::info!(endpoint_id = %id, secret = %hint(&rotated.signing_secret), "webhook secret rotated; the old one stays accepted for 24 hours");
    Ok(Json(EndpointChange {
        object: "webhook.rotated".into(),
        endpoint: view(&rotated.endpoint, &stored),
    }))
}
