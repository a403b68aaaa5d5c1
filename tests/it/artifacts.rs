//! Artifacts through the real daemon and simulator: generated images decoded into the job's
//! folder and taken out of the stored response, container files downloaded before their
//! container expires, each listed and served by the API and the pages, saved by the CLI,
//! limited by the config, and deleted with the job.

use std::time::Duration;

use respool::job::JobStatus;
use serde_json::{Value, json};
use sha2::Digest;

use crate::helpers::{self, TestApp};

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn app() -> TestApp {
    helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await
}

/// Runs a job to its end; its id and its artifact list.
async fn run(app: &TestApp, body: Value) -> (String, Vec<Value>) {
    let id = app.submit(&body).await;
    let job = app.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let (status, list) = app.get(&format!("/v1/jobs/{id}/artifacts")).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["object"], "list");
    (id, list["data"].as_array().unwrap().clone())
}

async fn fetch(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap()
}

fn image_job(input: &str) -> Value {
    json!({"name": "poster", "model": "gpt-5", "input": input,
           "tools": [{"type": "image_generation", "size": "1024x1024", "quality": "low"}]})
}

#[tokio::test]
async fn generated_images_are_kept_served_and_taken_out_of_the_response() {
    let app = app().await;
    let (id, list) = run(
        &app,
        image_job("SIM_IMAGE_COUNT=2 Draw a lighthouse at dusk — phare au crépuscule"),
    )
    .await;
    let names: Vec<&str> = list.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["image-1.png", "image-2.png"]);
    for a in &list {
        assert_eq!(a["kind"], "image");
        assert_eq!(a["media_type"], "image/png");
        assert_eq!(a["error"], Value::Null);
        assert!(a["source"].as_str().unwrap().starts_with("ig_"), "{a}");
        let url = a["url"].as_str().unwrap();
        let resp = fetch(&app, url).await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers().clone();
        assert_eq!(h["content-type"], "image/png");
        assert!(
            h["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("inline")
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("sandbox")
        );
        let bytes = resp.bytes().await.unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(a["bytes"].as_u64().unwrap(), bytes.len() as u64);
        assert_eq!(a["sha256"].as_str().unwrap(), sha256(&bytes));
        // On disk under the database's folder, one folder per job, named by the SHA-256 (no
        // name a model chose reaches the file system).
        let on_disk = std::fs::read(
            app.dir
                .path()
                .join("artifacts")
                .join(&id)
                .join(a["sha256"].as_str().unwrap()),
        )
        .unwrap();
        assert_eq!(on_disk, bytes);
        // `?download=true` makes it a download.
        let resp = fetch(&app, &format!("{url}?download=true")).await;
        assert!(
            resp.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("attachment")
        );
    }
    // The stored response names the files instead of carrying their base64.
    let (_, response) = app.get(&format!("/v1/jobs/{id}/response")).await;
    let images: Vec<&Value> = response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "image_generation_call")
        .collect();
    assert_eq!(images.len(), 2);
    assert_eq!(images[0]["result"], Value::Null);
    assert_eq!(images[0]["respool_artifact"], "image-1.png");
    assert_eq!(images[1]["respool_artifact"], "image-2.png");
    // The timeline says so.
    assert!(
        app.event_kinds(&id)
            .await
            .contains(&"artifacts".to_string())
    );
    // A name the job does not have, and one that tries to leave the folder.
    let (status, err) = app.get(&format!("/v1/jobs/{id}/artifacts/nope.png")).await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["code"], "artifact_not_found", "{err}");
    for bad in ["..%2F..%2Ftest.db", "%2E%2E", "..", "image-1.png%00"] {
        let resp = fetch(&app, &format!("/v1/jobs/{id}/artifacts/{bad}")).await;
        assert_eq!(resp.status(), 404, "{bad}");
        let body = resp.bytes().await.unwrap();
        assert!(
            !body.starts_with(b"SQLite format"),
            "{bad} served the database"
        );
    }
    let (status, _) = app
        .get("/v1/jobs/job_01JZZZZZZZZZZZZZZZZZZZZZZZ/artifacts")
        .await;
    assert_eq!(status, 404);
    // The page shows them.
    let page = fetch(&app, &format!("/jobs/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<img src=") && page.contains("alt=\"image-1.png\""),
        "{page}"
    );
    assert!(
        page.contains("artifacts&#x2f;image-2.png?download=true"),
        "{page}"
    );
    let resp = fetch(&app, &format!("/jobs/{id}/artifacts/image-2.png")).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
}

