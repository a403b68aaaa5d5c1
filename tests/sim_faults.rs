//! API faults: 429 with and without `Retry-After`, 5xx with `x-should-retry`, accepted-then-hung
//! creates, stuck responses, forced outcomes and seeded reproducibility.

use std::time::Duration;

use reqwest::StatusCode;
use respool::sim::{self, Faults, SimConfig, SimHandle};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

async fn start(faults: Faults) -> SimHandle {
    sim::spawn(SimConfig {
        queue_time: Duration::from_millis(50),
        run_time: Duration::from_millis(200),
        faults,
        seed: Some(42),
        ..SimConfig::default()
    })
    .await
    .expect("sim")
}

async fn post(sim: &SimHandle, body: Value, fault: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("k")
        .json(&body);
    if let Some(f) = fault {
        req = req.header("x-sim-fault", f);
    }
    req.send().await.expect("send")
}

fn body() -> Value {
    json!({"model": "gpt-5", "input": "x", "background": true, "metadata": {"respool_job_id": "job_f"}})
}

#[tokio::test]
async fn rate_limit_429_carries_retry_after() {
    let sim = start(Faults {
        rate_limit_next: 1,
        retry_after: Duration::from_millis(1500),
        ..Faults::default()
    })
    .await;
    let resp = post(&sim, body(), None).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(resp.headers()["retry-after-ms"], "1500");
    assert!(resp.headers().contains_key("x-request-id"));
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    assert!(err["error"]["param"].is_null());
    // The counter is spent: the next request goes through, and nothing was created before.
    assert_eq!(sim.stats().creates, 0);
    assert_eq!(post(&sim, body(), None).await.status(), StatusCode::OK);
    let stats = sim.stats();
    assert_eq!((stats.served_429, stats.creates), (1, 1));
    assert_eq!(sim.faults().rate_limit_next, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn quota_and_server_errors_by_header() {
    let sim = start(Faults::default()).await;
    let resp = post(&sim, body(), Some("quota")).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!resp.headers().contains_key("retry-after"));
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["code"], "insufficient_quota");
    assert_eq!(err["error"]["type"], "insufficient_quota");

    let resp = post(&sim, body(), Some("503-noretry")).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let resp = post(&sim, body(), Some("500")).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!resp.headers().contains_key("x-should-retry"));
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["type"], "server_error");
    let stats = sim.stats();
    assert_eq!(
        (stats.served_429, stats.served_5xx, stats.creates),
        (1, 2, 0)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn accepted_then_hung_create_still_runs() {
    let sim = start(Faults::default()).await;
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let mut b = body();
    b["metadata"]["sim"] = json!("hang=10s");
    let err = impatient
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("k")
        .json(&b)
        .send()
        .await;
    assert!(err.is_err_and(|e| e.is_timeout()));
    let stats = sim.stats();
    assert_eq!(stats.creates, 1, "the server accepted it");
    assert_eq!(stats.creates_by_job_id.get("job_f"), Some(&1));
    // The random fault variant does the same.
    sim.set_faults(Faults {
        create_accept_then_hang: 1.0,
        hang_for: Duration::from_secs(10),
        ..Faults::default()
    });
    let err = impatient
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("k")
        .json(&body())
        .send()
        .await;
    assert!(err.is_err());
    assert_eq!(sim.stats().creates_by_job_id.get("job_f"), Some(&2));
    sim.shutdown().await;
}

#[tokio::test]
async fn stuck_response_stays_queued() {
    let sim = start(Faults::default()).await;
    let mut b = body();
    b["metadata"]["sim"] = json!("stuck");
    let r: Value = post(&sim, b, None).await.json().await.expect("json");
    let id = r["id"].as_str().expect("id").to_owned();
    // Well past queue + run time, it is still queued at every look.
    let until = tokio::time::Instant::now() + Duration::from_millis(600);
    while tokio::time::Instant::now() < until {
        assert_eq!(sim.response(&id).expect("exists")["status"], "queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn forced_outcomes() {
    let sim = start(Faults {
        fail: 1.0,
        ..Faults::default()
    })
    .await;
    let r: Value = post(&sim, json!({"model": "gpt-5", "input": "x"}), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "server_error");
    assert!(
        r["error"].get("type").is_none(),
        "response errors have only code and message"
    );
    sim.set_faults(Faults {
        incomplete: 1.0,
        ..Faults::default()
    });
    let r: Value = post(&sim, json!({"model": "gpt-5", "input": "x"}), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    let r: Value = post(&sim, json!({"model": "gpt-5", "input": "x", "metadata": {"sim": "outcome=incomplete:content_filter"}}), None)
        .await.json().await.expect("json");
    assert_eq!(r["incomplete_details"]["reason"], "content_filter");
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_create_delays_the_reply() {
    let sim = start(Faults {
        slow_create: Duration::from_millis(300),
        ..Faults::default()
    })
    .await;
    let started = std::time::Instant::now();
    assert_eq!(post(&sim, body(), None).await.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    sim.shutdown().await;
}

#[tokio::test]
async fn same_seed_same_faults() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let sim = start(Faults {
            rate_limit: 0.5,
            ..Faults::default()
        })
        .await;
        let mut pattern = Vec::new();
        for _ in 0..20 {
            pattern.push(post(&sim, body(), None).await.status().as_u16());
        }
        sim.shutdown().await;
        runs.push(pattern);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&429) && runs[0].contains(&200),
        "{:?}",
        runs[0]
    );
}
