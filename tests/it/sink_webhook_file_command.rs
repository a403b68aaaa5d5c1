//! The webhook, file and command sinks through the real daemon and the simulator: what each
//! one delivers when a job ends, and how retries look from the receiving side.
#![allow(clippy::field_reassign_with_default)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use respool::config::Config;
use respool::config::SinkConfig;
use respool::config::sinks::{CommandSink, FileSink, TemplateFiles, WebhookSink};
use respool::job::JobStatus;
use respool::sim::SimConfig;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers;
use crate::helpers::receiver::{Receiver, Reply};

const JOB_DEADLINE: Duration = Duration::from_secs(30);
const NOTIFY_DEADLINE: Duration = Duration::from_secs(30);

fn webhook(url: &str, secret: &str) -> SinkConfig {
    SinkConfig::Webhook(WebhookSink {
        max_concurrent: None,
        url: url.to_string(),
        secret: Some(SecretString::from(secret.to_string())),
        secret_file: None,
        timeout: Duration::from_secs(10),
    })
}

fn command(argv: &[&str], env: &[(&str, &str)]) -> SinkConfig {
    SinkConfig::Command(CommandSink {
        max_concurrent: None,
        command: argv.iter().map(|s| s.to_string()).collect(),
        timeout: Duration::from_secs(20),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    })
}

/// One sink `name`, notified for every job, retried quickly.
fn with_sink(name: &str, sink: SinkConfig) -> impl FnOnce(&mut Config) {
    let name = name.to_string();
    move |cfg| {
        cfg.sinks.insert(name.clone(), sink);
        cfg.notify.default = vec![name];
        cfg.notify.initial_backoff = Duration::from_millis(200);
        cfg.notify.max_backoff = Duration::from_secs(2);
    }
}

