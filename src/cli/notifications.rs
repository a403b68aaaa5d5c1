//! `respool notifications list|retry` (over REST) and `respool notify test SINK` (local: builds
//! the sink from the config and sends a sample message through it).

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};

use super::{ApiClient, ServerArgs};
use crate::api::NotificationList;
use crate::clock::Clock;
use crate::notify::Notifier;
use crate::store::NotificationRow;

#[derive(Subcommand, Debug)]
pub enum NotificationsCommand {
    /// List notifications, newest first.
    List(ListArgs),
    /// Send a notification again (a dead letter, say, once its sink is fixed).
    Retry(RetryArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only dead letters (notifications that gave up).
    #[arg(long)]
    pub failed: bool,
    /// Only this state: pending, delivered, dead.
    #[arg(long, conflicts_with = "failed")]
    pub state: Option<String>,
    /// Only this job's notifications.
    #[arg(long)]
    pub job: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct RetryArgs {
    /// The notification id (from `notifications list`).
    pub id: i64,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Subcommand, Debug)]
pub enum NotifyCommand {
    /// Send a sample notification through a sink and report the result.
    Test(TestArgs),
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// The sink's name under `sinks:` in the config.
    pub sink: String,
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or("-".into(), |d| d.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn table(rows: &[NotificationRow]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header([
        "ID",
        "JOB",
        "SINK",
        "EVENT",
        "STATE",
        "TRIES",
        "WHEN",
        "LAST ERROR",
    ]);
    for n in rows {
        let when = match n.state.as_str() {
            "delivered" => n.delivered_at.map_or("-".into(), time),
            "pending" => format!("next {}", time(n.next_attempt_at)),
            _ => time(n.next_attempt_at),
        };
        t.add_row([
            n.id.to_string(),
            n.job_id.to_string(),
            n.sink.clone(),
            n.event.clone(),
            n.state.clone(),
            n.attempts.to_string(),
            when,
            n.last_error.clone().unwrap_or_default(),
        ]);
    }
    t.to_string()
}

pub async fn run(config: Option<&Path>, cmd: NotificationsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NotificationsCommand::List(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            let mut q = vec!["limit=500".to_string()];
            if let Some(s) = a.state.as_deref().or(a.failed.then_some("dead")) {
                q.push(format!("state={s}"));
            }
            if let Some(j) = &a.job {
                q.push(format!(
                    "job_id={}",
                    url::form_urlencoded::byte_serialize(j.as_bytes()).collect::<String>()
                ));
            }
            let list: NotificationList = client
                .get(&format!("/v1/notifications?{}", q.join("&")))
                .await?;
            if a.server.json {
                println!("{}", serde_json::to_string_pretty(&list.data)?);
            } else if list.data.is_empty() {
                println!("no notifications");
            } else {
                println!("{}", table(&list.data));
            }
        }
        NotificationsCommand::Retry(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            let row: NotificationRow = client
                .post(&format!("/v1/notifications/{}/retry", a.id), None, None)
                .await?;
            if a.server.json {
                println!("{}", serde_json::to_string_pretty(&row)?);
            } else {
                println!(
                    "notification {} ({} to `{}`) queued again",
                    row.id, row.event, row.sink
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn test(config_path: Option<&Path>, a: TestArgs) -> anyhow::Result<ExitCode> {
    let config = match super::serve::load_config(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if !config.sinks.contains_key(&a.sink) {
        let names: Vec<&str> = config.sinks.keys().map(String::as_str).collect();
        eprintln!(
            "no sink named `{}` in the config (sinks: {})",
            a.sink,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
        return Ok(ExitCode::FAILURE);
    }
    // The notifier needs a store handle; a throwaway in-memory database keeps this command
    // from touching the daemon's.
    let store = crate::store::Store::connect("sqlite::memory:").await?;
    let notifier = match Notifier::new(store, Clock::system(), std::sync::Arc::new(config)) {
        Ok(n) => n,
        Err((sink, e)) => {
            eprintln!("sink `{sink}`: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match notifier.test_sink(&a.sink).await {
        Ok(()) => {
            println!("sent a sample notification through `{}`", a.sink);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("sink `{}` failed: {e}", a.sink);
            Ok(ExitCode::FAILURE)
        }
    }
}
