//! The HTTP surface: the `/v1/responses` routes (and `/v1/webhook_endpoints` from
//! `endpoints.rs`, `/v1/files` from `file_routes.rs`, `/v1/vector_stores` from
//! `vector_store_routes.rs`), the gate in front of them (bearer auth,
//! API faults, standard headers, 429/5xx counters) and the `/_sim/*` control API
//! (`GET /_sim/stats`, `GET /_sim/responses`, `GET|POST /_sim/faults`, `POST /_sim/webhook`),
//! which needs no key.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::broken::{NotTheApi, dropped_connection, proxy_error};
use super::error::ApiError;
use super::faults::{CreateFault, Faults, HeaderFault, roll};
use super::headers::RateWindow;
use super::output::render_output;
use super::state::Shared;
use super::stream::sse;
use super::validate::{check_include, parse_create};

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct App {
    pub shared: Arc<Shared>,
    pub cancel: CancellationToken,
    /// The webhook HTTP client (for `POST /webhook_endpoints/{id}/test`).
    pub hooks: reqwest::Client,
    window: Arc<RateWindow>,
}

/// Builds the simulator's router.
pub(crate) fn router(
    shared: Arc<Shared>,
    hooks: reqwest::Client,
    cancel: CancellationToken,
) -> Router {
    let app = App {
        shared,
        cancel,
        hooks,
        window: Arc::new(RateWindow::new()),
    };
    let v1 = Router::new()
        .route("/responses", post(create))
        .route("/responses/{id}", get(retrieve).delete(delete))
        .route("/responses/{id}/cancel", post(cancel_response))
        .route("/responses/{id}/input_items", get(input_items))
        .merge(super::endpoints::routes())
        .merge(super::file_routes::routes())
        .merge(super::vector_store_routes::routes())
        .merge(super::container_routes::routes())
        .merge(super::conversation_routes::routes())
        .fallback(unknown_route)
        .layer(middleware::from_fn_with_state(app.clone(), gate));
    Router::new()
        .nest("/v1", v1)
        .route("/_sim/stats", get(stats))
        .route("/_sim/responses", get(responses))
        .route("/_sim/faults", get(get_faults).post(set_faults))
        .route("/_sim/webhook", post(set_webhook))
        .with_state(app)
}

/// Auth, API faults, counters and standard headers around every `/v1` request.
async fn gate(State(app): State<App>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut response = match admit(&app, &req) {
        Ok(()) => next.run(req).await,
        Err(err) => err.into_response(),
    };
    if response.extensions().get::<NotTheApi>().is_some() {
        // A proxy's page or a dropped connection: none of the API's headers.
        return response;
    }
    let ratelimit = {
        let mut inner = app.shared.lock();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            inner.stats.served_429 += 1;
        } else if response.status().is_server_error() {
            inner.stats.served_5xx += 1;
        }
        inner.faults.ratelimit_or_default()
    };
    app.window.stamp(response.headers_mut(), started, ratelimit);
    response
}

fn admit(app: &App, req: &Request) -> Result<(), ApiError> {
    let key = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            ..ApiError::invalid(
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                None,
                None,
            )
        });
    };
    if let Some(expected) = &app.shared.config.api_key
        && key != expected
    {
        let shown: String = key.chars().take(6).collect();
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            ..ApiError::invalid(
                format!(
                    "Incorrect API key provided: {shown}****. You can find your API key at https://platform.openai.com/account/api-keys."
                ),
                None,
                Some("invalid_api_key"),
            )
        });
    }
    let forced = req
        .headers()
        .get("x-sim-fault")
        .and_then(|v| v.to_str().ok())
        .and_then(HeaderFault::parse);
    let mut inner = app.shared.lock();
    let faults = inner.faults.clone();
    let fault = match forced {
        // Decided by the create handler.
        Some(HeaderFault::Hang | HeaderFault::Create(_)) => None,
        Some(f) => Some(f),
        None if faults.rate_limit_next > 0 => {
            inner.faults.rate_limit_next -= 1;
            Some(HeaderFault::RateLimit)
        }
        None if faults.server_error_next > 0 => {
            inner.faults.server_error_next -= 1;
            Some(HeaderFault::Server {
                status: 500,
                retry: true,
            })
        }
        None if roll(&mut inner.rng, faults.rate_limit) => Some(HeaderFault::RateLimit),
        None if roll(&mut inner.rng, faults.quota_exceeded) => Some(HeaderFault::Quota),
        None if roll(&mut inner.rng, faults.server_error) => {
            let status = [500, 502, 503][inner.rng.random_range(0..3)];
            let noretry = faults.server_error_noretry.unwrap_or(0.5).clamp(0.0, 1.0);
            Some(HeaderFault::Server {
                status,
                retry: inner.rng.random_bool(1.0 - noretry),
            })
        }
        None => None,
    };
    drop(inner);
    fault.map_or(Ok(()), |f| Err(fault_error(f, &faults)))
}

