//! API faults: 429 with and without `Retry-After`, 5xx with `x-should-retry`, accepted-then-hung
//! creates, dropped connections and proxy pages before and after creating, stuck responses,
//! forced outcomes and seeded reproducibility. Each create fault is shown twice: what a plain
//! reqwest client observes, and what the simulator created (`/_sim/responses`).

use std::time::Duration;

use reqwest::StatusCode;
use respool::sim::{self, Faults, SimConfig, SimHandle};
use serde_json::{Value, json};

use crate::helpers::{client, wait_for};

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
    // A response created after it, with the same queue and run time, completes: the
    // simulator's clock is past the stuck one's queue and run time, and it is still queued.
    let later: Value = post(&sim, body(), None).await.json().await.expect("json");
    let later = later["id"].as_str().expect("id").to_owned();
    wait_for("the later response to complete", || {
        sim.response(&later).expect("exists")["status"] == "completed"
    })
    .await;
    assert_eq!(sim.response(&id).expect("exists")["status"], "queued");
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

/// What a plain client learns from one create: the status and headers of an answer, or the
/// transport error of none.
async fn try_post(
    sim: &SimHandle,
    job: &str,
    fault: Option<&str>,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut b = body();
    b["metadata"]["respool_job_id"] = json!(job);
    let mut req = client()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("k")
        .json(&b);
    if let Some(f) = fault {
        req = req.header("x-sim-fault", f);
    }
    req.send().await
}

/// Polls `/_sim/responses` for `job` until `done` holds; panics at the deadline.
async fn wait_responses(
    sim: &SimHandle,
    job: &str,
    done: impl Fn(&[sim::SimResponse]) -> bool,
) -> Vec<sim::SimResponse> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = sim.responses(Some(job));
        if done(&r) {
            return r;
        }
        assert!(tokio::time::Instant::now() < deadline, "{job}: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_no_answer(result: Result<reqwest::Response, reqwest::Error>) {
    let err = match result {
        Ok(r) => panic!("expected no answer, got {} {:?}", r.status(), r.headers()),
        Err(e) => e,
    };
    assert!(!err.is_timeout() && !err.is_connect(), "{err:?}");
    assert!(
        err.is_request(),
        "a transport error on the request: {err:?}"
    );
}

async fn assert_proxy_page(result: Result<reqwest::Response, reqwest::Error>) {
    let resp = result.expect("an answer");
    assert!(
        matches!(resp.status().as_u16(), 502 | 504),
        "{}",
        resp.status()
    );
    for h in [
        "x-request-id",
        "openai-version",
        "x-ratelimit-limit-requests",
    ] {
        assert!(!resp.headers().contains_key(h), "a proxy page has no {h}");
    }
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let text = resp.text().await.expect("body");
    assert!(text.starts_with("<html>"), "{text}");
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "not the envelope"
    );
}

