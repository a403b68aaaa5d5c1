//! `respool jobs list|show|output|events|cancel`.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{ApiClient, ServerArgs, output};
use crate::api::{JobList, JobView};

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List(ListArgs),
    /// Show a job and its timeline.
    Show(IdArgs),
    /// Print a job's output text (`--json`: the whole stored response).
    Output(IdArgs),
    /// Print a job's timeline.
    Events(IdArgs),
    /// Cancel a job (upstream too, if it was submitted).
    Cancel(IdArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this status (pending, queued, in_progress, completed, failed, incomplete, cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// Only jobs with this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Only jobs using this model.
    #[arg(long)]
    pub model: Option<String>,
    /// Only jobs whose name, input or output contains these words (all of them).
    #[arg(long)]
    pub search: Option<String>,
    /// Only jobs with this metadata `key=value` (repeat for several; all must match).
    #[arg(long, value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
    /// Only jobs created since (`7d`, `2h`, or an RFC 3339 time).
    #[arg(long)]
    pub since: Option<String>,
    /// Output format: `table` (default), `json` (same as `--json`) or `jsonl` (one job a line).
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// How many jobs to show (all pages are fetched as needed).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// How `respool jobs list` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
    Jsonl,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    /// The job id (`job_…`).
    pub id: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn run(config: Option<&Path>, cmd: JobsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        JobsCommand::List(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            let mut jobs: Vec<JobView> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut q = vec![format!("limit={}", (a.limit - jobs.len()).clamp(1, 100))];
                for kv in &a.metadata {
                    if !kv.contains('=') {
                        anyhow::bail!("--metadata takes KEY=VALUE, not `{kv}`");
                    }
                    q.push(format!("metadata={}", enc(kv)));
                }
                for (k, v) in [
                    ("status", &a.status),
                    ("name", &a.name),
                    ("model", &a.model),
                    ("search", &a.search),
                    ("since", &a.since),
                    ("after", &cursor),
                ] {
                    if let Some(v) = v {
                        q.push(format!("{k}={}", enc(v)));
                    }
                }
                let page: JobList = client.get(&format!("/v1/jobs?{}", q.join("&"))).await?;
                jobs.extend(page.data);
                if !page.has_more || jobs.len() >= a.limit {
                    break;
                }
                cursor = page.next_cursor;
            }
            if a.server.json || a.format == ListFormat::Json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else if a.format == ListFormat::Jsonl {
                for j in &jobs {
                    println!("{}", serde_json::to_string(j)?);
                }
            } else if jobs.is_empty() {
                println!("no jobs");
            } else {
                println!("{}", output::jobs_table(&jobs));
            }
        }
        JobsCommand::Show(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            let job: JobView = client.get(&format!("/v1/jobs/{}", enc(&a.id))).await?;
            let events: Value = client
                .get(&format!("/v1/jobs/{}/events", enc(&a.id)))
                .await?;
            if a.server.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"job": job, "events": events["data"]})
                    )?
                );
            } else {
                print!("{}", output::job_details(&job));
                if let Some(text) = &job.output_text {
                    let excerpt: String = text.chars().take(400).collect();
                    let more = if text.chars().count() > 400 {
                        "…"
                    } else {
                        ""
                    };
                    println!(
                        "\noutput (`respool jobs output {}` for all of it):\n{excerpt}{more}",
                        job.id
                    );
                }
                let list = events["data"].as_array().cloned().unwrap_or_default();
                println!("\ntimeline:\n{}", output::events_table(&list));
                let notes: Value = client
                    .get(&format!("/v1/notifications?job_id={}", enc(&a.id)))
                    .await?;
                let notes = notes["data"].as_array().cloned().unwrap_or_default();
                if !notes.is_empty() {
                    println!("\nnotifications:");
                    for n in notes {
                        let err = n["last_error"]
                            .as_str()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default();
                        println!(
                            "  #{} {} → {}: {} after {} tries{err}",
                            n["id"],
                            n["event"].as_str().unwrap_or(""),
                            n["sink"].as_str().unwrap_or(""),
                            n["state"].as_str().unwrap_or(""),
                            n["attempts"]
                        );
                    }
                }
            }
        }
        JobsCommand::Output(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            if a.server.json {
                let resp: Value = client
                    .get(&format!("/v1/jobs/{}/response", enc(&a.id)))
                    .await?;
                println!("{}", serde_json::to_string_pretty(&resp)?);
            } else {
                let job: JobView = client.get(&format!("/v1/jobs/{}", enc(&a.id))).await?;
                match job.output_text {
                    Some(t) => println!("{t}"),
                    None => {
                        eprintln!("job {} has no output (status {})", job.id, job.status);
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
        }
        JobsCommand::Events(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            let events: Value = client
                .get(&format!("/v1/jobs/{}/events", enc(&a.id)))
                .await?;
            if a.server.json {
                println!("{}", serde_json::to_string_pretty(&events["data"])?);
            } else {
                println!(
                    "{}",
                    output::events_table(events["data"].as_array().map_or(&[][..], |v| v))
                );
            }
        }
        JobsCommand::Cancel(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            let job: JobView = client
                .post(&format!("/v1/jobs/{}/cancel", enc(&a.id)), None, None)
                .await?;
            if a.server.json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                print!("{}", output::job_details(&job));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
