//! `respool reload` (over REST): the daemon re-reads its config file and jobs file, as on
//! SIGHUP. A refused reload prints every problem and exits non-zero.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::{ApiClient, ServerArgs};

#[derive(Args, Debug)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn run(config: Option<&Path>, a: ReloadArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::from_args(config, &a.server)?;
    let report: Value = match client.post("/v1/admin/reload", None, None).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("respool: reload refused; the daemon keeps its previous config:\n{e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if a.server.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let names = |k: &str| -> String {
        let list: Vec<&str> = report["schedules"][k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if list.is_empty() {
            "none".into()
        } else {
            list.join(", ")
        }
    };
    println!(
        "reloaded {}",
        report["config_file"]
            .as_str()
            .unwrap_or("the built-in defaults")
    );
    if let Some(jobs) = report["jobs_file"].as_str() {
        println!(
            "jobs file {jobs}: {} new jobs; schedules added: {}; changed: {}; removed: {}",
            report["jobs_created"],
            names("added"),
            names("changed"),
            names("removed")
        );
    }
    Ok(ExitCode::SUCCESS)
}
