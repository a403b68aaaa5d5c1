//! `/healthz` (alive), `/readyz` (database writable) and `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::{ApiError, AppState};
use crate::job::JobStatus;

pub async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.orchestrator.store().check_writable().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        ),
        Err(e) => {
            tracing::error!(error = %crate::orchestrator::chain(&e), "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "database unavailable"})),
            )
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let store = state.orchestrator.store();
    let counts = store.count_by_status().await?;
    let mut out = String::from(
        "# HELP respool_jobs Jobs in the ledger by status.\n# TYPE respool_jobs gauge\n",
    );
    for s in JobStatus::ALL {
        let n = counts
            .iter()
            .find(|(k, _)| k == s.as_str())
            .map_or(0, |(_, n)| *n);
        out.push_str(&format!("respool_jobs{{status=\"{s}\"}} {n}\n"));
    }
    out.push_str(&format!(
        "# HELP respool_webhook_deliveries Verified webhook deliveries recorded.\n# TYPE respool_webhook_deliveries gauge\nrespool_webhook_deliveries {}\n",
        store.count_deliveries().await?
    ));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