fn fault_error(fault: HeaderFault, faults: &Faults) -> ApiError {
    let plain =
        |status: StatusCode, message: &str, kind: &'static str, code: Option<&str>| ApiError {
            status,
            message: message.to_owned(),
            kind,
            param: None,
            code: code.map(str::to_owned),
            headers: Vec::new(),
        };
    match fault {
        HeaderFault::RateLimit => {
            let wait = faults.retry_after_or_default();
            let secs = wait.as_secs_f64().ceil().max(1.0);
            plain(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Rate limit reached for requests in organization org-sim on requests per min (RPM): Limit 10000, Used 10000, Requested 1. Please try again in {}. Visit https://platform.openai.com/account/rate-limits to learn more.", super::headers::go_duration(wait)),
                "requests",
                Some("rate_limit_exceeded"),
            )
            .with_header("retry-after", format!("{secs}"))
            .with_header("retry-after-ms", wait.as_millis().to_string())
        }
        HeaderFault::Quota => plain(
            StatusCode::TOO_MANY_REQUESTS,
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota",
            Some("insufficient_quota"),
        ),
        HeaderFault::Server { status, retry } => {
            let (code, message) = match status {
                502 => (StatusCode::BAD_GATEWAY, "Bad gateway."),
                503 if retry => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The engine is currently overloaded, please try again later.",
                ),
                503 => (StatusCode::SERVICE_UNAVAILABLE, "Slow Down"),
                _ => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The server had an error while processing your request. Sorry about that!",
                ),
            };
            let err = plain(code, message, "server_error", None);
            if retry {
                err
            } else {
                err.with_header("x-should-retry", "false")
            }
        }
        HeaderFault::Hang | HeaderFault::Create(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "hang",
            "server_error",
            None,
        ),
    }
}

fn render(snapshot: &Value, include: &[String]) -> Value {
    let mut out = snapshot.clone();
    if let Some(obj) = out.as_object_mut() {
        let output = obj
            .get("output")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        obj.insert(
            "output".into(),
            Value::Array(render_output(&output, include)),
        );
    }
    out
}

async fn pause(cancel: &CancellationToken, d: std::time::Duration) {
    if !d.is_zero() {
        tokio::select! {
            () = cancel.cancelled() => {}
            () = tokio::time::sleep(d) => {}
        }
    }
}

