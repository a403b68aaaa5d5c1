//! What `respool jobs …` prints for people, as insta snapshots: the real binary against a real
//! daemon (and its simulator), with a completed, a failed and a cancelled job. Ids, times, ages
//! and durations are replaced by placeholders of the same width, so the tables keep their
//! shape and the snapshots stay stable from run to run.

use std::time::Duration;

use respool::job::JobStatus;
use serde_json::{Value, json};

use crate::helpers;

const DEADLINE: Duration = Duration::from_secs(60);

/// What the binary did: success, stdout, stderr.
struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `respool <args> --server <daemon>` with a fixed width and no colour, off the runtime.
async fn respool(app: &helpers::TestApp, args: &[&str]) -> Run {
    let server = app.base.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        assert_cmd::Command::cargo_bin("respool")
            .unwrap()
            .args(&args)
            .args(["--server", &server])
            .env_remove("RESPOOL_CONFIG")
            .env_remove("RESPOOL_TOKEN")
            .env_remove("RESPOOL_PAGER")
            .env("NO_COLOR", "1")
            .env("COLUMNS", "120")
            // Never a terminal here, but a pager must not run even if it were.
            .env("PAGER", "false")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs and expects success; returns stdout.
async fn stdout_of(app: &helpers::TestApp, args: &[&str]) -> String {
    let r = respool(app, args).await;
    assert!(r.ok, "respool {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

/// Submits a job and waits until `done`.
async fn job(
    app: &helpers::TestApp,
    body: Value,
    done: impl Fn(&respool::view::JobView) -> bool,
) -> respool::view::JobView {
    let (status, created) = app.post_job(&body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    app.wait_for(&id, DEADLINE, done).await
}

/// The three jobs every snapshot shows: (completed, failed, cancelled).
struct Jobs {
    completed: respool::view::JobView,
    failed: respool::view::JobView,
    cancelled: respool::view::JobView,
}

async fn three_jobs(app: &helpers::TestApp) -> Jobs {
    let completed = job(
        app,
        json!({"name": "solar-report", "model": "gpt-5",
               "input": "Write about solar panels on north-facing roofs.",
               "metadata": {"team": "research"}}),
        |j| j.status.is_terminal(),
    )
    .await;
    assert_eq!(completed.status, JobStatus::Completed);
    let failed = job(
        app,
        json!({"name": "flaky-report", "model": "gpt-5",
               "input": "Write about flaky networks.",
               "metadata": {"sim": "outcome=failed:server_error"}}),
        |j| j.status.is_terminal(),
    )
    .await;
    assert_eq!(failed.status, JobStatus::Failed);
    let stuck = job(
        app,
        json!({"name": "slow-report", "model": "gpt-5",
               "input": "Write about glaciers.",
               "metadata": {"sim": "stuck"}}),
        |j| j.response_id.is_some(),
    )
    .await;
    let (status, body) = app.post(&format!("/v1/jobs/{}/cancel", stuck.id)).await;
    assert_eq!(status, 200, "{body}");
    let cancelled = app
        .wait_for(&stuck.id, DEADLINE, |j| j.status.is_terminal())
        .await;
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    Jobs {
        completed,
        failed,
        cancelled,
    }
}

/// `label` padded to `width` with dots: a placeholder as wide as what it stands for.
fn same_width(label: &str, width: usize) -> String {
    format!("{label:.<width$}")
}

/// Filters that make the output of these jobs stable: their ids and response ids (each job
/// its own label, so rows stay distinguishable), the daemon's port, times, ages, durations.
fn settings(app: &helpers::TestApp, jobs: &Jobs) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    for (j, label) in [
        (&jobs.completed, "COMPLETED"),
        (&jobs.failed, "FAILED"),
        (&jobs.cancelled, "CANCELLED"),
    ] {
        s.add_filter(
            &regex_escape(&j.id),
            same_width(&format!("job_{label}"), j.id.len()),
        );
        if let Some(r) = &j.response_id {
            s.add_filter(
                &regex_escape(r),
                same_width(&format!("resp_{label}"), r.len()),
            );
        }
    }
    s.add_filter(&regex_escape(&app.base), "http://127.0.0.1:PORT");
    s.add_filter(r"\bwh_[0-9a-z]{26}\b", same_width("wh_WEBHOOK", 29));
    s.add_filter(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z",
        "YYYY-MM-DDThh:mm:ssZ",
    );
    s.add_filter(
        r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}",
        "YYYY-MM-DD hh:mm:ss",
    );
    s.add_filter(r"hh:mm:ss\.\d{3}", "hh:mm:ss.mmm");
    // Ages and durations: `3s ago`, `12s ago`, `1m 5s`; the CREATED and DURATION headers are
    // wider than any of them, so the columns keep their width.
    s.add_filter(r"\b(\d\ds ago|\ds ago )", "Ns ago ");
    s.add_filter(r"(ago +)(\d\ds|\ds )", "${1}Ns ");
    s.add_filter(r"(duration +)\d{1,2}s\b", "${1}Ns");
    // CSV: duration_s after finished_at.
    s.add_filter(r"(ssZ,)\d+,", "${1}N,");
    s
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

#[tokio::test]
async fn jobs_commands_print_for_people() {
    let app = helpers::spawn_app_with(
        |cfg| {
            // Webhooks only (the first poll is far off), so each timeline has one order.
            cfg.polling.min_interval = Duration::from_secs(600);
            cfg.polling.max_interval = Duration::from_secs(600);
            cfg.pricing = helpers::gpt5_priced(1.25, 10.0);
        },
        helpers::fast_sim(),
    )
    .await;
    let jobs = three_jobs(&app).await;

    let list = stdout_of(&app, &["jobs", "list"]).await;
    let csv = stdout_of(&app, &["jobs", "list", "--format", "csv"]).await;
    let show_failed = stdout_of(&app, &["jobs", "show", &jobs.failed.id]).await;
    let show_completed = stdout_of(&app, &["jobs", "show", &jobs.completed.id]).await;
    let report = stdout_of(
        &app,
        &["jobs", "output", &jobs.completed.id, "--format", "md"],
    )
    .await;
    let events = stdout_of(&app, &["jobs", "events", &jobs.completed.id]).await;

    // Every line of the tables fits COLUMNS (output text is left to the terminal to wrap).
    for text in [&list, &show_failed, &events] {
        for line in text.lines().filter(|l| l.contains(['│', '─'])) {
            assert!(line.chars().count() <= 120, "too wide: {line}");
        }
    }
    // The report is the output text with a marker after each cited passage, plus its
    // sources, as the notification sinks render it.
    let text = jobs.completed.output_text.clone().unwrap();
    let unmarked = regex::Regex::new(r"\[\d+\]")
        .unwrap()
        .replace_all(&report, "");
    assert!(unmarked.starts_with(text.trim_end()), "{report}");
    assert!(report.contains(")[1])"), "{report}");
    assert!(report.contains("\n\n## Sources\n\n1. ["), "{report}");

    settings(&app, &jobs).bind(|| {
        insta::assert_snapshot!("jobs_list_table", list);
        insta::assert_snapshot!("jobs_list_csv", csv);
        insta::assert_snapshot!("jobs_show_failed", show_failed);
        insta::assert_snapshot!("jobs_show_completed", show_completed);
        insta::assert_snapshot!("jobs_output_md", report);
        insta::assert_snapshot!("jobs_events", events);
    });
    app.stop().await;
}

#[tokio::test]
async fn output_formats_and_jobs_without_output() {
    let app = helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await;
    let jobs = three_jobs(&app).await;

    // text (the default) is the output text as stored.
    let text = stdout_of(&app, &["jobs", "output", &jobs.completed.id]).await;
    assert_eq!(
        text.trim_end(),
        jobs.completed.output_text.as_deref().unwrap().trim_end()
    );
    // json (and its alias --json) is the whole stored response.
    for args in [
        &["jobs", "output", &jobs.completed.id, "--format", "json"][..],
        &["jobs", "output", &jobs.completed.id, "--json"][..],
    ] {
        let v: Value = serde_json::from_str(&stdout_of(&app, args).await).unwrap();
        assert_eq!(v["id"].as_str(), jobs.completed.response_id.as_deref());
        assert_eq!(v["status"], "completed");
    }
    // --json and another format contradict each other.
    let r = respool(
        &app,
        &[
            "jobs",
            "output",
            &jobs.completed.id,
            "--json",
            "--format",
            "md",
        ],
    )
    .await;
    assert!(!r.ok);
    assert!(r.stderr.contains("--format"), "{}", r.stderr);

    // No output: exit code 1, one line naming the job, its status and its error. (The
    // simulator's failed responses stop half way, with output; one it rejects has none.)
    let rejected = job(
        &app,
        json!({"name": "rejected", "model": "gpt-5", "input": "Hi.",
               "metadata": {"sim": "no-such-directive"}}),
        |j| j.status.is_terminal(),
    )
    .await;
    assert_eq!(rejected.status, JobStatus::Failed);
    let code = rejected.error.as_ref().unwrap().code.clone();
    for format in ["text", "md", "json"] {
        let r = respool(&app, &["jobs", "output", &rejected.id, "--format", format]).await;
        assert_eq!(r.code, Some(1), "{format}: {}", r.stdout);
        assert!(r.stdout.is_empty(), "{format}: {}", r.stdout);
        assert_eq!(r.stderr.lines().count(), 1, "{format}: {}", r.stderr);
        assert!(r.stderr.contains(&rejected.id), "{}", r.stderr);
        assert!(r.stderr.contains("status failed"), "{}", r.stderr);
        assert!(r.stderr.contains(&code), "{}", r.stderr);
    }
    let r = respool(
        &app,
        &["jobs", "output", &jobs.cancelled.id, "--format", "md"],
    )
    .await;
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(r.stderr.contains("status cancelled"), "{}", r.stderr);

    // show --json is one object with everything the human view has.
    let v: Value = serde_json::from_str(
        &stdout_of(&app, &["jobs", "show", &jobs.completed.id, "--json"]).await,
    )
    .unwrap();
    assert_eq!(v["job"]["id"], jobs.completed.id.as_str());
    assert_eq!(v["job"]["spec"]["name"], "solar-report");
    assert!(!v["events"].as_array().unwrap().is_empty(), "{v}");
    assert!(v["notifications"].is_array(), "{v}");
    let urls: Vec<&str> = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            format!("{}/jobs/{}/report.md", app.base, jobs.completed.id),
            format!("{}/jobs/{}/response.json", app.base, jobs.completed.id),
        ]
    );

    // csv reads back: a header and one row per job, newest first.
    let csv = stdout_of(&app, &["jobs", "list", "--format", "csv"]).await;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(reader.headers().unwrap().get(0), Some("id"));
    let ids: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    assert_eq!(
        ids,
        [
            &rejected.id,
            &jobs.cancelled.id,
            &jobs.failed.id,
            &jobs.completed.id
        ]
        .map(String::clone)
    );
    app.stop().await;
}

#[tokio::test]
async fn retry_prints_the_new_job_and_show_links_both_ways() {
    let app = helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await;
    let failed = job(
        &app,
        json!({"name": "flaky", "model": "gpt-5", "input": "Write about retries.",
               "metadata": {"sim": "outcome=failed:server_error"}}),
        |j| j.status.is_terminal(),
    )
    .await;
    let out = stdout_of(&app, &["jobs", "retry", &failed.id]).await;
    let first = out.lines().next().unwrap();
    let new_id = first
        .strip_prefix(&format!("retried {} as ", failed.id))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    assert!(new_id.starts_with("job_"), "{out}");
    assert!(
        out.contains(&format!("retry of      {}", failed.id)),
        "{out}"
    );

    let show = stdout_of(&app, &["jobs", "show", &failed.id]).await;
    assert!(show.contains(&format!("retried by    {new_id}")), "{show}");
    assert!(
        show.starts_with("error: The model failed to generate a response. (server_error)"),
        "{show}"
    );

    // --json prints the new job's JobView.
    let v: Value =
        serde_json::from_str(&stdout_of(&app, &["jobs", "retry", &failed.id, "--json"]).await)
            .unwrap();
    assert_eq!(v["retry_of"], failed.id.as_str());
    assert_ne!(v["id"], new_id.as_str());

    // A job still running cannot be retried: the daemon's reason, exit code 1.
    let running = job(
        &app,
        json!({"name": "slow", "model": "gpt-5", "input": "Slow.", "metadata": {"sim": "stuck"}}),
        |j| j.response_id.is_some(),
    )
    .await;
    let r = respool(&app, &["jobs", "retry", &running.id]).await;
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("409"), "{}", r.stderr);
    app.stop().await;
}