#[tokio::test]
async fn create_then_drop_runs_a_response_whose_answer_is_lost() {
    let sim = start(Faults::default()).await;
    assert_no_answer(try_post(&sim, "job_drop_h", Some("create_then_drop")).await);
    let r = wait_responses(&sim, "job_drop_h", |r| {
        r.first().is_some_and(|r| r.status == "completed")
    })
    .await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].answer, "create_then_drop");
    assert!(r[0].output_text.as_deref().is_some_and(|t| !t.is_empty()));
    assert!(r[0].finished_ms.is_some_and(|f| f >= r[0].created_ms));
    // The probability knob does the same.
    sim.set_faults(Faults {
        create_then_drop: 1.0,
        ..Faults::default()
    });
    assert_no_answer(try_post(&sim, "job_drop_p", None).await);
    let r = sim.responses(Some("job_drop_p"));
    assert_eq!((r.len(), r[0].answer.as_str()), (1, "create_then_drop"));
    let stats = sim.stats();
    assert_eq!(
        (stats.dropped_connections, stats.creates, stats.served_5xx),
        (2, 2, 0)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn drop_before_create_creates_nothing_and_looks_the_same() {
    let sim = start(Faults::default()).await;
    assert_no_answer(try_post(&sim, "job_dropb_h", Some("drop_before_create")).await);
    sim.set_faults(Faults {
        drop_before_create: 1.0,
        ..Faults::default()
    });
    assert_no_answer(try_post(&sim, "job_dropb_p", None).await);
    assert!(sim.responses(None).is_empty());
    let stats = sim.stats();
    assert_eq!((stats.dropped_connections, stats.creates), (2, 0));
    sim.shutdown().await;
}

#[tokio::test]
async fn create_then_gateway_error_runs_a_response_behind_a_proxy_page() {
    let sim = start(Faults::default()).await;
    assert_proxy_page(try_post(&sim, "job_gw_h", Some("create_then_gateway_error")).await).await;
    let r = wait_responses(&sim, "job_gw_h", |r| {
        r.first().is_some_and(|r| r.status == "completed")
    })
    .await;
    assert_eq!(r[0].answer, "create_then_gateway_error");
    sim.set_faults(Faults {
        create_then_gateway_error: 1.0,
        ..Faults::default()
    });
    assert_proxy_page(try_post(&sim, "job_gw_p", None).await).await;
    assert_eq!(sim.responses(Some("job_gw_p")).len(), 1);
    let stats = sim.stats();
    assert_eq!(
        (stats.gateway_errors, stats.served_5xx, stats.creates),
        (2, 0, 2)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn gateway_error_before_create_creates_nothing() {
    let sim = start(Faults::default()).await;
    assert_proxy_page(try_post(&sim, "job_gwb_h", Some("gateway_error_before_create")).await).await;
    sim.set_faults(Faults {
        gateway_error_before_create: 1.0,
        ..Faults::default()
    });
    assert_proxy_page(try_post(&sim, "job_gwb_p", None).await).await;
    assert!(sim.responses(None).is_empty());
    assert_eq!((sim.stats().gateway_errors, sim.stats().creates), (2, 0));
    sim.shutdown().await;
}

/// `server_error` is the API's own 5xx: the envelope, `x-request-id`, nothing created; and
/// `server_error_noretry` decides how many say `x-should-retry: false`.
#[tokio::test]
async fn server_error_is_the_apis_answer_and_creates_nothing() {
    let sim = start(Faults {
        server_error: 1.0,
        server_error_noretry: Some(0.0),
        ..Faults::default()
    })
    .await;
    for _ in 0..6 {
        let resp = try_post(&sim, "job_5xx", None).await.expect("an answer");
        assert!(
            matches!(resp.status().as_u16(), 500 | 502 | 503),
            "{}",
            resp.status()
        );
        assert!(resp.headers().contains_key("x-request-id"));
        assert!(!resp.headers().contains_key("x-should-retry"));
        let err: Value = resp.json().await.expect("the envelope");
        assert_eq!(err["error"]["type"], "server_error");
    }
    assert!(sim.responses(None).is_empty());
    assert_eq!((sim.stats().served_5xx, sim.stats().creates), (6, 0));
    sim.shutdown().await;
}

/// `/_sim/responses` over HTTP: per job, each response's final status and output text, and
/// a hung create's answer marked as lost.
#[tokio::test]
async fn responses_endpoint_counts_per_job() {
    let sim = start(Faults::default()).await;
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let mut b = body();
    b["metadata"]["respool_job_id"] = json!("job_twice");
    b["metadata"]["sim"] = json!("hang=5s;outcome=failed:vector_store_timeout");
    let hung = impatient
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("k")
        .json(&b)
        .send()
        .await;
    assert!(hung.is_err_and(|e| e.is_timeout()));
    b["metadata"]["sim"] = json!("outcome=completed");
    let second: Value = client()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("k")
        .json(&b)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(post(&sim, body(), None).await.status(), StatusCode::OK);
    wait_responses(&sim, "job_twice", |r| {
        r.len() == 2 && r.iter().all(|r| r.finished_ms.is_some())
    })
    .await;
    let url = format!("http://{}/_sim/responses?job_id=job_twice", sim.addr());
    let list: Value = client()
        .get(url)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let data = list["data"].as_array().expect("data");
    assert_eq!(data.len(), 2, "{list}");
    assert_eq!(data[0]["status"], "failed");
    assert_eq!(data[0]["error_code"], "vector_store_timeout");
    assert_eq!(data[0]["answer"], "hang");
    assert_eq!(data[1]["id"], second["id"]);
    assert_eq!(data[1]["status"], "completed");
    assert_eq!(data[1]["answer"], "ok");
    assert!(
        data[1]["output_text"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let all: Value = client()
        .get(format!("http://{}/_sim/responses", sim.addr()))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(all["data"].as_array().map(Vec::len), Some(3));
    sim.shutdown().await;
}
