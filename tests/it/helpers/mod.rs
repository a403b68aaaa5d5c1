//! What the tests share. Here: [`spawn_app`] starts the real daemon in-process on loopback
//! port 0 with a fresh SQLite file, against the in-process simulator on another port 0, and
//! [`TestApp`] talks to it over real HTTP. Beside it:
//!
//! - [`process`]: the `respool` binary as a process (`serve`, `sim`), owned by guards.
//! - [`receiver`]: a recording receiver for what respool notifies.
//! - [`db`]: the daemon's SQLite file read (or planted) behind its back.
//! - [`chat`]: a finished job to notify Slack, Discord and ntfy about.
#![allow(clippy::field_reassign_with_default)]

pub mod chat;
pub mod db;
pub mod ledger;
pub mod postgres;
pub mod process;
pub mod receiver;
pub mod sim_http;

use std::time::Duration;

use base64::Engine;
use respool::app::Application;
use respool::clock::Clock;
use respool::config::Config;
use respool::orchestrator::Orchestrator;
use respool::sim::{SimConfig, SimHandle};
use respool::view::JobView;
use secrecy::SecretString;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A running daemon and its simulator.
pub struct TestApp {
    pub base: String,
    pub sim: SimHandle,
    pub orchestrator: Orchestrator,
    pub dir: tempfile::TempDir,
    /// The daemon's database: the SQLite file in `dir`, or a fresh PostgreSQL database when
    /// the run is on PostgreSQL (`RESPOOL_TEST_BACKEND=postgres`, see `postgres.rs`).
    pub db_url: String,
    pub http: reqwest::Client,
    /// The webhook signing secret the daemon and the simulator share.
    pub secret: String,
    pub webhook_url: String,
    /// The daemon's clock: advance it to reach deadlines and expiries without sleeping.
    pub clock: Clock,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The test's own temporary folder, from the config `spawn_app_with` hands its tweak: the
/// SQLite file's folder, or on PostgreSQL the one `artifacts.dir` is in (a PostgreSQL URL is
/// no path: a folder taken from it would land in the working directory, named with the
/// server's password).
pub fn test_dir(config: &Config) -> std::path::PathBuf {
    let beside = match config.database.as_deref() {
        Some(d) if d.starts_with("postgres") => config.artifacts.dir.as_deref(),
        Some(d) => Some(std::path::Path::new(d)),
        None => None,
    };
    beside
        .and_then(std::path::Path::parent)
        .expect("spawn_app_with sets a database in the test's folder")
        .to_path_buf()
}

/// A fresh `whsec_` secret.
pub fn new_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    )
}

/// `N` distinct loopback ports nobody listens on right now (all bound at once, so the OS
/// cannot hand out the same one twice).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// A client for the loopback servers the tests start (no proxy from the environment).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after 10 s.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prices with only `gpt-5` in them: dollars per million input and output tokens.
pub fn gpt5_priced(
    input: f64,
    output: f64,
) -> std::collections::BTreeMap<String, respool::pricing::ModelPrice> {
    std::collections::BTreeMap::from([(
        "gpt-5".to_string(),
        respool::pricing::ModelPrice::standard(input, output, None),
    )])
}

/// A simulator whose jobs queue for 100 ms and run for 300 ms.
pub fn fast_sim() -> SimConfig {
    SimConfig {
        queue_time: Duration::from_millis(100),
        run_time: Duration::from_millis(300),
        ..SimConfig::default()
    }
}

/// Starts the app with fast polling and webhooks on.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}, SimConfig::default()).await
}

