//! The chaos run: a `respool sim` process with faults, one then more `respool serve` processes
//! on one database (two on a SQLite file; three on PostgreSQL when the suite runs there), a
//! flapping notification receiver, jobs submitted over REST, SIGKILLs at
//! seeded random moments, then the verdict ([`verdict`]). Every wait polls a condition against
//! a deadline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use respool::sim::{Faults, SimResponse};
use serde_json::{Value, json};

use super::verdict::{Delivery, JobEnd, Verdict, judge};
use crate::helpers::process::{Proc, kill9, start_healthy, wait_sim_up};
use crate::helpers::receiver::Receiver;
use crate::helpers::{free_ports, new_secret};

/// The size of a run.
#[derive(Debug, Clone)]
pub struct Params {
    pub jobs: usize,
    pub kills: usize,
    pub seed: u64,
    /// How long, after the last kill, jobs may take to end.
    pub settle: Duration,
    /// How many daemons share the database by the end (one at first, the others join).
    pub daemons: usize,
    /// The database every daemon runs on: a SQLite file in the run's folder when `None`, else
    /// this PostgreSQL URL.
    pub database: Option<String>,
}

/// The simulator's faults during the run: everything the real service does, except what no
/// client could recover from (a dropped webhook of a response whose create answer was lost).
pub fn faults() -> Faults {
    Faults {
        webhook_drop: 0.15,
        webhook_duplicate: 0.15,
        webhook_reorder: Duration::from_millis(800),
        webhook_extra_events: 0.05,
        rate_limit: 0.04,
        retry_after: Duration::from_millis(500),
        server_error: 0.04,
        server_error_noretry: Some(0.0),
        create_accept_then_hang: 0.03,
        hang_for: Duration::from_secs(4),
        create_then_drop: 0.04,
        create_then_gateway_error: 0.04,
        drop_before_create: 0.04,
        gateway_error_before_create: 0.04,
        webhook_drop_spares_lost_answers: true,
        ..Faults::default()
    }
}

/// One daemon slot: its port, its config file, its process when running.
struct Daemon {
    name: String,
    port: u16,
    config: PathBuf,
    proc: Option<Proc>,
    runs: u32,
}

pub struct Chaos {
    dir: tempfile::TempDir,
    sim: Proc,
    sim_base: String,
    daemons: Vec<Daemon>,
    receiver: Receiver,
    http: reqwest::Client,
    started: Instant,
    log: Vec<String>,
    /// Whether each daemon has a state directory of its own (PostgreSQL).
    own_state_dirs: bool,
}

fn daemon_yaml(
    port: u16,
    db: &str,
    sim_port: u16,
    secrets: &[String],
    sink: &str,
    sink_secret: &str,
) -> String {
    let secrets: Vec<String> = secrets.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "listen: 127.0.0.1:{port}\n\
         database: {db}\n\
         upstream:\n  base_url: http://127.0.0.1:{sim_port}/v1\n  api_key: sk-chaos\n  \
           connect_timeout: 1s\n  request_timeout: 2s\n  max_retries: 2\n  max_retry_delay: 5s\n  \
           uncertain_create: resubmit\n  uncertain_create_wait: 15s\n\
         webhook:\n  secrets: [{secrets}]\n\
         polling:\n  min_interval: 300ms\n  max_interval: 2s\n\
         limits:\n  max_concurrent_submissions: 8\n\
         sinks:\n  hook:\n    type: webhook\n    url: \"{sink}\"\n    secret: \"{sink_secret}\"\n    timeout: 1s\n\
         notify:\n  default: [hook]\n  max_attempts: 40\n  initial_backoff: 200ms\n  max_backoff: 2s\n\
         shutdown_timeout: 2s\n",
        secrets = secrets.join(", "),
    )
}

