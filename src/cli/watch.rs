//! `respool jobs watch ID`: a job's life as it happens, from
//! `GET /v1/jobs/{id}/events?follow=true`: a status line per event (time since the job was
//! taken in, status, output tokens so far), its milestones, and the text as it grows (the
//! `text_delta` of each text milestone). Exits when the job ends, with the exit code
//! `respool submit --wait` uses (0 for `completed`, 1 otherwise).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde_json::Value;

use super::ApiClient;
use crate::job::JobStatus;
use crate::upstream::sse::SseParser;
use crate::view::JobView;

/// Reconnections in a row (the daemon restarting, a proxy cutting) before giving up.
const MAX_RECONNECTS: u32 = 30;

/// What the status line shows.
struct Line {
    started_at: i64,
    status: String,
    tokens: u64,
}

impl Line {
    fn prefix(&self, at: i64) -> String {
        let secs = (at - self.started_at).max(0) as f64 / 1000.0;
        format!("[{secs:>7.1}s {:<11} ~{} tok]", self.status, self.tokens)
    }
}

/// Follows job `id` until it ends; prints as it goes.
pub async fn watch(client: &ApiClient, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let enc: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    let job: JobView = client.get(&format!("/v1/jobs/{enc}")).await?;
    let mut line = Line {
        // The job's `created_at` is in seconds, its events' `at` in milliseconds.
        started_at: job.created_at.saturating_mul(1000),
        status: job.status.to_string(),
        tokens: 0,
    };
    if !json {
        println!("watching {} ({}): {}", job.id, job.name, job.status);
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let mut last: Option<i64> = None;
    let mut reconnects = 0u32;
    loop {
        let mut rb = http
            .get(format!(
                "{}/v1/jobs/{enc}/events?follow=true",
                client.base()
            ))
            .header("accept", "text/event-stream");
        if let Some(t) = client.token() {
            rb = rb.bearer_auth(t);
        }
        if let Some(n) = last {
            rb = rb.header("last-event-id", n.to_string());
        }
        let broke = match rb.send().await {
            Ok(resp) if resp.status().is_success() => {
                let mut resp = resp;
                let mut parser = SseParser::new();
                let mut broke = false;
                loop {
                    match resp.chunk().await {
                        Ok(Some(bytes)) => {
                            for ev in parser.push(&bytes) {
                                let Ok(row) = serde_json::from_str::<Value>(&ev.data) else {
                                    continue;
                                };
                                last = row.get("id").and_then(Value::as_i64).or(last);
                                reconnects = 0;
                                show(&row, &mut line, json);
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            broke = true;
                            break;
                        }
                    }
                }
                broke
            }
            Ok(resp) => {
                let status = resp.status();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let msg = body
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)");
                return Err(anyhow!("the daemon answered {status}: {msg}"));
            }
            Err(_) => true,
        };
        // A clean end means the job ended; check, since a daemon that stops also ends it.
        let now: JobView = match client.get(&format!("/v1/jobs/{enc}")).await {
            Ok(v) => v,
            Err(e) if broke => {
                reconnects += 1;
                if reconnects > MAX_RECONNECTS {
                    return Err(e.context("lost the daemon while watching"));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if now.status.is_terminal() {
            if json {
                println!("{}", serde_json::to_string(&now)?);
            } else {
                println!("\n== {} ({}) {} ==", now.name, now.id, now.status);
                if let Some(e) = &now.error {
                    println!("error: {}: {}", e.code, e.message);
                }
            }
            return Ok(if now.status == JobStatus::Completed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        reconnects += 1;
        if reconnects > MAX_RECONNECTS {
            return Err(anyhow!(
                "the timeline stream kept ending before the job did"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Prints one timeline event.
fn show(row: &Value, line: &mut Line, json: bool) {
    if json {
        println!("{row}");
        return;
    }
    let kind = row.get("kind").and_then(Value::as_str).unwrap_or("");
    let at = row
        .get("at")
        .and_then(Value::as_i64)
        .unwrap_or(line.started_at);
    let msg = row.get("message").and_then(Value::as_str).unwrap_or("");
    let data = row.get("data").unwrap_or(&Value::Null);
    if kind == "status"
        && let Some(to) = data.get("to").and_then(Value::as_str)
    {
        line.status = to.to_string();
    }
    if let Some(t) = data.get("tokens_est").and_then(Value::as_u64) {
        line.tokens = t;
    }
    println!("{} {kind}: {msg}", line.prefix(at));
    if kind == "progress"
        && let Some(text) = data.get("text_delta").and_then(Value::as_str)
    {
        println!("{}", text.trim_end());
    }
}