#[tokio::test]
async fn a_job_without_artifacts_lists_none_and_a_job_past_its_limit_keeps_the_base64() {
    let app =
        helpers::spawn_app_with(|c| c.artifacts.max_job_bytes = 10, helpers::fast_sim()).await;
    let (_, list) = run(
        &app,
        json!({"name": "plain", "model": "gpt-5", "input": "Just words, please."}),
    )
    .await;
    assert!(list.is_empty(), "{list:?}");

    let (id, list) = run(&app, image_job("SIM_IMAGE_COUNT=1 A tiny square")).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["bytes"], 0);
    assert_eq!(list[0]["url"], Value::Null);
    let error = list[0]["error"].as_str().unwrap();
    assert!(error.contains("artifacts.max_job_bytes"), "{error}");
    let (status, err) = app
        .get(&format!("/v1/jobs/{id}/artifacts/image-1.png"))
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "artifact_not_kept");
    // Not kept on disk, so the response keeps the image.
    let (_, response) = app.get(&format!("/v1/jobs/{id}/response")).await;
    let item = response["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "image_generation_call")
        .unwrap();
    assert!(item["result"].as_str().is_some_and(|r| r.len() > 100));
    assert!(item.get("respool_artifact").is_none());
}

#[tokio::test]
async fn the_cli_saves_them_checked_and_never_overwrites_unasked() {
    let app = app().await;
    let (id, list) = run(&app, image_job("SIM_IMAGE_COUNT=3 Three moods of the sea")).await;
    assert_eq!(list.len(), 3);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("saved");
    let cli = async |args: &[&str]| {
        let mut all: Vec<String> = ["jobs", "artifacts", &id, "--server", &app.base]
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.extend(args.iter().map(|s| s.to_string()));
        let cwd = out.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            assert_cmd::Command::cargo_bin("respool")
                .unwrap()
                .args(&all)
                .current_dir(cwd)
                .env_remove("RESPOOL_CONFIG")
                .env_remove("RESPOOL_TOKEN")
                .timeout(Duration::from_secs(60))
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let dir_arg = dir.display().to_string();
    let first = cli(&["--dir", &dir_arg]).await;
    assert!(first.status.success(), "{first:?}");
    for a in &list {
        let saved = std::fs::read(dir.join(a["name"].as_str().unwrap())).unwrap();
        assert_eq!(sha256(&saved), a["sha256"].as_str().unwrap());
    }
    // A file already there stops it, naming the file, and changes nothing.
    std::fs::write(dir.join("image-2.png"), b"mine").unwrap();
    let again = cli(&["--dir", &dir_arg]).await;
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("image-2.png") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("image-2.png")).unwrap(), b"mine");
    let forced = cli(&["--dir", &dir_arg, "--force"]).await;
    assert!(forced.status.success(), "{forced:?}");
    assert_ne!(std::fs::read(dir.join("image-2.png")).unwrap(), b"mine");
    // `--list` lists without writing.
    let listed = cli(&["--list"]).await;
    assert!(listed.status.success());
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("image-3.png\timage\t"), "{text}");
    assert!(!out.path().join(&id).exists());
    // Without `--dir`: a folder named after the job, in the current directory.
    let default = cli(&[]).await;
    assert!(default.status.success(), "{default:?}");
    assert!(out.path().join(&id).join("image-1.png").exists());
}

#[tokio::test]
async fn retention_deletes_a_jobs_folder_with_the_job() {
    let app = helpers::spawn_app_with(
        |c| c.retention.jobs = Some(Duration::from_secs(3600)),
        helpers::fast_sim(),
    )
    .await;
    let (id, list) = run(&app, image_job("SIM_IMAGE_COUNT=1 Soon gone")).await;
    let folder = app.dir.path().join("artifacts").join(&id);
    assert!(folder.join(list[0]["sha256"].as_str().unwrap()).exists());
    // A folder a crash left behind (its job already deleted) goes too.
    let orphan = app
        .dir
        .path()
        .join("artifacts")
        .join("job_01JZZZZZZZZZZZZZZZZZZZZZZZ");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("x.csv"), "a,b\n").unwrap();
    // In a finished job's folder, a file no row names (a crash, a lost race) goes once it is
    // an hour old; a fresh one (a write that may still be recorded) stays.
    app.clock.advance(Duration::from_secs(7200));
    let (other, other_list) = run(&app, image_job("SIM_IMAGE_COUNT=1 Kept a while")).await;
    let other_folder = app.dir.path().join("artifacts").join(&other);
    let stray = other_folder.join("0".repeat(64));
    let fresh = other_folder.join(".part-fresh");
    std::fs::write(&stray, b"left by a crash").unwrap();
    std::fs::write(&fresh, b"being written").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stray)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    // The clock's jump lets the daemon's own hourly pass run meanwhile: whichever pass does
    // the work, after one more nothing of the first job is left.
    app.orchestrator.prune_now().await.unwrap();
    assert!(!folder.exists());
    assert!(!orphan.exists());
    assert!(!stray.exists());
    assert!(fresh.exists());
    assert!(
        other_folder
            .join(other_list[0]["sha256"].as_str().unwrap())
            .exists()
    );
    let (status, _) = app.get(&format!("/v1/jobs/{id}/artifacts")).await;
    assert_eq!(status, 404);
}

