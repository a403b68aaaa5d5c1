//! Two `respool serve` processes on one SQLite file, with one simulator process: what the README
//! promises of several daemons on one database holds. A webhook secret stored through one daemon
//! verifies deliveries at the other; jobs submitted through either are each created upstream
//! once, complete, and are notified once.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::db;
use crate::helpers::process::{self, Proc, start_healthy, wait_sim_up};
use crate::helpers::receiver::Receiver;
use crate::helpers::{self, free_ports};

const DEADLINE: Duration = Duration::from_secs(60);

/// One daemon of the pair: its process and its base URL.
struct Daemon {
    proc: Proc,
    base: String,
}

/// Writes a config for a daemon listening on `port`, on the shared database, with no
/// `webhook.secrets` (webhooks verify only with what `webhook register` stores) and one
/// webhook sink.
fn config(dir: &Path, db: &str, name: &str, port: u16, sim_port: u16, sink_url: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    let yaml = format!(
        "listen: 127.0.0.1:{port}\n\
         database: {db}\n\
         upstream:\n  base_url: http://127.0.0.1:{sim_port}/v1\n  api_key: \"sk-test-multi\"\n  \
         request_timeout: 5s\n  max_retries: 2\n  uncertain_create: fail\n\
         polling:\n  min_interval: 200ms\n  max_interval: 2s\n\
         shutdown_timeout: 5s\n\
         sinks:\n  hook:\n    type: webhook\n    url: \"{sink_url}\"\n    secret: \"{sink_secret}\"\n    timeout: 5s\n\
         notify:\n  default: [hook]\n  initial_backoff: 200ms\n  max_backoff: 1s\n",
        sink_secret = crate::helpers::new_secret(),
    );
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

async fn start_daemon(http: &reqwest::Client, dir: &Path, name: &str, config: &str) -> Daemon {
    let port = std::fs::read_to_string(config)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("listen: 127.0.0.1:").map(str::to_owned))
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let proc = start_healthy(http, name, &base, |label| {
        Proc::spawn(label, dir, &["serve", "--config", config], &[])
    })
    .await;
    Daemon { proc, base }
}

