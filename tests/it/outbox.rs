//! The outbox's guarantees, seen from a webhook receiver through the real daemon: a sink that
//! is down for a while still gets the event exactly once; one that stays down gets exactly
//! `notify.max_attempts` tries and leaves a dead letter; a refusal is final at once; and the
//! sink's secret never shows in the daemon's answers.
#![allow(clippy::field_reassign_with_default)]

use std::time::Duration;

use base64::Engine;
use respool::config::SinkConfig;
use respool::config::sinks::WebhookSink;
use respool::sim::SimConfig;
use respool::store::Close;
use secrecy::SecretString;
use serde_json::Value;

use crate::helpers;
use crate::helpers::receiver::{Receiver, Reply};

const JOB_DEADLINE: Duration = Duration::from_secs(30);
const NOTIFY_DEADLINE: Duration = Duration::from_secs(40);

async fn app_with_hook(url: &str, secret: &str, max_attempts: u32) -> helpers::TestApp {
    let sink = SinkConfig::Webhook(WebhookSink {
        max_concurrent: None,
        url: url.to_string(),
        secret: Some(SecretString::from(secret.to_string())),
        secret_file: None,
        timeout: Duration::from_secs(10),
    });
    helpers::spawn_app_with(
        move |cfg| {
            cfg.sinks.insert("hook".into(), sink);
            cfg.notify.default = vec!["hook".into()];
            cfg.notify.initial_backoff = Duration::from_millis(200);
            cfg.notify.max_backoff = Duration::from_secs(1);
            cfg.notify.max_attempts = max_attempts;
        },
        SimConfig::default(),
    )
    .await
}

/// The job's dead letters, from `GET /v1/notifications?state=dead`.
async fn dead_letters(app: &helpers::TestApp, id: &str) -> Vec<Value> {
    let (status, body) = app.get("/v1/notifications?state=dead").await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["job_id"] == id)
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_sink_down_for_a_while_gets_the_event_exactly_once() {
    let secret = helpers::new_secret();
    let rx = Receiver::start(vec![Reply::status(503); 4]).await;
    let app = app_with_hook(&rx.url, &secret, 10).await;
    let id = app.submit(&helpers::job_body("outage")).await;
    app.wait_terminal(&id, JOB_DEADLINE).await;
    app.wait_event(&id, "notified", NOTIFY_DEADLINE).await;

    let hits = rx.hits();
    assert_eq!(hits.len(), 5, "four refusals, then the delivery");
    assert_eq!(rx.successes(), 1, "delivered exactly once");
    assert!(hits.iter().all(|h| h.verify(&secret).is_ok()));
    assert!(
        hits.iter()
            .all(|h| h.header("webhook-id") == hits[0].header("webhook-id")),
        "one webhook-id for every attempt"
    );
    assert_eq!(app.count_events(&id, "notified").await, 1);
    assert_eq!(app.count_events(&id, "notify_failed").await, 0);
    let rows = app.notification_rows(&id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["state"], "delivered");
    assert_eq!(rows[0]["attempts"], 5);
    app.stop().await;
}

#[tokio::test]
async fn a_sink_down_for_good_is_a_dead_letter_after_max_attempts() {
    let secret = helpers::new_secret();
    let rx = Receiver::start(vec![Reply::status(503); 100]).await;
    let app = app_with_hook(&rx.url, &secret, 3).await;
    let id = app.submit(&helpers::job_body("gone")).await;
    app.wait_terminal(&id, JOB_DEADLINE).await;
    app.wait_event(&id, "notify_failed", NOTIFY_DEADLINE).await;

    assert_eq!(rx.hits().len(), 3, "exactly max_attempts tries");
    assert_eq!(rx.successes(), 0);
    assert_eq!(app.count_events(&id, "notified").await, 0);
    let failed = app
        .events(&id)
        .await
        .into_iter()
        .find(|e| e["kind"] == "notify_failed")
        .unwrap();
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("503"), "{message}");
    let dead = dead_letters(&app, &id).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["sink"], "hook");
    assert_eq!(dead[0]["event"], "job.completed");
    assert_eq!(dead[0]["attempts"], 3);
    app.stop().await;
}

