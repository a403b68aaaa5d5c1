//! Crash tests of attachments with real processes: the `respool` binary killed with SIGKILL
//! while it uploads a job's document to a simulator process (`respool sim`) that holds uploads
//! back (`upload_delay`). The simulator outlives the daemon, so its counters (creates per job,
//! files stored) tell whether a job was lost or sent twice, or a file uploaded twice.
//!
//! The daemon gives a job's submit claim back before it uploads (no create is in flight), so a
//! crash mid-upload must end with the job completed after a restart: the upload claim runs out
//! (its 30 s lease), the next claim looks upstream for a file the lost upload may have made and
//! uploads only if there is none, and then exactly one create names that file.

use std::time::{Duration, Instant};

use respool::sim::{self, Faults, SimConfig};
use serde_json::{Value, json};

use crate::helpers::process::*;

/// A small but well-formed PDF.
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

/// The key the harness's daemon sends upstream (the simulator accepts any bearer key).
const SIM_KEY: &str = "sk-test-process";

/// What the simulator logs when it starts holding an upload back, and when a held upload's
/// client went away before it was stored.
const HELD: &str = "upload held back";
const ABANDONED: &str = "upload abandoned by its client";

/// Replaces the simulator's faults (`POST /_sim/faults` sets them all at once).
async fn set_sim_faults(h: &Harness, faults: Value) {
    let r = h
        .http
        .post(format!("{}/_sim/faults", h.sim_base))
        .json(&faults)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "POST /_sim/faults {faults}: {text}");
}

/// Uploads a file to the daemon (`POST /v1/attachments`); returns its `att_…` id.
async fn attach(h: &Harness, filename: &str, data: &[u8]) -> String {
    let part = reqwest::multipart::Part::bytes(data.to_vec()).file_name(filename.to_string());
    let r = h
        .authed(h.http.post(format!("{}/v1/attachments", h.base)))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status.as_u16(), 201, "POST /v1/attachments: {v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("att_"), "{v}");
    id
}

/// Submits a job that names attachments; returns its id.
async fn submit_with(h: &Harness, name: &str, attachments: &[&str]) -> String {
    h.submit_body(&json!({
        "name": name,
        "model": "gpt-5",
        "input": "Summarise the attached report.",
        "attachments": attachments,
    }))
    .await
}

