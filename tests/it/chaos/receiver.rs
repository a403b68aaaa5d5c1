//! The flapping notification receiver: the chaos run's webhook sink points here. It answers
//! 200, 500 or hangs (never answers), from a seeded RNG, and records every request with its
//! wall-clock arrival time, its `webhook-id`, the job and event it names, and what it answered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Wall-clock arrival, Unix milliseconds.
    pub at_ms: i64,
    pub webhook_id: String,
    pub job_id: String,
    /// `job.completed`, `job.failed`, …
    pub event: String,
    /// What it answered; `None` when it hung.
    pub answered: Option<u16>,
}

impl Hit {
    pub fn ok(&self) -> bool {
        self.answered.is_some_and(|s| (200..300).contains(&s))
    }
}

struct Shared {
    rng: Mutex<StdRng>,
    fail: f64,
    hang: f64,
    hits: Mutex<Vec<Hit>>,
}

/// A running receiver; stops when dropped.
pub struct FlappingReceiver {
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FlappingReceiver {
    /// Answers 500 with probability `fail`, hangs with probability `hang`, else 200.
    pub async fn start(seed: u64, fail: f64, hang: f64) -> Self {
        let shared = Arc::new(Shared {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            fail,
            hang,
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
        Self {
            url: format!("http://{addr}/hooks/chaos"),
            shared,
            server,
        }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }
}

impl Drop for FlappingReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let roll: f64 = shared.rng.lock().unwrap().random();
    let answered = if roll < shared.fail {
        Some(500)
    } else if roll < shared.fail + shared.hang {
        None
    } else {
        Some(200)
    };
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("?").to_string();
    shared.hits.lock().unwrap().push(Hit {
        at_ms: chrono::Utc::now().timestamp_millis(),
        webhook_id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string(),
        job_id: text(event.pointer("/data/job/id")),
        event: text(event.get("type")),
        answered,
    });
    match answered {
        Some(s) => StatusCode::from_u16(s).unwrap(),
        None => {
            // Longer than the sink's timeout: the daemon gives up first.
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}
