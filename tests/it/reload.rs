//! Reloading the config and the jobs file through `POST /v1/admin/reload`: a bad file changes
//! nothing (400 naming the line; the old sinks and settings stay), a good one applies new
//! sinks, schedules and tokens; settings bound at start are refused with a restart message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use helpers::{TestApp, job_body, spawn_app_with};
use respool::config::{Config, Source};
use respool::sim::SimConfig;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::helpers;

/// A config file, its jobs file and two sink directories.
struct Files {
    dir: tempfile::TempDir,
    /// The test settings `spawn_app_with` chose, as YAML (everything but sinks and jobs).
    base: String,
}

impl Files {
    fn config(&self) -> PathBuf {
        self.dir.path().join("respool.yaml")
    }
    fn jobs(&self) -> PathBuf {
        self.dir.path().join("jobs.yaml")
    }
    fn sink_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// Writes the config: the base settings, then `extra` (sinks, notify, …).
    fn write_config(&self, extra: &str) {
        std::fs::write(self.config(), format!("{}{extra}", self.base)).unwrap();
    }
    fn write_jobs(&self, jobs: &str) {
        std::fs::write(self.jobs(), jobs).unwrap();
    }
    /// A sink section with file sinks writing into `sink_dir(name)`.
    fn sinks(&self, names: &[&str], default: &str) -> String {
        let mut out = String::from("sinks:\n");
        for n in names {
            out.push_str(&format!(
                "  {n}:\n    type: file\n    dir: {}\n",
                self.sink_dir(n).display()
            ));
        }
        out.push_str(&format!("notify:\n  default: [{default}]\n"));
        out
    }
}

/// Starts the app from a config file (so a reload reads it again), with `extra` config and
/// `jobs` as its jobs file.
async fn spawn_from_files(extra: &str, jobs: &str) -> (TestApp, Files) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Files {
        dir,
        base: String::new(),
    };
    files.write_jobs(jobs);
    let app = spawn_app_with(
        |cfg| {
            files.base = base_yaml(cfg);
            files.write_config(extra);
            *cfg = Config::load(&Source::File(files.config()), &|_| None).unwrap();
        },
        SimConfig::default(),
    )
    .await;
    (app, files)
}

/// The test defaults of `spawn_app_with`, as a config file.
fn base_yaml(cfg: &Config) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         database: {db}\n\
         upstream:\n  base_url: {base}\n  api_key: sk-test-key\n  request_timeout: 5s\n  \
         max_retry_delay: 5s\n  uncertain_create_wait: 3s\n\
         webhook:\n  secrets: [\"{secret}\"]\n\
         polling:\n  min_interval: 200ms\n  max_interval: 2s\n\
         shutdown_timeout: 5s\n\
         jobs_file: jobs.yaml\n",
        db = cfg.database.as_deref().unwrap(),
        base = cfg.upstream.base_url,
        secret = cfg.webhook.secrets[0].expose_secret(),
    )
}

/// Files a file sink wrote for a job.
fn written_for(dir: &Path, job_id: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().contains(job_id))
                .count()
        })
        .unwrap_or(0)
}

async fn reload(app: &TestApp) -> (u16, Value) {
    app.post("/v1/admin/reload").await
}

/// Submits a job and waits until a file sink in `dir` has written its report.
async fn notified_in(app: &TestApp, dir: &Path, name: &str) -> String {
    let (status, job) = app.post_job(&job_body(name)).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    app.wait_terminal(&id, Duration::from_secs(15)).await;
    app.wait_until(
        &format!("{name} reported in {}", dir.display()),
        Duration::from_secs(15),
        async || written_for(dir, &id) > 0,
    )
    .await;
    id
}

const ONE_JOB: &str = "jobs:\n  - name: first\n    model: gpt-5\n    input: hello\n";

