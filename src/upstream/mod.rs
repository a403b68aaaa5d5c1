//! The OpenAI client: create, retrieve and cancel background responses, with retries.
//!
//! Retries follow the official SDKs (408, 409, 429, 5xx and connection errors; `Retry-After`,
//! `retry-after-ms` and `x-should-retry` honoured; exponential backoff with jitter), with one
//! exception that matters for money: a `create` is only retried when it surely did not reach
//! OpenAI. OpenAI has no idempotency key for creates and no way to list responses, so a create
//! that may have started a response is handed back to the orchestrator as uncertain, never
//! silently sent again.

// Errors are rare and sit next to an HTTP call: their size does not matter.
#![allow(clippy::result_large_err)]

mod error;
pub mod response;
pub mod retry;

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

pub use error::UpstreamError;
pub use response::{observe, output_text, tagged_job_id};

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
    base: String,
    api_key: Option<SecretString>,
    max_retries: u32,
    max_retry_delay: Duration,
}

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
        let http = reqwest::Client::builder()
            .user_agent(concat!("respool/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .build()
            .map_err(UpstreamError::Connect)?;
        Ok(Self {
            http,
            base: cfg.base_url.trim_end_matches('/').to_string(),
            api_key: cfg.api_key.clone(),
            max_retries: cfg.max_retries,
            max_retry_delay: cfg.max_retry_delay,
        })
    }

    /// `POST /responses`. Retried only while the request surely did not reach OpenAI; any
    /// other failure is returned with [`UpstreamError::create_may_have_happened`] telling the
    /// caller whether a response may exist.
    pub async fn create(&self, body: &Map<String, Value>) -> Result<Fetched, UpstreamError> {
        self.send_with_retries(
            || self.request(reqwest::Method::POST, "/responses").json(body),
            |e| !e.create_may_have_happened(),
        )
        .await
    }

    /// `GET /responses/{id}`.
    pub async fn retrieve(&self, response_id: &str) -> Result<Fetched, UpstreamError> {
        let path = format!("/responses/{}", urlencode(response_id));
        self.send_with_retries(|| self.request(reqwest::Method::GET, &path), |_| true)
            .await
    }

    /// `POST /responses/{id}/cancel`. A 400 saying the response is already finished is
    /// [`CancelOutcome::AlreadyTerminal`] (OpenAI's answer there has varied).
    pub async fn cancel(&self, response_id: &str) -> Result<CancelOutcome, UpstreamError> {
        let path = format!("/responses/{}/cancel", urlencode(response_id));
        match self
            .send_with_retries(|| self.request(reqwest::Method::POST, &path), |_| true)
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
        build: impl Fn() -> reqwest::RequestBuilder,
        may_retry: impl Fn(&UpstreamError) -> bool,
    ) -> Result<Fetched, UpstreamError> {
        let mut retries = 0;
        loop {
            let result = self
                .send_once(build().header("x-stainless-retry-count", retries.to_string()))
                .await;
            match result {
                Ok((observation, request_id)) => {
                    return Ok(Fetched {
                        observation,
                        request_id,
                        retries,
                    });
                }
                Err(e) => {
                    if retries >= self.max_retries || !e.is_retryable() || !may_retry(&e) {
                        return Err(e);
                    }
                    let r: f64 = rand::random();
                    let Some(delay) =
                        retry::next_delay(e.retry_after(), self.max_retry_delay, retries, r)
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
        rb: reqwest::RequestBuilder,
    ) -> Result<(Observation, Option<String>), UpstreamError> {
        let resp = rb.send().await.map_err(classify)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let request_id = header(&headers, "x-request-id");
        let bytes = resp.bytes().await.map_err(classify)?;
        if status.is_success() {
            let raw: Value = serde_json::from_slice(&bytes).map_err(|e| {
                UpstreamError::InvalidResponse(format!("the body is not JSON: {e}"))
            })?;
            return Ok((observe(raw)?, request_id));
        }
        let envelope: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let err = envelope.get("error");
        let field = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Err(UpstreamError::Api {
            status: status.as_u16(),
            kind: field("type"),
            code: field("code"),
            param: field("param"),
            message: field("message")
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string()),
            request_id,
            retry_after: retry::parse_retry_after(
                header(&headers, "retry-after-ms").as_deref(),
                header(&headers, "retry-after").as_deref(),
            ),
            should_retry: header(&headers, "x-should-retry").and_then(|v| match v.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            }),
        })
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Sorts a reqwest failure into: never reached the server, timed out, or broke mid-way.
fn classify(e: reqwest::Error) -> UpstreamError {
    if e.is_connect() {
        UpstreamError::Connect(e)
    } else if e.is_timeout() {
        UpstreamError::Timeout(e)
    } else {
        UpstreamError::Transport(e)
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