async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let faults = app.shared.lock().faults.clone();
    pause(&app.cancel, faults.slow_create).await;
    let req = parse_create(&body)?;
    let (stream, background, include, sim_hang) = (
        req.stream,
        req.background,
        req.include.clone(),
        req.overrides.hang,
    );
    let (forced_cut, forced_sticks) =
        (req.overrides.stream_drop, req.overrides.stream_abort_sticks);
    let forced = headers
        .get("x-sim-fault")
        .and_then(|v| v.to_str().ok())
        .and_then(HeaderFault::parse);
    // Every fault of this create is decided before the response exists, so the response
    // knows whether its answer will be lost (see `Faults::webhook_drop_spares_lost_answers`).
    let (broken, rolled_hang, cut_after, sticks, gateway) = {
        let mut inner = app.shared.lock();
        let broken = match forced {
            Some(HeaderFault::Create(f)) => Some(f),
            _ if stream => None,
            _ => CreateFault::roll(&mut inner.rng, &faults),
        };
        let hang = roll(&mut inner.rng, faults.create_accept_then_hang);
        let cut = match forced_cut {
            Some(n) => Some(n),
            None => (stream && roll(&mut inner.rng, faults.stream_drop))
                .then(|| inner.rng.random_range(2..8)),
        };
        let sticks = stream
            && background
            && (forced_sticks || roll(&mut inner.rng, faults.stream_abort_sticks));
        let gateway = if inner.rng.random_bool(0.5) {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::GATEWAY_TIMEOUT
        };
        (broken, hang, cut, sticks, gateway)
    };
    let hang = match sim_hang {
        _ if stream || broken.is_some() => None,
        Some(d) if !d.is_zero() => Some(d),
        Some(_) => Some(faults.hang_for_or_default()),
        None if forced == Some(HeaderFault::Hang) || rolled_hang => {
            Some(faults.hang_for_or_default())
        }
        None => None,
    };
    if let Some(fault) = broken.filter(|f| !f.creates()) {
        tracing::debug!(fault = fault.as_str(), "create not processed");
        return Ok(broken_answer(&app, fault, gateway));
    }
    let answer_lost = match broken {
        Some(fault) => Some(fault.as_str()),
        None => hang.map(|_| "hang"),
    };
    let (id, snapshot) = app.shared.create(req, answer_lost)?;
    if let Some(fault) = broken {
        tracing::debug!(response_id = %id, fault = fault.as_str(), "create accepted, answer lost");
        return Ok(broken_answer(&app, fault, gateway));
    }
    if stream {
        return Ok(sse(
            app.shared.clone(),
            id,
            None,
            cut_after,
            sticks,
            app.cancel.clone(),
        ));
    }
    if let Some(d) = hang {
        tracing::debug!(response_id = %id, hang = ?d, "create accepted, reply held back");
        pause(&app.cancel, d).await;
    }
    Ok(axum::Json(render(&snapshot, &include)).into_response())
}

/// A dropped connection or a proxy's page, counted.
fn broken_answer(app: &App, fault: CreateFault, gateway: StatusCode) -> Response {
    let mut inner = app.shared.lock();
    match fault {
        CreateFault::DropBefore | CreateFault::DropAfter => {
            inner.stats.dropped_connections += 1;
            dropped_connection()
        }
        CreateFault::GatewayBefore | CreateFault::GatewayAfter => {
            inner.stats.gateway_errors += 1;
            proxy_error(gateway)
        }
    }
}

/// Query parameters of `GET /v1/responses/{id}` (`include[]` bracket syntax or `include`).
#[derive(Default)]
struct RetrieveQuery {
    include: Vec<String>,
    stream: bool,
    starting_after: Option<u64>,
}

fn parse_retrieve_query(raw: Option<&str>) -> Result<RetrieveQuery, ApiError> {
    let mut q = RetrieveQuery::default();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "include[]" | "include" => q.include.push(value.into_owned()),
            "stream" => q.stream = matches!(value.as_ref(), "true" | "1" | "True"),
            "starting_after" => {
                q.starting_after = Some(value.parse().map_err(|_| {
                    ApiError::invalid(
                        format!("Invalid 'starting_after': expected an integer, but got '{value}' instead."),
                        Some("starting_after"),
                        Some("invalid_type"),
                    )
                })?);
            }
            _ => {}
        }
    }
    check_include(&q.include)?;
    Ok(q)
}

