//! `POST /v1/jobs/{id}/retry` against the real daemon and the simulator: a finished job is run
//! again from its spec as a new, linked job (`retry_of` / `retried_by`, events on both); a job
//! still running is a conflict; unknown ids are 404; the token guards it; and the retry flows
//! like any new job (a reached budget holds it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use respool::config::ModelPrice;
use respool::job::JobStatus;
use respool::sim::{Faults, SimConfig};
use secrecy::SecretString;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);

fn fast_sim(faults: Faults) -> SimConfig {
    SimConfig {
        queue_time: Duration::from_millis(100),
        run_time: Duration::from_millis(300),
        faults,
        ..SimConfig::default()
    }
}

async fn submit(app: &common::TestApp, body: &Value) -> String {
    let (status, job) = app.post_job(body).await;
    assert_eq!(status, 201, "{job}");
    job["id"].as_str().unwrap().to_string()
}

/// `POST /v1/jobs/{id}/retry`: the status, the `Location` header and the JSON body.
async fn retry(app: &common::TestApp, id: &str) -> (u16, Option<String>, Value) {
    let r = app
        .request(Method::POST, &format!("/v1/jobs/{id}/retry"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (status, location, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_failed_job_is_retried_as_a_new_linked_job_that_completes() {
    // Every response fails until the fault is lifted.
    let app = common::spawn_app_with(
        |_| {},
        fast_sim(Faults {
            fail: 1.0,
            ..Faults::default()
        }),
    )
    .await;
    let mut body = common::job_body("flaky");
    body["priority"] = json!(7);
    body["timeout"] = json!("10m");
    body["idempotency_key"] = json!("flaky-once");
    body["metadata"] = json!({"owner": "ops"});
    let original = submit(&app, &body).await;
    let failed = app.wait_terminal(&original, DEADLINE).await;
    assert_eq!(failed.status, JobStatus::Failed, "{failed:?}");
    app.sim.set_faults(Faults::default());

    let (status, location, created) = retry(&app, &original).await;
    assert_eq!(status, 201, "{created}");
    let new_id = created["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, original);
    assert_eq!(
        location.as_deref(),
        Some(format!("/v1/jobs/{new_id}").as_str())
    );
    assert_eq!(created["retry_of"], original.as_str());
    // The same spec, but a new job: no idempotency key, and the list-style view has no spec.
    assert_eq!(created["name"], "flaky");
    assert_eq!(created["priority"], 7);
    assert_eq!(created["metadata"], json!({"owner": "ops"}));
    assert_eq!(created["idempotency_key"], Value::Null);
    assert!(created.get("spec").is_none(), "{created}");

    let done = app.wait_terminal(&new_id, DEADLINE).await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    assert_eq!(done.retry_of.as_deref(), Some(original.as_str()));
    assert!(done.retried_by.is_empty());
    // The retry was sent upstream with the original's request.
    let stats = app.sim.stats();
    assert_eq!(stats.creates_by_job_id.get(&new_id), Some(&1), "{stats:?}");
    let spec = done.spec.expect("the single-job view has the spec");
    assert_eq!(spec["request"]["input"], "Write about flaky.");
    assert_eq!(spec["request"]["model"], "gpt-5");
    assert_eq!(spec["priority"], 7);
    assert_eq!(spec["timeout"].as_f64(), Some(600.0), "{spec}");
    assert!(
        spec.get("idempotency_key").is_none_or(Value::is_null),
        "{spec}"
    );

    // The original links forward and keeps its own spec and key.
    let orig = app.job(&original).await;
    assert_eq!(orig.retried_by, vec![new_id.clone()]);
    assert_eq!(orig.status, JobStatus::Failed);
    assert_eq!(orig.idempotency_key.as_deref(), Some("flaky-once"));
    assert_eq!(orig.spec.unwrap()["idempotency_key"], "flaky-once");

    // Both timelines say what happened.
    let events = app.events(&original).await;
    let retried = events.iter().find(|e| e["kind"] == "retried").unwrap();
    assert!(
        retried["message"].as_str().unwrap().contains(&new_id),
        "{retried}"
    );
    assert_eq!(retried["data"]["retried_by"], new_id.as_str());
    let events = app.events(&new_id).await;
    assert_eq!(events[0]["kind"], "accepted", "{events:?}");
    assert!(
        events[0]["message"].as_str().unwrap().contains(&original),
        "{:?}",
        events[0]
    );
    assert_eq!(events[0]["data"]["retry_of"], original.as_str());

    // Retrying again (a completed job can be retried too) adds to the list, oldest first.
    let (status, _, second) = retry(&app, &original).await;
    assert_eq!(status, 201, "{second}");
    let (status, _, of_retry) = retry(&app, &new_id).await;
    assert_eq!(status, 201, "{of_retry}");
    assert_eq!(of_retry["retry_of"], new_id.as_str());
    let orig = app.job(&original).await;
    assert_eq!(
        orig.retried_by,
        vec![new_id.clone(), second["id"].as_str().unwrap().to_string()]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retry_keeps_the_spec_including_its_per_request_faults() {
    let app = common::spawn_app_with(|_| {}, fast_sim(Faults::default())).await;
    let mut body = common::job_body("doomed");
    body["metadata"] = json!({"sim": "outcome=failed:vector_store_timeout"});
    let original = submit(&app, &body).await;
    let job = app.wait_terminal(&original, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().code, "vector_store_timeout");

    let (status, _, created) = retry(&app, &original).await;
    assert_eq!(status, 201, "{created}");
    let new_id = created["id"].as_str().unwrap();
    assert_eq!(
        created["metadata"]["sim"],
        "outcome=failed:vector_store_timeout"
    );
    let again = app.wait_terminal(new_id, DEADLINE).await;
    assert_eq!(again.status, JobStatus::Failed);
    assert_eq!(again.error.unwrap().code, "vector_store_timeout");
    app.stop().await;
}

#[tokio::test]
async fn a_running_job_cannot_be_retried_until_it_ends() {
    let app = common::spawn_app_with(|_| {}, fast_sim(Faults::default())).await;
    let mut body = common::job_body("stuck");
    body["metadata"] = json!({"sim": "stuck"});
    let id = submit(&app, &body).await;
    let running = app
        .wait_for(&id, DEADLINE, |j| j.response_id.is_some())
        .await;
    assert!(!running.status.is_terminal(), "{running:?}");

    let (status, location, answer) = retry(&app, &id).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(location, None);
    assert_eq!(answer["error"]["type"], "not_terminal", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(running.status.as_str()) && message.contains(&id),
        "{message}"
    );
    assert_eq!(app.count_rows("jobs").await, 1);
    assert_eq!(app.count_events(&id, "retried").await, 0);

    // Cancelled is finished: now it can be retried.
    let (status, cancelled) = app.post(&format!("/v1/jobs/{id}/cancel")).await;
    assert_eq!(status, 200, "{cancelled}");
    app.wait_for(&id, DEADLINE, |j| j.status == JobStatus::Cancelled)
        .await;
    let (status, _, created) = retry(&app, &id).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["retry_of"], id.as_str());
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_job_is_404_and_the_endpoint_is_documented() {
    let app = common::spawn_app_with(|_| {}, fast_sim(Faults::default())).await;
    let (status, location, answer) = retry(&app, "job_does_not_exist").await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(location, None);
    assert_eq!(answer["error"]["type"], "not_found_error");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("job_does_not_exist")
    );
    assert_eq!(app.count_rows("jobs").await, 0);

    // The endpoint is in the OpenAPI document, with its answers.
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    let responses = &doc["paths"]["/v1/jobs/{id}/retry"]["post"]["responses"];
    for code in ["201", "404", "409"] {
        assert!(responses.get(code).is_some(), "{code}: {responses}");
    }
    app.stop().await;
}

#[tokio::test]
async fn retry_needs_the_api_token() {
    let app = common::spawn_app_with(
        |cfg| cfg.api.tokens = vec![SecretString::from("tok-right")],
        fast_sim(Faults::default()),
    )
    .await;
    let r = app
        .request(Method::POST, "/v1/jobs")
        .bearer_auth("tok-right")
        .json(&common::job_body("guarded"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let get = async |id: &str| {
        let r = app
            .request(Method::GET, &format!("/v1/jobs/{id}"))
            .bearer_auth("tok-right")
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()
    };
    app.wait_until("the job finishes", DEADLINE, async || {
        get(&id).await["status"] == "completed"
    })
    .await;

    let path = format!("/v1/jobs/{id}/retry");
    let r = app.request(Method::POST, &path).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = app
        .request(Method::POST, &path)
        .bearer_auth("tok-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(app.count_rows("jobs").await, 1);
    let r = app
        .request(Method::POST, &path)
        .bearer_auth("tok-right")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(app.count_rows("jobs").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_retry_is_held_like_any_new_job_when_the_budget_is_reached() {
    let app = common::spawn_app_with(
        |cfg| {
            // A dollar per token: one simulated job spends more than the limit.
            cfg.pricing = BTreeMap::from([(
                "gpt-5".to_string(),
                ModelPrice {
                    input: 1_000_000.0,
                    output: 1_000_000.0,
                    cached_input: None,
                },
            )]);
            cfg.budget.daily_usd = Some(1.0);
            cfg.budget.monthly_usd = Some(1_000_000.0);
        },
        fast_sim(Faults::default()),
    )
    .await;
    let id = submit(&app, &common::job_body("spender")).await;
    let done = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(done.status, JobStatus::Completed);

    let (status, _, created) = retry(&app, &id).await;
    assert_eq!(status, 201, "{created}");
    let new_id = created["id"].as_str().unwrap();
    app.wait_for(new_id, DEADLINE, |j| j.status == JobStatus::Held)
        .await;
    assert_eq!(app.count_events(new_id, "held").await, 1);
    app.stop().await;
}
