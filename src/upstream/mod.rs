//! The OpenAI client: create, retrieve and cancel background responses, with retries; and
//! manage webhook endpoints ([`endpoints`]).
//!
//! Every answer's `x-ratelimit-*` headers are handed back ([`ratelimit::RateLimits`]) for the
//! orchestrator's limiter; every call is timed and counted for `/metrics`; and the client
//! remembers when upstream last answered, for `/readyz`.
//!
//! Retries follow the official SDKs (408, 409, 429, 5xx and connection errors; `Retry-After`,
//! `retry-after-ms` and `x-should-retry` honoured; exponential backoff with jitter), with one
//! exception that matters for money: a `create` is only retried when it surely did not reach
//! OpenAI. OpenAI has no idempotency key for creates and no way to list responses, so a create
//! that may have started a response is handed back to the orchestrator as uncertain, never
//! silently sent again.

// Errors are rare and sit next to an HTTP call: their size does not matter.
#![allow(clippy::result_large_err)]

pub mod containers;
pub mod conversations;
pub mod endpoints;
mod error;
pub mod files;
pub mod http_retry;
pub mod ratelimit;
pub mod response;
pub mod sse;
pub mod stream;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

pub use error::UpstreamError;
pub use ratelimit::{RateLimits, RateWindow};
pub use response::{observe, output_text, tagged_job_id};
pub use stream::{ResponseStream, StreamCreated, StreamEvent};

use crate::config::UpstreamConfig;
use crate::job::Observation;

/// What a successful call returned.
#[derive(Debug)]
pub struct Fetched {
    pub observation: Observation,
    /// `x-request-id` of the answering request, for the timeline.
    pub request_id: Option<String>,
    /// How many retries it took.
    pub retries: u32,
    /// The answer's `x-ratelimit-*` headers, if it had them.
    pub rate_limits: Option<RateLimits>,
}

/// The result of a cancel call.
#[derive(Debug)]
pub enum CancelOutcome {
    /// The cancel was accepted (or the response was already cancelled): its state now.
    Cancelled(Box<Fetched>),
    /// The response had already finished otherwise; fetch it to learn how.
    AlreadyTerminal,
}

/// A client for one upstream. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// For response streams: no overall timeout, a read timeout instead (`stream.rs`).
    stream_http: reqwest::Client,
    /// `upstream.request_timeout`: how long a stream may take to open.
    request_timeout: Duration,
    base: String,
    api_key: Option<SecretString>,
    max_retries: u32,
    max_retry_delay: Duration,
    /// When upstream last answered in a way that proves it is reachable and takes our key.
    reached_at: Arc<Mutex<Option<Instant>>>,
}

/// The path `/readyz` probes when no call reached upstream lately: a response id that cannot
/// exist, so the answer is a free 404 that still proves the network path and the key.
const PROBE_PATH: &str = "/responses/resp_respool_readiness_probe";

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("api_key", &"[redacted]")
            .finish()
    }
}