/// A Standard Webhooks delivery signed with `secret`, as OpenAI would send it.
fn signed(secret: &str, webhook_id: &str, body: &str) -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    let now = helpers::unix_now();
    for (k, v) in helpers::signed_headers(secret, webhook_id, now, body.as_bytes()) {
        h.insert(
            reqwest::header::HeaderName::try_from(k).unwrap(),
            v.parse().unwrap(),
        );
    }
    h.insert("content-type", "application/json".parse().unwrap());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_database_share_secrets_and_submit_each_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let rx = Receiver::start(Vec::new()).await;
    let [sim_port, port_a, port_b] = free_ports();
    let sim_listen = format!("127.0.0.1:{sim_port}");
    let mut sim = Proc::spawn(
        "sim",
        dir.path(),
        &[
            "sim",
            "--listen",
            &sim_listen,
            "--queue-time",
            "300ms",
            "--run-time",
            "1s",
        ],
        &[],
    );
    let sim_base = format!("http://{sim_listen}");
    wait_sim_up(&http, &mut sim, &sim_base).await;
    let (db, db_url) = process::test_database(dir.path()).await;
    let config_a = config(dir.path(), &db, "a", port_a, sim_port, &rx.url);
    let config_b = config(dir.path(), &db, "b", port_b, sim_port, &rx.url);
    let mut a = start_daemon(&http, dir.path(), "daemon-a", &config_a).await;
    let mut b = start_daemon(&http, dir.path(), "daemon-b", &config_b).await;

    // (a) A secret registered through A (for B's receiver) verifies at B.
    let receiver_b = format!("{}/webhooks/openai", b.base);
    let r = http
        .post(format!("{}/v1/webhook/register", a.base))
        .json(&json!({"url": receiver_b}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    let secrets: Vec<String> = db::read_any(&db_url, async |db| {
        sqlx::query_scalar("SELECT secret FROM webhook_secrets")
            .fetch_all(db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(secrets.len(), 1);
    let body = json!({
        "object": "event",
        "id": "evt_multi_probe",
        "type": "batch.completed",
        "created_at": chrono::Utc::now().timestamp(),
        "data": {"id": "batch_multi_probe"},
    })
    .to_string();
    // B learns the secret from the database: at once, or (when it read the table less than a
    // second ago) on a try a moment later. Each try is a fresh, correctly signed delivery.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut answers = Vec::new();
    loop {
        let r = http
            .post(&receiver_b)
            .headers(signed(&secrets[0], "msg_multi_probe", &body))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        answers.push((status, r.text().await.unwrap()));
        if status == 200 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        answers.last().unwrap().0,
        200,
        "B refuses a delivery signed with the secret stored through A: {answers:?}"
    );

    // (b) Jobs submitted through both daemons: each created once, completed, notified once.
    let mut ids = Vec::new();
    for i in 0..12 {
        let daemon = if i % 2 == 0 { &a } else { &b };
        let r = http
            .post(format!("{}/v1/jobs", daemon.base))
            .json(&json!({"name": format!("multi-{i}"), "model": "gpt-5", "input": format!("job {i}")}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        a.proc.assert_running();
        b.proc.assert_running();
        let mut done = 0;
        for (i, id) in ids.iter().enumerate() {
            // Ask each daemon about the other's jobs too: one ledger.
            let base = if i % 2 == 0 { &b.base } else { &a.base };
            let j: Value = http
                .get(format!("{base}/v1/jobs/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_ne!(j["status"], "failed", "{j}");
            if j["status"] == "completed" {
                done += 1;
            }
        }
        let notified = rx.successes();
        if done == ids.len() && notified >= ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} jobs completed, {notified} notifications, within {DEADLINE:?}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats: Value = http
        .get(format!("{sim_base}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for id in &ids {
        assert_eq!(
            stats["creates_by_job_id"][id], 1,
            "{id} created upstream once: {stats}"
        );
    }
    assert_eq!(stats["creates"], ids.len(), "{stats}");
    // No delivery is left in flight that could still arrive as a late duplicate: every outbox
    // row is delivered, and every attempt either daemon made (counted when it claimed the row,
    // before its POST) has reached the receiver.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (undelivered, attempts): (i64, i64) =
            db::read_any(&db_url, async |db| {
                sqlx::query_as(
                    "SELECT CAST(COALESCE(SUM(CASE WHEN state != 'delivered' THEN 1 ELSE 0 END), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM notifications",
                )
                .fetch_one(db)
                .await
                .unwrap()
            })
            .await;
        let arrived = rx.hits().len();
        if undelivered == 0 && arrived as i64 >= attempts {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{undelivered} notifications undelivered, {arrived} of {attempts} attempts arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut notified: HashMap<String, usize> = HashMap::new();
    for hit in rx.hits() {
        assert_eq!(hit.answered, Some(200));
        let event = hit.json();
        *notified
            .entry(event["data"]["job"]["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for id in &ids {
        assert_eq!(
            notified.get(id),
            Some(&1),
            "{id} notified once: {notified:?}"
        );
    }
    assert_eq!(notified.len(), ids.len(), "{notified:?}");
    // The completion webhooks of the jobs went to B's receiver, signed with the stored secret,
    // and were accepted (only verified deliveries are recorded).
    let response_ids: Vec<String> = db::read_any(&db_url, async |db| {
        sqlx::query_scalar("SELECT response_id FROM jobs WHERE response_id IS NOT NULL")
            .fetch_all(db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(response_ids.len(), ids.len());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let recorded: i64 = db::read_any(&db_url, async |db| {
            sqlx::query_scalar(
                "SELECT COUNT(DISTINCT object_id) FROM webhook_deliveries \
                 WHERE event_type = 'response.completed'",
            )
            .fetch_one(db)
            .await
            .unwrap()
        })
        .await;
        if recorded == ids.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{recorded} of {} completion webhooks accepted by B",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.proc.assert_running();
    b.proc.assert_running();
}
