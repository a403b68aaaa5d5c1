//! The process-test harness: the real binary and a simulator process, owned by guards.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{free_ports, new_secret};

/// Variables a developer's shell may carry that would change what the binary does.
pub const SCRUBBED_ENV: &[&str] = &[
    "RESPOOL_CONFIG",
    "RESPOOL_LOG",
    "RUST_LOG",
    "RESPOOL_SERVER",
    "RESPOOL_TOKEN",
    "RESPOOL_SIM_API_KEY",
    "RESPOOL_SIM_WEBHOOK_SECRET",
    "OPENAI_API_KEY",
    "OPENAI_WEBHOOK_SECRET",
    "OPENAI_BASE_URL",
    "STATE_DIRECTORY",
    // Set when the tests themselves run under systemd; a test that wants them sets them.
    "CREDENTIALS_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
];

pub fn binary() -> PathBuf {
    assert_cmd::cargo::cargo_bin("respool")
}

pub fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1");
    for k in SCRUBBED_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A child process that is killed (SIGKILL) when dropped, with its output in files.
pub struct Proc {
    pub label: String,
    pub child: Option<Child>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Proc {
    pub fn spawn(label: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let stdout = dir.join(format!("{label}.stdout"));
        let stderr = dir.join(format!("{label}.stderr"));
        let child = command(dir, args, env)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        Proc {
            label: label.to_string(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Everything the process wrote so far.
    pub fn output(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.stdout), read(&self.stderr))
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "{} exited unexpectedly ({status}); its output:\n{}",
                self.label,
                self.output()
            );
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap()
    }

    /// Waits for the process to exit by itself; `None` if it is still running at the deadline.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let out = self.output();
            let tail: Vec<&str> = out.lines().rev().take(60).collect();
            eprintln!("---- last lines of {} ----", self.label);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Polls the simulator at `sim_base` until it answers; panics if it exits first or after 30 s.
pub async fn wait_sim_up(http: &reqwest::Client, sim: &mut Proc, sim_base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        sim.assert_running();
        let url = format!("{sim_base}/_sim/stats");
        if http
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        assert!(Instant::now() < deadline, "the simulator never came up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a daemon with `spawn(label)` and waits until `{base}/healthz` answers 2xx. The port
/// is fixed (a simulator's webhook URL or a config names it); should something hold it for a
/// moment (an outgoing connection's ephemeral port, a killed daemon's socket, during a
/// restart), the daemon exits with "Address already in use" and is started again. Panics with
/// the daemon's log if it exits otherwise, or after 30 s.
pub async fn start_healthy(
    http: &reqwest::Client,
    label: &str,
    base: &str,
    mut spawn: impl FnMut(&str) -> Proc,
) -> Proc {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut proc = spawn(label);
    let mut bind_retries = 0;
    loop {
        let exited = proc.child.as_mut().unwrap().try_wait().unwrap().is_some();
        if exited && Instant::now() < deadline && proc.output().contains("Address already in use") {
            bind_retries += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
            proc = spawn(&format!("{label}-retry{bind_retries}"));
            continue;
        }
        proc.assert_running();
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return proc;
        }
        assert!(Instant::now() < deadline, "{label} never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How a [`Harness`] is set up.
pub struct Opts {
    /// `--run-time` of the simulator.
    pub run_time: &'static str,
    /// The `upstream.api_key` value as written in the YAML (may be `${VAR}`).
    pub api_key_yaml: String,
    /// The key the simulator insists on, if any.
    pub sim_api_key: Option<String>,
    /// `api.tokens`.
    pub token: Option<String>,
    /// Environment of the daemon.
    pub daemon_env: Vec<(String, String)>,
    /// Appended to the daemon's config file as is (top-level keys, e.g. `jobs_file: …\n`).
    pub extra_yaml: String,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            run_time: "3s",
            api_key_yaml: "sk-test-process".into(),
            sim_api_key: None,
            token: None,
            daemon_env: Vec::new(),
            extra_yaml: String::new(),
        }
    }
}

/// A simulator process and a daemon process sharing a webhook secret, over a temp dir that
/// holds the config, the SQLite file (or, when the suite runs on PostgreSQL, the create
/// journal) and the logs. Fields drop in order: processes first.
pub struct Harness {
    pub daemon: Option<Proc>,
    pub sim: Proc,
    pub daemon_runs: u32,
    pub daemon_env: Vec<(String, String)>,
    /// Global flags put before `serve` (e.g. `--log-format json`).
    pub daemon_args: Vec<String>,
    pub token: Option<String>,
    pub secret: String,
    pub base: String,
    pub sim_base: String,
    pub config: PathBuf,
    /// The daemon's database: `sqlite://` and the file in `dir`, or a fresh PostgreSQL
    /// database when the suite runs there (open it with `helpers::db::open`).
    pub db_url: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

/// The database a process test's daemons share: `respool.db` in `dir`, or a fresh database
/// on the suite's PostgreSQL server (`RESPOOL_TEST_BACKEND=postgres`). Returns what the config
/// file says (`database:`) and the URL a test opens it by.
pub async fn test_database(dir: &Path) -> (String, String) {
    match super::postgres::suite_server() {
        Some(server) => {
            let url = super::postgres::fresh_database(&server).await;
            (url.clone(), url)
        }
        None => {
            let path = dir.join("respool.db").display().to_string();
            let url = format!("sqlite://{path}");
            (path, url)
        }
    }
}

impl Harness {
    pub async fn start(opts: Opts) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let secret = new_secret();
        let [sim_port, port] = free_ports();
        let sim_listen = format!("127.0.0.1:{sim_port}");
        let webhook_url = format!("http://127.0.0.1:{port}/webhooks/openai");
        let mut sim_args = vec![
            "sim",
            "--listen",
            &sim_listen,
            "--webhook-url",
            &webhook_url,
            "--webhook-secret",
            &secret,
            "--queue-time",
            "300ms",
            "--run-time",
            opts.run_time,
        ];
        if let Some(k) = &opts.sim_api_key {
            sim_args.extend(["--api-key", k]);
        }
        let sim = Proc::spawn("sim", dir.path(), &sim_args, &[]);

        let tokens = match &opts.token {
            Some(t) => format!("api:\n  tokens: [\"{t}\"]\n"),
            None => String::new(),
        };
        let config = dir.path().join("respool.yaml");
        let (db, db_url) = test_database(dir.path()).await;
        let yaml = format!(
            "listen: 127.0.0.1:{port}\n\
             database: {db}\n\
             upstream:\n  base_url: http://127.0.0.1:{sim_port}/v1\n  api_key: \"{key}\"\n  \
             request_timeout: 5s\n  max_retries: 2\n  uncertain_create: fail\n  uncertain_create_wait: 6s\n\
             webhook:\n  secrets: [\"{secret}\"]\n\
             polling:\n  min_interval: 200ms\n  max_interval: 2s\n\
             shutdown_timeout: 5s\n\
             {tokens}\
             {extra}",
            key = opts.api_key_yaml,
            extra = opts.extra_yaml,
        );
        std::fs::write(&config, yaml).unwrap();

        let mut h = Harness {
            daemon: None,
            sim,
            daemon_runs: 0,
            daemon_env: opts.daemon_env,
            daemon_args: Vec::new(),
            token: opts.token,
            secret,
            base: format!("http://127.0.0.1:{port}"),
            sim_base: format!("http://{sim_listen}"),
            config,
            db_url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            dir,
        };
        h.wait_sim_up().await;
        h.start_daemon().await;
        h
    }

    pub async fn wait_sim_up(&mut self) {
        wait_sim_up(&self.http, &mut self.sim, &self.sim_base).await;
    }

    pub fn spawn_daemon(&self, label: &str) -> Proc {
        let config = self.config.display().to_string();
        let env: Vec<(&str, &str)> = self
            .daemon_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut args: Vec<&str> = self.daemon_args.iter().map(String::as_str).collect();
        args.extend(["serve", "--config", &config]);
        Proc::spawn(label, self.dir.path(), &args, &env)
    }

    /// Starts (or restarts) `respool serve` and waits for `/healthz` ([`start_healthy`]).
    pub async fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "a daemon is already running");
        self.daemon_runs += 1;
        let label = format!("daemon-{}", self.daemon_runs);
        let daemon = start_healthy(&self.http, &label, &self.base, |label| {
            self.spawn_daemon(label)
        })
        .await;
        self.daemon = Some(daemon);
    }

    pub fn daemon(&mut self) -> &mut Proc {
        self.daemon.as_mut().expect("no daemon running")
    }

    /// The running daemon, taken out of the harness (to kill or signal it).
    pub fn take_daemon(&mut self) -> Proc {
        self.daemon.take().expect("no daemon running")
    }

    pub fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// GET an API path; panics unless 200. Returns the body text too (for leak checks).
    pub async fn get(&self, path: &str) -> (Value, String) {
        let r = self
            .authed(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status}: {text}");
        (serde_json::from_str(&text).unwrap_or(Value::Null), text)
    }

    pub async fn submit(&self, name: &str, input: &str) -> String {
        self.submit_body(&json!({"name": name, "model": "gpt-5", "input": input}))
            .await
    }

    /// `POST /v1/jobs` with `body`, which must create a job; returns its id.
    pub async fn submit_body(&self, body: &Value) -> String {
        let r = self
            .authed(self.http.post(format!("{}/v1/jobs", self.base)))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status.as_u16(), 201, "POST /v1/jobs: {v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// Submits `n` jobs named `{prefix}-{i}`; returns their ids.
    pub async fn submit_many(&self, prefix: &str, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(
                self.submit(
                    &format!("{prefix}-{i}"),
                    &format!("{prefix} job number {i}"),
                )
                .await,
            );
        }
        ids
    }

    /// The current view of each job in `ids`.
    pub async fn jobs(&self, ids: &[String]) -> HashMap<String, Value> {
        let mut out = HashMap::new();
        for id in ids {
            out.insert(id.clone(), self.get(&format!("/v1/jobs/{id}")).await.0);
        }
        out
    }

    /// Polls until every job in `ids` satisfies `done`; panics with their statuses at the
    /// deadline (or at once if the daemon dies).
    pub async fn wait_jobs(
        &mut self,
        ids: &[String],
        timeout: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> HashMap<String, Value> {
        let deadline = Instant::now() + timeout;
        loop {
            self.daemon().assert_running();
            let jobs = self.jobs(ids).await;
            if jobs.values().all(&done) {
                return jobs;
            }
            if Instant::now() > deadline {
                let mut statuses = Vec::new();
                for id in ids {
                    let j = &jobs[id];
                    if done(j) {
                        statuses.push(format!("{id}: {}", j["status"]));
                    } else {
                        let timeline: Vec<String> = self
                            .events(id)
                            .await
                            .iter()
                            .map(|e| format!("    {} {}: {}", e["at"], e["kind"], e["message"]))
                            .collect();
                        statuses.push(format!("{id}: {j}\n{}", timeline.join("\n")));
                    }
                }
                panic!(
                    "jobs not {what} within {timeout:?}:\n{}",
                    statuses.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_terminal(
        &mut self,
        ids: &[String],
        timeout: Duration,
    ) -> HashMap<String, Value> {
        self.wait_jobs(ids, timeout, "terminal", is_terminal).await
    }

    pub async fn events(&self, id: &str) -> Vec<Value> {
        let (v, _) = self.get(&format!("/v1/jobs/{id}/events")).await;
        v["data"].as_array().cloned().unwrap_or_default()
    }

    pub async fn sim_stats(&self) -> Value {
        self.http
            .get(format!("{}/_sim/stats", self.sim_base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Accepted creates the simulator saw for each job id.
    pub async fn creates_by_job(&self) -> HashMap<String, u64> {
        let stats = self.sim_stats().await;
        stats["creates_by_job_id"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect()
    }
}

impl Drop for Harness {
    /// On a failing test, stops the processes (printing their logs) and keeps the temp dir
    /// (config, SQLite ledger, logs) for a post-mortem.
    fn drop(&mut self) {
        if std::thread::panicking() {
            drop(self.daemon.take());
            if let Ok(empty) = tempfile::tempdir() {
                let kept = std::mem::replace(&mut self.dir, empty).keep();
                eprintln!("---- kept the test's files in {} ----", kept.display());
            }
        }
    }
}

pub fn status(job: &Value) -> &str {
    job["status"].as_str().unwrap_or("?")
}

pub fn is_terminal(job: &Value) -> bool {
    matches!(
        status(job),
        "completed" | "failed" | "incomplete" | "cancelled"
    )
}

pub fn has_output(job: &Value) -> bool {
    job["output_text"].as_str().is_some_and(|t| !t.is_empty())
}

/// Kills the daemon with SIGKILL and checks that it really died of it.
pub fn kill9(daemon: &mut Proc) {
    let status = daemon.kill9();
    assert_eq!(
        status.signal(),
        Some(9),
        "daemon not killed by SIGKILL: {status}"
    );
}
