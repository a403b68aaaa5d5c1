//! Webhook deliveries from the simulator to a tiny receiver on port 0: signatures verify with
//! `standardwebhooks`, retries keep the `webhook-id`, and the drop / duplicate / extra-event
//! faults do what they say.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use respool::sim::{self, Faults, SimConfig, SimHandle};
use serde_json::{Value, json};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const OLD_SECRET: &str = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c=";

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    fail_first: Arc<AtomicUsize>,
    /// Status of the failing answers (500 unless set).
    fail_with: Arc<AtomicU16>,
    /// The first N requests are answered only after a second.
    slow_first: Arc<AtomicUsize>,
}

impl Receiver {
    fn deliveries(&self) -> Vec<(HeaderMap, Bytes)> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    fn bodies(&self) -> Vec<Value> {
        self.deliveries()
            .iter()
            .map(|(_, b)| serde_json::from_slice(b).expect("json body"))
            .collect()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if let Ok(mut got) = r.got.lock() {
        got.push((headers, body));
    }
    let spend = |n: &AtomicUsize| {
        n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    };
    if spend(&r.slow_first) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if spend(&r.fail_first) {
        match r.fail_with.load(Ordering::SeqCst) {
            0 => StatusCode::INTERNAL_SERVER_ERROR,
            code => StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        }
    } else {
        StatusCode::OK
    }
}

/// Starts a receiver; returns it and its URL.
async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

async fn start(faults: Faults) -> (SimHandle, Receiver) {
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
    let (r, url) = receiver().await;
    sim.set_webhook_target(Some(url), vec![SECRET.to_owned()]);
    (sim, r)
}

async fn create(sim: &SimHandle, body: Value) -> String {
    let resp: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
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

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn completed_webhook_is_signed_and_verifies() {
    let (sim, r) = start(Faults::default()).await;
    // Re-point at a fresh receiver, signed with two secrets (rotation).
    let (r2, url2) = receiver().await;
    sim.set_webhook_target(Some(url2), vec![SECRET.to_owned(), OLD_SECRET.to_owned()]);
    // A synchronous response never emits a webhook.
    let sync_id = create(&sim, json!({"model": "gpt-5", "input": "sync"})).await;
    let id = create(&sim, bg("")).await;
    wait_for("delivery", || !r2.deliveries().is_empty()).await;
    let (headers, body) = r2.deliveries().remove(0);

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
        r2.bodies()
            .iter()
            .all(|b| b["data"]["id"] != sync_id.as_str())
    );
    assert!(r.deliveries().is_empty());
    wait_for("stats", || sim.stats().webhooks_delivered == 1).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn retries_after_500_keep_the_webhook_id() {
    let (sim, r) = start(Faults::default()).await;
    r.fail_first.store(2, Ordering::SeqCst);
    create(&sim, bg("outcome=failed")).await;
    wait_for("three attempts", || r.deliveries().len() == 3).await;
    let ids: Vec<String> = r
        .deliveries()
        .iter()
        .map(|(h, _)| header(h, "webhook-id").to_owned())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    for (h, b) in r.deliveries() {
        standardwebhooks::Webhook::new(SECRET)
            .expect("secret")
            .verify(&b, &h)
            .expect("each attempt verifies");
    }
    assert_eq!(r.bodies()[2]["type"], "response.failed");
    wait_for("stats", || sim.stats().webhooks_delivered == 1).await;
    assert_eq!(sim.stats().webhooks_attempted, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn gives_up_after_the_schedule() {
    let (sim, r) = start(Faults::default()).await;
    r.fail_first.store(100, Ordering::SeqCst);
    create(&sim, bg("")).await;
    wait_for("exhausted", || sim.stats().webhooks_failed == 1).await;
    assert_eq!(r.deliveries().len(), 3, "1 attempt + 2 retries");
    sim.shutdown().await;
}

#[tokio::test]
async fn drop_fault_sends_nothing() {
    let (sim, r) = start(Faults {
        webhook_drop: 1.0,
        ..Faults::default()
    })
    .await;
    create(&sim, bg("")).await;
    create(&sim, bg("webhook=drop")).await;
    wait_for("two drops", || sim.stats().webhooks_dropped == 2).await;
    assert!(r.deliveries().is_empty());
    assert_eq!(sim.stats().webhooks_attempted, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_and_extra_events() {
    let (sim, r) = start(Faults {
        webhook_extra_events: 1.0,
        ..Faults::default()
    })
    .await;
    let id = create(&sim, bg("webhook=duplicate")).await;
    wait_for("three deliveries", || r.deliveries().len() == 3).await;
    let bodies = r.bodies();
    let ours: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["data"]["id"] == id.as_str())
        .collect();
    assert_eq!(ours.len(), 2);
    assert_eq!(ours[0], ours[1], "a duplicate is the same event");
    let dup_ids: Vec<String> = r
        .deliveries()
        .iter()
        .filter(|(_, b)| {
            serde_json::from_slice::<Value>(b).is_ok_and(|v| v["data"]["id"] == id.as_str())
        })
        .map(|(h, _)| header(h, "webhook-id").to_owned())
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
    let (sim, r) = start(Faults::default()).await;
    let id = create(&sim, bg("queue=30s")).await;
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(format!("{}/responses/{id}/cancel", sim.base_url()))
        .bearer_auth("sk-test")
        .send()
        .await
        .expect("cancel");
    assert!(resp.status().is_success());
    wait_for("cancel webhook", || !r.deliveries().is_empty()).await;
    assert_eq!(r.bodies()[0]["type"], "response.cancelled");
    assert_eq!(r.bodies()[0]["data"]["id"], id.as_str());
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
    let (r, url) = receiver().await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
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
    wait_for("duplicate delivery", || r.deliveries().len() == 2).await;
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
    let (r, url) = receiver().await;
    sim.set_webhook_target(Some(url), vec![SECRET.to_owned()]);
    r.fail_first.store(1, Ordering::SeqCst);
    r.fail_with.store(307, Ordering::SeqCst);
    r.slow_first.store(1, Ordering::SeqCst);
    create(&sim, bg("")).await;
    // Attempt 1 times out, attempt 2 gets a 307 (not followed), attempt 3 a 200.
    wait_for("delivered", || sim.stats().webhooks_delivered == 1).await;
    let ids: Vec<String> = r
        .deliveries()
        .iter()
        .map(|(h, _)| header(h, "webhook-id").to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.iter().all(|i| *i == ids[0]));
    assert_eq!(sim.stats().webhooks_attempted, 3);
    sim.shutdown().await;
}
