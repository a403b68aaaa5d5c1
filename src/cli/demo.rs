//! `respool demo`: the whole flow with no API key and no network. Starts the simulator and the
//! daemon in process, submits the example jobs over the REST API, shows them progressing and
//! prints their results.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use clap::Args;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{ApiClient, LogFormat, output};
use crate::app::Application;
use crate::clock::Clock;
use crate::config::{
    Config, NotifyConfig, PollingConfig, SinkConfig, UpstreamConfig, WebhookConfig, process_env,
};
use crate::job::JobStatus;
use crate::job::spec::parse_jobs_file_with_blobs;
use crate::sim::{Faults, SimConfig};
use crate::view::JobView;

/// The example jobs, embedded so the demo runs from anywhere.
const EXAMPLE_JOBS: &str = include_str!("../../jobs.example.yaml");

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Use this jobs file instead of the embedded example.
    #[arg(long)]
    pub jobs: Option<PathBuf>,
    /// Share of webhooks the simulator loses, to show polling catching them.
    #[arg(long, default_value_t = 0.34)]
    pub webhook_loss: f64,
    /// Give up after this long.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub async fn demo(args: DemoArgs, log: LogFormat) -> anyhow::Result<ExitCode> {
    // The demo narrates itself; the daemon's log is kept to warnings unless RESPOOL_LOG says.
    init_quiet_logging(log);
    let (name, text) = match &args.jobs {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        ),
        None => (
            "jobs.example.yaml (embedded)".to_string(),
            EXAMPLE_JOBS.to_string(),
        ),
    };
    let files: Box<dyn crate::job::spec::JobFiles> = match &args.jobs {
        Some(p) => Box::new(crate::reload::beside(p)),
        None => Box::new(crate::job::spec::NoFiles),
    };
    let parsed =
        parse_jobs_file_with_blobs(&name, &text, &process_env, files.as_ref()).map_err(|e| {
            anyhow::anyhow!(
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
    let mut specs = parsed.specs;
    // Scheduled entries are templates for a daemon's `jobs_file`, not jobs to run now.
    specs.retain(|s| s.schedule.is_none());

    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    );
    let sim = crate::sim::spawn(SimConfig {
        queue_time: Duration::from_millis(800),
        run_time: Duration::from_secs(3),
        faults: Faults {
            webhook_drop: args.webhook_loss.clamp(0.0, 1.0),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        database: Some(dir.path().join("demo.db").display().to_string()),
        upstream: UpstreamConfig {
            base_url: sim.base_url(),
            api_key: Some(SecretString::from("sk-demo-not-a-real-key")),
            ..UpstreamConfig::default()
        },
        webhook: WebhookConfig {
            secrets: vec![SecretString::from(secret.clone())],
            ..WebhookConfig::default()
        },
        polling: PollingConfig {
            min_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(4),
            ..PollingConfig::default()
        },
        sinks: [("console".to_string(), SinkConfig::Console {})].into(),
        notify: NotifyConfig {
            default: vec!["console".into()],
            ..NotifyConfig::default()
        },
        // The jobs file is the user's own, run on their machine: its handlers may run.
        actions: respool_actions(),
        ..Config::default()
    };
    let app = Application::build(config, Clock::system()).await?;
    let addr = app.addr();
    sim.set_webhook_target(Some(format!("http://{addr}/webhooks/openai")), vec![secret]);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    println!(
        "respool demo: simulator at {}, daemon at http://{addr}",
        sim.base_url()
    );
    println!(
        "the simulator loses {:.0}% of webhooks; polling picks those jobs up.\n",
        args.webhook_loss * 100.0
    );
    let client = ApiClient::new(&format!("http://{addr}"), None);
    client.upload_attachments(&parsed.blobs).await?;
    let mut ids = Vec::new();
    let mut by_name = BTreeMap::new();
    // A job that runs `after` another one goes after it, and names it by its id.
    let specs = crate::job::chain::in_intake_order(specs);
    for s in &specs {
        // Every key of the job but its sinks (the demo tells its console).
        let mut body = s.to_rest_body();
        body.remove("notify");
        if let Some(t) = s.timeout {
            body.insert("timeout".into(), json!(t.as_secs().max(1)));
        }
        let body = super::submit::with_after_id(&Value::Object(body), &by_name);
        let job: JobView = client.post("/v1/jobs", Some(&body), None).await?;
        by_name.insert(job.name.clone(), job.id.clone());
        println!("  submitted {:<28} {}", job.name, job.id);
        ids.push(job.id);
    }
    println!();

    let started = Instant::now();
    let mut last: BTreeMap<String, JobStatus> = BTreeMap::new();
    let mut jobs: Vec<JobView> = Vec::new();
    let finished = loop {
        jobs.clear();
        for id in &ids {
            let j: JobView = client.get(&format!("/v1/jobs/{id}")).await?;
            if last.get(id) != Some(&j.status) {
                println!(
                    "  [{:>5.1}s] {:<28} {}",
                    started.elapsed().as_secs_f64(),
                    j.name,
                    output::status(j.status)
                );
                last.insert(id.clone(), j.status);
            }
            jobs.push(j);
        }
        // A job waiting for a person stops the demo too: it says how to answer.
        if jobs
            .iter()
            .all(|j| j.status.is_terminal() || j.status == JobStatus::RequiresAction)
        {
            break true;
        }
        if started.elapsed() > args.timeout {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    println!("\nresults:");
    for j in &jobs {
        let events: Value = client.get(&format!("/v1/jobs/{}/events", j.id)).await?;
        let learned = events["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == "status")
            .filter_map(|e| e["data"]["source"].as_str())
            .next_back()
            .unwrap_or("-")
            .to_string();
        let via_webhook = events["data"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["kind"] == "webhook");
        println!(
            "\n== {} — {} — {} tokens — finish learned by {} ==",
            j.name,
            output::status(j.status),
            output::tokens(&j.usage),
            if via_webhook {
                "webhook".to_string()
            } else {
                format!("{learned} (no webhook arrived)")
            }
        );
        if let Some(e) = &j.error {
            println!("error: {}: {}", e.code, e.message);
        }
        let pretty = j
            .output_json
            .as_ref()
            .and_then(|v| serde_json::to_string_pretty(v).ok());
        if let Some(t) = pretty.as_ref().or(j.output_text.as_ref()) {
            for line in t.lines().take(8) {
                println!("  {line}");
            }
            if t.lines().count() > 8 {
                let format = if pretty.is_some() {
                    " --format json"
                } else {
                    ""
                };
                println!("  … (respool jobs output {}{format})", j.id);
            }
        }
        let artifacts: crate::api::ArtifactList =
            client.get(&format!("/v1/jobs/{}/artifacts", j.id)).await?;
        if !artifacts.data.is_empty() {
            println!("  artifacts:");
            for a in &artifacts.data {
                match &a.error {
                    None => println!(
                        "    {} ({}, {})",
                        a.name,
                        a.media_type,
                        crate::notify::human_bytes(a.bytes)
                    ),
                    Some(e) => println!("    {} not kept: {e}", a.name),
                }
            }
        }
    }
    let stats = sim.stats();
    let doubles = stats.creates_by_job_id.values().filter(|n| **n > 1).count();
    println!(
        "\nsimulator: {} creates ({} submitted twice), {} polls, {} webhooks delivered, {} lost",
        stats.creates, doubles, stats.retrieves, stats.webhooks_delivered, stats.webhooks_dropped
    );
    shutdown.cancel();
    let _ = server.await;
    sim.shutdown().await;
    if !finished {
        eprintln!(
            "demo: jobs did not finish within {}",
            humantime::format_duration(args.timeout)
        );
        return Ok(ExitCode::FAILURE);
    }
    let ok = jobs.iter().all(|j| j.status == JobStatus::Completed) && doubles == 0;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn init_quiet_logging(format: LogFormat) {
    super::logging::init_logging_with(format, "warn");
}

/// The demo's `actions`: a jobs file's own handlers run (it is the user's, on their machine).
fn respool_actions() -> crate::config::ActionsConfig {
    crate::config::ActionsConfig {
        job_handlers: true,
        ..Default::default()
    }
}
