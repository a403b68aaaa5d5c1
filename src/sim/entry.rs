//! One response's status machine: its plan (queue time, run time, output steps, outcome) and
//! [`Entry::advance`], which moves it forward along that plan up to a given instant. Moves only
//! go forward: `queued → in_progress → completed|failed|incomplete`, and
//! `queued|in_progress → cancelled` (done by `state.rs`).

use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::faults::{Outcome, WebhookMode};
use super::output::{EventBody, Generated};

/// The status of a simulated response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Queued,
    InProgress,
    Completed,
    Failed,
    Incomplete,
    Cancelled,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Incomplete => "incomplete",
            Self::Cancelled => "cancelled",
        }
    }

    pub(crate) fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::InProgress)
    }
}

/// A terminal transition that a webhook announces.
#[derive(Debug, Clone)]
pub(crate) struct WebhookJob {
    pub event_type: String,
    pub data_id: String,
    /// Unix seconds of the state change (the body's `created_at`).
    pub created_at: i64,
    pub mode: WebhookMode,
    pub extra_delay: Option<Duration>,
    /// The create's answer was lost (see `Faults::webhook_drop_spares_lost_answers`).
    pub answer_lost: bool,
}

/// One stored response and its plan.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) created: Instant,
    pub(crate) created_unix: i64,
    pub(crate) background: bool,
    pub(crate) stored: bool,
    pub(crate) streamed: bool,
    pub(crate) status: Status,
    pub(crate) snapshot: Value,
    pub(crate) input_items: Vec<Value>,
    /// The SSE event log (only for responses created with `stream: true`).
    pub(crate) events: Vec<Value>,
    pub(crate) generated: Generated,
    pub(crate) applied: usize,
    pub(crate) queue: Duration,
    pub(crate) run: Duration,
    pub(crate) stuck: bool,
    pub(crate) webhook: WebhookMode,
    pub(crate) webhook_delay: Option<Duration>,
    pub(crate) terminal_at: Option<Instant>,
    /// Whether the stream log gets an event type clients must ignore.
    pub(crate) unknown_events: bool,
    /// Wall-clock creation time in Unix milliseconds (for `/_sim/responses`).
    pub(crate) created_ms: i64,
    /// `metadata.respool_job_id` of the create, if any.
    pub(crate) job_id: Option<String>,
    /// How the create's answer was lost (`hang`, `create_then_drop`,
    /// `create_then_gateway_error`), if it was.
    pub(crate) answer_lost: Option<&'static str>,
    /// The webhook fault dropped this response's terminal event (every target, every attempt).
    pub(crate) webhook_dropped: bool,
    /// Every live or resumed stream of it is cut after this many events (`stream_drop=N`).
    pub(crate) stream_drop: Option<usize>,
}

impl Entry {
    pub(crate) fn in_progress_at(&self) -> Instant {
        self.created + self.queue
    }

    pub(crate) fn step_at(&self, i: usize) -> Instant {
        let n = self.generated.steps.len() as u32;
        self.in_progress_at() + self.run * (i as u32 + 1) / (n + 1)
    }

    pub(crate) fn end_at(&self) -> Instant {
        self.in_progress_at() + self.run
    }

    /// When this response next changes, if ever.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self.status {
            _ if self.stuck => None,
            Status::Queued => Some(self.in_progress_at()),
            Status::InProgress if self.applied < self.generated.steps.len() => {
                Some(self.step_at(self.applied))
            }
            Status::InProgress => Some(self.end_at()),
            _ => None,
        }
    }

    pub(crate) fn unix_at(&self, at: Instant) -> i64 {
        self.created_unix + i64::try_from(at.duration_since(self.created).as_secs()).unwrap_or(0)
    }

    pub(crate) fn set(&mut self, key: &str, value: Value) {
        if let Some(obj) = self.snapshot.as_object_mut() {
            obj.insert(key.to_owned(), value);
        }
    }

    pub(crate) fn push_event(&mut self, (kind, fields): EventBody) {
        if !self.streamed {
            return;
        }
        let mut event = Map::new();
        event.insert("type".into(), json!(kind));
        event.insert("sequence_number".into(), json!(self.events.len()));
        event.extend(fields);
        self.events.push(Value::Object(event));
    }

    pub(crate) fn push_lifecycle(&mut self, kind: &str) {
        let snapshot = self.snapshot.clone();
        self.push_event((kind.to_owned(), json_map(json!({"response": snapshot}))));
    }

    pub(crate) fn set_status(&mut self, status: Status) {
        debug_assert!(!self.status.is_terminal(), "terminal statuses never move");
        self.status = status;
        self.set("status", json!(status.as_str()));
    }

    /// Moves the response along its plan up to `now`; returns the webhook job if it just
    /// reached a terminal status.
    pub(crate) fn advance(&mut self, id: &str, now: Instant) -> Option<WebhookJob> {
        if self.status == Status::Queued && !self.stuck && now >= self.in_progress_at() {
            self.set_status(Status::InProgress);
            self.push_lifecycle("response.in_progress");
            if self.unknown_events {
                let note = json!({"note": "an event type from the future; clients must skip it"});
                self.push_event(("response.sim_future_event".to_owned(), json_map(note)));
            }
        }
        if self.status != Status::InProgress {
            return None;
        }
        while self.applied < self.generated.steps.len() && now >= self.step_at(self.applied) {
            let step = self.generated.steps[self.applied].clone();
            self.set("output", Value::Array(step.output));
            for event in step.events {
                self.push_event(event);
            }
            self.applied += 1;
        }
        if self.applied < self.generated.steps.len() || now < self.end_at() {
            return None;
        }
        let end = self.end_at();
        let at_unix = self.unix_at(end);
        self.set("output", Value::Array(self.generated.final_output.clone()));
        let status = match &self.generated.outcome {
            Outcome::Completed => {
                self.set("completed_at", json!(at_unix));
                Status::Completed
            }
            Outcome::Failed { code } => {
                let message = match code.as_str() {
                    "server_error" => "The model failed to generate a response.".to_owned(),
                    "vector_store_timeout" => {
                        "Timed out while searching the vector store.".to_owned()
                    }
                    other => format!("The response failed ({other})."),
                };
                self.set("error", json!({"code": code, "message": message}));
                Status::Failed
            }
            Outcome::Incomplete { reason } => {
                self.set("incomplete_details", json!({"reason": reason}));
                Status::Incomplete
            }
        };
        self.set("usage", self.generated.usage.clone().unwrap_or(Value::Null));
        if self.snapshot.get("service_tier") == Some(&json!("auto")) {
            self.set("service_tier", json!("default"));
        }
        self.set_status(status);
        self.terminal_at = Some(end);
        self.push_lifecycle(&format!("response.{}", status.as_str()));
        self.webhook_job(id, status, at_unix)
    }

    pub(crate) fn webhook_job(&self, id: &str, status: Status, at_unix: i64) -> Option<WebhookJob> {
        self.background.then(|| WebhookJob {
            event_type: format!("response.{}", status.as_str()),
            data_id: id.to_owned(),
            created_at: at_unix,
            mode: self.webhook,
            extra_delay: self.webhook_delay,
            answer_lost: self.answer_lost.is_some(),
        })
    }
}

pub(crate) fn json_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
