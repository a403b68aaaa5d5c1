//! The intake: every job POSTed to `/v1/jobs` at once, over a number of connections, each
//! with its upstream time in `metadata.sim`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::bench_support;

/// What the intake did.
pub struct Intake {
    /// (job id, planned upstream ms) of each accepted job.
    pub ids: Vec<(String, u64)>,
    pub hist: Histogram<u64>,
    pub errors: usize,
    pub first_error: Option<String>,
}

/// POSTs one job per plan, `concurrency` at a time.
pub async fn submit_all(
    http: &reqwest::Client,
    base: &str,
    plans: &[u64],
    concurrency: usize,
) -> Result<Intake> {
    let plans: Arc<Vec<u64>> = Arc::new(plans.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.min(plans.len()) {
        let (http, url, plans, next) = (
            http.clone(),
            format!("{base}/v1/jobs"),
            plans.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            let mut part = Intake {
                ids: Vec::new(),
                hist: bench_support::histogram()?,
                errors: 0,
                first_error: None,
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&total_ms) = plans.get(i) else {
                    break;
                };
                let queue_ms = total_ms / 10;
                let body = json!({
                    "name": format!("scale-{}", i % 50),
                    "model": "gpt-5",
                    "input": format!("Scale bench job {i}: survey the market for industrial heat pumps in Europe and report the five largest vendors with sources."),
                    "metadata": {
                        "bench": "scale",
                        "sim": format!("queue={queue_ms}ms;run={}ms", total_ms - queue_ms),
                    },
                });
                let started = Instant::now();
                let sent = http.post(&url).json(&body).send().await;
                let answer = match sent {
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        (status, text)
                    }
                    Err(e) => {
                        bench_support::record(&mut part.hist, started.elapsed());
                        part.errors += 1;
                        part.first_error.get_or_insert_with(|| e.to_string());
                        continue;
                    }
                };
                bench_support::record(&mut part.hist, started.elapsed());
                let id = serde_json::from_str::<Value>(&answer.1)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned));
                match (answer.0.as_u16(), id) {
                    (201, Some(id)) => part.ids.push((id, total_ms)),
                    (status, _) => {
                        part.errors += 1;
                        part.first_error
                            .get_or_insert_with(|| format!("{status}: {}", answer.1));
                    }
                }
            }
            anyhow::Ok(part)
        });
    }
    let mut all = Intake {
        ids: Vec::with_capacity(plans.len()),
        hist: bench_support::histogram()?,
        errors: 0,
        first_error: None,
    };
    while let Some(part) = tasks.join_next().await {
        let part = part.context("a submitting task panicked")??;
        all.ids.extend(part.ids);
        all.hist.add(&part.hist)?;
        all.errors += part.errors;
        all.first_error = all.first_error.or(part.first_error);
    }
    Ok(all)
}
