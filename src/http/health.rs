//! `/healthz` (alive), `/readyz` (the main database takes a write, and upstream is reachable) and `/metrics`
//! (Prometheus text, rendered by [`crate::telemetry`]).

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::{ApiError, AppState};
use crate::job::JobStatus;

/// Upstream counts as reachable when a call reached it this recently; otherwise `/readyz`
/// probes it (a free `GET` of a response id that cannot exist, expecting 404).
pub const UPSTREAM_RECENT: Duration = Duration::from_secs(300);
/// How long the database part of `/readyz` may take (waiting for a pooled connection and for
/// the write lock included) before it answers 503.
pub const DATABASE_CHECK_LIMIT: Duration = Duration::from_secs(3);

pub async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// 200 when the database accepts writes and upstream answered lately (or answers a probe);
/// else 503 with the reason.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match readiness(&state).await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        ),
        Err(reason) => {
            tracing::warn!(reason = %reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "not ready", "reason": reason})),
            )
        }
    }
}

/// Why the daemon is not ready, if it is not.
async fn readiness(state: &AppState) -> Result<(), String> {
    let written = tokio::time::timeout(
        DATABASE_CHECK_LIMIT,
        state.store.check_writable(state.clock.now_ms()),
    )
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %crate::telemetry::chain(&e), "readiness: database check failed");
            return Err(format!("database unavailable: {e}"));
        }
        Err(_) => {
            return Err(format!(
                "database unavailable: no write went through within {} (the connection pool is \
                 exhausted or the database is stuck)",
                humantime::format_duration(DATABASE_CHECK_LIMIT)
            ));
        }
    }
    let client = state.orchestrator.client();
    if client.last_reached().is_some_and(|d| d <= UPSTREAM_RECENT) {
        return Ok(());
    }
    client.probe().await.map_err(|e| match e.status() {
        Some(401 | 403) => format!(
            "upstream refuses our credentials ({}): check upstream.api_key",
            e.describe()
        ),
        _ => format!("upstream unreachable: {}", e.describe()),
    })
}

pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let orch = &state.orchestrator;
    let store = &state.store;
    let ledger = store.count_by_status().await?;
    let summaries = store.count_summaries_by_status().await?;
    let count = |rows: &[(String, i64)], s: JobStatus| {
        rows.iter()
            .find(|(k, _)| k == s.as_str())
            .map_or(0, |(_, n)| *n)
    };
    let q = store.queue_depths(state.clock.now_ms()).await?;
    // Every model of the built-in price table has a price, so spend is always known.
    let budget = {
        let b = orch.budget_status().await?;
        vec![
            ("day", b.day.spent_usd, b.day.limit_usd),
            ("month", b.month.spent_usd, b.month.limit_usd),
        ]
    };
    let state = crate::telemetry::State {
        backend: store.backend().name(),
        jobs_by_status: JobStatus::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_string(),
                    count(&ledger, *s) + count(&summaries, *s),
                )
            })
            .collect(),
        webhook_deliveries: store.count_deliveries().await?,
        queues: vec![
            ("pending", q.pending),
            ("held", q.held),
            ("due_polls", q.due_polls),
            ("outbox_pending", q.outbox_pending),
        ],
        budget,
    };
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::render(&state),
    ))
}
