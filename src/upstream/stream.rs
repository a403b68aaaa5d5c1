//! Streams of a background response (`docs/upstream-api.md` §2.5, §2.6): the create sent with
//! `stream: true`, whose first event `response.created` carries the Response, and the resume
//! `GET /responses/{id}?stream=true&starting_after=N`.
//!
//! Events are parsed by [`super::sse`]; each carries its `type` and `sequence_number`. Unknown
//! event types pass through (the caller skips what it does not know), `data: [DONE]` ends the
//! stream, and an `error` event is handed over as an event of type `error`.
//!
//! A create by stream keeps the create rules: it is retried inline only while it surely did
//! not reach OpenAI, and a stream that fails before `response.created` is an error for which
//! [`UpstreamError::create_may_have_happened`] holds (the response may exist).

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value};

use super::sse::{SseEvent, SseParser};
use super::{Client, Fetched, RateLimits, UpstreamError, api_error, classify, header, observe};
use crate::job::ResponseId;

/// One event of a response stream.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    /// The event's `type` (the `event:` line, else the JSON's `type`).
    pub kind: String,
    /// Its `sequence_number`, when it has one.
    pub seq: Option<i64>,
    /// The event's JSON (`Value::Null` when the data was not JSON).
    pub data: Value,
}

impl StreamEvent {
    fn from_sse(e: SseEvent) -> Option<Self> {
        if e.data.trim() == "[DONE]" {
            return None;
        }
        let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
        let kind = e
            .event
            .filter(|k| k != "message")
            .or_else(|| data.get("type").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| "message".into());
        let seq = data.get("sequence_number").and_then(Value::as_i64);
        Some(Self { kind, seq, data })
    }

    /// Whether this is one of the events that end a response (`response.completed`,
    /// `response.failed`, `response.incomplete`, and `response.cancelled` should one come).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "response.completed" | "response.failed" | "response.incomplete" | "response.cancelled"
        )
    }
}

type Body = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// An open response stream.
pub struct ResponseStream {
    body: Body,
    parser: SseParser,
    pending: VecDeque<SseEvent>,
    ended: bool,
    /// `x-request-id` of the request that opened it.
    pub request_id: Option<String>,
    /// The answer's `x-ratelimit-*` headers.
    pub rate_limits: Option<RateLimits>,
}

impl std::fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream")
            .field("request_id", &self.request_id)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl ResponseStream {
    /// The next event; `None` when the stream ended (cleanly, or after `[DONE]`); an error
    /// when the connection broke.
    pub async fn next(&mut self) -> Option<Result<StreamEvent, UpstreamError>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                match StreamEvent::from_sse(e) {
                    Some(ev) => return Some(Ok(ev)),
                    None => {
                        self.ended = true;
                        self.pending.clear();
                        return None;
                    }
                }
            }
            if self.ended {
                return None;
            }
            match self.body.next().await {
                Some(Ok(bytes)) => self.pending.extend(self.parser.push(&bytes)),
                Some(Err(e)) => {
                    self.ended = true;
                    return Some(Err(classify(e)));
                }
                None => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }
}

/// What a create by stream answered. (Rare and next to an HTTP call: its size does not
/// matter.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum StreamCreated {
    /// `response.created`: the response and the stream to read on.
    Stream {
        fetched: Box<Fetched>,
        stream: ResponseStream,
    },
    /// A server that answered the create with JSON instead of a stream: a plain create.
    Json(Box<Fetched>),
}

impl Client {
    /// `POST /responses` with `stream: true`, read up to its `response.created` event (within
    /// `upstream.request_timeout`). Retried inline only while the request surely did not reach
    /// OpenAI, like [`Client::create`]. A stream that breaks or ends before naming its response
    /// is an [`UpstreamError`] for which `create_may_have_happened` holds.
    pub async fn create_stream(
        &self,
        body: &Map<String, Value>,
    ) -> Result<StreamCreated, UpstreamError> {
        let mut body = body.clone();
        body.insert("stream".into(), Value::Bool(true));
        let mut retries = 0;
        loop {
            let rb = self
                .request(reqwest::Method::POST, "/responses")
                .header("x-stainless-retry-count", retries.to_string())
                .header(reqwest::header::ACCEPT, "text/event-stream")
                .json(&body);
            let started = Instant::now();
            let result = self.first_event(rb, retries).await;
            crate::telemetry::upstream_request(
                "create",
                started.elapsed(),
                result.as_ref().err().map(|e| e.code()).as_deref(),
            );
            match result {
                Ok(created) => return Ok(created),
                Err(e) => {
                    if retries >= self.max_retries
                        || !e.is_retryable()
                        || e.create_may_have_happened()
                    {
                        return Err(e);
                    }
                    let Some(delay) = super::http_retry::next_delay(
                        e.retry_after(),
                        self.max_retry_delay,
                        retries,
                        rand::random(),
                    ) else {
                        return Err(e);
                    };
                    tokio::time::sleep(delay).await;
                    retries += 1;
                }
            }
        }
    }

