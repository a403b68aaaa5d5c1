//! Issue 14, "Chains and conversations": `kill -9` of the daemon in the middle of a chain on
//! one conversation. Nothing is lost (every step ends `completed`), nothing is created twice
//! (one create per step upstream), every step runs on the one conversation, and the steps run
//! one at a time, in order.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::process::{Harness, Opts};

const WITHIN: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_chain_survives_kill_9_in_order_and_paid_once() {
    let mut h = Harness::start(Opts {
        run_time: "1s",
        ..Opts::default()
    })
    .await;
    let mut ids: Vec<String> = Vec::new();
    for (i, step) in ["one", "two", "three", "four"].iter().enumerate() {
        let mut body = json!({"name": format!("step-{step}"), "model": "gpt-5",
                              "input": format!("Step {step} of the plan.")});
        match ids.last() {
            Some(prev) => body["after"] = json!(prev),
            None => body["conversation"] = json!("new"),
        }
        ids.push(h.submit_body(&body).await);
        assert_eq!(ids.len(), i + 1);
    }
    // The daemon dies while the second step runs upstream.
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let (job, _) = h.get(&format!("/v1/jobs/{}", ids[1])).await;
        if job["response_id"].is_string() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "step two never started: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.take_daemon().kill9();
    h.start_daemon().await;
    let jobs = h.wait_terminal(&ids, WITHIN).await;
    for id in &ids {
        assert_eq!(jobs[id]["status"], "completed", "{}", jobs[id]);
    }
    // One create per step: nothing paid twice.
    let creates = h.creates_by_job().await;
    for id in &ids {
        assert_eq!(creates.get(id).copied(), Some(1), "{creates:?}");
    }
    // One conversation for the chain, every step on it, one after the other.
    let (first, _) = h.get(&format!("/v1/jobs/{}", ids[0])).await;
    let conv = first["chain"]["conversation"]
        .as_str()
        .expect("a conversation")
        .to_string();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for id in &ids {
        let listed: Value = h
            .http
            .get(format!("{}/_sim/responses?job_id={id}", h.sim_base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let r = &listed["data"].as_array().expect("a list")[0];
        let snap: Value = h
            .http
            .get(format!(
                "{}/v1/responses/{}",
                h.sim_base,
                r["id"].as_str().unwrap()
            ))
            .bearer_auth("sk-test-process")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(snap["conversation"]["id"], conv.as_str(), "{snap}");
        runs.push((
            r["created_ms"].as_i64().unwrap(),
            r["finished_ms"].as_i64().unwrap(),
        ));
    }
    for pair in runs.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "steps overlapped: {runs:?}");
    }
}