/// Starts the app; `tweak` adjusts the config after the test defaults are set.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config), sim_config: SimConfig) -> TestApp {
    // `RESPOOL_TEST_LOG=warn` (an env filter) shows the daemons' logs, for a failing test.
    if let Ok(filter) = std::env::var("RESPOOL_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let sim = respool::sim::spawn(sim_config)
        .await
        .expect("simulator starts");
    let dir = tempfile::tempdir().unwrap();
    let secret = new_secret();
    let mut config = Config::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let db_url = match postgres::suite_server() {
        Some(server) => postgres::fresh_database(&server).await,
        None => format!("sqlite://{}", dir.path().join("test.db").display()),
    };
    // A SQLite database is given as its path, as a user writes it (tests derive files from it).
    config.database = Some(match db_url.strip_prefix("sqlite://") {
        Some(path) => path.to_string(),
        None => db_url.clone(),
    });
    // On PostgreSQL no folder is beside the database: artifacts go where a test looks for them.
    if db_url.starts_with("postgres") {
        config.artifacts.dir = Some(dir.path().join("artifacts"));
    }
    config.upstream.base_url = sim.base_url();
    config.upstream.api_key = Some(SecretString::from("sk-test-key"));
    config.upstream.request_timeout = Duration::from_secs(5);
    config.upstream.max_retry_delay = Duration::from_secs(5);
    config.upstream.uncertain_create_wait = Some(Duration::from_secs(3));
    config.webhook.secrets = vec![SecretString::from(secret.clone())];
    config.polling.min_interval = Duration::from_millis(200);
    config.polling.max_interval = Duration::from_secs(2);
    config.shutdown_timeout = Duration::from_secs(5);
    tweak(&mut config);
    // A test may point the daemon at another one's database.
    let db_url = match &config.database {
        Some(d) if d.starts_with("postgres") => d.clone(),
        _ => db_url,
    };
    let clock = Clock::system();
    // The state directory is the test's own (on PostgreSQL the create journal lives there).
    let state_dir = dir.path().display().to_string();
    let env = move |k: &str| (k == "STATE_DIRECTORY").then(|| state_dir.clone());
    let app = Application::build_with_env(config, clock.clone(), &env)
        .await
        .expect("app builds");
    let addr = app.addr();
    let webhook_url = format!("http://{addr}/webhooks/openai");
    sim.set_webhook_target(Some(webhook_url.clone()), vec![secret.clone()]);
    let orchestrator = app.orchestrator().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        base: format!("http://{addr}"),
        sim,
        orchestrator,
        dir,
        db_url,
        http: reqwest::Client::new(),
        secret,
        webhook_url,
        clock,
        shutdown,
        server,
    }
}

