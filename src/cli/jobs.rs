//! `respool jobs list|show|output|events|watch|cancel|retry|artifacts` (`watch`: `watch.rs`). Long human output (the list table,
//! `show`, `events`, `output`) goes through the pager ([`super::pager`]); machine formats
//! (`--json`, `jsonl`, `csv`) never do.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::pager::{self, PagerArgs};
use super::{ApiClient, ServerArgs, output};
use crate::api::JobList;
use crate::notify::markdown;
use crate::view::JobView;

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List(ListArgs),
    /// Show everything about a job: details, spec, retries, output, downloads, timeline,
    /// notifications.
    Show(PagedIdArgs),
    /// Print a job's output: its text, the Markdown report with sources, or the stored
    /// Response JSON.
    Output(OutputArgs),
    /// Print a job's timeline.
    Events(PagedIdArgs),
    /// Follow a job live until it ends: a status line per event (elapsed time, status,
    /// tokens so far), its milestones and the text as it grows. Exits 0 when it completes, 1
    /// otherwise (as `respool submit --wait`).
    Watch(IdArgs),
    /// Cancel a job (upstream too, if it was submitted).
    Cancel(IdArgs),
    /// Run a finished job again, as a new job with the same spec (linked by `retry_of`).
    Retry(IdArgs),
    /// Answer what a job waiting for a person (`requires_action`) asks: a function's output,
    /// or an MCP tool call approved or denied. Without an answer, list what it waits for.
    Respond(RespondArgs),
    /// Save a finished job's artifacts (generated images, files its code wrote) into a
    /// folder, or list them.
    Artifacts(ArtifactsArgs),
}