impl Chaos {
    /// Starts the simulator (faults on once every other daemon's webhook endpoint is
    /// registered), writes every daemon's config and starts the first daemon.
    pub async fn start(p: &Params) -> Self {
        assert!((1..=8).contains(&p.daemons), "1 to 8 daemons");
        let dir = tempfile::tempdir().unwrap();
        let [sim_port, p1, p2, p3, p4, p5, p6, p7, p8] = free_ports();
        let ports = &[p1, p2, p3, p4, p5, p6, p7, p8][..p.daemons];
        let secret = new_secret();
        let sim_listen = format!("127.0.0.1:{sim_port}");
        let hook_a = format!("http://127.0.0.1:{}/webhooks/openai", ports[0]);
        let seed = p.seed.to_string();
        let mut sim = Proc::spawn(
            "sim",
            dir.path(),
            &[
                "sim",
                "--listen",
                &sim_listen,
                "--webhook-url",
                &hook_a,
                "--webhook-secret",
                &secret,
                "--queue-time",
                "200ms",
                "--run-time",
                "1s",
                "--seed",
                &seed,
                // Long enough to outlast a daemon's downtime between a kill and its restart.
                "--webhook-retry-schedule",
                "200ms,500ms,1s,2s,3s,5s,5s,5s,10s,10s",
            ],
            &[],
        );
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let sim_base = format!("http://{sim_listen}");
        wait_sim_up(&http, &mut sim, &sim_base).await;
        // Every other daemon hears of every response through an endpoint of its own.
        let mut secrets = vec![secret];
        for (i, port) in ports.iter().enumerate().skip(1) {
            let endpoint: Value = http
                .post(format!("{sim_base}/v1/webhook_endpoints"))
                .bearer_auth("sk-chaos")
                .json(&json!({"name": format!("daemon-{}", daemon_name(i)),
                    "url": format!("http://127.0.0.1:{port}/webhooks/openai"),
                    "event_types": ["response.completed", "response.failed", "response.incomplete", "response.cancelled"]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let signing = endpoint["signing_secret"]
                .as_str()
                .expect("a signing secret")
                .to_string();
            secrets.push(signing);
        }
        let set = http
            .post(format!("{sim_base}/_sim/faults"))
            .json(&faults())
            .send()
            .await
            .unwrap();
        assert!(set.status().is_success(), "{}", set.text().await.unwrap());

        let receiver = Receiver::flapping(p.seed ^ 0x5eed, 0.2, 0.1).await;
        let sink_secret = new_secret();
        let db = match &p.database {
            Some(url) => url.clone(),
            None => dir.path().join("respool.db").display().to_string(),
        };
        let daemons = ports
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                let name = daemon_name(i);
                let config = dir.path().join(format!("respool-{name}.yaml"));
                std::fs::write(
                    &config,
                    daemon_yaml(port, &db, sim_port, &secrets, &receiver.url, &sink_secret),
                )
                .unwrap();
                Daemon {
                    name,
                    port,
                    config,
                    proc: None,
                    runs: 0,
                }
            })
            .collect();
        let mut chaos = Self {
            dir,
            sim,
            sim_base,
            daemons,
            receiver,
            http,
            started: Instant::now(),
            log: Vec::new(),
            own_state_dirs: p.database.is_some(),
        };
        chaos.start_daemon(0).await;
        chaos
    }

    fn note(&mut self, what: String) {
        let line = format!("{:7.2}s {what}", self.started.elapsed().as_secs_f64());
        eprintln!("chaos: {line}");
        self.log.push(line);
    }

    /// Starts daemon `i` and waits for `/healthz` (trying again while its port is still held).
    async fn start_daemon(&mut self, i: usize) {
        let d = &mut self.daemons[i];
        d.runs += 1;
        let config = d.config.display().to_string();
        let label = format!("daemon-{}-{}", d.name, d.runs);
        let base = format!("http://127.0.0.1:{}", d.port);
        let dir = self.dir.path();
        // On PostgreSQL each daemon has a state directory (and create journal) of its own, as
        // on machines of their own: a dead daemon's creates are taken over by the others only
        // once their leases run out, its journal read when it starts again.
        let state = dir.join(format!("state-{}", d.name));
        std::fs::create_dir_all(&state).unwrap();
        let state = state.display().to_string();
        let env: &[(&str, &str)] = if self.own_state_dirs {
            &[("STATE_DIRECTORY", &state)]
        } else {
            &[]
        };
        let proc = start_healthy(&self.http, &label, &base, |label| {
            Proc::spawn(label, dir, &["serve", "--config", &config], env)
        })
        .await;
        let d = &mut self.daemons[i];
        d.proc = Some(proc);
        let name = d.name.clone();
        self.note(format!("daemon {name} up"));
    }

    fn kill(&mut self, i: usize) {
        let mut proc = self.daemons[i].proc.take().expect("running");
        kill9(&mut proc);
        let name = self.daemons[i].name.clone();
        self.note(format!("SIGKILL daemon {name}"));
    }

    fn running(&self) -> Vec<usize> {
        (0..self.daemons.len())
            .filter(|&i| self.daemons[i].proc.is_some())
            .collect()
    }

    fn bases(&self) -> Vec<String> {
        self.daemons
            .iter()
            .map(|d| format!("http://127.0.0.1:{}", d.port))
            .collect()
    }

    /// GET from whichever daemon answers.
    async fn get(&self, path: &str) -> Option<Value> {
        for base in self.bases() {
            if let Ok(r) = self.http.get(format!("{base}{path}")).send().await
                && r.status().is_success()
            {
                return r.json().await.ok();
            }
        }
        None
    }

    async fn sim_responses(&self) -> Vec<SimResponse> {
        let v: Value = self
            .http
            .get(format!("{}/_sim/responses", self.sim_base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        serde_json::from_value(v["data"].clone()).unwrap()
    }

    /// The whole run; returns the verdict and the number of jobs meant to be submitted.
    pub async fn run(mut self, p: &Params) -> Verdict {
        let mut rng = StdRng::seed_from_u64(p.seed);
        let specs: Vec<Value> = (0..p.jobs).map(|i| job_spec(&mut rng, p.seed, i)).collect();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let submitter = tokio::spawn(submit_all(self.http.clone(), self.bases(), specs, tx));

        // Kills: the first share with one daemon, then the others join one by one (with two,
        // half the kills each side of the second's start).
        let n = self.daemons.len();
        for k in 0..p.kills {
            for j in 1..n {
                if k == j * p.kills / n && self.daemons[j].runs == 0 {
                    self.start_daemon(j).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(1500..5000))).await;
            let running = self.running();
            let victim = running[rng.random_range(0..running.len())];
            self.kill(victim);
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..1500))).await;
            self.start_daemon(victim).await;
        }
        for j in 1..n {
            if self.daemons[j].proc.is_none() {
                self.start_daemon(j).await;
            }
        }
        let ids: Vec<String> = {
            let submitted = submitter.await.unwrap();
            let mut ids = Vec::new();
            while let Ok(id) = rx.try_recv() {
                ids.push(id);
            }
            self.note(format!("{submitted} of {} jobs submitted", p.jobs));
            ids
        };

        // Every job terminal, then every notification settled and every response finished.
        let deadline = Instant::now() + p.settle;
        loop {
            // The simulator is never killed: should it die, the run fails now, with its log.
            self.sim.assert_running();
            let mut open = 0;
            for id in &ids {
                let view = self.get(&format!("/v1/jobs/{id}")).await;
                if !view.as_ref().is_some_and(terminal) {
                    open += 1;
                }
            }
            let pending = self
                .get("/v1/notifications?state=pending&limit=500")
                .await
                .and_then(|v| v["data"].as_array().map(Vec::len))
                .unwrap_or(usize::MAX);
            let running = self
                .sim_responses()
                .await
                .iter()
                .filter(|r| matches!(r.status.as_str(), "queued" | "in_progress"))
                .count();
            if open == 0 && pending == 0 && running == 0 {
                self.note("every job terminal, every notification settled".into());
                break;
            }
            if Instant::now() > deadline {
                self.note(format!("deadline: {open} jobs open, {pending} notifications pending, {running} responses running"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        let mut ends = Vec::new();
        for id in &ids {
            let view = self
                .get(&format!("/v1/jobs/{id}"))
                .await
                .unwrap_or(json!({"id": id}));
            let notes = self
                .get(&format!("/v1/notifications?job_id={id}"))
                .await
                .unwrap_or_default();
            let events = self
                .get(&format!("/v1/jobs/{id}/events"))
                .await
                .unwrap_or_default();
            ends.push(JobEnd::from_view(
                &view,
                notes["data"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                events["data"].as_array().map(Vec::as_slice).unwrap_or(&[]),
            ));
        }
        let responses = self.sim_responses().await;
        let hits: Vec<Delivery> = self.receiver.hits().iter().map(Delivery::of).collect();
        let verdict = judge(&ends, &responses, &hits);
        self.report(&verdict, &responses, &hits).await;
        if !verdict.passed(p.jobs) {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!(
                "chaos: kept the run's files (ledger, configs, logs) in {}",
                kept.display()
            );
        }
        verdict
    }

    /// Prints, for every broken job, why, and its timelines: the daemon's events, what the
    /// simulator created, what the receiver got.
    async fn report(&self, v: &Verdict, responses: &[SimResponse], hits: &[Delivery]) {
        let mut stats: Value = self
            .http
            .get(format!("{}/_sim/stats", self.sim_base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(m) = stats.as_object_mut() {
            m.remove("creates_by_job_id");
        }
        eprintln!("chaos: simulator stats {stats}");
        for (what, map) in [
            ("lost", &v.lost),
            ("paid twice", &v.paid_twice),
            ("notified twice", &v.notified_twice),
            ("unnotified", &v.unnotified),
            ("unrevealable (not a failure)", &v.unrevealable),
        ] {
            for (id, why) in map {
                eprintln!("chaos: {what}: {id}: {why}");
            }
        }
        for id in v.broken_jobs().iter().take(12) {
            eprintln!("chaos: ---- timeline of {id}");
            let events = self
                .get(&format!("/v1/jobs/{id}/events"))
                .await
                .unwrap_or_default();
            for e in events["data"].as_array().into_iter().flatten() {
                eprintln!(
                    "chaos:   {} {:<18} {}",
                    e["at"],
                    e["kind"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("")
                );
            }
            for r in responses
                .iter()
                .filter(|r| r.job_id.as_deref() == Some(id.as_str()))
            {
                eprintln!(
                    "chaos:   sim: {} created {} finished {:?} status {} answer {} webhook dropped {}",
                    r.id, r.created_ms, r.finished_ms, r.status, r.answer, r.webhook_dropped
                );
            }
            for h in hits.iter().filter(|h| &h.job_id == id) {
                eprintln!(
                    "chaos:   receiver: {} {} {} answered {:?}",
                    h.at_ms, h.event, h.webhook_id, h.answered
                );
            }
        }
        eprintln!("chaos: {}", v.extras());
    }
}

/// Daemon `i`'s name: a, b, c, …
fn daemon_name(i: usize) -> String {
    char::from(b'a' + u8::try_from(i).expect("few daemons")).to_string()
}

fn terminal(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("completed" | "failed" | "incomplete" | "cancelled")
    )
}

/// Job `i`: a seeded mix of outcomes and short run times, with an idempotency key so that a
/// submission whose answer a kill cut off can be sent again.
fn job_spec(rng: &mut StdRng, seed: u64, i: usize) -> Value {
    let outcome = match rng.random_range(0..100) {
        0..70 => "completed",
        70..85 => "failed:server_error",
        _ => "incomplete:max_output_tokens",
    };
    let sim = format!(
        "queue={}ms;run={}ms;outcome={outcome}",
        rng.random_range(50..400),
        rng.random_range(200..2000)
    );
    json!({
        "name": format!("chaos-{i}"),
        "model": "gpt-5",
        "input": format!("chaos job {i}"),
        "idempotency_key": format!("chaos-{seed}-{i}"),
        "metadata": {"sim": sim},
    })
}

/// Submits every spec (to whichever daemon answers, again until one does), spread over a few
/// seconds; sends each job id on `tx`; returns how many were submitted.
async fn submit_all(
    http: reqwest::Client,
    bases: Vec<String>,
    specs: Vec<Value>,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
) -> usize {
    let mut submitted = 0;
    let mut ids = BTreeMap::new();
    for (i, spec) in specs.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(60);
        'job: while Instant::now() < deadline {
            for base in &bases {
                let sent = http.post(format!("{base}/v1/jobs")).json(spec).send().await;
                if let Ok(r) = sent
                    && r.status().is_success()
                    && let Ok(v) = r.json::<Value>().await
                    && let Some(id) = v["id"].as_str()
                {
                    ids.insert(i, id.to_string());
                    let _ = tx.send(id.to_string());
                    submitted += 1;
                    break 'job;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    submitted
}
