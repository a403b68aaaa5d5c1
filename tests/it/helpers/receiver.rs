//! A recording receiver: a small axum server on loopback port 0 that stands in for whatever
//! respool notifies (a webhook endpoint, Slack, Discord, ntfy, the chaos run's flapping sink). It
//! records every request (method, path, headers, raw body, when it came, what it answered) and
//! answers from a script: a list of replies for the first requests, then `200 ok`; or, for the
//! chaos run, from a seeded roll (500, hang or 200).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Never answers (the request stays in flight until the client gives up).
    pub hang: bool,
}

impl Reply {
    /// `status` with `body`.
    pub fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            hang: false,
        }
    }

    /// `status` with an empty body.
    pub fn status(status: u16) -> Self {
        Self::new(status, "")
    }

    /// `status` with `Retry-After: secs` (as written: seconds, or anything a client must cope
    /// with) and `body`.
    pub fn retry_after(status: u16, secs: &str, body: &str) -> Self {
        Self::new(status, body).header("retry-after", secs)
    }

    /// A redirect to `location` (a path on this receiver).
    pub fn redirect(status: u16, location: &str) -> Self {
        Self::status(status).header("location", location)
    }

    /// Never answers.
    pub fn hang() -> Self {
        Self {
            hang: true,
            ..Self::status(200)
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    /// The path and the query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// Wall-clock arrival, Unix milliseconds (to compare with times the daemon records).
    pub at_ms: i64,
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

    /// Answered with a 2xx.
    pub fn ok(&self) -> bool {
        self.answered.is_some_and(|s| (200..300).contains(&s))
    }

    /// Checks the Standard Webhooks signature with the reference crate.
    pub fn verify(&self, secret: &str) -> Result<(), standardwebhooks::WebhookError> {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&self.body, &self.headers)
    }
}

/// Answers past the script: 500 with probability `fail`, a hang with probability `hang`, else
/// 200, rolled from a seeded RNG.
struct Flapping {
    rng: StdRng,
    fail: f64,
    hang: f64,
}

impl Flapping {
    fn roll(&mut self) -> Reply {
        let roll: f64 = self.rng.random();
        if roll < self.fail {
            Reply::status(500)
        } else if roll < self.fail + self.hang {
            Reply::hang()
        } else {
            Reply::new(200, "ok")
        }
    }
}

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    flapping: Option<Mutex<Flapping>>,
    hits: Mutex<Vec<Hit>>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A webhook URL on it: `{base}/hooks/respool`.
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver answering `script` to the first requests, then `200 ok`.
    pub async fn start(script: Vec<Reply>) -> Receiver {
        Self::serve(script, None).await
    }

    /// Starts a receiver that answers 500 with probability `fail`, hangs with probability
    /// `hang`, else 200, from an RNG seeded with `seed`.
    pub async fn flapping(seed: u64, fail: f64, hang: f64) -> Receiver {
        let flapping = Flapping {
            rng: StdRng::seed_from_u64(seed),
            fail,
            hang,
        };
        Self::serve(Vec::new(), Some(flapping)).await
    }

    async fn serve(script: Vec<Reply>, flapping: Option<Flapping>) -> Receiver {
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            flapping: flapping.map(Mutex::new),
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
        Receiver {
            url: format!("{base}/hooks/respool"),
            base,
            shared,
            server,
        }
    }

    /// A URL on the receiver with `path` (tests use a secret-looking one).
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every request so far, in order.
    pub fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }

    /// Requests answered with a 2xx.
    pub fn successes(&self) -> usize {
        self.hits().iter().filter(|h| h.ok()).count()
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
    let scripted = shared.script.lock().unwrap().pop_front();
    let reply = scripted
        .or_else(|| Some(shared.flapping.as_ref()?.lock().unwrap().roll()))
        .unwrap_or_else(|| Reply::new(200, "ok"));
    shared.hits.lock().unwrap().push(Hit {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers,
        body,
        at: Instant::now(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        answered: (!reply.hang).then_some(reply.status),
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
