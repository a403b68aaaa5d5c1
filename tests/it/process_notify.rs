//! Process-level outbox test: the real binary is killed with SIGKILL while a webhook delivery
//! is in flight, and the notification is delivered after the restart: at least once, never
//! lost, with the same `webhook-id` so the receiver can tell it is the same event.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::db;
use crate::helpers::new_secret;
use crate::helpers::process::*;
use crate::helpers::receiver::{Receiver, Reply};

/// Polls the job's timeline until it has `kind`; panics at the deadline.
async fn wait_event(h: &mut Harness, id: &str, kind: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        h.daemon().assert_running();
        if h.events(id).await.iter().any(|e| e["kind"] == kind) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} on {id} within {within:?}: {:#?}",
            h.events(id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first POST hangs; the daemon is killed with it in flight. The outbox row is still
/// pending (leased by the dead process) after the crash; once the lease is over the restarted
/// daemon delivers it, once, with the same `webhook-id`.
///
/// The lease is twice the slowest sink's timeout plus 15 s (31 s here): the row is left alone
/// that long, then the restarted daemon takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_a_delivery_then_restart_delivers_it() {
    let started = Instant::now();
    let secret = new_secret();
    let rx = Receiver::start(vec![Reply::hang()]).await;
    let mut h = Harness::start(Opts {
        run_time: "2s",
        ..Opts::default()
    })
    .await;
    // The harness writes no sinks: add one and start over (nothing has happened yet).
    let mut first = h.take_daemon();
    kill9(&mut first);
    drop(first);
    let mut yaml = std::fs::read_to_string(&h.config).unwrap();
    yaml.push_str(&format!(
        "sinks:\n  hook:\n    type: webhook\n    url: \"{url}\"\n    secret: \"{secret}\"\n    timeout: 8s\n\
         notify:\n  default: [hook]\n  initial_backoff: 200ms\n  max_backoff: 1s\n",
        url = rx.url,
    ));
    std::fs::write(&h.config, yaml).unwrap();
    h.start_daemon().await;

    let id = h
        .submit("hooked", "a job whose notification outlives a crash")
        .await;
    h.wait_terminal(std::slice::from_ref(&id), Duration::from_secs(60))
        .await;
    let first_try = rx.wait_hits(1, Duration::from_secs(60)).await.remove(0);
    assert!(
        first_try.answered.is_none(),
        "the first try is left hanging"
    );
    first_try.verify(&secret).unwrap();

    let mut daemon = h.take_daemon();
    kill9(&mut daemon);
    drop(daemon);
    eprintln!(
        "kill9 during delivery: killed at {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let mut db = db::open(&h.db_url).await;
    let (state, attempts, next_at): (String, i64, i64) = sqlx::query_as(
        "SELECT state, attempts, next_attempt_at FROM notifications WHERE job_id = $1",
    )
    .bind(&id)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(
        (state.as_str(), attempts),
        ("pending", 1),
        "the row survived the crash as pending"
    );
    let now_ms = chrono::Utc::now().timestamp_millis();
    assert!(
        next_at > now_ms && next_at <= now_ms + 31_000,
        "the dead process still holds its lease, for at most 31 s"
    );
    db::close_any(db).await;

    h.start_daemon().await;
    wait_event(&mut h, &id, "notified", Duration::from_secs(60)).await;
    let hits = rx.hits();
    assert_eq!(hits.len(), 2, "the hanging try and the delivery");
    assert_eq!(rx.successes(), 1);
    assert_eq!(hits[1].header("webhook-id"), hits[0].header("webhook-id"));
    hits[1].verify(&secret).unwrap();
    let event: Value = hits[1].json();
    assert_eq!(event["type"], "job.completed");
    assert_eq!(event["data"]["job"]["id"], id.as_str());
    let notified = h
        .events(&id)
        .await
        .iter()
        .filter(|e| e["kind"] == "notified")
        .count();
    assert_eq!(notified, 1);
    eprintln!(
        "kill9 during delivery: delivered after restart; {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
