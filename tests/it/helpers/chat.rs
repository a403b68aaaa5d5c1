//! What the chat-sink tests share: a loopback receiver that answers from a script and
//! records what it got, and a sample finished job to notify about.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use respool::config::Config;
use respool::config::sinks::ModelPrice;
use respool::job::{JobSpec, JobStatus};
use respool::notify::{Context, Notification};
use respool::store::{JobRow, SubmitState};
use serde_json::{Value, json};

pub const DEADLINE: Duration = Duration::from_secs(30);

// ---- a recording receiver ------------------------------------------------------------------

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub hang: bool,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            hang: false,
        }
    }

    pub fn retry_after(status: u16, secs: &str, body: &str) -> Self {
        Self {
            headers: vec![("retry-after", secs.to_string())],
            ..Self::new(status, body)
        }
    }

    pub fn hang() -> Self {
        Self {
            hang: true,
            ..Self::new(200, "")
        }
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    pub answered: u16,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
pub struct Shared {
    pub script: Mutex<VecDeque<Reply>>,
    pub hits: Mutex<Vec<Hit>>,
}

/// A loopback server that records requests and answers `script`, then `200 ok`.
pub struct Receiver {
    pub base: String,
    pub shared: Arc<Shared>,
    pub server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(script: Vec<Reply>) -> Self {
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            hits: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base,
            shared,
            server,
        }
    }

    /// The webhook URL with `path` (tests use a secret-looking one).
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }

    pub async fn wait_hits(&self, n: usize, within: Duration) -> Vec<Hit> {
        let deadline = Instant::now() + within;
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "got {} requests within {within:?}, expected {n}",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| Reply::new(200, "ok"));
    let path = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    shared.hits.lock().unwrap().push(Hit {
        path,
        headers,
        body,
        at: Instant::now(),
        answered: reply.status,
    });
    if reply.hang {
        return std::future::pending().await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (k, v) in reply.headers {
        response.headers_mut().insert(k, v.parse().unwrap());
    }
    response
}

// ---- a notification built through the public API ------------------------------------------

pub struct Sample {
    pub job: JobRow,
    pub response: Value,
    pub ctx: Context,
}

impl Sample {
    pub fn new(status: JobStatus, name: &str, output: &str) -> Self {
        let now = 1_750_000_000_000;
        let spec = JobSpec::from_value(
            json!({"name": "sample", "model": "gpt-5", "input": "Research this."}),
            "t",
        )
        .unwrap();
        let usage = json!({"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 0},
                           "output_tokens": 800, "output_tokens_details": {"reasoning_tokens": 300},
                           "total_tokens": 2000});
        let failed = status == JobStatus::Failed;
        let job = JobRow {
            id: "job_01JTESTSLACK0000000000000".into(),
            name: name.into(),
            model: "gpt-5".into(),
            status,
            spec,
            idempotency_key: None,
            spec_hash: String::new(),
            response_id: Some("resp_test".into()),
            attempt: 1,
            submit_state: SubmitState::Done,
            submissions: 1,
            created_at: now - 65_000,
            updated_at: now,
            submitted_at: Some(now - 64_000),
            finished_at: Some(now),
            deadline_at: None,
            next_check_at: None,
            lease_until: None,
            poll_interval_ms: 0,
            polls: 2,
            wake_pending: 0,
            cancel_requested: 0,
            cancel_reason: None,
            output_text: (!output.is_empty()).then(|| output.to_string()),
            error_code: failed.then(|| "server_error".into()),
            error_message: failed.then(|| "The model <crashed> & burned".into()),
            usage: Some(usage.clone()),
            retry_of: None,
        };
        let response = json!({"id": "resp_test", "object": "response", "status": status.as_str(), "output": [],
                              "usage": usage});
        let ctx = Context::build(
            &format!("job.{status}"),
            &job,
            Some(&response),
            &[],
            &sample_config(),
        );
        Self { job, response, ctx }
    }

    /// The same job with another error message.
    pub fn with_error(mut self, message: &str) -> Self {
        self.job.error_message = Some(message.to_string());
        self.ctx = Context::build(
            &self.ctx.event,
            &self.job,
            Some(&self.response),
            &[],
            &sample_config(),
        );
        self
    }

    pub fn notification(&self) -> Notification<'_> {
        Notification {
            id: 1,
            event: &self.ctx.event,
            job: &self.job,
            response: Some(&self.response),
            ctx: &self.ctx,
        }
    }
}

/// Links to jobs on, and a price for `gpt-5`.
pub fn sample_config() -> Config {
    let mut config = Config::default();
    config.public_url = Some("https://respool.example".into());
    config.notify.pricing.insert(
        "gpt-5".into(),
        ModelPrice {
            input: 1.25,
            output: 10.0,
            cached_input: None,
        },
    );
    config
}
