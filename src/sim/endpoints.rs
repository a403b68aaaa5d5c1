//! Webhook endpoints (`/v1/webhook_endpoints`, `docs/upstream-api.md` §4.1): create, list,
//! retrieve, update, delete, `rotate_secret` and `test`.
//!
//! An endpoint subscribes a URL to event types and owns its signing secrets. The secret is
//! shown only in the create and rotate answers (`signing_secret`); everything else sees
//! `signing_secret_hint`. A rotation with `keep_old_secret_active_for_24_hours` keeps the old
//! secret signing next to the new one (two `v1,` entries) for
//! [`SimConfig::secret_rotation_overlap`](super::SimConfig::secret_rotation_overlap); without it
//! the old secret dies at once. The webhook sender ([`super::webhooks`]) fans each response
//! event out to every endpoint subscribed to its type, reading the URL and the live secrets at
//! each attempt, so a rotation or a delete takes effect on the next retry.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::endpoint_params::{
    check_event_type, check_event_types, check_name, check_url, object_body, required,
};
use super::error::ApiError;
use super::ids;
use super::server::App;
use super::validate::invalid_type;

/// One signing secret of an endpoint; `expires` is set on a secret kept through a rotation.
#[derive(Clone)]
struct SigningSecret {
    value: String,
    expires: Option<Instant>,
}

impl SigningSecret {
    fn fresh() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self {
            value: format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            ),
            expires: None,
        }
    }

    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

/// A registered webhook endpoint.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub id: String,
    pub name: String,
    pub url: String,
    pub event_types: Vec<String>,
    created_at: i64,
    updated_at: i64,
    /// Newest first; the first one is the current secret.
    secrets: Vec<SigningSecret>,
}

impl Endpoint {
    /// The `webhook_endpoint` object, without the secret.
    fn view(&self) -> Value {
        let current = self.secrets.first().map_or("", |s| s.value.as_str());
        let tail: String = current
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        json!({
            "id": self.id,
            "object": "webhook_endpoint",
            "name": self.name,
            "url": self.url,
            "event_types": self.event_types,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "signing_secret_hint": format!("whsec_...{tail}"),
        })
    }

    /// The `webhook_endpoint` object with its current `signing_secret` (create and rotate).
    fn view_with_secret(&self) -> Value {
        let mut view = self.view();
        if let (Some(obj), Some(current)) = (view.as_object_mut(), self.secrets.first()) {
            obj.insert("signing_secret".into(), json!(current.value));
        }
        view
    }

    /// The secrets that sign deliveries now, newest first.
    pub fn live_secrets(&self, now: Instant) -> Vec<String> {
        self.secrets
            .iter()
            .filter(|s| s.live(now))
            .map(|s| s.value.clone())
            .collect()
    }

    fn subscribed(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| t == event_type)
    }
}

/// Every registered endpoint, oldest first.
#[derive(Default)]
pub(crate) struct Endpoints {
    list: Vec<Endpoint>,
}

impl Endpoints {
    /// The ids of the endpoints subscribed to `event_type`.
    pub fn subscribed(&self, event_type: &str) -> Vec<String> {
        self.list
            .iter()
            .filter(|e| e.subscribed(event_type))
            .map(|e| e.id.clone())
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<&Endpoint> {
        self.list.iter().find(|e| e.id == id)
    }

    fn get_mut(&mut self, id: &str) -> Result<&mut Endpoint, ApiError> {
        self.list
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or_else(|| not_found(id))
    }

    /// Every endpoint's public view, oldest first (for `SimHandle`).
    pub fn views(&self) -> Vec<Value> {
        self.list.iter().map(Endpoint::view).collect()
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        ..ApiError::invalid(
            format!("No webhook endpoint found with id '{id}'."),
            None,
            None,
        )
    }
}

/// The routes, merged into the simulator's `/v1` router (behind its auth and fault gate).
pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/webhook_endpoints", post(create).get(list))
        .route(
            "/webhook_endpoints/{id}",
            get(retrieve).post(update).delete(delete),
        )
        .route("/webhook_endpoints/{id}/rotate_secret", post(rotate_secret))
        .route("/webhook_endpoints/{id}/test", post(test))
}