#[tokio::test]
async fn a_refusal_is_final_at_once() {
    let secret = helpers::new_secret();
    let rx = Receiver::start(vec![Reply::status(410); 100]).await;
    let app = app_with_hook(&rx.url, &secret, 5).await;
    let id = app.submit(&helpers::job_body("refused")).await;
    app.wait_terminal(&id, JOB_DEADLINE).await;
    app.wait_event(&id, "notify_failed", NOTIFY_DEADLINE).await;
    assert_eq!(rx.hits().len(), 1, "a 4xx is not retried");
    let dead = dead_letters(&app, &id).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["attempts"], 1);
    app.stop().await;
}

/// A 303 followed would turn the signed POST into a GET whose 200 would count as delivered:
/// a redirect is a failed try instead, and the next try POSTs to the configured URL again.
#[tokio::test]
async fn a_redirect_is_not_followed() {
    let secret = helpers::new_secret();
    let rx = Receiver::start(vec![Reply::redirect(303, "/elsewhere")]).await;
    let app = app_with_hook(&rx.url, &secret, 5).await;
    let id = app.submit(&helpers::job_body("redirected")).await;
    app.wait_terminal(&id, JOB_DEADLINE).await;
    app.wait_event(&id, "notified", NOTIFY_DEADLINE).await;
    let hits = rx.hits();
    let seen: Vec<(&str, &str)> = hits
        .iter()
        .map(|h| (h.method.as_str(), h.path.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![("POST", "/hooks/respool"), ("POST", "/hooks/respool")]
    );
    assert_eq!(app.notification_rows(&id).await[0]["attempts"], 2);
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_sink_is_retried_like_a_down_one() {
    // A port nobody listens on: connection refused on every try.
    let [port] = crate::helpers::free_ports();
    let url = format!("http://127.0.0.1:{port}/hook?token=query-token-must-not-leak");
    let secret = helpers::new_secret();
    let app = app_with_hook(&url, &secret, 2).await;
    let id = app.submit(&helpers::job_body("unreachable")).await;
    app.wait_terminal(&id, JOB_DEADLINE).await;
    app.wait_event(&id, "notify_failed", NOTIFY_DEADLINE).await;
    let dead = dead_letters(&app, &id).await;
    assert_eq!(dead[0]["attempts"], 2);
    let error = dead[0]["last_error"].as_str().unwrap();
    assert!(!error.contains("query-token-must-not-leak"), "{error}");
    assert!(error.starts_with("POST failed: "), "{error}");
    eprintln!("unreachable sink: {error}");
    app.stop().await;
}

/// The sink's secret (whole, or its key part) is in no answer: jobs, timelines, outbox rows
/// with errors, metrics, the OpenAPI document.
#[tokio::test]
async fn the_webhook_secret_never_appears_in_answers() {
    let secret = helpers::new_secret();
    let key_part = secret.trim_start_matches("whsec_").to_string();
    let raw_key = base64::engine::general_purpose::STANDARD
        .decode(&key_part)
        .unwrap();
    let raw_hex: String = raw_key.iter().map(|b| format!("{b:02x}")).collect();
    let rx = Receiver::start(vec![Reply::status(500)]).await;
    let app = app_with_hook(&rx.url, &secret, 5).await;
    let id = app.submit(&helpers::job_body("secretive")).await;
    app.wait_terminal(&id, JOB_DEADLINE).await;
    app.wait_event(&id, "notified", NOTIFY_DEADLINE).await;

    let mut answers = Vec::new();
    for path in [
        "/v1/jobs".to_string(),
        format!("/v1/jobs/{id}"),
        format!("/v1/jobs/{id}/events"),
        format!("/v1/jobs/{id}/response"),
        "/v1/notifications".to_string(),
        format!("/v1/notifications?job_id={id}"),
        "/metrics".to_string(),
        "/healthz".to_string(),
        "/readyz".to_string(),
        "/openapi.json".to_string(),
    ] {
        let r = app
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
        answers.push((path, r.text().await.unwrap()));
    }
    for (path, text) in &answers {
        for needle in [secret.as_str(), key_part.as_str(), raw_hex.as_str()] {
            assert!(!text.contains(needle), "{path} shows the secret: {text}");
        }
    }
    app.stop().await;
}

/// The daemon with a webhook sink that answers 503 for good, waiting a day between tries (so
/// its own notifier leaves the row alone while the test plays two workers on the same row).
async fn app_with_slow_retries(url: &str) -> helpers::TestApp {
    let sink = SinkConfig::Webhook(WebhookSink {
        max_concurrent: None,
        url: url.to_string(),
        secret: Some(SecretString::from(helpers::new_secret())),
        secret_file: None,
        timeout: Duration::from_secs(10),
    });
    helpers::spawn_app_with(
        move |cfg| {
            cfg.sinks.insert("hook".into(), sink);
            cfg.notify.default = vec!["hook".into()];
            cfg.notify.initial_backoff = DAY;
            cfg.notify.max_backoff = DAY;
            cfg.notify.max_attempts = 10;
        },
        SimConfig::default(),
    )
    .await
}

const DAY: Duration = Duration::from_secs(24 * 3600);
const LEASE_MS: i64 = 60_000;

/// A finished job whose one notification failed once and waits a day for its next try; a
/// second handle on the daemon's database, and a time (unix ms) when the row is due.
async fn one_waiting_notification(
    app: &helpers::TestApp,
    name: &str,
) -> (String, respool::store::Store, i64) {
    let id = app.submit(&helpers::job_body(name)).await;
    app.wait_terminal(&id, JOB_DEADLINE).await;
    app.wait_until("the first try failed", NOTIFY_DEADLINE, async || {
        app.notification_rows(&id).await.first().is_some_and(|r| {
            r["attempts"] == 1 && r["state"] == "pending" && !r["last_error"].is_null()
        })
    })
    .await;
    let store = respool::store::Store::connect(&app.db_url).await.unwrap();
    let due = app.clock.now_ms() + 2 * 24 * 3_600_000;
    (id, store, due)
}

/// Two workers on one row: A claims it, its lease runs out while it is still busy, B claims it
/// again. Whatever A reports afterwards (delivered, failed, dead) changes nothing; B's report
/// counts.
#[tokio::test]
async fn a_stale_workers_closing_write_changes_nothing() {
    let rx = Receiver::start(vec![Reply::status(503); 100]).await;
    let app = app_with_slow_retries(&rx.url).await;
    let (id, store, due) = one_waiting_notification(&app, "fenced").await;

    let a = store.claim_notifications(due, LEASE_MS, 10).await.unwrap();
    assert_eq!(a.len(), 1);
    let b_at = due + LEASE_MS + 1;
    let b = store.claim_notifications(b_at, LEASE_MS, 10).await.unwrap();
    assert_eq!(b.len(), 1, "the lease ran out: the row is claimed again");
    assert!(b[0].claim > a[0].claim, "{} vs {}", b[0].claim, a[0].claim);

    // A's late success: not recorded (B's try is the one in flight).
    let applied = store
        .mark_notification_delivered(&a[0], b_at + 1)
        .await
        .unwrap();
    assert!(!applied, "a stale claim's delivered write must not apply");
    let row = &app.notification_rows(&id).await[0];
    assert_eq!(row["state"], "pending", "{row}");
    assert!(row["delivered_at"].is_null(), "{row}");
    // A's late failure, final or not: not recorded either.
    let applied = store
        .mark_notification_failed(&a[0], "late", None, b_at + 2)
        .await
        .unwrap();
    assert!(!applied, "a stale claim's failed write must not apply");
    let row = &app.notification_rows(&id).await[0];
    assert_eq!(row["state"], "pending", "{row}");
    assert_ne!(row["last_error"], "late", "{row}");
    assert_eq!(app.count_events(&id, "notified").await, 0);
    assert_eq!(app.count_events(&id, "notify_failed").await, 0);

    // B's report is the one that counts, also when it is written in one batch with A's
    // stale one (the outbox group-commits closes): each answers as if written alone.
    let answers = store
        .close_notifications(&[
            Close::Delivered {
                row: a[0].clone(),
                now: b_at + 3,
            },
            Close::Failed {
                row: b[0].clone(),
                error: "still down".into(),
                retry_at: Some(b_at + 10),
                now: b_at + 3,
            },
        ])
        .await;
    let answers: Vec<bool> = answers.into_iter().map(Result::unwrap).collect();
    assert_eq!(answers, [false, true]);
    assert_eq!(app.count_events(&id, "notified").await, 0);
    assert_eq!(
        app.notification_rows(&id).await[0]["last_error"],
        "still down"
    );
    store.close().await;
    app.stop().await;
}

/// A delivery recorded by the worker holding the latest claim is final: a slower worker's
/// failure (retry or dead letter), arriving after it, never moves it back.
#[tokio::test]
async fn a_late_failure_never_undoes_a_delivery() {
    let rx = Receiver::start(vec![Reply::status(503); 100]).await;
    let app = app_with_slow_retries(&rx.url).await;
    let (id, store, due) = one_waiting_notification(&app, "delivered-once").await;

    let a = store.claim_notifications(due, LEASE_MS, 10).await.unwrap();
    let b_at = due + LEASE_MS + 1;
    let b = store.claim_notifications(b_at, LEASE_MS, 10).await.unwrap();
    assert!(
        store
            .mark_notification_delivered(&b[0], b_at + 1)
            .await
            .unwrap()
    );
    for retry_at in [Some(b_at + 1_000), None] {
        let applied = store
            .mark_notification_failed(&a[0], "timed out", retry_at, b_at + 2)
            .await
            .unwrap();
        assert!(!applied, "a late failure must not apply ({retry_at:?})");
        let row = &app.notification_rows(&id).await[0];
        assert_eq!(row["state"], "delivered", "{row}");
        assert!(!row["delivered_at"].is_null(), "{row}");
    }
    // Nor does the winner's own second report, or a delivery reported twice.
    assert!(
        !store
            .mark_notification_failed(&b[0], "again", None, b_at + 3)
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_notification_delivered(&b[0], b_at + 4)
            .await
            .unwrap()
    );
    assert_eq!(app.notification_rows(&id).await[0]["state"], "delivered");
    assert_eq!(app.count_events(&id, "notified").await, 1);
    assert_eq!(app.count_events(&id, "notify_failed").await, 0);
    store.close().await;
    app.stop().await;
}

/// Each sink has its own delivery slots: a sink whose endpoint hangs holds its own two slots
/// (`max_concurrent: 2`) and no more, and never holds up another sink, which gets every event
/// while the slow one still has its first two in flight.
#[tokio::test]
async fn a_hanging_sink_uses_its_own_slots_and_holds_up_no_other() {
    let slow = Receiver::start(vec![Reply::hang(); 20]).await;
    let fast = Receiver::start(Vec::new()).await;
    let hook = |url: &str, max: Option<usize>| {
        SinkConfig::Webhook(WebhookSink {
            max_concurrent: max.and_then(std::num::NonZeroUsize::new),
            url: url.to_string(),
            secret: Some(SecretString::from(helpers::new_secret())),
            secret_file: None,
            // A hung delivery holds its slot for twice this.
            timeout: Duration::from_secs(60),
        })
    };
    let (slow_sink, fast_sink) = (hook(&slow.url, Some(2)), hook(&fast.url, None));
    let app = helpers::spawn_app_with(
        move |cfg| {
            cfg.sinks.insert("slow".into(), slow_sink);
            cfg.sinks.insert("fast".into(), fast_sink);
            cfg.notify.default = vec!["slow".into(), "fast".into()];
        },
        SimConfig::default(),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(app.submit(&helpers::job_body(&format!("slots-{i}"))).await);
    }
    for id in &ids {
        app.wait_terminal(id, JOB_DEADLINE).await;
    }
    let got = fast.wait_hits(6, NOTIFY_DEADLINE).await;
    assert_eq!(got.len(), 6, "each job's event once at the fast sink");
    let held = slow.hits();
    assert_eq!(
        held.len(),
        2,
        "the slow sink has exactly its two slots in flight: {:?}",
        held.iter().map(|h| h.answered).collect::<Vec<_>>()
    );
    assert!(held.iter().all(|h| h.answered.is_none()));
    let rows: Vec<Value> = {
        let mut all = Vec::new();
        for id in &ids {
            all.extend(app.notification_rows(id).await);
        }
        all
    };
    let pending_slow = rows
        .iter()
        .filter(|r| r["sink"] == "slow" && r["state"] == "pending")
        .count();
    assert_eq!(
        pending_slow, 6,
        "nothing to the slow sink is lost or given up"
    );
    let claimed = rows
        .iter()
        .filter(|r| r["sink"] == "slow" && r["attempts"] == 1)
        .count();
    assert_eq!(
        claimed, 2,
        "exactly two claimed for the slow sink: {rows:#?}"
    );
    assert_eq!(slow.hits().len(), 2, "{:?}", slow.hits());
    app.stop().await;
}
