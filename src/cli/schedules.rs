//! `respool schedules` (over REST): the jobs file's schedules with their next and last runs.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};

use super::{ApiClient, ServerArgs};
use crate::api::{ScheduleList, ScheduleView};

#[derive(Args, Debug)]
pub struct SchedulesArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `2026-03-29 03:00:00 +02:00` from an RFC 3339 time.
fn local(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t).map_or_else(
        |_| t.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S %:z").to_string(),
    )
}

/// `2026-03-29 01:00:00` (UTC) from unix seconds.
fn utc(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map_or("-".into(), |d| d.format("%Y-%m-%d %H:%M:%S").to_string())
}

pub fn table(schedules: &[ScheduleView]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header([
        "NAME",
        "CRON",
        "TIME ZONE",
        "NEXT RUN (LOCAL)",
        "NEXT RUN (UTC)",
        "LAST RUN (UTC)",
        "LAST JOB",
        "OVERLAP",
        "CATCH-UP",
        "LAST SKIPPED (UTC)",
    ]);
    for s in schedules {
        let (next_local, next_utc) = match (&s.next_run_local, s.next_run_at) {
            _ if !s.active => ("(removed from the jobs file)".to_string(), "-".to_string()),
            (Some(l), Some(at)) => (local(l), utc(at)),
            _ => ("never".to_string(), "-".to_string()),
        };
        let (last_at, last_job) = match &s.last_run {
            Some(r) => (
                utc(r.scheduled_for),
                format!(
                    "{} {}{}",
                    r.job_id.as_deref().unwrap_or("-"),
                    r.status.as_deref().unwrap_or("(pruned)"),
                    if r.waiting { " (waiting)" } else { "" }
                ),
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        let skipped = match &s.last_skipped {
            Some(k) => format!(
                "{} ({}; {} in all)",
                utc(k.scheduled_for),
                k.reason.as_deref().unwrap_or("skipped"),
                s.skipped_count
            ),
            None => "-".to_string(),
        };
        t.add_row([
            s.name.clone(),
            s.cron.clone(),
            s.timezone.clone(),
            next_local,
            next_utc,
            last_at,
            last_job,
            s.overlap.clone(),
            s.catch_up.clone(),
            skipped,
        ]);
    }
    t.to_string()
}

pub async fn run(config: Option<&Path>, a: SchedulesArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::from_args(config, &a.server)?;
    let list: ScheduleList = client.get("/v1/schedules").await?;
    if a.server.json {
        println!("{}", serde_json::to_string_pretty(&list.data)?);
    } else if list.data.is_empty() {
        println!("no schedules (entries of the jobs file with `schedule:` appear here)");
    } else {
        println!("{}", table(&list.data));
    }
    Ok(ExitCode::SUCCESS)
}
