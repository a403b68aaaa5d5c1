//! What the daemon recorded, read after the run: each job's timeline over the REST API, and
//! its `webhook_deliveries` table from the SQLite file or the PostgreSQL database.

use std::collections::HashMap;

use anyhow::Result;
use futures::StreamExt;
use serde_json::Value;

/// For each response a webhook named: when the daemon's receiver first recorded one (unix ms)
/// and when the daemon handed it off to its job (made the job due for a poll), read from its
/// ledger once it has stopped.
pub async fn webhooks_received(
    ledger: &crate::bench_support::cluster::Ledger,
) -> Result<HashMap<String, (i64, Option<i64>)>> {
    let mut conn = ledger.connect().await?;
    let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT object_id, MIN(received_at), MIN(handled_at) FROM webhook_deliveries \
         WHERE object_id IS NOT NULL GROUP BY object_id",
    )
    .fetch_all(&mut conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, received, handled)| (id, (received, handled)))
        .collect())
}

/// What a job's timeline says.
pub struct Timeline {
    /// The terminal `status` event: when (unix ms) and to what.
    pub terminal: Option<(i64, String)>,
    /// A `webhook` event is in it.
    pub webhook: bool,
}

/// Reads every job's timeline, 16 at a time; `None` for one that could not be read.
pub async fn read_timelines(
    http: &reqwest::Client,
    base: &str,
    ids: Vec<String>,
) -> Vec<(String, Option<Timeline>)> {
    futures::stream::iter(ids)
        .map(|id| async move {
            let url = format!("{base}/v1/jobs/{id}/events");
            let read = async {
                let v: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                let events = v["data"].as_array()?.clone();
                let terminal = events.iter().find_map(|e| {
                    let to = e["data"]["to"].as_str()?;
                    let is_end = e["kind"] == "status"
                        && matches!(to, "completed" | "failed" | "incomplete" | "cancelled");
                    if !is_end {
                        return None;
                    }
                    Some((e["at"].as_i64()?, to.to_owned()))
                });
                let webhook = events.iter().any(|e| e["kind"] == "webhook");
                Some(Timeline { terminal, webhook })
            };
            (id, read.await)
        })
        .buffer_unordered(16)
        .collect()
        .await
}