impl TestApp {
    /// `POST /v1/jobs`; returns the status and the JSON body.
    pub async fn post_job(&self, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/jobs", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST /v1/jobs`, which must create the job; returns its id.
    pub async fn submit(&self, body: &Value) -> String {
        let (status, created) = self.post_job(body).await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_string()
    }

    /// `GET` a path; returns the status and the JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST` a path with no body.
    pub async fn post(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn job(&self, id: &str) -> JobView {
        let (status, body) = self.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    }

    /// Polls the job until `done(job)` or the deadline; panics with the last state.
    pub async fn wait_for(
        &self,
        id: &str,
        within: Duration,
        done: impl Fn(&JobView) -> bool,
    ) -> JobView {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let j = self.job(id).await;
            if done(&j) {
                return j;
            }
            if tokio::time::Instant::now() > deadline {
                let (_, events) = self.get(&format!("/v1/jobs/{id}/events")).await;
                panic!(
                    "job {id} did not reach the expected state in {within:?}: {j:?}\nevents: {events:#}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the job's timeline has an event of `kind` (`notified`, `notify_failed`, …).
    pub async fn wait_event(&self, id: &str, kind: &str, within: Duration) {
        self.wait_until(&format!("{kind} on {id}"), within, async || {
            self.count_events(id, kind).await > 0
        })
        .await;
    }

    /// Waits for a terminal status.
    pub async fn wait_terminal(&self, id: &str, within: Duration) -> JobView {
        self.wait_for(id, within, |j| j.status.is_terminal()).await
    }

    /// Moves the daemon's clock on to the next 12:00 UTC, so a test that counts jobs by day
    /// cannot straddle a midnight.
    pub fn advance_to_noon_utc(&self) {
        const DAY_MS: i64 = 86_400_000;
        let into_day = self.clock.now_ms().rem_euclid(DAY_MS);
        let by = (DAY_MS / 2 - into_day).rem_euclid(DAY_MS);
        self.clock
            .advance(Duration::from_millis(u64::try_from(by).unwrap()));
    }

    /// Submits `body`, waits for the job to end, checks it ended `status`; the job as JSON.
    pub async fn finished(&self, body: &Value, status: respool::job::JobStatus) -> Value {
        let (code, job) = self.post_job(body).await;
        assert_eq!(code, 201, "{job}");
        let id = job["id"].as_str().unwrap().to_string();
        let job = self.wait_terminal(&id, Duration::from_secs(60)).await;
        assert_eq!(job.status, status, "{job:?}");
        serde_json::to_value(&job).unwrap()
    }

    /// The kinds of a job's timeline events, in order.
    pub async fn event_kinds(&self, id: &str) -> Vec<String> {
        let (_, events) = self.get(&format!("/v1/jobs/{id}/events")).await;
        events["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    }

    /// Stops the daemon (its work in flight written) and hands back what outlives it: the
    /// simulator and the directory holding the database, for another daemon to use.
    pub async fn stop_daemon(self) -> (SimHandle, tempfile::TempDir) {
        self.shutdown.cancel();
        let _ = self.server.await;
        (self.sim, self.dir)
    }

    /// Stops the daemon and the simulator.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
        self.sim.shutdown().await;
    }
}

impl TestApp {
    /// A request to a path of the daemon, for anything the shortcuts above do not cover
    /// (headers, methods, raw bodies).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// The body of a web page of the daemon (`/jobs/{id}`), whatever its status.
    pub async fn page(&self, path: &str) -> String {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A job's whole timeline, oldest first.
    pub async fn events(&self, id: &str) -> Vec<Value> {
        let (status, events) = self.get(&format!("/v1/jobs/{id}/events")).await;
        assert_eq!(status, 200, "{events}");
        events["data"].as_array().unwrap().clone()
    }

    /// How many timeline events of `kind` a job has.
    pub async fn count_events(&self, id: &str, kind: &str) -> usize {
        self.event_kinds(id)
            .await
            .iter()
            .filter(|k| *k == kind)
            .count()
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics_text(&self) -> String {
        self.request(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of an unlabelled Prometheus metric from `GET /metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        self.metric_line(name).await
    }

    /// The value of `name{label="value"}` (that one label) from `GET /metrics`.
    pub async fn labelled_metric(&self, name: &str, label: &str, value: &str) -> Option<f64> {
        self.metric_line(&format!("{name}{{{label}=\"{value}\"}}"))
            .await
    }

    async fn metric_line(&self, series: &str) -> Option<f64> {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
    }

    /// Counts the rows of a table by reading the test database directly, through a separate
    /// read-only connection (the daemon's own pool is not involved).
    pub async fn count_rows(&self, table: &str) -> i64 {
        assert!(
            table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "table name {table}"
        );
        self.scalar(&format!("SELECT COUNT(*) FROM {table}")).await
    }

    /// One integer a query of the test database gives (a separate read-only connection).
    pub async fn scalar(&self, sql: &str) -> i64 {
        if self.db_url.starts_with("postgres") {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.db_url)
                .await
                .unwrap();
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT CAST(({sql}) AS BIGINT)"
            )))
            .fetch_one(&mut conn)
            .await
            .unwrap();
            let _ = sqlx::Connection::close(conn).await;
            return n;
        }
        let mut conn = db::read_only(&self.db_path()).await;
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        db::close(conn).await;
        n
    }

    /// A job's outbox rows (`id`, `sink`, `event`, `state`, `attempts`, `last_error`, …) from
    /// `GET /v1/notifications?job_id=…`, oldest first.
    pub async fn notification_rows(&self, job_id: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/v1/notifications?job_id={job_id}"))
            .await;
        assert_eq!(status, 200, "{body}");
        let mut rows = body["data"].as_array().cloned().unwrap_or_default();
        rows.sort_by_key(|r| r["id"].as_i64());
        rows
    }

    /// The test database file.
    pub fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("test.db")
    }

    /// POSTs a raw body to the webhook receiver with the given headers; returns the status and
    /// the JSON body (Null when there is none).
    pub async fn post_webhook(
        &self,
        body: impl Into<reqwest::Body>,
        headers: &[(String, String)],
    ) -> (u16, Value) {
        let mut rb = self
            .http
            .post(&self.webhook_url)
            .header("content-type", "application/json");
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        let r = rb.body(body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls `cond` until it holds or `within` passes; panics naming `what`.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        mut cond: impl AsyncFnMut() -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + within;
        while !cond().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {within:?} waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`) for
/// `body`, signed with `secret` at unix time `timestamp`.
pub fn signed_headers(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let signature = standardwebhooks::Webhook::new(secret)
        .unwrap()
        .sign(msg_id, timestamp, body)
        .unwrap();
    vec![
        ("webhook-id".into(), msg_id.into()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        ("webhook-signature".into(), signature),
    ]
}

/// A thin OpenAI webhook event body.
pub fn event_body(kind: &str, data_id: &str) -> String {
    serde_json::json!({
        "object": "event",
        "id": format!("evt_{}", ulid::Ulid::new()),
        "type": kind,
        "created_at": chrono::Utc::now().timestamp(),
        "data": {"id": data_id},
    })
    .to_string()
}

/// Now, in unix seconds.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A simple job body.
pub fn job_body(name: &str) -> Value {
    serde_json::json!({"name": name, "model": "gpt-5", "input": format!("Write about {name}.")})
}
