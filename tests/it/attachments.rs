//! Attachments through the real daemon and simulator: local files are read beside a jobs
//! file, uploaded to the daemon (`POST /v1/attachments`), uploaded to OpenAI's Files API once
//! per content, and sent as `input_file` / `input_image` parts; an upload whose answer is lost
//! is found upstream instead of sent again; a file deleted upstream is uploaded again; files
//! nothing needs are deleted upstream by retention.

use std::collections::BTreeMap;
use std::time::Duration;

use respool::job::spec::{Blob, parse_jobs_file_with_blobs};
use respool::sim::{Faults, SimConfig};
use serde_json::{Value, json};

use crate::helpers::{self, TestApp};

/// A small but well-formed PDF.
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

fn png(len: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0".to_vec();
    // Filler the simulator does not look at: sizes either side of the inline limit.
    v.resize(len, 0x42);
    v
}

/// A folder like a user's: a PDF, a folder of documents (non-ASCII Markdown, a CSV of many
/// short lines, one long line of ASCII), a small image and a large one; and a jobs file.
fn documents() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("papers")).unwrap();
    std::fs::write(root.join("report.pdf"), PDF).unwrap();
    std::fs::write(
        root.join("papers/notes.md"),
        "# Résumé — 東京\n\nNotes with ünïcödé.\n",
    )
    .unwrap();
    let csv: String = (0..2000).map(|i| format!("{i},row {i}\n")).collect();
    std::fs::write(root.join("papers/data.csv"), csv).unwrap();
    std::fs::write(root.join("papers/long.txt"), "word ".repeat(40_000)).unwrap();
    std::fs::write(root.join("small.png"), png(2_000)).unwrap();
    std::fs::write(root.join("large.png"), png(300 * 1024)).unwrap();
    let jobs = root.join("jobs.yaml");
    std::fs::write(
        &jobs,
        "jobs:\n  - name: read-them\n    model: gpt-5\n    input: Summarise these documents.\n    attachments: [report.pdf, \"papers/*\", small.png, large.png]\n",
    )
    .unwrap();
    (dir, jobs)
}

/// Uploads each file to the daemon as the CLI does; checks the id it answers.
async fn upload(app: &TestApp, blobs: &BTreeMap<String, Blob>) {
    for (id, blob) in blobs {
        let part = reqwest::multipart::Part::bytes(blob.data.as_ref().clone())
            .file_name(blob.meta.filename.clone());
        let r = app
            .request(reqwest::Method::POST, "/v1/attachments")
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let got: Value = r.json().await.unwrap();
        assert_eq!(got["id"], id.as_str());
        assert_eq!(got["bytes"], blob.data.len() as u64);
    }
}

/// The user's folder read as `respool submit` reads it, its files uploaded to the daemon.
async fn read_and_upload(app: &TestApp) -> (tempfile::TempDir, respool::job::spec::ParsedJobs) {
    let (dir, jobs) = documents();
    let text = std::fs::read_to_string(&jobs).unwrap();
    let parsed = parse_jobs_file_with_blobs(
        "jobs.yaml",
        &text,
        &|_| None,
        &respool::reload::beside(&jobs),
    )
    .unwrap();
    upload(app, &parsed.blobs).await;
    (dir, parsed)
}

/// The app, with the simulator's uploads breaking as `faults` says.
async fn app_with(faults: Faults) -> TestApp {
    helpers::spawn_app_with(
        |_| {},
        SimConfig {
            faults,
            ..helpers::fast_sim()
        },
    )
    .await
}

async fn run(app: &TestApp, spec: &respool::job::JobSpec, input: &str) -> Value {
    let mut body = spec.to_rest_body();
    body.insert("input".into(), json!(input));
    let id = app.submit(&Value::Object(body)).await;
    app.wait_terminal(&id, Duration::from_secs(30)).await;
    let (_, job) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(job["status"], "completed", "{job}");
    job
}

