//! The notification outbox through the REST API: routing, listing, dead letters, retry.

use std::time::Duration;

use respool::config::SinkConfig;
use respool::config::sinks::WebhookSink;
use respool::sim::SimConfig;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers;

fn console() -> SinkConfig {
    SinkConfig::Console {}
}

/// A webhook sink aimed at a port nobody listens on.
fn unreachable_sink() -> SinkConfig {
    let [port] = crate::helpers::free_ports();
    SinkConfig::Webhook(WebhookSink {
        max_concurrent: None,
        url: format!("http://127.0.0.1:{port}/hook"),
        secret: Some(SecretString::from(helpers::new_secret())),
        secret_file: None,
        timeout: Duration::from_secs(2),
    })
}

async fn notifications(app: &helpers::TestApp, query: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/v1/notifications?{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn default_and_per_job_routes_produce_one_notification_each() {
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.sinks.insert("log".into(), console());
            cfg.sinks.insert("audit".into(), console());
            cfg.notify.default = vec!["log".into()];
        },
        SimConfig::default(),
    )
    .await;
    let (_, a) = app.post_job(&helpers::job_body("default-route")).await;
    let mut body = helpers::job_body("own-route");
    body["notify"] = json!(["audit", {"sink": "log", "on": ["failed"]}]);
    let (_, b) = app.post_job(&body).await;
    let (a, b) = (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    );
    for id in [&a, &b] {
        app.wait_terminal(id, Duration::from_secs(15)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let na = notifications(&app, &format!("job_id={a}")).await;
        let nb = notifications(&app, &format!("job_id={b}")).await;
        let delivered = |v: &[Value]| v.iter().all(|n| n["state"] == "delivered");
        if na.len() == 1 && nb.len() == 1 && delivered(&na) && delivered(&nb) {
            assert_eq!(na[0]["sink"], "log");
            assert_eq!(na[0]["event"], "job.completed");
            // The job's own list replaces the default; `log` only wants failures.
            assert_eq!(nb[0]["sink"], "audit");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "notifications: {na:?} {nb:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app.event_kinds(&a).await.contains(&"notified".to_string()));
    app.stop().await;
}

#[tokio::test]
async fn a_sink_down_for_good_becomes_a_dead_letter_that_can_be_retried() {
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.sinks.insert("down".into(), unreachable_sink());
            cfg.notify.default = vec!["down".into()];
            cfg.notify.max_attempts = 2;
            cfg.notify.initial_backoff = Duration::from_millis(100);
            cfg.notify.max_backoff = Duration::from_millis(200);
        },
        SimConfig::default(),
    )
    .await;
    let (_, job) = app.post_job(&helpers::job_body("dead-letter")).await;
    let id = job["id"].as_str().unwrap().to_string();
    app.wait_terminal(&id, Duration::from_secs(15)).await;

    let dead = wait_dead(&app, &id).await;
    assert_eq!(dead["attempts"], 2);
    assert!(dead["last_error"].as_str().unwrap().len() > 5, "{dead}");
    assert!(
        app.event_kinds(&id)
            .await
            .contains(&"notify_failed".to_string())
    );
    let listed = notifications(&app, "state=dead").await;
    assert_eq!(listed.len(), 1);

    let (status, again) = app
        .post(&format!("/v1/notifications/{}/retry", dead["id"]))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["state"], "pending");
    assert_eq!(again["attempts"], 0);
    assert!(
        app.event_kinds(&id)
            .await
            .contains(&"notify_retry".to_string())
    );
    // Still down: it dies again after its tries.
    let dead = wait_dead(&app, &id).await;
    assert_eq!(dead["attempts"], 2);

    let (status, body) = app.post("/v1/notifications/999999/retry").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = app.get("/v1/notifications?state=lost").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "state");
    app.stop().await;
}

async fn wait_dead(app: &helpers::TestApp, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = notifications(app, &format!("job_id={id}")).await;
        if let Some(n) = list.iter().find(|n| n["state"] == "dead") {
            return n.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead letter: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
