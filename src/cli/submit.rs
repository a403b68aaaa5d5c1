//! `respool submit`: a jobs file, or one job from flags; `--wait` follows the jobs with a
//! spinner and prints their output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use super::{ApiClient, ServerArgs, output};
use crate::config::process_env;
use crate::job::JobStatus;
use crate::job::spec::parse_jobs_file_with_blobs;
use crate::view::JobView;

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// A YAML jobs file (`jobs:` and a list of job specs).
    pub file: Option<PathBuf>,
    /// Model of a single job given by flags.
    #[arg(long, conflicts_with = "file")]
    pub model: Option<String>,
    /// Input of a single job given by flags (`-` reads stdin).
    #[arg(long, conflicts_with = "file")]
    pub input: Option<String>,
    /// Instructions of a single job given by flags.
    #[arg(long, conflicts_with = "file")]
    pub instructions: Option<String>,
    /// Name of a single job given by flags.
    #[arg(long, conflicts_with = "file")]
    pub name: Option<String>,
    /// Wait for the jobs to finish, showing their status, then print their output. Jobs that
    /// set no `progress` are sent with `progress: stream` (follow one live with `respool jobs
    /// watch ID`).
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn submit(config: Option<&Path>, a: SubmitArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::from_args(config, &a.server)?;
    let bodies: Vec<Value> = match (&a.file, &a.model, &a.input) {
        (Some(file), _, _) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let parsed = parse_jobs_file_with_blobs(
                &file.display().to_string(),
                &text,
                &process_env,
                &crate::reload::beside(file),
            )
            .map_err(|errs| {
                anyhow::anyhow!(
                    errs.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })?;
            // Scheduled entries are templates: they run from the daemon's `jobs_file`.
            let (templates, specs): (Vec<_>, Vec<_>) =
                parsed.specs.into_iter().partition(|s| s.schedule.is_some());
            // The files the jobs attach go first: a job names them by id.
            let mut blobs = parsed.blobs;
            blobs.retain(|id, _| specs.iter().any(|s| s.attachments.contains(id)));
            client.upload_attachments(&blobs).await?;
            for t in &templates {
                eprintln!(
                    "skipping `{}`: it has a schedule (schedules run from the daemon's `jobs_file`; \
                     see `respool schedules`)",
                    t.name
                );
            }
            // A job that runs `after` another one goes after it, and names it by its id.
            crate::job::chain::in_intake_order(specs)
                .into_iter()
                .map(|s| Value::Object(s.to_rest_body()))
                .collect()
        }
        (None, Some(model), Some(input)) => {
            let input = if input == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the input from stdin")?
            } else {
                input.clone()
            };
            let mut body = json!({"model": model, "input": input});
            if let Some(i) = &a.instructions {
                body["instructions"] = json!(i);
            }
            if let Some(n) = &a.name {
                body["name"] = json!(n);
            }
            vec![body]
        }
        _ => bail!("give a jobs file, or both --model and --input"),
    };
    let mut bodies = bodies;
    if a.wait {
        // Someone waiting watches it: live progress unless the job says otherwise.
        for body in &mut bodies {
            if let Some(b) = body.as_object_mut() {
                b.entry("progress").or_insert_with(|| json!("stream"));
            }
        }
    }
    let mut submitted: Vec<JobView> = Vec::new();
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for body in &bodies {
        let body = with_after_id(body, &ids);
        let job: JobView = client.post("/v1/jobs", Some(&body), None).await?;
        ids.insert(job.name.clone(), job.id.clone());
        if !a.server.json {
            println!("submitted {} ({})", job.id, job.name);
        }
        submitted.push(job);
    }
    if !a.wait {
        if a.server.json {
            println!("{}", serde_json::to_string_pretty(&submitted)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let finished = wait_for(&client, &submitted, !a.server.json).await?;
    if a.server.json {
        println!("{}", serde_json::to_string_pretty(&finished)?);
    } else {
        for j in &finished {
            println!("\n== {} ({}) {} ==", j.name, j.id, output::status(j.status));
            if let Some(e) = &j.error {
                println!("error: {}: {}", e.code, e.message);
            }
            if let Some(t) = &j.output_text {
                println!("{t}");
            }
        }
    }
    let all_ok = finished.iter().all(|j| j.status == JobStatus::Completed);
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `body` with its `after` (a name of a job sent before it) made that job's id.
pub(super) fn with_after_id(body: &Value, ids: &BTreeMap<String, String>) -> Value {
    let mut body = body.clone();
    if let Some(id) = body
        .get("after")
        .and_then(Value::as_str)
        .and_then(|a| ids.get(a))
        .cloned()
    {
        body["after"] = Value::String(id);
    }
    body
}

/// Polls the daemon until every job is terminal, with a spinner on a terminal.
async fn wait_for(
    client: &ApiClient,
    jobs: &[JobView],
    show: bool,
) -> anyhow::Result<Vec<JobView>> {
    let spinner = if show && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(Duration::from_millis(120));
        Some(pb)
    } else {
        None
    };
    let mut latest: BTreeMap<String, JobView> = BTreeMap::new();
    loop {
        for j in jobs {
            let v: JobView = client.get(&format!("/v1/jobs/{}", j.id)).await?;
            latest.insert(j.id.clone(), v);
        }
        let summary: Vec<String> = latest
            .values()
            .map(|j| format!("{}: {}", j.name, j.status))
            .collect();
        if let Some(pb) = &spinner {
            pb.set_message(summary.join("  "));
        }
        if latest.values().all(|j| j.status.is_terminal()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    Ok(jobs.iter().filter_map(|j| latest.remove(&j.id)).collect())
}