/// The content parts of the first input message OpenAI received for a job.
fn received_parts(app: &TestApp, job: &Value) -> Vec<Value> {
    let request = app
        .sim
        .request(job["response_id"].as_str().unwrap())
        .expect("the simulator kept the create");
    request["input"][0]["content"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_local_pdf_and_a_folder_of_documents_reach_openai_once() {
    let app = helpers::spawn_app().await;
    let (dir, parsed) = read_and_upload(&app).await;
    let spec = &parsed.specs[0];
    assert_eq!(spec.attachments.len(), 6);

    let job = run(&app, spec, "Summarise these documents.").await;
    let parts = received_parts(&app, &job);
    // Documents as files, the small image inline, the large one as a file, then the text.
    let kinds: Vec<(&str, bool)> = parts
        .iter()
        .map(|p| (p["type"].as_str().unwrap(), p.get("file_id").is_some()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("input_file", true),
            ("input_file", true),
            ("input_file", true),
            ("input_file", true),
            ("input_image", false),
            ("input_image", true),
            ("input_text", false),
        ],
        "{parts:#?}"
    );
    assert_eq!(parts[6]["text"], "Summarise these documents.");
    assert!(
        parts[4]["image_url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    // What OpenAI stored is byte for byte what is on disk, under the file's own name.
    let files = app.sim.files();
    assert_eq!(files.len(), 5, "one upload per file");
    let on_disk = |name: &str| {
        let path = [dir.path().join(name), dir.path().join("papers").join(name)]
            .into_iter()
            .find(|p| p.exists())
            .unwrap();
        std::fs::read(path).unwrap()
    };
    for f in &files {
        assert_eq!(f.content, on_disk(&f.filename), "{}", f.filename);
        let want = if f.filename.ends_with(".png") {
            "vision"
        } else {
            "user_data"
        };
        assert_eq!(f.purpose, want, "{}", f.filename);
    }
    let file_ids: Vec<&str> = parts.iter().filter_map(|p| p["file_id"].as_str()).collect();
    for id in &file_ids {
        assert!(files.iter().any(|f| &f.id == id), "{id}");
    }
    // The answer cites the documents by name.
    let answer = job["output_text"].as_str().unwrap();
    assert!(answer.contains("report.pdf"), "{answer}");
    let kinds = app.event_kinds(job["id"].as_str().unwrap()).await;
    assert_eq!(kinds.iter().filter(|k| *k == "attachment").count(), 5);

    // The same files for another job: nothing is uploaded again.
    let again = run(&app, spec, "Now list the risks.").await;
    assert_eq!(app.sim.files().len(), 5);
    let again_ids: Vec<String> = received_parts(&app, &again)
        .iter()
        .filter_map(|p| p["file_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(again_ids, file_ids);

    // A file deleted upstream (by someone else) is uploaded again, the others reused.
    assert!(app.sim.delete_file(file_ids[0]));
    // The cache trusts a file seen in the last minute; a minute on, it looks again.
    app.clock.advance(Duration::from_secs(61));
    let third = run(&app, spec, "And the open questions?").await;
    let files = app.sim.files();
    assert_eq!(files.len(), 6, "the deleted file was uploaded once more");
    let third_ids: Vec<String> = received_parts(&app, &third)
        .iter()
        .filter_map(|p| p["file_id"].as_str().map(str::to_string))
        .collect();
    assert_ne!(third_ids[0], file_ids[0]);
    assert_eq!(&third_ids[1..], &again_ids[1..]);

    // Retention deletes upstream what no job has used for a week; the bytes stay while the
    // jobs that name them do.
    app.clock.advance(Duration::from_secs(8 * 24 * 3600));
    let report = app.orchestrator.prune_now().await.unwrap();
    assert_eq!(report.uploads, 5);
    assert_eq!(report.attachments, 0);
    assert!(app.sim.files().iter().all(|f| f.deleted));
    assert_eq!(app.count_rows("uploads").await, 0);
    assert_eq!(app.count_rows("attachments").await, 6);
    app.stop().await;
}

#[tokio::test]
async fn an_upload_whose_answer_is_lost_is_found_upstream_not_sent_again() {
    let app = app_with(Faults {
        upload_then_drop: 1.0,
        ..Faults::default()
    })
    .await;
    let (_dir, parsed) = read_and_upload(&app).await;
    let mut spec = parsed.specs[0].clone();
    // One document is enough to see the ledger at work.
    spec.attachments.truncate(1);
    let job = run(&app, &spec, "Read the report.").await;
    // Every upload's answer was lost; each file was stored once and found.
    let files = app.sim.files();
    assert_eq!(files.len(), 1, "{files:?}");
    let parts = received_parts(&app, &job);
    assert_eq!(parts[0]["file_id"], files[0].id.as_str());
    let events = app.events(job["id"].as_str().unwrap()).await;
    let said = |needle: &str| {
        events
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains(needle))
    };
    assert!(said("may or may not have reached OpenAI"), "{events:#?}");
    assert!(said("whose answer was lost"), "{events:#?}");
    // The job was submitted once, and no create was ever uncertain.
    assert_eq!(app.sim.stats().creates, 1);
    assert!(!said("create outcome unknown"));
    app.stop().await;
}

#[tokio::test]
async fn uploads_that_never_arrived_are_sent_again_until_one_does() {
    let app = app_with(Faults {
        upload_drop_before: 1.0,
        ..Faults::default()
    })
    .await;
    let (_dir, parsed) = read_and_upload(&app).await;
    let mut spec = parsed.specs[0].clone();
    spec.attachments.truncate(2);
    let id = app.submit(&Value::Object(spec.to_rest_body())).await;
    app.wait_event(&id, "attachment", Duration::from_secs(20))
        .await;
    assert!(app.sim.files().is_empty());
    assert_eq!(app.job(&id).await.status, respool::job::JobStatus::Pending);
    // The connection comes back: the files go up once each and the job runs.
    app.sim.set_faults(Faults::default());
    app.wait_terminal(&id, Duration::from_secs(60)).await;
    let (_, job) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(app.sim.files().len(), 2);
    assert_eq!(app.sim.stats().creates, 1);
    app.stop().await;
}

#[tokio::test]
async fn bad_files_and_unknown_attachments_are_refused_with_their_names() {
    let app = helpers::spawn_app().await;
    let send = async |name: &str, data: &[u8]| {
        let part = reqwest::multipart::Part::bytes(data.to_vec()).file_name(name.to_string());
        let r = app
            .request(reqwest::Method::POST, "/v1/attachments")
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap())
    };
    for (name, data, want) in [
        ("fake.pdf", &b"hello"[..], "`fake.pdf` is not a PDF file"),
        ("empty.txt", &b""[..], "`empty.txt` is empty"),
        ("tool.exe", &b"MZ"[..], "not supported"),
        ("latin1.txt", &b"caf\xe9"[..], "not UTF-8"),
    ] {
        let (status, body) = send(name, data).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"]["param"], "file");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{name}: {msg}");
    }
    // No `file` part, or not multipart at all.
    let r = app
        .request(reqwest::Method::POST, "/v1/attachments")
        .multipart(reqwest::multipart::Form::new().text("other", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .request(reqwest::Method::POST, "/v1/attachments")
        .json(&json!({"file": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Too large: refused before it is stored.
    let big = vec![b'a'; respool::job::attachment::MAX_ATTACHMENT_BYTES + 1];
    let (status, body) = send("big.txt", &big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(app.count_rows("attachments").await, 0);

    // A job naming an attachment the daemon does not have: 404, naming it; nothing stored.
    let unknown = format!("att_{}", "a".repeat(64));
    let (status, body) = app
        .post_job(&json!({"model": "gpt-5", "input": "hi", "attachments": [unknown]}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["param"], "attachments.0");
    assert_eq!(body["error"]["code"], "attachment_not_found");
    assert_eq!(app.count_rows("jobs").await, 0);
    // A good upload is shown by its id.
    let (status, body) = send("ok.md", "# ok — ✓\n".as_bytes()).await;
    assert_eq!(status, 201);
    let (status, shown) = app
        .get(&format!("/v1/attachments/{}", body["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(shown["filename"], "ok.md");
    assert_eq!(shown["media_type"], "text/markdown");
    app.stop().await;
}