    /// Sends a create by stream and reads it up to `response.created`.
    async fn first_event(
        &self,
        rb: reqwest::RequestBuilder,
        retries: u32,
    ) -> Result<StreamCreated, UpstreamError> {
        let deadline = self.request_timeout;
        let lost = |detail: String, request_id: Option<String>| UpstreamError::Unreadable {
            response_id: None,
            detail,
            request_id,
        };
        let opened = tokio::time::timeout(deadline, self.open(rb)).await;
        let mut opened = match opened {
            Err(_) => {
                return Err(lost(
                    "no answer to the create within upstream.request_timeout".into(),
                    None,
                ));
            }
            Ok(r) => r?,
        };
        let mut stream = match opened {
            Opened::Json(fetched) => return Ok(StreamCreated::Json(fetched)),
            Opened::Stream(ref mut s) => std::mem::replace(s, empty_stream()),
        };
        let request_id = stream.request_id.clone();
        let first = tokio::time::timeout(deadline, async {
            loop {
                match stream.next().await {
                    Some(Ok(ev)) if ev.kind == "response.created" => return Ok(ev),
                    // Nothing may come before `response.created`; skip what does, but an
                    // `error` means the create failed in a way we cannot tell apart from one
                    // that made a response (OpenAI's order is UNCONFIRMED): uncertain.
                    Some(Ok(ev)) if ev.kind == "error" => {
                        return Err(format!(
                            "the stream sent an error before response.created: {}",
                            ev.data
                        ));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        return Err(format!(
                            "the stream broke before response.created: {}",
                            e.describe()
                        ));
                    }
                    None => return Err("the stream ended before response.created".into()),
                }
            }
        })
        .await;
        let ev = match first {
            Err(_) => {
                return Err(lost(
                    "no response.created within upstream.request_timeout".into(),
                    request_id,
                ));
            }
            Ok(Err(detail)) => return Err(lost(detail, request_id)),
            Ok(Ok(ev)) => ev,
        };
        let raw = ev.data.get("response").cloned().unwrap_or(Value::Null);
        match observe(raw.clone()) {
            Ok(observation) => Ok(StreamCreated::Stream {
                fetched: Box::new(Fetched {
                    observation,
                    request_id: stream.request_id.clone(),
                    retries,
                    rate_limits: stream.rate_limits,
                }),
                stream,
            }),
            Err(e) => Err(UpstreamError::Unreadable {
                response_id: raw
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|id| ResponseId::parse(id).ok()),
                detail: format!("response.created did not carry a readable Response: {e}"),
                request_id,
            }),
        }
    }

    /// `GET /responses/{id}?stream=true[&starting_after=N]`: the events after `N` (all without
    /// it). Not retried here: the caller decides (a 400 means the resume window passed).
    pub async fn resume_stream(
        &self,
        response_id: &str,
        starting_after: Option<i64>,
    ) -> Result<ResponseStream, UpstreamError> {
        let path = format!("/responses/{}", super::urlencode(response_id));
        let mut query = vec![("stream", "true".to_string())];
        if let Some(n) = starting_after {
            query.push(("starting_after", n.to_string()));
        }
        let rb = self
            .request(reqwest::Method::GET, &path)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .query(&query);
        let started = Instant::now();
        let result = tokio::time::timeout(self.request_timeout, self.open(rb)).await;
        let result = match result {
            Err(_) => Err(UpstreamError::InvalidResponse(
                "no answer to the stream request within upstream.request_timeout".into(),
            )),
            Ok(Ok(Opened::Stream(s))) => Ok(s),
            Ok(Ok(Opened::Json(_))) => Err(UpstreamError::InvalidResponse(
                "a JSON answer to a stream request".into(),
            )),
            Ok(Err(e)) => Err(e),
        };
        crate::telemetry::upstream_request(
            "stream",
            started.elapsed(),
            result.as_ref().err().map(|e| e.code()).as_deref(),
        );
        result
    }

    /// Sends a request on the streaming connection pool (no overall timeout: a stream lasts as
    /// long as its response runs; a read that stalls past [`STREAM_READ_TIMEOUT`] breaks it).
    async fn open(&self, rb: reqwest::RequestBuilder) -> Result<Opened, UpstreamError> {
        let req = rb.build().map_err(UpstreamError::Connect)?;
        let resp = self.stream_http.execute(req).await.map_err(classify)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let request_id = header(&headers, "x-request-id");
        let rate_limits = RateLimits::from_headers(&headers);
        if !status.is_success() {
            let bytes = resp.bytes().await.map_err(classify)?;
            return Err(api_error(status, &headers, &bytes));
        }
        let is_sse = header(&headers, "content-type")
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/event-stream"));
        if !is_sse {
            let bytes = resp.bytes().await.map_err(classify)?;
            let raw: Value =
                serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Unreadable {
                    response_id: super::response::salvage_response_id(&bytes),
                    detail: format!("the body is neither a stream nor JSON: {e}"),
                    request_id: request_id.clone(),
                })?;
            let observation = observe(raw.clone()).map_err(|e| UpstreamError::Unreadable {
                response_id: raw
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|id| ResponseId::parse(id).ok()),
                detail: e.to_string(),
                request_id: request_id.clone(),
            })?;
            return Ok(Opened::Json(Box::new(Fetched {
                observation,
                request_id,
                retries: 0,
                rate_limits,
            })));
        }
        Ok(Opened::Stream(ResponseStream {
            body: Box::pin(resp.bytes_stream()),
            parser: SseParser::new(),
            pending: VecDeque::new(),
            ended: false,
            request_id,
            rate_limits,
        }))
    }
}

/// How long a stream may stay silent before its connection counts as broken (then resumed).
pub const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(120);

#[allow(clippy::large_enum_variant)]
enum Opened {
    Json(Box<Fetched>),
    Stream(ResponseStream),
}

fn empty_stream() -> ResponseStream {
    ResponseStream {
        body: Box::pin(futures::stream::empty()),
        parser: SseParser::new(),
        pending: VecDeque::new(),
        ended: true,
        request_id: None,
        rate_limits: None,
    }
}