#[tokio::test]
async fn a_completed_job_is_posted_once_signed_with_job_output_and_response() {
    let secret = helpers::new_secret();
    let rx = Receiver::start(vec![]).await;
    let app = helpers::spawn_app_with(
        with_sink("hook", webhook(&rx.url, &secret)),
        SimConfig::default(),
    )
    .await;
    let id = app.submit(&helpers::job_body("signed-delivery")).await;
    let job = app.wait_terminal(&id, JOB_DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    app.wait_event(&id, "notified", NOTIFY_DEADLINE).await;

    let hits = rx.hits();
    assert_eq!(hits.len(), 1, "one POST for one event");
    let hit = &hits[0];
    hit.verify(&secret).expect("the signature verifies");
    assert!(
        hit.verify(&helpers::new_secret()).is_err(),
        "another secret must not verify"
    );
    assert_eq!(hit.header("content-type"), "application/json");
    assert!(hit.header("user-agent").starts_with("respool/"));
    assert!(hit.header("webhook-id").starts_with("msg_"));
    assert!(hit.header("webhook-signature").starts_with("v1,"));
    let ts: i64 = hit.header("webhook-timestamp").parse().unwrap();
    assert!((ts - helpers::unix_now()).abs() < 120, "timestamp {ts}");

    let event = hit.json();
    assert_eq!(event["object"], "event");
    assert_eq!(event["type"], "job.completed");
    let evt_id = event["id"].as_str().unwrap();
    assert!(evt_id.starts_with("evt_"), "{evt_id}");
    assert_eq!(
        hit.header("webhook-id")["msg_".len()..],
        evt_id["evt_".len()..],
        "webhook-id and the event id come from the same (job, event) hash"
    );
    assert_eq!(event["created_at"], json!(job.finished_at.unwrap()));
    let data = &event["data"];
    assert_eq!(data["job"]["id"], id.as_str());
    assert_eq!(data["job"]["status"], "completed");
    assert_eq!(data["job"]["name"], "signed-delivery");
    let output = job.output_text.clone().unwrap();
    assert!(!output.is_empty());
    assert_eq!(data["output_text"], output.as_str());
    assert_eq!(data["job"]["output_text"], output.as_str());
    assert_eq!(
        data["response"]["id"],
        job.response_id.clone().unwrap().as_str()
    );
    assert_eq!(data["response"]["status"], "completed");

    let rows = app.notification_rows(&id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["state"], "delivered");
    assert_eq!(rows[0]["attempts"], 1);
    assert_eq!(app.count_events(&id, "notified").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_failed_job_is_a_job_failed_event() {
    let secret = helpers::new_secret();
    let rx = Receiver::start(vec![]).await;
    let app = helpers::spawn_app_with(
        with_sink("hook", webhook(&rx.url, &secret)),
        SimConfig::default(),
    )
    .await;
    let mut body = helpers::job_body("doomed");
    body["metadata"] = json!({"sim": "outcome=failed:server_error"});
    let id = app.submit(&body).await;
    let job = app.wait_terminal(&id, JOB_DEADLINE).await;
    assert_eq!(job.status, JobStatus::Failed);
    app.wait_event(&id, "notified", NOTIFY_DEADLINE).await;

    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    hits[0].verify(&secret).unwrap();
    let event = hits[0].json();
    assert_eq!(event["type"], "job.failed");
    assert_eq!(event["data"]["job"]["status"], "failed");
    assert_eq!(event["data"]["job"]["error"]["code"], "server_error");
    assert_eq!(event["data"]["response"]["status"], "failed");
    app.stop().await;
}

/// The receiver answers 500 (with `Retry-After: 1`, so attempts fall in different seconds)
/// twice: three POSTs with one `webhook-id`, each with its own timestamp and signature, and
/// one delivery.
#[tokio::test]
async fn retries_keep_the_webhook_id_and_sign_each_attempt_afresh() {
    let secret = helpers::new_secret();
    let rx = Receiver::start(vec![
        Reply::retry_after(500, "1", ""),
        Reply::retry_after(500, "1", ""),
    ])
    .await;
    let app = helpers::spawn_app_with(
        with_sink("hook", webhook(&rx.url, &secret)),
        SimConfig::default(),
    )
    .await;
    let id = app.submit(&helpers::job_body("retried")).await;
    app.wait_terminal(&id, JOB_DEADLINE).await;
    app.wait_event(&id, "notified", NOTIFY_DEADLINE).await;

    let hits = rx.hits();
    assert_eq!(hits.len(), 3, "two failures and a success");
    assert_eq!(rx.successes(), 1);
    let ids: Vec<&str> = hits.iter().map(|h| h.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "webhook-id changed: {ids:?}"
    );
    let stamps: Vec<i64> = hits
        .iter()
        .map(|h| h.header("webhook-timestamp").parse().unwrap())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[1] > w[0]),
        "timestamps {stamps:?}"
    );
    let sigs: Vec<&str> = hits.iter().map(|h| h.header("webhook-signature")).collect();
    assert!(sigs[0] != sigs[1] && sigs[1] != sigs[2], "{sigs:?}");
    for (i, h) in hits.iter().enumerate() {
        h.verify(&secret)
            .unwrap_or_else(|e| panic!("attempt {i}: {e}"));
        assert_eq!(h.body, hits[0].body, "the body is the same every time");
    }
    for w in hits.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "Retry-After ignored: {gap:?}"
        );
    }
    let rows = app.notification_rows(&id).await;
    assert_eq!(rows[0]["state"], "delivered");
    assert_eq!(rows[0]["attempts"], 3);
    assert_eq!(app.count_events(&id, "notified").await, 1);
    app.stop().await;
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_file_sink_writes_a_report_and_the_event_json() {
    let out = tempfile::tempdir().unwrap();
    // Not there yet: the sink creates it.
    let dir: PathBuf = out.path().join("reports/2026");
    let sink = SinkConfig::File(FileSink {
        max_concurrent: None,
        dir: dir.clone(),
        templates: TemplateFiles::default(),
    });
    let app = helpers::spawn_app_with(with_sink("files", sink), SimConfig::default()).await;
    let id = app
        .submit(&helpers::job_body("Quarterly Review: Q3/Q4 (draft)"))
        .await;
    let job = app.wait_terminal(&id, JOB_DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    app.wait_event(&id, "notified", NOTIFY_DEADLINE).await;

    let date = chrono::DateTime::from_timestamp(job.finished_at.unwrap(), 0)
        .unwrap()
        .format("%Y-%m-%d");
    let base = format!("{date}-quarterly-review-q3-q4-draft-{id}");
    assert_eq!(
        files_in(&dir),
        vec![format!("{base}.json"), format!("{base}.md")],
        "both files and no temp files"
    );
    let md = std::fs::read_to_string(dir.join(format!("{base}.md"))).unwrap();
    assert!(md.starts_with("# Quarterly Review: Q3/Q4 (draft)"), "{md}");
    assert!(md.contains(&id), "{md}");
    let output = job.output_text.clone().unwrap();
    let first_line = output.lines().find(|l| !l.trim().is_empty()).unwrap();
    assert!(
        md.contains(first_line.trim()),
        "the report holds the output:\n{md}"
    );
    let text = std::fs::read_to_string(dir.join(format!("{base}.json"))).unwrap();
    assert!(text.contains("\n  \"type\""), "pretty printed");
    let event: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(event["type"], "job.completed");
    assert_eq!(event["data"]["job"]["id"], id.as_str());
    assert_eq!(event["data"]["output_text"], output.as_str());
    // The job as the API shows it, its cost included.
    let (_, shown) = app.get(&format!("/v1/jobs/{id}")).await;
    assert!(shown["cost_usd"].as_f64().is_some(), "{shown}");
    assert_eq!(
        event["data"]["job"]["cost_usd"], shown["cost_usd"],
        "{event}"
    );
    assert_eq!(event["data"]["job"]["cost"], shown["cost"], "{event}");
    app.stop().await;
}

#[tokio::test]
async fn the_command_sink_gets_the_event_on_stdin_and_a_narrow_environment() {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("event.json");
    let target = target.to_str().unwrap();
    let sink = command(
        &[
            "sh",
            "-c",
            "cat > \"$OUT.part\" && env > \"$OUT.env\" && mv \"$OUT.part\" \"$OUT\"",
        ],
        &[("OUT", target)],
    );
    let app = helpers::spawn_app_with(with_sink("cmd", sink), SimConfig::default()).await;
    let id = app.submit(&helpers::job_body("piped")).await;
    let job = app.wait_terminal(&id, JOB_DEADLINE).await;
    app.wait_event(&id, "notified", NOTIFY_DEADLINE).await;

    let event: Value = serde_json::from_slice(&std::fs::read(target).unwrap()).unwrap();
    assert_eq!(event["type"], "job.completed");
    assert_eq!(event["data"]["job"]["id"], id.as_str());
    assert_eq!(
        event["data"]["output_text"],
        job.output_text.clone().unwrap().as_str()
    );
    let env = std::fs::read_to_string(format!("{target}.env")).unwrap();
    let vars: BTreeMap<&str, &str> = env.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(vars.get("RESPOOL_EVENT"), Some(&"job.completed"));
    assert_eq!(vars.get("RESPOOL_JOB_ID"), Some(&id.as_str()));
    assert_eq!(vars.get("RESPOOL_JOB_STATUS"), Some(&"completed"));
    assert_eq!(vars.get("OUT"), Some(&target));
    assert!(vars.contains_key("PATH"));
    // `cargo test` gives the test process variables like these; the program must not inherit
    // the daemon's environment wholesale.
    for inherited in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME", "RUST_TEST_THREADS"] {
        if std::env::var_os(inherited).is_some() {
            assert!(!vars.contains_key(inherited), "{inherited} leaked: {env}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_failing_command_is_retried_then_dead_lettered() {
    let out = tempfile::tempdir().unwrap();
    let count = out.path().join("runs");
    let sink = command(
        &[
            "sh",
            "-c",
            "echo run >> \"$COUNT\"; echo \"noise on stdout\"; echo \"upstream said no for $RESPOOL_JOB_ID\" >&2; exit 3",
        ],
        &[("COUNT", count.to_str().unwrap())],
    );
    let app = helpers::spawn_app_with(
        |cfg| {
            with_sink("cmd", sink)(cfg);
            cfg.notify.max_attempts = 3;
        },
        SimConfig::default(),
    )
    .await;
    let id = app.submit(&helpers::job_body("refused")).await;
    app.wait_terminal(&id, JOB_DEADLINE).await;
    app.wait_event(&id, "notify_failed", NOTIFY_DEADLINE).await;

    let runs = std::fs::read_to_string(&count).unwrap();
    assert_eq!(runs.lines().count(), 3, "three tries");
    let rows = app.notification_rows(&id).await;
    assert_eq!(rows[0]["state"], "dead");
    assert_eq!(rows[0]["attempts"], 3);
    let error = rows[0]["last_error"].as_str().unwrap();
    assert!(error.contains("exited with status 3"), "{error}");
    assert!(
        error.contains(&format!("upstream said no for {id}")),
        "{error}"
    );
    assert!(
        !error.contains("noise on stdout"),
        "stderr is quoted: {error}"
    );
    assert_eq!(app.count_events(&id, "notified").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_missing_program_is_dead_at_once() {
    let sink = command(&["/nonexistent/respool-notify-hook"], &[]);
    let app = helpers::spawn_app_with(with_sink("cmd", sink), SimConfig::default()).await;
    let id = app.submit(&helpers::job_body("nowhere")).await;
    app.wait_terminal(&id, JOB_DEADLINE).await;
    app.wait_event(&id, "notify_failed", NOTIFY_DEADLINE).await;
    let rows = app.notification_rows(&id).await;
    assert_eq!(rows[0]["state"], "dead");
    assert_eq!(rows[0]["attempts"], 1, "not retried: {rows:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_and_retried() {
    let out = tempfile::tempdir().unwrap();
    let count = out.path().join("runs");
    // The first run hangs past the timeout; the next ones succeed.
    let script = "echo run >> \"$COUNT\"; if [ \"$(wc -l < \"$COUNT\")\" -eq 1 ]; then exec sleep 60; fi; cat > /dev/null";
    let mut sink = command(&["sh", "-c", script], &[("COUNT", count.to_str().unwrap())]);
    if let SinkConfig::Command(c) = &mut sink {
        c.timeout = Duration::from_secs(2);
    }
    let app = helpers::spawn_app_with(with_sink("cmd", sink), SimConfig::default()).await;
    let id = app.submit(&helpers::job_body("slow-hook")).await;
    app.wait_terminal(&id, JOB_DEADLINE).await;
    app.wait_event(&id, "notified", NOTIFY_DEADLINE).await;
    let rows = app.notification_rows(&id).await;
    assert_eq!(rows[0]["state"], "delivered");
    assert_eq!(rows[0]["attempts"], 2, "{rows:?}");
    assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 2);
    app.stop().await;
}
