//! The webhook sink's URL: a receiver that notes when each job's notification arrived and
//! checks its signature.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::bench_support::now_ms;

/// The notifications received.
pub struct Notes {
    verifier: standardwebhooks::Webhook,
    /// Job id → when its first notification arrived (unix ms).
    pub seen: Mutex<HashMap<String, i64>>,
    pub total: AtomicUsize,
    pub repeats: AtomicUsize,
    pub bad: AtomicUsize,
}

impl Notes {
    pub fn new(secret: &str) -> Result<Self> {
        Ok(Self {
            verifier: standardwebhooks::Webhook::new(secret)?,
            seen: Mutex::default(),
            total: AtomicUsize::new(0),
            repeats: AtomicUsize::new(0),
            bad: AtomicUsize::new(0),
        })
    }

    pub fn distinct(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn last_ms(&self) -> Option<i64> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .max()
            .copied()
    }
}

/// The sink's URL: note the arrival time first, then check the signature and the body.
pub async fn receive(
    State(notes): State<Arc<Notes>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let at = now_ms();
    notes.total.fetch_add(1, Ordering::Relaxed);
    let job = notes
        .verifier
        .verify(&body, &headers)
        .ok()
        .and_then(|()| serde_json::from_slice::<Value>(&body).ok())
        .and_then(|v| v["data"]["job"]["id"].as_str().map(str::to_owned));
    let Some(job) = job else {
        notes.bad.fetch_add(1, Ordering::Relaxed);
        return StatusCode::BAD_REQUEST;
    };
    let mut seen = notes.seen.lock().unwrap_or_else(PoisonError::into_inner);
    match seen.entry(job) {
        std::collections::hash_map::Entry::Occupied(_) => {
            notes.repeats.fetch_add(1, Ordering::Relaxed);
        }
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(at);
        }
    }
    StatusCode::OK
}