fn answer(value: Value) -> Response {
    axum::Json(value).into_response()
}

async fn create(State(app): State<App>, raw: Bytes) -> Result<Response, ApiError> {
    let body = object_body(&raw, &["name", "url", "event_types"])?;
    let name = check_name(required(&body, "name")?)?;
    let url = check_url(required(&body, "url")?)?;
    let event_types = check_event_types(required(&body, "event_types")?)?;
    let now = chrono::Utc::now().timestamp();
    let endpoint = Endpoint {
        id: ids::new("we"),
        name,
        url,
        event_types,
        created_at: now,
        updated_at: now,
        secrets: vec![SigningSecret::fresh()],
    };
    let view = endpoint.view_with_secret();
    app.shared.lock().endpoints.list.push(endpoint);
    Ok(answer(view))
}

async fn list(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let mut limit = 20usize;
    let mut after: Option<String> = None;
    for (key, value) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => {
                    return Err(ApiError::invalid(
                        format!(
                            "Invalid 'limit': expected an integer between 1 and 100, but got '{value}'."
                        ),
                        Some("limit"),
                        Some("invalid_value"),
                    ));
                }
            },
            "after" => after = Some(value.into_owned()),
            _ => {}
        }
    }
    // Newest first, like OpenAI's other lists; `after` is the last id of the previous page.
    let mut views: Vec<(String, Value)> = {
        let inner = app.shared.lock();
        inner
            .endpoints
            .list
            .iter()
            .rev()
            .map(|e| (e.id.clone(), e.view()))
            .collect()
    };
    if let Some(after) = after {
        let pos = views.iter().position(|(id, _)| *id == after);
        views = pos.map(|p| views.split_off(p + 1)).unwrap_or_default();
    }
    let has_more = views.len() > limit;
    views.truncate(limit);
    let first_id = views.first().map(|(id, _)| id.clone());
    let last_id = views.last().map(|(id, _)| id.clone());
    let data: Vec<Value> = views.into_iter().map(|(_, v)| v).collect();
    Ok(answer(json!({
        "object": "list",
        "data": data,
        "first_id": first_id,
        "last_id": last_id,
        "has_more": has_more,
    })))
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let inner = app.shared.lock();
    let endpoint = inner.endpoints.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(answer(endpoint.view()))
}

async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let body = object_body(&raw, &["name", "url", "event_types"])?;
    let present = |k: &str| body.get(k).filter(|v| !v.is_null());
    let name = present("name").map(check_name).transpose()?;
    let url = present("url").map(check_url).transpose()?;
    let event_types = present("event_types").map(check_event_types).transpose()?;
    let mut inner = app.shared.lock();
    let endpoint = inner.endpoints.get_mut(&id)?;
    let before = (
        endpoint.name.clone(),
        endpoint.url.clone(),
        endpoint.event_types.clone(),
    );
    if let Some(name) = name {
        endpoint.name = name;
    }
    if let Some(url) = url {
        endpoint.url = url;
    }
    if let Some(event_types) = event_types {
        endpoint.event_types = event_types;
    }
    // An update that changes nothing leaves `updated_at` alone (as the SDK documents).
    if before
        != (
            endpoint.name.clone(),
            endpoint.url.clone(),
            endpoint.event_types.clone(),
        )
    {
        endpoint.updated_at = chrono::Utc::now().timestamp();
    }
    Ok(answer(endpoint.view()))
}

async fn delete(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    let before = inner.endpoints.list.len();
    inner.endpoints.list.retain(|e| e.id != id);
    if inner.endpoints.list.len() == before {
        return Err(not_found(&id));
    }
    Ok(answer(
        json!({"id": id, "object": "webhook_endpoint.deleted", "deleted": true}),
    ))
}

