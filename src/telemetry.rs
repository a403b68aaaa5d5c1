//! Metrics: every name respool exports, and the Prometheus rendering behind `GET /metrics`.
//!
//! Two kinds, kept apart on purpose:
//! - **Events** (submissions, polls, webhook deliveries, upstream calls, notifications) are
//!   counted as they happen into the process-wide recorder of the `metrics` crate, installed
//!   once by [`install`] (idempotent: tests start many daemons in one process).
//! - **State** (jobs by status, queue depths, spend) is read from the database at scrape time
//!   and rendered by a recorder made for that one scrape ([`render`]), so two daemons in one
//!   process never show each other's numbers.
//!
//! Both come out of `metrics-exporter-prometheus`; there is no second HTTP server, the axum
//! route renders the text.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const SUBMISSIONS: &str = "respool_submissions_total";
const WEBHOOK_DELIVERIES: &str = "respool_webhook_deliveries_total";
const WEBHOOK_BATCH: &str = "respool_webhook_batch_size";
const WEBHOOK_LOOKUPS: &str = "respool_webhook_lookups_total";
const POLLS: &str = "respool_polls_total";
const UPSTREAM_DURATION: &str = "respool_upstream_request_duration_seconds";
const UPSTREAM_ERRORS: &str = "respool_upstream_errors_total";
const NOTIFICATIONS: &str = "respool_notifications_total";
const DUPLICATES: &str = "respool_duplicate_responses_total";
const QUARANTINED: &str = "respool_quarantined_jobs_total";
const WORKER_PASSES: &str = "respool_worker_passes_total";
const PEER_WAKES: &str = "respool_peer_wakes_total";

/// Buckets of the webhook batch-size histogram (deliveries per transaction).
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 256.0, 1024.0];

/// Buckets of the upstream latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static GLOBAL: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
/// When the global recorder's upkeep last ran (unix seconds).
static LAST_UPKEEP: AtomicU64 = AtomicU64::new(0);

/// Installs the process-wide recorder, once; later calls return the same handle. `None` if
/// another recorder was installed first (then events are not exported; state still is).
pub fn install() -> Option<&'static PrometheusHandle> {
    GLOBAL
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(UPSTREAM_DURATION.into()), &LATENCY_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full(WEBHOOK_BATCH.into()), &BATCH_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe_events();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot install the metrics recorder; /metrics shows state only");
                    None
                }
            }
        })
        .as_ref()
}

fn describe_events() {
    describe_counter!(
        SUBMISSIONS,
        "Create calls by outcome: accepted, refused, retried (surely not received; sent again later), uncertain."
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook deliveries received by result (accepted, duplicate, rejected) and rejection reason."
    );
    describe_histogram!(
        WEBHOOK_BATCH,
        metrics::Unit::Count,
        "Webhook deliveries recorded per transaction (group commit: one fsync per batch)."
    );
    describe_counter!(
        WEBHOOK_LOOKUPS,
        "Look-ups of responses that deliveries name and no job knows, by outcome: started (a GET \
         now), booked (a later time, over webhook.lookups_per_second), given_up (after 12)."
    );
    describe_counter!(
        POLLS,
        "Polls of upstream responses by result: changed, unchanged, not_found, error."
    );
    describe_histogram!(
        UPSTREAM_DURATION,
        metrics::Unit::Seconds,
        "Upstream HTTP request latency by endpoint (create, retrieve, cancel, probe, other)."
    );
    describe_counter!(
        UPSTREAM_ERRORS,
        "Failed upstream requests by endpoint and status code (or connect_error, timeout, transport_error)."
    );
    describe_counter!(
        NOTIFICATIONS,
        "Notification delivery attempts by sink and result: delivered, retry, dead."
    );
    describe_counter!(
        DUPLICATES,
        "Looks at duplicate responses (a second run of a job: cancelled and kept as paid) by how they were found."
    );
    describe_counter!(
        QUARANTINED,
        "Jobs set aside because their stored row does not decode, by the worker that found them."
    );
    describe_counter!(
        WORKER_PASSES,
        "Passes of the orchestrator's workers (ledger, submit, outbox): each looks for due work."
    );
    describe_counter!(
        PEER_WAKES,
        "Wake-ups heard from other daemons on the same PostgreSQL database (LISTEN/NOTIFY)."
    );
}

/// Drains histogram samples into their buckets now and then (the recorder keeps raw samples
/// until then). Cheap to call often.
pub fn upkeep(now_secs: u64) {
    if let Some(h) = GLOBAL.get().and_then(Option::as_ref)
        && now_secs.saturating_sub(LAST_UPKEEP.load(Ordering::Relaxed)) >= 5
    {
        LAST_UPKEEP.store(now_secs, Ordering::Relaxed);
        h.run_upkeep();
    }
}

/// A create call's outcome: `accepted`, `refused`, `retried` or `uncertain`.
pub fn submission(outcome: &'static str) {
    counter!(SUBMISSIONS, "outcome" => outcome).increment(1);
}

/// A batch of webhook deliveries recorded in one transaction, by its size.
pub fn webhook_batch(size: usize) {
    histogram!(WEBHOOK_BATCH).record(size as f64);
}

/// Look-ups of unknown responses a hand-off started, booked later, and gave up.
pub fn webhook_lookups(started: usize, booked: usize, given_up: usize) {
    for (outcome, n) in [
        ("started", started),
        ("booked", booked),
        ("given_up", given_up),
    ] {
        if n > 0 {
            counter!(WEBHOOK_LOOKUPS, "outcome" => outcome).increment(n as u64);
        }
    }
}