#[tokio::test]
async fn a_broken_file_is_refused_and_the_old_config_kept() {
    let (app, files) = spawn_from_files("", ONE_JOB).await;
    let sinks = files.sinks(&["old"], "old");
    files.write_config(&sinks);
    let (status, body) = reload(&app).await;
    assert_eq!(status, 200, "{body}");
    let old = files.sink_dir("old");
    notified_in(&app, &old, "before").await;

    // A typo in the config, on a known line.
    let lines_before = format!("{}{sinks}", files.base).lines().count();
    files.write_config(&format!("{sinks}polling_typo: 1\n"));
    let (status, body) = reload(&app).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    let at = format!("respool.yaml:{}:", lines_before + 1);
    assert!(message.contains(&at), "expected {at} in: {message}");
    assert!(message.contains("polling_typo"), "{message}");

    // A bad jobs file (with a good config) is refused too, naming its line.
    files.write_config(&format!("{sinks}limits:\n  max_in_flight: 2\n"));
    files.write_jobs(&format!(
        "{ONE_JOB}  - name: second\n    model: gpt-5\n    input: hi\n    timeout: soon\n"
    ));
    let (status, body) = reload(&app).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("jobs.yaml:8:") && message.contains("field `timeout`"),
        "{message}"
    );
    // Nothing of that reload was applied: not the limit, not the job.
    assert_eq!(app.orchestrator.config().limits.max_in_flight, 64);
    let (_, list) = app.get("/v1/jobs?name=second").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);

    // A setting bound at start is refused with a restart message.
    files.write_jobs(ONE_JOB);
    let changed_listen = format!(
        "{}{sinks}",
        files.base.replace("127.0.0.1:0", "127.0.0.1:1")
    );
    std::fs::write(files.config(), changed_listen).unwrap();
    let (status, body) = reload(&app).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`listen` changed") && message.contains("restart"),
        "{message}"
    );

    // Through all that the API worked and the old sink kept delivering.
    notified_in(&app, &old, "after").await;
    app.stop().await;
}

#[tokio::test]
async fn a_reload_applies_new_sinks_schedules_and_tokens() {
    let (app, files) = spawn_from_files("", ONE_JOB).await;
    files.write_config(&files.sinks(&["old"], "old"));
    assert_eq!(reload(&app).await.0, 200);
    let (old, new) = (files.sink_dir("old"), files.sink_dir("new"));

    // A new sink as the default, and a schedule every second.
    files.write_config(&files.sinks(&["old", "new"], "new"));
    files.write_jobs(&format!(
        "{ONE_JOB}  - name: ticker\n    model: gpt-5\n    input: tick\n    schedule: \"* * * * * *\"\n"
    ));
    let (status, body) = reload(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "reload");
    assert_eq!(body["schedules"]["added"], serde_json::json!(["ticker"]));
    assert_eq!(
        body["jobs_created"], 0,
        "the unchanged job is not added again"
    );

    let id = notified_in(&app, &new, "to-new").await;
    assert_eq!(written_for(&old, &id), 0, "the old default no longer hears");
    app.wait_until("a ticker run", Duration::from_secs(10), async || {
        let (_, list) = app.get("/v1/schedules").await;
        list["data"][0]["last_run"]["job_id"].is_string()
    })
    .await;
    let (_, list) = app.get("/v1/schedules").await;
    let ticker_job = list["data"][0]["last_run"]["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_terminal(&ticker_job, Duration::from_secs(15))
        .await;
    app.wait_until(
        "the ticker run reported",
        Duration::from_secs(15),
        async || written_for(&new, &ticker_job) > 0,
    )
    .await;

    // Removing the schedule stops it; it stays listed, inactive.
    files.write_jobs(ONE_JOB);
    let (status, body) = reload(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["schedules"]["removed"], serde_json::json!(["ticker"]));
    let (_, list) = app.get("/v1/schedules").await;
    assert_eq!(list["data"][0]["active"], false);
    assert!(list["data"][0]["next_run_at"].is_null());

    // API tokens take effect at once.
    files.write_config(&format!(
        "{}api:\n  tokens: [\"tok-reloaded\"]\n",
        files.sinks(&["old", "new"], "new")
    ));
    assert_eq!(reload(&app).await.0, 200);
    assert_eq!(app.get("/v1/jobs").await.0, 401);
    let r = app
        .request(reqwest::Method::GET, "/v1/jobs")
        .bearer_auth("tok-reloaded")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    app.stop().await;
}
