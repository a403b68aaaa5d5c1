//! A webhook receiver for sink tests: a small axum server on loopback port 0 that records every
//! request (headers, raw body, when it came) and answers from a script: a list of replies for
//! the first requests (a status, a status with `Retry-After`, or hanging forever), then 200.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// A status and `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// A redirect to `location` (a path on this receiver).
    Redirect(u16, &'static str),
    /// Never answers (the request stays in flight until the client gives up).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// What it answered (`None`: it hung).
    pub answered: Option<u16>,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    /// Checks the Standard Webhooks signature with the reference crate.
    pub fn verify(&self, secret: &str) -> Result<(), standardwebhooks::WebhookError> {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&self.body, &self.headers)
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    hits: Mutex<Vec<Hit>>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver answering `script` to the first requests, then 200.
    pub async fn start(script: Vec<Reply>) -> Receiver {
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            hits: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hooks/respool"),
            shared,
            server,
        }
    }

    /// Every request so far, in order.
    pub fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }

    /// Requests answered with a 2xx.
    pub fn successes(&self) -> usize {
        self.hits()
            .iter()
            .filter(|h| h.answered.is_some_and(|s| (200..300).contains(&s)))
            .count()
    }

    /// Polls until at least `n` requests came; panics at the deadline.
    pub async fn wait_hits(&self, n: usize, within: Duration) -> Vec<Hit> {
        let deadline = Instant::now() + within;
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {} requests within {within:?}, expected {n}",
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

async fn receive(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Status(200));
    let answered = match reply {
        Reply::Status(s) | Reply::RetryAfter(s, _) | Reply::Redirect(s, _) => Some(s),
        Reply::Hang => None,
    };
    shared.hits.lock().unwrap().push(Hit {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers,
        body,
        at: Instant::now(),
        answered,
    });
    match reply {
        Reply::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Reply::RetryAfter(s, secs) => (
            StatusCode::from_u16(s).unwrap(),
            [("retry-after", secs.to_string())],
        )
            .into_response(),
        Reply::Redirect(s, location) => (
            StatusCode::from_u16(s).unwrap(),
            [("location", location.to_string())],
        )
            .into_response(),
        Reply::Hang => std::future::pending().await,
    }
}

/// A job's outbox rows (`id`, `sink`, `event`, `state`, `attempts`, `last_error`), from
/// `GET /v1/notifications?job_id=…` when the daemon has it, else read from the SQLite file
/// through a separate read-only connection.
pub async fn notification_rows(
    http: &reqwest::Client,
    base: &str,
    db: &std::path::Path,
    job_id: &str,
) -> Vec<Value> {
    let url = format!("{base}/v1/notifications?job_id={job_id}");
    if let Ok(r) = http.get(&url).send().await {
        if r.status().is_success() {
            let v: Value = r.json().await.unwrap();
            let mut rows = v["data"].as_array().cloned().unwrap_or_default();
            rows.sort_by_key(|r| r["id"].as_i64());
            return rows;
        }
    }
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts)
        .await
        .unwrap();
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT json_object('id', id, 'job_id', job_id, 'sink', sink, 'event', event, \
         'state', state, 'attempts', attempts, 'last_error', last_error) \
         FROM notifications WHERE job_id = ? ORDER BY id",
    )
    .bind(job_id)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let _ = sqlx::Connection::close(conn).await;
    rows.iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}
