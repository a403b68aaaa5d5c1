//! `respool webhook register|list|test|rotate` through the real binary, against a daemon
//! process and a simulator process: the commands work, report what happened, and no signing
//! secret respool stored shows up in their output or in the daemon's (debug) log.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::db;
use crate::helpers::free_ports;
use crate::helpers::process::{Harness, Opts, command};

/// Runs a client command against the harness's daemon.
async fn cli(h: &Harness, args: &[&str]) -> std::process::Output {
    let mut cmd =
        tokio::process::Command::from(command(h.dir.path(), args, &[("RESPOOL_SERVER", &h.base)]));
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("`respool {}` did not finish within 60 s", args.join(" ")),
    }
}

/// The output of a command, asserting its exit status.
async fn run(h: &Harness, args: &[&str], success: bool) -> String {
    let out = cli(h, args).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.success(),
        success,
        "`respool {}` ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        args.join(" "),
        out.status
    );
    format!("{stdout}{stderr}")
}

/// The secrets the daemon stored, read from its database directly.
async fn stored_secrets(h: &Harness) -> Vec<String> {
    let mut conn = db::open(&h.db_url).await;
    let secrets: Vec<String> = sqlx::query_scalar("SELECT secret FROM webhook_secrets")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    db::close_any(conn).await;
    secrets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_commands_register_test_and_rotate() {
    let mut h = Harness::start(Opts {
        daemon_env: vec![("RESPOOL_LOG".into(), "debug".into())],
        ..Opts::default()
    })
    .await;
    let url = format!("{}/webhooks/openai", h.base);
    let mut outputs = Vec::new();

    let out = run(
        &h,
        &[
            "webhook",
            "register",
            &url,
            "--name",
            "proc",
            "--events",
            "response.completed,response.failed",
        ],
        true,
    )
    .await;
    assert!(out.contains("registered webhook endpoint we_"), "{out}");
    assert!(out.contains("response.completed, response.failed"), "{out}");
    outputs.push(out);

    let out = run(&h, &["webhook", "list"], true).await;
    assert!(
        out.contains("we_") && out.contains("proc") && out.contains('…'),
        "{out}"
    );
    outputs.push(out);

    let out = run(&h, &["webhook", "test"], true).await;
    assert!(
        out.contains("the endpoint answered 200; arrived and verified"),
        "{out}"
    );
    outputs.push(out);

    let out = run(&h, &["webhook", "rotate"], true).await;
    assert!(out.contains("rotated the signing secret of we_"), "{out}");
    assert!(
        out.contains("until"),
        "the old secret's expiry is shown: {out}"
    );
    outputs.push(out);

    let out = run(
        &h,
        &[
            "webhook",
            "test",
            "--json",
            "--event-type",
            "response.failed",
        ],
        true,
    )
    .await;
    let report: Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["upstream_status_code"], 200);
    outputs.push(out);

    // An endpoint pointing nowhere: the test says so and exits non-zero.
    let [port] = free_ports();
    let out = run(
        &h,
        &[
            "webhook",
            "register",
            &format!("http://127.0.0.1:{port}/webhooks/openai"),
            "--json",
        ],
        true,
    )
    .await;
    let nowhere: Value = serde_json::from_str(&out).expect("JSON");
    let nowhere = nowhere["endpoint"]["id"].as_str().expect("id").to_owned();
    outputs.push(out);
    let out = run(&h, &["webhook", "test"], false).await;
    assert!(out.contains("several endpoints"), "{out}");
    let out = run(
        &h,
        &["webhook", "test", "--endpoint", &nowhere, "--wait", "1s"],
        false,
    )
    .await;
    assert!(
        out.contains("NOT verified here") && out.contains("did not arrive"),
        "{out}"
    );
    outputs.push(out);

    // Jobs still run (deliveries now also come from the endpoints).
    let ids = h.submit_many("proc-hook", 2).await;
    h.wait_jobs(&ids, Duration::from_secs(30), "completed", |j| {
        j["status"] == "completed"
    })
    .await;

    let secrets = stored_secrets(&h).await;
    assert_eq!(secrets.len(), 3, "register, rotate, register");
    let log = h.daemon().output();
    assert!(log.contains("webhook endpoint registered"), "{log}");
    for secret in &secrets {
        let body = secret.trim_start_matches("whsec_");
        assert!(
            !log.contains(body),
            "a stored secret is in the daemon's log"
        );
        for out in &outputs {
            assert!(
                !out.contains(body),
                "a stored secret is in a command's output: {out}"
            );
        }
    }
}

/// Group commit never answers before it is durable: 24 senders post distinct signed
/// deliveries (bodies ASCII, non-ASCII, empty, one long line, many short lines) as fast as the
/// daemon answers, the daemon is killed with SIGKILL mid-stream, and every delivery that was
/// answered `200` is in the database afterwards, with its body intact. A delivery whose answer
/// never came may or may not be there (the sender retries it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_answered_200_survives_a_kill_9() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    let mut h = Harness::start(Opts::default()).await;
    let url = format!("{}/webhooks/openai", h.base);
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut senders = tokio::task::JoinSet::new();
    for s in 0..24 {
        let (http, url, secret, acked, stop) = (
            reqwest::Client::new(),
            url.clone(),
            h.secret.clone(),
            acked.clone(),
            stop.clone(),
        );
        senders.spawn(async move {
            for i in 0.. {
                if stop.is_cancelled() {
                    return;
                }
                let id = format!("msg_{s}_{i}");
                let note = match i % 5 {
                    0 => "plain ascii".to_owned(),
                    1 => "Größe – 完了 ✅".to_owned(),
                    2 => String::new(),
                    3 => "y".repeat(64 * 1024),
                    _ => "short\n".repeat(500),
                };
                let body = serde_json::json!({
                    "object": "event", "id": format!("evt_{s}_{i}"), "type": "response.completed",
                    "created_at": 1, "data": {"id": format!("resp_nojob{s}x{i}"), "note": note},
                })
                .to_string();
                let ts = chrono::Utc::now().timestamp();
                let mut rb = http.post(&url).body(body.clone());
                for (k, v) in crate::helpers::signed_headers(&secret, &id, ts, body.as_bytes()) {
                    rb = rb.header(k, v);
                }
                match rb.send().await {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().insert(id, body);
                    }
                    // Not recorded (a 500 on a loaded machine): the sender goes on, as a real
                    // one would (its retry is a new id here, which changes nothing).
                    Ok(_) => {}
                    // Cut off by the kill: this sender is done.
                    Err(_) => return,
                }
            }
        });
    }
    // Kill once plenty were answered, with the senders still going.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 1500 {
        assert!(
            std::time::Instant::now() < deadline,
            "too few deliveries answered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut daemon = h.take_daemon();
    crate::helpers::process::kill9(&mut daemon);
    stop.cancel();
    while senders.join_next().await.is_some() {}
    let acked = std::mem::take(&mut *acked.lock().unwrap());

    let mut conn = db::open(&h.db_url).await;
    let stored: HashMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT webhook_id, body FROM webhook_deliveries")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .collect();
    db::close_any(conn).await;
    let lost: Vec<&String> = acked
        .keys()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} deliveries answered 200 are not in the database: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
    for (id, body) in &acked {
        assert_eq!(&stored[id], body, "{id}: the stored body differs");
    }
    eprintln!(
        "kill -9 after {} deliveries answered 200 ({} stored): none lost",
        acked.len(),
        stored.len()
    );
    // The daemon starts again on the same file and takes deliveries.
    h.start_daemon().await;
}