/// A webhook delivery: `accepted`, `duplicate` or `rejected` (with a reason such as
/// `bad_signature`).
pub fn webhook_delivery(result: &'static str, reason: Option<&'static str>) {
    match reason {
        Some(reason) => {
            counter!(WEBHOOK_DELIVERIES, "result" => result, "reason" => reason).increment(1)
        }
        None => counter!(WEBHOOK_DELIVERIES, "result" => result).increment(1),
    }
}

/// A duplicate response looked at (cancelled or recorded), by how it was found (`create`,
/// `webhook`, `journal`).
pub fn duplicate(found_by: &str) {
    counter!(DUPLICATES, "found_by" => found_by.to_string()).increment(1);
}

/// A job set aside because its row does not decode, by the worker that found it.
pub fn quarantined(worker: &'static str) {
    counter!(QUARANTINED, "worker" => worker).increment(1);
}

/// A pass of an orchestrator worker (`ledger`, `submit`, `outbox`).
pub fn worker_pass(worker: &'static str) {
    counter!(WORKER_PASSES, "worker" => worker).increment(1);
}

/// Another daemon on the database said there is new work (PostgreSQL's `NOTIFY`).
pub fn peer_wake() {
    counter!(PEER_WAKES).increment(1);
}

/// A poll: `changed`, `unchanged`, `not_found` or `error`.
pub fn poll(result: &'static str) {
    counter!(POLLS, "result" => result).increment(1);
}

/// One upstream HTTP request: its latency, and its error (a status code or a code such as
/// `connect_error`) if it failed.
pub fn upstream_request(endpoint: &'static str, took: Duration, error: Option<&str>) {
    histogram!(UPSTREAM_DURATION, "endpoint" => endpoint).record(took.as_secs_f64());
    if let Some(status) = error {
        counter!(UPSTREAM_ERRORS, "endpoint" => endpoint, "status" => status.to_string())
            .increment(1);
    }
}

/// A notification delivery attempt: `delivered`, `retry` or `dead`.
pub fn notification(sink: &str, result: &'static str) {
    counter!(NOTIFICATIONS, "sink" => sink.to_string(), "result" => result).increment(1);
}

/// The state shown at scrape time, read from one daemon's database.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The database backend the daemon runs on (`sqlite`, `postgres`).
    pub backend: &'static str,
    /// Jobs by status (pruned jobs kept as summaries included).
    pub jobs_by_status: Vec<(String, i64)>,
    /// Verified webhook deliveries on record.
    pub webhook_deliveries: i64,
    /// Queue depths: (queue, depth).
    pub queues: Vec<(&'static str, i64)>,
    /// Spend and limits: (period, spent, limit).
    pub budget: Vec<(&'static str, f64, Option<f64>)>,
}

/// The Prometheus text for `GET /metrics`: `state`, then every event metric.
pub fn render(state: &State) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || {
        describe_gauge!(
            "respool_database_info",
            "Always 1; the label says which database the daemon runs on (sqlite, postgres)."
        );
        gauge!("respool_database_info", "backend" => state.backend).set(1.0);
        describe_gauge!(
            "respool_jobs",
            "Jobs by status (pruned jobs kept as summaries included)."
        );
        for (status, n) in &state.jobs_by_status {
            gauge!("respool_jobs", "status" => status.clone()).set(*n as f64);
        }
        describe_gauge!(
            "respool_webhook_deliveries",
            "Verified webhook deliveries on record (pruned after 7 days)."
        );
        gauge!("respool_webhook_deliveries").set(state.webhook_deliveries as f64);
        describe_gauge!(
            "respool_queue_depth",
            "Work waiting: pending (to submit), held (by a budget), due_polls, outbox_pending."
        );
        for (queue, n) in &state.queues {
            gauge!("respool_queue_depth", "queue" => *queue).set(*n as f64);
        }
        describe_gauge!(
            "respool_budget_spent_usd",
            "Spend in the current budget period (day, month)."
        );
        describe_gauge!(
            "respool_budget_limit_usd",
            "The configured budget of the period (day, month)."
        );
        for (period, spent, limit) in &state.budget {
            gauge!("respool_budget_spent_usd", "period" => *period).set(*spent);
            if let Some(limit) = limit {
                gauge!("respool_budget_limit_usd", "period" => *period).set(*limit);
            }
        }
    });
    let mut out = recorder.handle().render();
    if let Some(global) = install() {
        global.run_upkeep();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&global.render());
    }
    out
}

/// An error and its sources on one line, for logs.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_state_and_events_as_valid_prometheus_text() {
        install();
        submission("accepted");
        upstream_request("create", Duration::from_millis(20), None);
        upstream_request("create", Duration::from_millis(20), Some("429"));
        let text = render(&State {
            backend: "postgres",
            jobs_by_status: vec![("pending".into(), 2), ("completed".into(), 5)],
            webhook_deliveries: 3,
            queues: vec![("pending", 2), ("held", 0)],
            budget: vec![("day", 1.5, Some(20.0))],
        });
        assert!(
            text.contains("respool_jobs{status=\"pending\"} 2"),
            "{text}"
        );
        assert!(text.contains("respool_webhook_deliveries 3"), "{text}");
        assert!(
            text.contains("respool_database_info{backend=\"postgres\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("respool_budget_spent_usd{period=\"day\"} 1.5"),
            "{text}"
        );
        assert!(
            text.contains("respool_upstream_request_duration_seconds_bucket{endpoint=\"create\""),
            "{text}"
        );
        assert!(
            text.contains("respool_upstream_errors_total{endpoint=\"create\",status=\"429\"}"),
            "{text}"
        );
    }
}