impl Client {
    /// Builds a client from the config.
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("openai-organization", &cfg.organization),
            ("openai-project", &cfg.project),
        ] {
            if let Some(v) = value {
                let v = HeaderValue::from_str(v).map_err(|_| {
                    UpstreamError::InvalidResponse(format!("invalid {name} header value"))
                })?;
                headers.insert(name, v);
            }
        }
        let stream_http = reqwest::Client::builder()
            .user_agent(concat!("respool/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers.clone())
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(stream::STREAM_READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(UpstreamError::Connect)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("respool/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            // Never follow a redirect: a 307/308 would send a create a second time, to
            // wherever the answer points. A 3xx comes back as an error (`base_url` is wrong).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(UpstreamError::Connect)?;
        Ok(Self {
            http,
            stream_http,
            request_timeout: cfg.request_timeout,
            base: cfg.base_url.trim_end_matches('/').to_string(),
            api_key: cfg.api_key.clone(),
            max_retries: cfg.max_retries,
            max_retry_delay: cfg.max_retry_delay,
            reached_at: Arc::new(Mutex::new(None)),
        })
    }

    /// How long ago upstream last answered a call of this client (any answer but a 401/403, a
    /// 5xx or no answer at all), if it ever did.
    pub fn last_reached(&self) -> Option<Duration> {
        self.reached_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|at| at.elapsed())
    }

    /// A free request that proves upstream is reachable and accepts our key:
    /// `GET /responses/<an id that cannot exist>`, expecting 404. Not retried.
    pub async fn probe(&self) -> Result<(), UpstreamError> {
        let rb = self
            .request(reqwest::Method::GET, PROBE_PATH)
            .timeout(Duration::from_secs(5));
        match self.send_measured("probe", rb).await {
            Ok(_) | Err(UpstreamError::Api { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /responses`. Retried only while the request surely did not reach OpenAI; any
    /// other failure is returned with [`UpstreamError::create_may_have_happened`] telling the
    /// caller whether a response may exist.
    pub async fn create(&self, body: &Map<String, Value>) -> Result<Fetched, UpstreamError> {
        self.send_with_retries(
            "create",
            || self.request(reqwest::Method::POST, "/responses").json(body),
            |e| !e.create_may_have_happened(),
        )
        .await
    }

    /// `GET /responses/{id}`.
    pub async fn retrieve(&self, response_id: &str) -> Result<Fetched, UpstreamError> {
        self.retrieve_including(response_id, &[]).await
    }

    /// `GET /responses/{id}?include[]=…`: with the output OpenAI leaves out unless asked for
    /// (web search sources, file search results, …; see `JobSpec::retrieve_include`).
    pub async fn retrieve_including(
        &self,
        response_id: &str,
        include: &[&str],
    ) -> Result<Fetched, UpstreamError> {
        let path = format!("/responses/{}", urlencode(response_id));
        let query: Vec<(&str, &str)> = include.iter().map(|v| ("include[]", *v)).collect();
        self.send_with_retries(
            "retrieve",
            || self.request(reqwest::Method::GET, &path).query(&query),
            |_| true,
        )
        .await
    }

    /// `POST /responses/{id}/cancel`. A 400 saying the response is already finished is
    /// [`CancelOutcome::AlreadyTerminal`] (OpenAI's answer there has varied).
    pub async fn cancel(&self, response_id: &str) -> Result<CancelOutcome, UpstreamError> {
        let path = format!("/responses/{}/cancel", urlencode(response_id));
        match self
            .send_with_retries(
                "cancel",
                || self.request(reqwest::Method::POST, &path),
                |_| true,
            )
            .await
        {
            Ok(f) => Ok(CancelOutcome::Cancelled(Box::new(f))),
            Err(UpstreamError::Api { status: 400, .. }) => Ok(CancelOutcome::AlreadyTerminal),
            Err(e) => Err(e),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.api_key {
            Some(k) => rb.bearer_auth(k.expose_secret()),
            None => rb,
        }
    }

    async fn send_with_retries(
        &self,
        endpoint: &'static str,
        build: impl Fn() -> reqwest::RequestBuilder,
        may_retry: impl Fn(&UpstreamError) -> bool,
    ) -> Result<Fetched, UpstreamError> {
        let mut retries = 0;
        loop {
            let result = self
                .send_once(
                    endpoint,
                    build().header("x-stainless-retry-count", retries.to_string()),
                )
                .await;
            match result {
                Ok((observation, request_id, rate_limits)) => {
                    return Ok(Fetched {
                        observation,
                        request_id,
                        retries,
                        rate_limits,
                    });
                }
                Err(e) => {
                    if retries >= self.max_retries || !e.is_retryable() || !may_retry(&e) {
                        return Err(e);
                    }
                    let r: f64 = rand::random();
                    let Some(delay) =
                        http_retry::next_delay(e.retry_after(), self.max_retry_delay, retries, r)
                    else {
                        return Err(e);
                    };
                    tracing::debug!(error = %e.describe(), delay_ms = delay.as_millis() as u64, retries, "retrying upstream request");
                    tokio::time::sleep(delay).await;
                    retries += 1;
                }
            }
        }
    }

    async fn send_once(
        &self,
        endpoint: &'static str,
        rb: reqwest::RequestBuilder,
    ) -> Result<(Observation, Option<String>, Option<RateLimits>), UpstreamError> {
        let (raw, request_id, rate_limits) = self.send_measured(endpoint, rb).await?;
        match observe(raw.clone()) {
            Ok(obs) => Ok((obs, request_id, rate_limits)),
            // A 2xx that is JSON but not a Response we understand: keep the id if it has one.
            Err(e) => Err(UpstreamError::Unreadable {
                response_id: raw
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|id| crate::job::ResponseId::parse(id).ok()),
                detail: e.to_string(),
                request_id,
            }),
        }
    }

    /// Sends one request; a 2xx answer's JSON body and `x-request-id`, or the error envelope
    /// as an [`UpstreamError::Api`].
    async fn send_json(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<(Value, Option<String>), UpstreamError> {
        let (raw, request_id, _) = self.send_measured("other", rb).await?;
        Ok((raw, request_id))
    }

    /// [`Self::exchange`], timed and counted for `/metrics` under `endpoint`, and noted for
    /// `/readyz` when upstream answered.
    async fn send_measured(
        &self,
        endpoint: &'static str,
        rb: reqwest::RequestBuilder,
    ) -> Result<(Value, Option<String>, Option<RateLimits>), UpstreamError> {
        let started = Instant::now();
        let result = self.exchange(rb).await;
        let error = result.as_ref().err().map(|e| match e.status() {
            Some(s) => s.to_string(),
            None => e.code(),
        });
        crate::telemetry::upstream_request(endpoint, started.elapsed(), error.as_deref());
        let reached = match &result {
            Ok(_) => true,
            Err(UpstreamError::Api { status, .. }) => !matches!(status, 401 | 403 | 500..),
            Err(_) => false,
        };
        if reached {
            *self.reached_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
        result
    }

    /// One HTTP exchange: the JSON body, `x-request-id` and rate-limit headers of a 2xx, or
    /// the error envelope as an [`UpstreamError::Api`].
    async fn exchange(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<(Value, Option<String>, Option<RateLimits>), UpstreamError> {
        let resp = rb.send().await.map_err(classify)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let request_id = header(&headers, "x-request-id");
        let rate_limits = RateLimits::from_headers(&headers);
        let bytes = resp.bytes().await.map_err(classify)?;
        if status.is_success() {
            let raw: Value =
                serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Unreadable {
                    response_id: response::salvage_response_id(&bytes),
                    detail: format!("the body is not JSON: {e}"),
                    request_id: request_id.clone(),
                })?;
            return Ok((raw, request_id, rate_limits));
        }
        Err(api_error(status, &headers, &bytes))
    }
}

/// The error of a non-2xx answer: its error envelope (if it has one), `x-request-id`,
/// `Retry-After` and `x-should-retry`.
pub(crate) fn api_error(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    bytes: &[u8],
) -> UpstreamError {
    let request_id = header(headers, "x-request-id");
    let rate_limits = RateLimits::from_headers(headers);
    let envelope: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let err = envelope.get("error");
    let from_api = request_id.is_some()
        && err
            .and_then(|e| e.get("message"))
            .is_some_and(Value::is_string);
    let field = |k: &str| {
        err.and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    UpstreamError::Api {
        from_api,
        status: status.as_u16(),
        kind: field("type"),
        code: field("code"),
        param: field("param"),
        message: field("message")
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string()),
        request_id,
        retry_after: http_retry::parse_retry_after(
            header(headers, "retry-after-ms").as_deref(),
            header(headers, "retry-after").as_deref(),
        ),
        should_retry: header(headers, "x-should-retry").and_then(|v| match v.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }),
        rate_limits,
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Sorts a reqwest failure into: never reached the server, timed out, or broke mid-way.
pub(crate) fn classify(e: reqwest::Error) -> UpstreamError {
    if e.is_connect() {
        UpstreamError::Connect(e)
    } else if e.is_timeout() {
        UpstreamError::Timeout(e)
    } else {
        UpstreamError::Transport(e)
    }
}

pub(crate) fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