fn code_job(input: &str) -> Value {
    json!({"name": "analysis", "model": "gpt-4.1", "input": input,
           "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]})
}

#[tokio::test]
async fn container_files_are_downloaded_with_the_bytes_the_code_wrote() {
    let app = app().await;
    let (id, list) = run(
        &app,
        code_job("SIM_CONTAINER_FILES=5 Tabulate rainfall in Tōkyō and Zürich, and chart it"),
    )
    .await;
    let containers = app.sim.containers();
    assert_eq!(containers.len(), 1, "{containers:?}");
    let files = &containers[0].files;
    assert_eq!(files.len(), 5);
    assert_eq!(list.len(), 5, "{list:?}");
    for (a, f) in list.iter().zip(files) {
        assert_eq!(a["kind"], "container_file");
        assert_eq!(a["error"], Value::Null, "{a}");
        assert_eq!(a["path"].as_str().unwrap(), f.path);
        assert_eq!(a["source"], format!("{}/{}", containers[0].id, f.id));
        let resp = fetch(&app, a["url"].as_str().unwrap()).await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers().clone();
        let inline = h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline");
        // Only a real image is shown inline; everything else is a download.
        assert_eq!(inline, f.content.starts_with(b"\x89PNG"), "{a}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(bytes.as_ref(), f.content.as_slice(), "{a}");
        assert_eq!(a["sha256"].as_str().unwrap(), sha256(&f.content));
    }
    // Each file came down once, though the poll that saw the end and the webhook's hint both
    // found the job unfinished.
    assert_eq!(app.sim.stats().container_file_downloads, 5);
    let names: Vec<&str> = list.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"results.csv"), "{names:?}");
    assert!(names.iter().any(|n| !n.is_ascii()), "{names:?}");
    // The page lists the files, and its sources link each cited file to its kept copy.
    let page = fetch(&app, &format!("/jobs/{id}"))
        .await
        .text()
        .await
        .unwrap();
    let sources = page
        .split("<ol class=\"sources\">")
        .nth(1)
        .expect("sources");
    let sources = sources.split("</ol>").next().unwrap();
    assert!(sources.contains("artifacts&#x2f;results.csv"), "{sources}");
    assert!(page.contains("<ul class=\"files\">"), "{page}");
}

#[tokio::test]
async fn a_container_gone_before_the_download_is_listed_with_the_reason() {
    let app = app().await;
    let body = json!({"name": "late", "model": "gpt-4.1", "input": "Make a CSV of tides",
        "metadata": {"sim": "container_expired"},
        "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]});
    let (id, list) = run(&app, body).await;
    assert!(!list.is_empty());
    for a in &list {
        let error = a["error"].as_str().unwrap_or_else(|| panic!("{a}"));
        assert!(error.contains("gone upstream"), "{error}");
        assert_eq!(a["url"], Value::Null);
    }
    let name = list[0]["name"].as_str().unwrap();
    let (status, err) = app
        .get(&format!(
            "/v1/jobs/{id}/artifacts/{}",
            respool::artifacts::encode_name(name)
        ))
        .await;
    assert_eq!(status, 409, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gone upstream")
    );
}

#[tokio::test]
async fn a_download_that_fails_once_is_tried_again() {
    let app = app().await;
    let body = json!({"name": "flaky", "model": "gpt-4.1", "input": "SIM_CONTAINER_FILES=3 Make three files",
        "metadata": {"sim": "container_file_drop"},
        "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]});
    let (_, list) = run(&app, body).await;
    assert_eq!(list.len(), 3);
    let files = &app.sim.containers()[0].files;
    for (a, f) in list.iter().zip(files) {
        assert_eq!(a["error"], Value::Null, "{a}");
        assert_eq!(a["sha256"].as_str().unwrap(), sha256(&f.content));
    }
}

#[tokio::test]
async fn a_file_over_the_limit_is_listed_not_downloaded() {
    let app =
        helpers::spawn_app_with(|c| c.artifacts.max_file_bytes = 64, helpers::fast_sim()).await;
    let (_, list) = run(&app, code_job("SIM_CONTAINER_FILES=2 A CSV and a chart")).await;
    let files = &app.sim.containers()[0].files;
    assert_eq!(list.len(), 2, "{list:?}");
    // The one over the limit was never asked for.
    let downloads = app.sim.stats().container_file_downloads;
    assert_eq!(
        downloads as usize,
        files.iter().filter(|f| f.content.len() <= 64).count()
    );
    for (a, f) in list.iter().zip(files) {
        if f.content.len() > 64 {
            let error = a["error"].as_str().unwrap_or_else(|| panic!("{a}"));
            assert!(error.contains("artifacts.max_file_bytes"), "{error}");
            assert_eq!(a["bytes"], 0);
        } else {
            assert_eq!(a["error"], Value::Null, "{a}");
        }
    }
    assert!(files.iter().any(|f| f.content.len() > 64));
}