async fn retrieve(
    State(app): State<App>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_retrieve_query(raw.as_deref())?;
    app.shared.lock().stats.retrieves += 1;
    if !q.stream {
        let lagging = {
            let mut inner = app.shared.lock();
            let lag = inner.faults.not_found_next > 0 && inner.entries.contains_key(&id);
            if lag {
                inner.faults.not_found_next -= 1;
            }
            lag
        };
        if lagging {
            return Err(ApiError::response_not_found(&id));
        }
        let snapshot = app.shared.with_entry(&id, |e| e.snapshot.clone())?;
        return Ok(axum::Json(render(&snapshot, &q.include)).into_response());
    }
    let window = app.shared.config.stream_resume_window;
    let (background, streamed, age, cut) = app.shared.with_entry(&id, |e| {
        (
            e.background,
            e.streamed,
            Instant::now().duration_since(e.created),
            e.stream_drop,
        )
    })?;
    if !background {
        return Err(ApiError::invalid(
            "This response cannot be streamed because it was not created with background=true.",
            Some("stream"),
            Some("invalid_request_error"),
        ));
    }
    if !streamed {
        return Err(ApiError::invalid(
            "This response cannot be streamed because it was not created with stream=true.",
            Some("stream"),
            Some("invalid_request_error"),
        ));
    }
    if age > window {
        // OpenAI's text, whatever window a test configured (`SimConfig::stream_resume_window`).
        return Err(ApiError::invalid(
            "This response can no longer be streamed because it is more than 5 minutes old.",
            Some("stream"),
            None,
        ));
    }
    Ok(sse(
        app.shared.clone(),
        id,
        q.starting_after,
        cut,
        false,
        app.cancel.clone(),
    ))
}

async fn cancel_response(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snapshot = app.shared.cancel(&id)?;
    Ok(axum::Json(render(&snapshot, &[])).into_response())
}

async fn delete(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    app.shared.delete(&id)?;
    Ok(axum::Json(json!({"id": id, "object": "response", "deleted": true})).into_response())
}

async fn input_items(
    State(app): State<App>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut limit = 20usize;
    let mut ascending = false;
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
            "order" => ascending = value == "asc",
            "after" => after = Some(value.into_owned()),
            _ => {}
        }
    }
    let mut items = app.shared.with_entry(&id, |e| e.input_items.clone())?;
    if !ascending {
        items.reverse();
    }
    if let Some(after) = after {
        let pos = items
            .iter()
            .position(|i| i.get("id").and_then(Value::as_str) == Some(after.as_str()));
        items = pos.map(|p| items.split_off(p + 1)).unwrap_or_default();
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    let first = items
        .first()
        .and_then(|i| i.get("id"))
        .cloned()
        .unwrap_or(Value::Null);
    let last = items
        .last()
        .and_then(|i| i.get("id"))
        .cloned()
        .unwrap_or(Value::Null);
    Ok(axum::Json(json!({"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": has_more})).into_response())
}

async fn unknown_route(req: Request) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        ..ApiError::invalid(
            format!("Invalid URL ({} {})", req.method(), req.uri().path()),
            None,
            None,
        )
    }
}

async fn stats(State(app): State<App>) -> Response {
    axum::Json(app.shared.lock().stats.clone()).into_response()
}

#[derive(Deserialize)]
struct ResponsesQuery {
    job_id: Option<String>,
}

/// Every response created (for one `job_id`, if given), oldest first.
async fn responses(
    State(app): State<App>,
    axum::extract::Query(q): axum::extract::Query<ResponsesQuery>,
) -> Response {
    let data = app.shared.responses(q.job_id.as_deref());
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn get_faults(State(app): State<App>) -> Response {
    axum::Json(app.shared.lock().faults.clone()).into_response()
}

async fn set_faults(State(app): State<App>, body: Bytes) -> Result<Response, ApiError> {
    let faults: Faults =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(e.to_string(), None, None))?;
    faults
        .validate()
        .map_err(|e| ApiError::invalid(e, None, None))?;
    app.shared.lock().faults = faults.clone();
    Ok(axum::Json(faults).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: Option<String>,
    #[serde(default)]
    secrets: Vec<String>,
}

async fn set_webhook(State(app): State<App>, body: Bytes) -> Result<Response, ApiError> {
    let body: WebhookBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(e.to_string(), None, None))?;
    super::check_secrets(&body.secrets)
        .map_err(|e| ApiError::invalid(e.to_string(), Some("secrets"), None))?;
    let mut inner = app.shared.lock();
    inner.webhook.url = body.url.clone();
    inner.webhook.secrets = body.secrets;
    Ok(
        axum::Json(json!({"url": body.url, "secrets": inner.webhook.secrets.len()}))
            .into_response(),
    )
}
