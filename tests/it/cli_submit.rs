//! `respool submit FILE` against the real daemon: every respool key of a jobs file's entries
//! (priority, budget_exempt, timeout, notify, idempotency_key, name) reaches the daemon, so
//! the job it stores has the spec the file says.

use respool::job::JobSpec;
use respool::job::spec::parse_jobs_file;
use serde_json::Value;

use crate::helpers;

const JOBS: &str = "\
jobs:
  - name: urgent
    model: gpt-5
    input: Summarize the incident.
    metadata: {team: ops}
    priority: 7
    budget_exempt: true
    timeout: 1h 30m 5s
    notify:
      - sink: console
        on: [failed]
    idempotency_key: urgent-incident-1
    reasoning: {effort: low}
  - name: plain
    model: gpt-5
    input: Hello.
";

#[tokio::test]
async fn submit_keeps_every_respool_key_of_a_jobs_file() {
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.sinks
                .insert("console".into(), respool::config::SinkConfig::Console {});
        },
        helpers::fast_sim(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.yaml");
    std::fs::write(&file, JOBS).unwrap();
    let server = app.base.clone();
    let target = file.clone();
    let out = tokio::task::spawn_blocking(move || {
        assert_cmd::Command::cargo_bin("respool")
            .unwrap()
            .arg("submit")
            .arg(&target)
            .args(["--server", &server, "--json"])
            .env_remove("RESPOOL_CONFIG")
            .env_remove("RESPOOL_TOKEN")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let submitted: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(submitted.len(), 2, "{stdout}");

    let expected =
        parse_jobs_file("jobs.yaml", JOBS, &|_| None, &respool::job::spec::NoFiles).unwrap();
    for (job, want) in submitted.iter().zip(&expected) {
        let id = job["id"].as_str().unwrap();
        let (status, body) = app.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(status, 200, "{body}");
        let stored: JobSpec = serde_json::from_value(body["spec"].clone()).unwrap();
        assert_eq!(&stored, want, "{body:#}");
        assert_eq!(body["priority"], want.priority, "{body}");
    }
    let urgent: JobSpec = serde_json::from_value(
        app.get(&format!(
            "/v1/jobs/{}",
            submitted[0]["id"].as_str().unwrap()
        ))
        .await
        .1["spec"]
            .clone(),
    )
    .unwrap();
    assert_eq!(urgent.priority, 7);
    assert!(urgent.budget_exempt);
    assert_eq!(urgent.timeout, Some(std::time::Duration::from_secs(5_405)));
    app.stop().await;
}
