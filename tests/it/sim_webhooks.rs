//! Webhook deliveries from the simulator to a tiny receiver on port 0: signatures verify with
//! `standardwebhooks`, retries keep the `webhook-id`, and the drop / duplicate / extra-event
//! faults do what they say.

use std::time::Duration;

use axum::http::HeaderMap;
use respool::sim::{self, Faults, SimConfig, SimHandle};
use serde_json::{Value, json};

use crate::helpers::receiver::{Hit, Receiver, Reply};
use crate::helpers::{client, wait_for};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const OLD_SECRET: &str = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c=";

/// A recording receiver answering `script`, then 200; and its URL.
async fn receiver(script: Vec<Reply>) -> (Receiver, String) {
    let r = Receiver::start(script).await;
    let url = r.url.clone();
    (r, url)
}

/// The JSON bodies a receiver got, in order.
fn bodies(r: &Receiver) -> Vec<Value> {
    r.hits().iter().map(Hit::json).collect()
}

/// A simulator posting its webhooks to a receiver that answers `script`, then 200.
async fn start(faults: Faults, script: Vec<Reply>) -> (SimHandle, Receiver) {
    let sim = sim::spawn(SimConfig {
        queue_time: Duration::from_millis(50),
        run_time: Duration::from_millis(200),
        webhook_retry_schedule: vec![Duration::from_millis(50), Duration::from_millis(100)],
        faults,
        seed: Some(11),
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let (r, url) = receiver(script).await;
    sim.set_webhook_target(Some(url), vec![SECRET.to_owned()]);
    (sim, r)
}

async fn create(sim: &SimHandle, body: Value) -> String {
    let resp: Value = client()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    resp["id"].as_str().expect("id").to_owned()
}

fn bg(sim_spec: &str) -> Value {
    json!({"model": "gpt-5", "input": "hook me", "background": true, "metadata": {"sim": sim_spec}})
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn completed_webhook_is_signed_and_verifies() {
    let (sim, r) = start(Faults::default(), Vec::new()).await;
    // Re-point at a fresh receiver, signed with two secrets (rotation).
    let (r2, url2) = receiver(Vec::new()).await;
    sim.set_webhook_target(Some(url2), vec![SECRET.to_owned(), OLD_SECRET.to_owned()]);
    // A synchronous response never emits a webhook.
    let sync_id = create(&sim, json!({"model": "gpt-5", "input": "sync"})).await;
    let id = create(&sim, bg("")).await;
    wait_for("delivery", || !r2.hits().is_empty()).await;
    let Hit { headers, body, .. } = r2.hits().remove(0);

    for secret in [SECRET, OLD_SECRET] {
        standardwebhooks::Webhook::new(secret)
            .expect("secret")
            .verify(&body, &headers)
            .expect("signature verifies");
    }
    let sigs: Vec<&str> = header(&headers, "webhook-signature").split(' ').collect();
    assert_eq!(sigs.len(), 2);
    assert!(sigs.iter().all(|s| s.starts_with("v1,")));
    assert!(header(&headers, "webhook-id").starts_with("wh_"));
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert_eq!(header(&headers, "user-agent"), sim::WEBHOOK_USER_AGENT);

    let event: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(event["object"], "event");
    assert!(event["id"].as_str().expect("id").starts_with("evt_"));
    assert_ne!(event["id"].as_str(), Some(header(&headers, "webhook-id")));
    assert_eq!(event["type"], "response.completed");
    assert_eq!(event["data"], json!({"id": id}));
    let ts: i64 = header(&headers, "webhook-timestamp").parse().expect("ts");
    assert!(event["created_at"].as_i64().expect("created_at") <= ts);
    assert!(
        bodies(&r2)
            .iter()
            .all(|b| b["data"]["id"] != sync_id.as_str())
    );
    assert!(r.hits().is_empty());
    wait_for("stats", || sim.stats().webhooks_delivered == 1).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn retries_after_500_keep_the_webhook_id() {
    let (sim, r) = start(Faults::default(), vec![Reply::status(500); 2]).await;
    create(&sim, bg("outcome=failed")).await;
    wait_for("three attempts", || r.hits().len() == 3).await;
    let ids: Vec<String> = r
        .hits()
        .iter()
        .map(|h| header(&h.headers, "webhook-id").to_owned())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    for hit in r.hits() {
        hit.verify(SECRET).expect("each attempt verifies");
    }
    assert_eq!(bodies(&r)[2]["type"], "response.failed");
    wait_for("stats", || sim.stats().webhooks_delivered == 1).await;
    assert_eq!(sim.stats().webhooks_attempted, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn gives_up_after_the_schedule() {
    let (sim, r) = start(Faults::default(), vec![Reply::status(500); 100]).await;
    create(&sim, bg("")).await;
    wait_for("exhausted", || sim.stats().webhooks_failed == 1).await;
    assert_eq!(r.hits().len(), 3, "1 attempt + 2 retries");
    sim.shutdown().await;
}

#[tokio::test]
async fn drop_fault_sends_nothing() {
    let (sim, r) = start(
        Faults {
            webhook_drop: 1.0,
            ..Faults::default()
        },
        Vec::new(),
    )
    .await;
    create(&sim, bg("")).await;
    create(&sim, bg("webhook=drop")).await;
    wait_for("two drops", || sim.stats().webhooks_dropped == 2).await;
    assert!(r.hits().is_empty());
    assert_eq!(sim.stats().webhooks_attempted, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_and_extra_events() {
    let (sim, r) = start(
        Faults {
            webhook_extra_events: 1.0,
            ..Faults::default()
        },
        Vec::new(),
    )
    .await;
    let id = create(&sim, bg("webhook=duplicate")).await;
    wait_for("three deliveries", || r.hits().len() == 3).await;
    let bodies = bodies(&r);
    let ours: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["data"]["id"] == id.as_str())
        .collect();
    assert_eq!(ours.len(), 2);
    assert_eq!(ours[0], ours[1], "a duplicate is the same event");
    let dup_ids: Vec<String> = r
        .hits()
        .iter()
        .filter(|h| h.json()["data"]["id"] == id.as_str())
        .map(|h| header(&h.headers, "webhook-id").to_owned())
        .collect();
    assert_eq!(dup_ids[0], dup_ids[1]);
    let extra = bodies
        .iter()
        .find(|b| b["data"]["id"] != id.as_str())
        .expect("extra event");
    assert_ne!(extra["type"], "response.completed");
    assert!(
        !extra["type"]
            .as_str()
            .expect("type")
            .starts_with("response.")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn cancel_emits_response_cancelled() {
    let (sim, r) = start(Faults::default(), Vec::new()).await;
    let id = create(&sim, bg("queue=30s")).await;
    let resp = client()
        .post(format!("{}/responses/{id}/cancel", sim.base_url()))
        .bearer_auth("sk-test")
        .send()
        .await
        .expect("cancel");
    assert!(resp.status().is_success());
    wait_for("cancel webhook", || !r.hits().is_empty()).await;
    assert_eq!(bodies(&r)[0]["type"], "response.cancelled");
    assert_eq!(bodies(&r)[0]["data"]["id"], id.as_str());
    sim.shutdown().await;
}

#[tokio::test]
async fn control_api_sets_target_and_faults() {
    let sim = sim::spawn(SimConfig {
        queue_time: Duration::ZERO,
        run_time: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let (r, url) = receiver(Vec::new()).await;
    let http = client();
    let root = format!("http://{}", sim.addr());
    let resp = http
        .post(format!("{root}/_sim/webhook"))
        .json(&json!({"url": url, "secrets": [SECRET]}))
        .send()
        .await
        .expect("set");
    assert!(resp.status().is_success());
    let resp = http
        .post(format!("{root}/_sim/webhook"))
        .json(&json!({"url": url, "secrets": ["whsec_***"]}))
        .send()
        .await
        .expect("bad");
    assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST);
    let resp = http
        .post(format!("{root}/_sim/faults"))
        .json(&json!({"webhook_duplicate": 1.0}))
        .send()
        .await
        .expect("faults");
    assert!(resp.status().is_success());
    let resp = http
        .post(format!("{root}/_sim/faults"))
        .json(&json!({"fail": 2.0}))
        .send()
        .await
        .expect("faults");
    assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST);
    create(&sim, bg("")).await;
    wait_for("duplicate delivery", || r.hits().len() == 2).await;
    let stats: Value = http
        .get(format!("{root}/_sim/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["creates"], 1);
    assert!(stats["webhooks_delivered"].as_u64().expect("n") >= 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn redirects_and_timeouts_are_failures_too() {
    let sim = sim::spawn(SimConfig {
        queue_time: Duration::ZERO,
        run_time: Duration::from_millis(50),
        webhook_timeout: Duration::from_millis(200),
        webhook_retry_schedule: vec![Duration::from_millis(50); 3],
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    // The first attempt is never answered (the simulator's timeout ends it), the second gets a
    // 307.
    let (r, url) = receiver(vec![Reply::hang(), Reply::status(307)]).await;
    sim.set_webhook_target(Some(url), vec![SECRET.to_owned()]);
    create(&sim, bg("")).await;
    // Attempt 1 times out, attempt 2 gets a 307 (not followed), attempt 3 a 200.
    wait_for("delivered", || sim.stats().webhooks_delivered == 1).await;
    let ids: Vec<String> = r
        .hits()
        .iter()
        .map(|h| header(&h.headers, "webhook-id").to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.iter().all(|i| *i == ids[0]));
    assert_eq!(sim.stats().webhooks_attempted, 3);
    sim.shutdown().await;
}