async fn rotate_secret(
    State(app): State<App>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let body = object_body(&raw, &["keep_old_secret_active_for_24_hours"])?;
    let keep = match body.get("keep_old_secret_active_for_24_hours") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(invalid_type(
                "keep_old_secret_active_for_24_hours",
                "a boolean",
                other,
            ));
        }
    };
    let overlap = app.shared.config.secret_rotation_overlap;
    let now = Instant::now();
    let mut inner = app.shared.lock();
    let endpoint = inner.endpoints.get_mut(&id)?;
    let mut kept: Vec<SigningSecret> = Vec::new();
    if keep {
        // Every secret still live keeps signing until the overlap ends (or its own earlier end).
        let until = now + overlap;
        kept = endpoint
            .secrets
            .iter()
            .filter(|s| s.live(now))
            .map(|s| SigningSecret {
                value: s.value.clone(),
                expires: Some(s.expires.map_or(until, |e| e.min(until))),
            })
            .collect();
    }
    endpoint.secrets = std::iter::once(SigningSecret::fresh())
        .chain(kept)
        .collect();
    endpoint.updated_at = chrono::Utc::now().timestamp();
    Ok(answer(endpoint.view_with_secret()))
}

/// The `data` of a test event of `event_type`: an id shaped like the family's.
fn test_data(event_type: &str) -> Value {
    let id = |prefix: &str| json!({"id": ids::new(prefix)});
    match event_type.split('.').next().unwrap_or("") {
        "response" => id("resp"),
        "fine_tuning" => id("ftjob"),
        "eval" => id("evalrun"),
        "realtime" => json!({"call_id": ids::new("rtc"), "sip_headers": []}),
        "agent" if event_type.starts_with("agent.session") => {
            json!({"id": ids::new("sess"), "environment_type": "none"})
        }
        "agent" => id("env"),
        "safety" => id("alert"),
        family => id(family),
    }
}

async fn test(
    State(app): State<App>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let body = object_body(&raw, &["event_type"])?;
    let event_type = check_event_type("event_type", required(&body, "event_type")?)?;
    let (url, secrets) = {
        let inner = app.shared.lock();
        let endpoint = inner.endpoints.get(&id).ok_or_else(|| not_found(&id))?;
        (endpoint.url.clone(), endpoint.live_secrets(Instant::now()))
    };
    let event = json!({
        "object": "event",
        "id": ids::new("evt"),
        "type": event_type,
        "created_at": chrono::Utc::now().timestamp(),
        "data": test_data(&event_type),
    })
    .to_string();
    let webhook_id = ids::new("wh");
    let sent = tokio::select! {
        () = app.cancel.cancelled() => None,
        r = super::webhooks::send_signed(&app.hooks, &url, &webhook_id, &event, &secrets) => Some(r),
    };
    // A result always says `success: true` (the SDK types it `Literal[True]`): `status_code`
    // is the endpoint's answer. A delivery that could not be made at all is an error instead;
    // OpenAI's exact answer there is unconfirmed.
    match sent {
        Some(Ok(status)) => Ok(answer(json!({
            "object": "webhook_endpoint.test",
            "webhook_endpoint_id": id,
            "event_type": event_type,
            "status_code": status.as_u16(),
            "success": true,
        }))),
        Some(Err(err)) => {
            tracing::debug!(endpoint = %id, error = %err, "test delivery failed");
            let why = if err.is_timeout() {
                "it did not answer in time"
            } else {
                "it could not be reached"
            };
            Err(ApiError::invalid(
                format!("The test event could not be delivered to {url}: {why}."),
                None,
                None,
            ))
        }
        None => Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            ..ApiError::invalid("The simulator is shutting down.", None, None)
        }),
    }
}