#[derive(Args, Debug)]
pub struct RespondArgs {
    /// The job id (`job_…`).
    pub id: String,
    /// The function call answered (`call_…`), with `--output` or `--output-file`.
    #[arg(long, requires = "function_output", conflicts_with_all = ["approve", "deny", "answers"])]
    pub call_id: Option<String>,
    /// The function's output (text; JSON goes as its text).
    #[arg(long, group = "function_output")]
    pub output: Option<String>,
    /// Read the function's output from this file (`-`: standard input).
    #[arg(long, group = "function_output", conflicts_with = "output")]
    pub output_file: Option<std::path::PathBuf>,
    /// Approve this MCP approval request (`mcpr_…`).
    #[arg(long, conflicts_with_all = ["deny", "answers"])]
    pub approve: Option<String>,
    /// Deny this MCP approval request (`mcpr_…`).
    #[arg(long, conflicts_with = "answers")]
    pub deny: Option<String>,
    /// Why (sent to the model with an approval or a denial).
    #[arg(long)]
    pub reason: Option<String>,
    /// The answers as the API takes them (one object or a list), from this file (`-`:
    /// standard input).
    #[arg(long, value_name = "FILE")]
    pub answers: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct ArtifactsArgs {
    /// The job id (`job_…`).
    pub id: String,
    /// The folder to save them in (made if missing). Default: a folder named after the job
    /// in the current directory.
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Only list them (name, kind, size, and why one was not kept).
    #[arg(long, conflicts_with_all = ["dir", "force"])]
    pub list: bool,
    /// Replace files of the same names in the folder (by default a file already there stops
    /// the command before anything is written).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub server: ServerArgs,
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
    /// Only the jobs of the chain this job belongs to (any of its jobs' ids), in chain order
    /// (oldest first).
    #[arg(long, value_name = "JOB_ID")]
    pub chain: Option<String>,
    /// Output format: `table` (default), `json` (same as `--json`), `jsonl` (one job a line)
    /// or `csv` (a header row, times in RFC 3339 UTC).
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// How many jobs to show (all pages are fetched as needed).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub pager: PagerArgs,
}

/// How `respool jobs list` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
    Jsonl,
    Csv,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    /// The job id (`job_…`).
    pub id: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct PagedIdArgs {
    /// The job id (`job_…`).
    pub id: String,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub pager: PagerArgs,
}

#[derive(Args, Debug)]
pub struct OutputArgs {
    /// The job id (`job_…`).
    pub id: String,
    /// `text`: the output text (default); `md`: the Markdown report with its sources, as
    /// notifications show it; `json` (same as `--json`): for a job that asks for JSON, its
    /// answer (`output_json`; exits 1 while the job has no good answer), for any other job the
    /// whole stored Response; `response`: the whole stored Response.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub pager: PagerArgs,
}

/// What `respool jobs output` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Md,
    Json,
    Response,
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn run(config: Option<&Path>, cmd: JobsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        JobsCommand::List(a) => list(config, a).await,
        JobsCommand::Show(a) => show(config, a).await,
        JobsCommand::Output(a) => print_output(config, a).await,
        JobsCommand::Artifacts(a) => artifacts(config, a).await,
        JobsCommand::Watch(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            super::watch::watch(&client, &a.id, a.server.json).await
        }
        JobsCommand::Events(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            let events: Value = client
                .get(&format!("/v1/jobs/{}/events", enc(&a.id)))
                .await?;
            if a.server.json {
                json_out(&events["data"])?;
            } else {
                let list = events["data"].as_array().map_or(&[][..], |v| v);
                pager::show(&format!("{}\n", output::events_table(list)), a.pager).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Cancel(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            let job: JobView = client
                .post(&format!("/v1/jobs/{}/cancel", enc(&a.id)), None, None)
                .await?;
            if a.server.json {
                json_out(&job)?;
            } else {
                pager::print_direct(&output::job_details(&job))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Respond(a) => respond(config, a).await,
        JobsCommand::Retry(a) => {
            let client = ApiClient::from_args(config, &a.server)?;
            // One key for both tries: if the first request made the job but its answer was
            // lost, the second answers that job instead of making another.
            let key = crate::job::spec::random_idempotency_key();
            let job: JobView = client
                .post_idempotent(&format!("/v1/jobs/{}/retry", enc(&a.id)), None, &key)
                .await?;
            if a.server.json {
                json_out(&job)?;
            } else {
                let retried = job.retry_of.as_deref().unwrap_or(&a.id);
                pager::print_direct(&format!(
                    "retried {retried} as {}\n\n{}",
                    job.id,
                    output::job_details(&job)
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Pretty JSON on stdout, never paged.
fn json_out(v: &impl serde::Serialize) -> anyhow::Result<()> {
    pager::print_direct(&format!("{}\n", serde_json::to_string_pretty(v)?))?;
    Ok(())
}

async fn list(config: Option<&Path>, a: ListArgs) -> anyhow::Result<ExitCode> {
    for kv in &a.metadata {
        if crate::store::filter::parse_metadata_pair(kv).is_none() {
            anyhow::bail!("--metadata takes KEY=VALUE (a non-empty key), not `{kv}`");
        }
    }
    let client = ApiClient::from_args(config, &a.server)?;
    // A chain is named by its first job: any member's `chain_id`.
    let chain = match &a.chain {
        Some(id) => {
            let j: JobView = client.get(&format!("/v1/jobs/{}", enc(id))).await?;
            Some(j.chain_id.unwrap_or(j.id))
        }
        None => None,
    };
    let mut jobs: Vec<JobView> = Vec::new();
    let mut cursor: Option<String> = None;
    while jobs.len() < a.limit {
        let mut q = vec![format!("limit={}", (a.limit - jobs.len()).clamp(1, 100))];
        for kv in &a.metadata {
            q.push(format!("metadata={}", enc(kv)));
        }
        for (k, v) in [
            ("status", &a.status),
            ("name", &a.name),
            ("model", &a.model),
            ("search", &a.search),
            ("since", &a.since),
            ("chain", &chain),
            ("after", &cursor),
        ] {
            if let Some(v) = v {
                q.push(format!("{k}={}", enc(v)));
            }
        }
        let page: JobList = client.get(&format!("/v1/jobs?{}", q.join("&"))).await?;
        jobs.extend(page.data);
        if !page.has_more {
            break;
        }
        cursor = page.next_cursor;
    }
    jobs.truncate(a.limit);
    if chain.is_some() {
        jobs.reverse();
    }
    let format = if a.server.json {
        ListFormat::Json
    } else {
        a.format
    };
    match format {
        ListFormat::Json => json_out(&jobs)?,
        ListFormat::Jsonl => {
            let mut text = String::new();
            for j in &jobs {
                text.push_str(&serde_json::to_string(j)?);
                text.push('\n');
            }
            pager::print_direct(&text)?;
        }
        ListFormat::Csv => pager::print_direct(&output::jobs_csv(&jobs)?)?,
        ListFormat::Table if jobs.is_empty() => pager::print_direct("no jobs\n")?,
        ListFormat::Table => {
            pager::show(&format!("{}\n", output::jobs_table(&jobs)), a.pager).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(config: Option<&Path>, a: PagedIdArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::from_args(config, &a.server)?;
    let id = enc(&a.id);
    let job: JobView = client.get(&format!("/v1/jobs/{id}")).await?;
    let events: Value = client.get(&format!("/v1/jobs/{id}/events")).await?;
    let notes: Value = client
        .get(&format!("/v1/notifications?job_id={id}"))
        .await?;
    let events = events["data"].as_array().cloned().unwrap_or_default();
    let notes = notes["data"].as_array().cloned().unwrap_or_default();
    let artifacts = output::artifacts(&job, Some(client.base()));
    if a.server.json {
        json_out(&json!({
            "job": job,
            "events": events,
            "notifications": notes,
            "artifacts": artifacts,
        }))?;
    } else {
        let page = output::job_page(&job, &events, &notes, &artifacts);
        pager::show(&page, a.pager).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit code 1 and one line on stderr: the job has nothing to print.
fn no_output(job: &JobView) -> ExitCode {
    let why = job
        .error
        .as_ref()
        .map(|e| format!(": {}: {}", e.code, e.message))
        .unwrap_or_default();
    eprintln!(
        "respool: job {} has no output (status {}{why})",
        job.id, job.status
    );
    ExitCode::FAILURE
}

async fn print_output(config: Option<&Path>, a: OutputArgs) -> anyhow::Result<ExitCode> {
    let format = match (a.server.json, a.format) {
        (true, Some(f)) if f != OutputFormat::Json => {
            anyhow::bail!("--json asks for `--format json`, which contradicts --format {f:?}")
        }
        (true, _) => OutputFormat::Json,
        (false, f) => f.unwrap_or(OutputFormat::Text),
    };
    let client = ApiClient::from_args(config, &a.server)?;
    let id = enc(&a.id);
    let job: JobView = client.get(&format!("/v1/jobs/{id}")).await?;
    match format {
        OutputFormat::Text => {
            let Some(text) = &job.output_text else {
                return Ok(no_output(&job));
            };
            pager::show(&with_newline(text), a.pager).await?;
        }
        OutputFormat::Md => {
            let Some(text) = &job.output_text else {
                return Ok(no_output(&job));
            };
            let response: Value = client
                .get(&format!("/v1/jobs/{id}/response"))
                .await
                .with_context(|| format!("fetching the stored response of {}", job.id))?;
            let report = markdown::Report::of(text, Some(&response)).markdown();
            pager::show(&with_newline(&report), a.pager).await?;
        }
        // A job that asks for JSON prints its answer, or nothing (and fails) until it has a
        // good one: never its Response in its place.
        OutputFormat::Json if asks_for_json(&job) => match &job.output_json {
            Some(answer) if job.status == crate::job::JobStatus::Completed => json_out(answer)?,
            _ => return Ok(no_output(&job)),
        },
        OutputFormat::Json | OutputFormat::Response => {
            if job.response_id.is_none() {
                return Ok(no_output(&job));
            }
            let response: Value = client.get(&format!("/v1/jobs/{id}/response")).await?;
            json_out(&response)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the job's `text.format` asks for JSON (read from the spec the API shows).
fn asks_for_json(job: &JobView) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.pointer("/request/text/format"))
        .and_then(crate::structured::Format::of_format)
        .is_some()
}

fn with_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

/// How long one artifact's download may take.
const DOWNLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// `respool jobs artifacts`: lists a job's artifacts, or saves each kept one into the folder
/// (checked against its SHA-256). Exits 1 when one was not kept or could not be saved.
async fn artifacts(config: Option<&Path>, a: ArtifactsArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::from_args(config, &a.server)?;
    let list: crate::api::ArtifactList = client
        .get(&format!("/v1/jobs/{}/artifacts", enc(&a.id)))
        .await?;
    let mut failed = list.data.iter().filter(|x| x.error.is_some()).count();
    if a.list || a.server.json {
        if a.server.json {
            json_out(&serde_json::to_value(&list.data)?)?;
        } else if list.data.is_empty() {
            println!("job {} has no artifacts", a.id);
        } else {
            for x in &list.data {
                match &x.error {
                    None => println!("{}\t{}\t{} bytes", x.name, x.kind, x.bytes),
                    Some(e) => println!("{}\t{}\tnot kept: {e}", x.name, x.kind),
                }
            }
        }
        return Ok(if failed > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    let dir = a
        .dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(&a.id));
    let kept: Vec<&crate::artifacts::ArtifactView> =
        list.data.iter().filter(|x| x.error.is_none()).collect();
    // Names come from the daemon (and, before it, from a model): only plain file names are
    // written, so none can lead out of the folder.
    if let Some(bad) = kept
        .iter()
        .find(|x| !crate::job::artifact::is_safe_name(&x.name) || x.sha256.is_none())
    {
        anyhow::bail!(
            "the daemon listed an artifact named {:?} without a plain file name or a SHA-256; nothing written",
            bad.name
        );
    }
    if kept.is_empty() && failed == 0 {
        println!("job {} has no artifacts", a.id);
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
    if !a.force {
        let there: Vec<String> = kept
            .iter()
            .map(|x| dir.join(&x.name))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !there.is_empty() {
            anyhow::bail!(
                "{} already there (nothing written; --force replaces them)",
                there.join(", ")
            );
        }
    }
    for x in kept {
        let target = dir.join(&x.name);
        let tmp = tempfile::Builder::new()
            .prefix(".respool-")
            .tempfile_in(&dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        let path = format!(
            "/v1/jobs/{}/artifacts/{}?download=true",
            enc(&a.id),
            crate::artifacts::encode_name(&x.name)
        );
        let got = async {
            let mut out = tokio::fs::File::from_std(tmp.reopen()?);
            let n = client.download(&path, &mut out, DOWNLOAD_TIMEOUT).await?;
            out.sync_all().await?;
            let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
            std::io::copy(&mut tmp.reopen()?, &mut hasher)?;
            anyhow::Ok((
                n,
                crate::job::attachment::hex(&sha2::Digest::finalize(hasher)),
            ))
        }
        .await;
        match got {
            Ok((_, sha)) if x.sha256.as_deref() != Some(sha.as_str()) => {
                eprintln!(
                    "{}: its bytes do not match their SHA-256; not saved",
                    x.name
                );
                failed += 1;
            }
            Ok((n, _)) => {
                let kept = if a.force {
                    tmp.persist(&target).map_err(|e| e.error)
                } else {
                    tmp.persist_noclobber(&target).map_err(|e| e.error)
                };
                kept.with_context(|| format!("cannot write {}", target.display()))?;
                println!("{} ({n} bytes)", target.display());
            }
            Err(e) => {
                eprintln!("{}: {e:#}", x.name);
                failed += 1;
            }
        }
    }
    for x in list.data.iter().filter(|x| x.error.is_some()) {
        eprintln!(
            "{}: not kept: {}",
            x.name,
            x.error.as_deref().unwrap_or_default()
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
    }
}

/// `respool jobs respond`: sends the answers given, or lists what the job waits for.
async fn respond(config: Option<&Path>, a: RespondArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::from_args(config, &a.server)?;
    let body: Option<serde_json::Value> = if let Some(path) = &a.answers {
        let text = read_input(path)?;
        Some(
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", path.display()))?,
        )
    } else if let Some(call_id) = &a.call_id {
        let output = match (&a.output, &a.output_file) {
            (Some(o), _) => o.clone(),
            (None, Some(path)) => read_input(path)?,
            (None, None) => anyhow::bail!("--call-id needs --output or --output-file"),
        };
        Some(serde_json::json!({"call_id": call_id, "output": output}))
    } else if let Some(id) = a.approve.as_ref().or(a.deny.as_ref()) {
        let mut v = serde_json::json!({"approval_request_id": id, "approve": a.approve.is_some()});
        if let (Some(r), Some(o)) = (&a.reason, v.as_object_mut()) {
            o.insert("reason".into(), r.clone().into());
        }
        if a.approve.is_some() && a.deny.is_some() {
            anyhow::bail!("--approve and --deny answer one request each: send them one at a time");
        }
        Some(v)
    } else {
        None
    };
    let job: JobView = match &body {
        Some(b) => {
            client
                .post(&format!("/v1/jobs/{}/respond", enc(&a.id)), Some(b), None)
                .await?
        }
        None => client.get(&format!("/v1/jobs/{}", enc(&a.id))).await?,
    };
    if a.server.json {
        json_out(&job)?;
        return Ok(ExitCode::SUCCESS);
    }
    let waiting: Vec<_> = job
        .actions
        .iter()
        .filter(|x| x.state == "waiting")
        .collect();
    let mut out = String::new();
    if body.is_some() {
        out.push_str(&format!("answered; job {} is {}\n", job.id, job.status));
    } else {
        out.push_str(&format!("job {} is {}\n", job.id, job.status));
    }
    if waiting.is_empty() {
        if body.is_none() {
            out.push_str("nothing waits for an answer\n");
        }
    } else {
        out.push_str("waiting for an answer:\n");
        for w in &waiting {
            match (w.kind.as_str(), &w.server_label) {
                ("approval", server) => out.push_str(&format!(
                    "  {}  approve a call of {} on MCP server {} with {}\n      respool jobs respond {} --approve {} (or --deny {})\n",
                    w.item_id, w.name, server.as_deref().unwrap_or("?"), w.arguments, job.id, w.item_id, w.item_id
                )),
                _ => out.push_str(&format!(
                    "  {}  the output of {}({})\n      respool jobs respond {} --call-id {} --output '…'\n",
                    w.item_id, w.name, w.arguments, job.id, w.item_id
                )),
            }
        }
    }
    pager::print_direct(&out)?;
    Ok(ExitCode::SUCCESS)
}