/// GET on the simulator's API, as the daemon authenticates to it.
async fn sim_get(h: &Harness, path: &str) -> Value {
    let r = h
        .http
        .get(format!("{}/v1{path}", h.sim_base))
        .bearer_auth(SIM_KEY)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "GET sim /v1{path}: {status}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The live files in the simulator's Files API.
async fn sim_files(h: &Harness) -> Vec<Value> {
    sim_get(h, "/files").await["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The `file_id`s the create of a response named in its input.
async fn file_ids_sent(h: &Harness, response_id: &str) -> Vec<String> {
    let items = sim_get(
        h,
        &format!("/responses/{response_id}/input_items?order=asc"),
    )
    .await;
    let mut ids = Vec::new();
    for item in items["data"].as_array().unwrap() {
        for part in item["content"].as_array().into_iter().flatten() {
            if let Some(id) = part["file_id"].as_str() {
                ids.push(id.to_string());
            }
        }
    }
    ids
}

fn timeline(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("    {} {}: {}", e["at"], e["kind"], e["message"]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until every job gave its claim back to upload (`submit_retry` "uploading 1
/// attachment") and the simulator holds `held` uploads back.
async fn wait_upload_in_flight(h: &mut Harness, ids: &[String], held: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        h.daemon().assert_running();
        let mut released = 0;
        for id in ids {
            let events = h.events(id).await;
            if events.iter().any(|e| {
                e["kind"] == "submit_retry"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("uploading 1 attachment"))
            }) {
                released += 1;
            }
        }
        let holding = h.sim.output().matches(HELD).count();
        if released == ids.len() && holding >= held {
            assert_eq!(
                holding, held,
                "more uploads reached the simulator than expected"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the upload never got under way ({released} of {} jobs released their claim, \
             {holding} uploads held back); sim log:\n{}",
            ids.len(),
            h.sim.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills the daemon mid-upload and checks that the simulator dropped the held upload with
/// its connection (nothing stored); then lifts the delay and restarts the daemon.
async fn crash_and_restart(h: &mut Harness) {
    let mut daemon = h.take_daemon();
    kill9(&mut daemon);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h.sim.output().contains(ABANDONED) {
        assert!(
            Instant::now() < deadline,
            "the simulator did not drop the upload of the killed daemon; its log:\n{}",
            h.sim.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.sim_stats().await["files_uploaded"], 0);
    set_sim_faults(h, json!({})).await;
    h.start_daemon().await;
}

/// The restarted daemon looked in the Files API for the lost upload before uploading again
/// (call it before the test lists the files itself). Prints the daemon's warnings.
async fn assert_looked_upstream(h: &Harness) {
    let stats = h.sim_stats().await;
    assert!(
        stats["file_lists"].as_u64().unwrap() >= 1,
        "the lost upload was never looked for upstream: {stats}"
    );
    let log = h.daemon.as_ref().unwrap().output();
    for line in log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
    {
        eprintln!("daemon after the restart: {line}");
    }
}

/// Checks one job after the restart: completed, created once upstream, its create naming
/// `file_id`, never uncertain.
async fn assert_completed_once_with(h: &Harness, id: &str, job: &Value, file_id: &str) {
    let events = h.events(id).await;
    let shown = timeline(&events);
    assert_eq!(status(job), "completed", "{id}: {job}\n{shown}");
    assert!(has_output(job), "{id} has no output: {job}");
    let creates = h.creates_by_job().await;
    assert_eq!(
        creates.get(id),
        Some(&1),
        "{id}: creates {creates:?}\n{shown}"
    );
    let responses: Value = h
        .http
        .get(format!("{}/_sim/responses?job_id={id}", h.sim_base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let responses = responses["data"].as_array().unwrap();
    assert_eq!(responses.len(), 1, "{id}: {responses:?}");
    let response_id = job["response_id"].as_str().unwrap();
    assert_eq!(
        file_ids_sent(h, response_id).await,
        [file_id],
        "{id}'s create did not name the uploaded file\n{shown}"
    );
    assert!(
        !events.iter().any(|e| e["kind"] == "submit_uncertain"),
        "{id} became uncertain:\n{shown}"
    );
}

/// kill -9 while the daemon uploads a job's PDF (the simulator holds the upload 60 s): the
/// upload dies with the daemon, and after a restart the job completes with one upload and one
/// create naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_upload_completes_with_one_upload_and_one_create() {
    let started = Instant::now();
    let mut h = Harness::start(Opts {
        run_time: "2s",
        ..Opts::default()
    })
    .await;
    set_sim_faults(&h, json!({"upload_delay": "60s"})).await;
    let att = attach(&h, "report.pdf", PDF).await;
    let id = submit_with(&h, "upload-crash", &[&att]).await;
    let ids = [id.clone()];
    wait_upload_in_flight(&mut h, &ids, 1).await;
    let killed_at = started.elapsed();
    crash_and_restart(&mut h).await;

    let jobs = h.wait_terminal(&ids, Duration::from_secs(90)).await;
    assert_looked_upstream(&h).await;
    let files = sim_files(&h).await;
    assert_eq!(files.len(), 1, "files upstream: {files:?}");
    assert_eq!(files[0]["filename"], "report.pdf");
    assert_eq!(files[0]["bytes"], PDF.len() as u64);
    assert_eq!(h.sim_stats().await["files_uploaded"], 1);
    let file_id = files[0]["id"].as_str().unwrap();
    assert_completed_once_with(&h, &id, &jobs[&id], file_id).await;
    assert_eq!(h.sim_stats().await["creates"], 1);
    eprintln!(
        "crash mid-upload: killed at {:.1}s, completed at {:.1}s; timeline:\n{}",
        killed_at.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        timeline(&h.events(&id).await)
    );
}

/// Two jobs with the same attachment, submitted at once: one upload is under way (the other
/// job waits for it) when the daemon is killed. After a restart both complete, the file was
/// uploaded once and each job created once, both naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_shared_upload_uploads_once_for_both_jobs() {
    let started = Instant::now();
    let mut h = Harness::start(Opts {
        run_time: "2s",
        ..Opts::default()
    })
    .await;
    set_sim_faults(&h, json!({"upload_delay": "60s"})).await;
    let att = attach(&h, "report.pdf", PDF).await;
    let names = [att.as_str()];
    let (a, b) = tokio::join!(
        submit_with(&h, "shared-a", &names),
        submit_with(&h, "shared-b", &names)
    );
    let ids = [a, b];
    wait_upload_in_flight(&mut h, &ids, 1).await;
    let killed_at = started.elapsed();
    crash_and_restart(&mut h).await;

    let jobs = h.wait_terminal(&ids, Duration::from_secs(90)).await;
    assert_looked_upstream(&h).await;
    let files = sim_files(&h).await;
    assert_eq!(files.len(), 1, "files upstream: {files:?}");
    assert_eq!(h.sim_stats().await["files_uploaded"], 1);
    let file_id = files[0]["id"].as_str().unwrap();
    for id in &ids {
        assert_completed_once_with(&h, id, &jobs[id], file_id).await;
    }
    assert_eq!(h.sim_stats().await["creates"], 2);
    eprintln!(
        "crash mid shared upload: killed at {:.1}s, both completed at {:.1}s",
        killed_at.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    for id in &ids {
        eprintln!("{id}:\n{}", timeline(&h.events(id).await));
    }
}

/// The fault itself: an upload held back by `upload_delay` whose client gives up is never
/// stored (the handler is dropped with the connection); one whose client waits is stored and
/// answered after the delay.
#[tokio::test]
async fn a_held_upload_whose_client_leaves_is_not_stored() {
    let sim = sim::spawn(SimConfig {
        faults: Faults {
            upload_delay: Duration::from_millis(800),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .expect("sim starts");
    let upload = |timeout: Duration| {
        let form = reqwest::multipart::Form::new()
            .text("purpose", "user_data")
            .part(
                "file",
                reqwest::multipart::Part::bytes(PDF.to_vec()).file_name("report.pdf"),
            );
        reqwest::Client::new()
            .post(format!("{}/files", sim.base_url()))
            .bearer_auth("k")
            .timeout(timeout)
            .multipart(form)
            .send()
    };
    let gave_up = upload(Duration::from_millis(200)).await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));
    // Well past the delay: had the handler lived on, it would have stored the file.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(sim.files().is_empty());
    assert_eq!(sim.stats().files_uploaded, 0);

    let asked = Instant::now();
    let r = upload(Duration::from_secs(10)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(asked.elapsed() >= Duration::from_millis(800));
    let file: Value = r.json().await.unwrap();
    let files = sim.files();
    assert_eq!(files.len(), 1);
    assert_eq!(file["id"], files[0].id.as_str());
    assert_eq!(sim.stats().files_uploaded, 1);
    sim.shutdown().await;
}
