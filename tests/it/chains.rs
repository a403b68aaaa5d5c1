//! Issue 14, "Chains and conversations", through the real daemon and the simulator: a job runs
//! `after` another one (with `previous_response_id`, or its output in `input_template`), a
//! failed predecessor skips its followers with the reason, `conversation: new` creates one
//! Conversation the chain shares, and jobs on one conversation run one at a time, in order
//! (the simulator's record of every response shows no overlap); `conversation_locked` (another
//! client on the conversation) is a retry later.

use std::time::Duration;

use respool::job::JobStatus;
use respool::sim::SimResponse;
use serde_json::{Value, json};

use crate::helpers::{self, TestApp, client};

const WITHIN: Duration = Duration::from_secs(60);

async fn app() -> TestApp {
    helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await
}

/// The one response of job `id` upstream.
fn only_response(app: &TestApp, id: &str) -> SimResponse {
    let r = app.sim.responses(Some(id));
    assert_eq!(r.len(), 1, "job {id} has {} responses: {r:?}", r.len());
    r.into_iter().next().unwrap()
}

/// Responses that ran one after the other: each created after the one before it finished.
fn assert_one_at_a_time(responses: &[SimResponse]) {
    for pair in responses.windows(2) {
        let end = pair[0].finished_ms.expect("finished");
        assert!(
            pair[1].created_ms >= end,
            "{} started at {} before {} ended at {end}",
            pair[1].id,
            pair[1].created_ms,
            pair[0].id
        );
    }
}

#[tokio::test]
async fn a_three_step_chain_on_one_conversation_runs_in_order() {
    let app = app().await;
    let a = app
        .submit(
            &json!({"name": "plan", "model": "gpt-5", "conversation": "new",
                        "input": "Step one: pick a city for a weekend trip."}),
        )
        .await;
    let b = app
        .submit(&json!({"name": "budget", "model": "gpt-5", "after": a,
                        "input": "Step two: estimate a budget for it."}))
        .await;
    let c = app
        .submit(&json!({"name": "packing", "model": "gpt-5", "after": b,
                        "input": "Step three: write a packing list."}))
        .await;
    // The later steps wait, out of the submit claim.
    let (_, cj) = app.get(&format!("/v1/jobs/{c}")).await;
    assert_eq!(cj["status"], "pending", "{cj}");
    assert_eq!(cj["after"], b.as_str());
    let last = app.wait_terminal(&c, WITHIN).await;
    assert_eq!(last.status, JobStatus::Completed, "{last:?}");
    for id in [&a, &b] {
        assert_eq!(app.job(id).await.status, JobStatus::Completed);
    }
    // One conversation, made for the chain's first job, holding the three steps.
    let convs = app.sim.conversations();
    assert_eq!(convs.len(), 1, "{convs:?}");
    assert_eq!(convs[0].metadata["respool_job_id"], a.as_str());
    let conv = convs[0].id.clone();
    let ra = only_response(&app, &a);
    let rb = only_response(&app, &b);
    let rc = only_response(&app, &c);
    for r in [&ra, &rb, &rc] {
        let snap = app.sim.response(&r.id).expect("stored");
        assert_eq!(snap["conversation"]["id"], conv.as_str(), "{snap}");
        assert!(snap["previous_response_id"].is_null(), "{snap}");
    }
    assert_one_at_a_time(&[ra, rb.clone(), rc.clone()]);
    // Each step's answer shows the earlier ones.
    let text_b = rb.output_text.unwrap_or_default();
    assert!(
        text_b.contains("Earlier in this conversation") && text_b.contains("Step one"),
        "{text_b}"
    );
    let text_c = rc.output_text.unwrap_or_default();
    assert!(text_c.contains("Step two"), "{text_c}");
    // The chain is one group: the API shows its members and the first job's followers.
    let (_, aj) = app.get(&format!("/v1/jobs/{a}")).await;
    assert_eq!(aj["chain_id"], a.as_str(), "{aj}");
    assert_eq!(aj["chain"]["conversation"], conv.as_str(), "{aj}");
    let members: Vec<&str> = aj["chain"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(members, vec![a.as_str(), b.as_str(), c.as_str()]);
    assert_eq!(aj["chain"]["followers"][0]["id"], b.as_str());
    let (_, list) = app.get(&format!("/v1/jobs?chain={a}")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3, "{list}");
    let kinds = app.event_kinds(&c).await;
    assert!(
        kinds.contains(&"waiting".to_string()) && kinds.contains(&"released".to_string()),
        "{kinds:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_follower_without_a_conversation_chains_to_the_final_response() {
    let app = app().await;
    let a = app
        .submit(&json!({"name": "draft", "model": "gpt-5", "input": "Draft a haiku about rain."}))
        .await;
    let b = app
        .submit(&json!({"name": "critique", "model": "gpt-5", "after": a, "input": "Critique it."}))
        .await;
    let done = app.wait_terminal(&b, WITHIN).await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    let first = app.job(&a).await;
    let rb = only_response(&app, &b);
    let snap = app.sim.response(&rb.id).unwrap();
    assert_eq!(
        snap["previous_response_id"].as_str(),
        first.response_id.as_deref(),
        "{snap}"
    );
    assert!(snap["conversation"].is_null(), "{snap}");
    assert!(app.sim.conversations().is_empty());
    assert_one_at_a_time(&[only_response(&app, &a), rb]);
    app.stop().await;
}

#[tokio::test]
async fn an_input_template_carries_the_output_instead() {
    let app = app().await;
    let a = app
        .submit(
            &json!({"name": "fact", "model": "gpt-5", "input": "Name a fruit.",
                        "metadata": {"sim": "output=text:PINEAPPLE-42"}}),
        )
        .await;
    let b = app
        .submit(&json!({"name": "use-it", "model": "gpt-5", "after": a,
                        "input_template": "Write a limerick about {{after.output_text}}."}))
        .await;
    let done = app.wait_terminal(&b, WITHIN).await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    let rb = only_response(&app, &b);
    let snap = app.sim.response(&rb.id).unwrap();
    assert!(snap["previous_response_id"].is_null(), "{snap}");
    // What was sent: the template with the output in it.
    let items: Value = client()
        .get(format!(
            "{}/responses/{}/input_items",
            app.sim.base_url(),
            rb.id
        ))
        .bearer_auth("sk-test")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        items
            .to_string()
            .contains("Write a limerick about PINEAPPLE-42."),
        "{items}"
    );
    // The spec keeps the template (a retry renders it again).
    let (_, bj) = app.get(&format!("/v1/jobs/{b}")).await;
    assert_eq!(
        bj["spec"]["input_template"],
        "Write a limerick about {{after.output_text}}."
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_predecessor_skips_its_followers_with_the_reason() {
    let app = app().await;
    let a = app
        .submit(&json!({"name": "fails", "model": "gpt-5", "input": "x",
                        "metadata": {"sim": "outcome=failed:server_error"}}))
        .await;
    let b = app
        .submit(&json!({"name": "second", "model": "gpt-5", "after": a, "input": "y"}))
        .await;
    let c = app
        .submit(&json!({"name": "third", "model": "gpt-5", "after": b, "input": "z"}))
        .await;
    let last = app.wait_terminal(&c, WITHIN).await;
    assert_eq!(app.job(&a).await.status, JobStatus::Failed);
    let second = app.job(&b).await;
    assert_eq!(second.status, JobStatus::Cancelled);
    let e = second.error.unwrap();
    assert_eq!(e.code, "predecessor_failed");
    assert!(
        e.message.contains(&a) && e.message.contains("fails") && e.message.contains("failed"),
        "{}",
        e.message
    );
    assert_eq!(last.status, JobStatus::Cancelled);
    let e = last.error.unwrap();
    assert_eq!(e.code, "predecessor_failed");
    assert!(
        e.message.contains(&b) && e.message.contains("cancelled"),
        "{}",
        e.message
    );
    // Nothing was sent for them.
    assert!(app.sim.responses(Some(&b)).is_empty());
    assert!(app.sim.responses(Some(&c)).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_predecessor_is_refused_naming_the_field() {
    let app = app().await;
    let (status, body) = app
        .post_job(
            &json!({"model": "gpt-5", "input": "x", "after": "job_01K00000000000000000000000"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["param"], "after");
    assert_eq!(body["error"]["code"], "predecessor_not_found");
    let (status, body) = app
        .post_job(&json!({"model": "gpt-5", "input": "x", "after": "some-name"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "after");
    let (status, body) = app
        .post_job(&json!({"model": "gpt-5", "input": "x", "after": "a", "previous_response_id": "resp_1"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "after");
    app.stop().await;
}

#[tokio::test]
async fn jobs_on_one_conversation_never_overlap_and_a_locked_one_is_retried() {
    let app = app().await;
    let sim = app.sim.base_url();
    let http = client();
    let conv: Value = http
        .post(format!("{sim}/conversations"))
        .bearer_auth("sk-test")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conv = conv["id"].as_str().unwrap().to_string();
    // Another client holds the conversation for a while.
    let foreign = http
        .post(format!("{sim}/responses"))
        .bearer_auth("sk-test")
        .json(
            &json!({"model": "gpt-5", "input": "someone else", "background": true, "store": true,
                      "conversation": conv, "metadata": {"sim": "run=2s"}}),
        )
        .send()
        .await
        .unwrap();
    assert!(foreign.status().is_success());
    // Three unrelated jobs on it, taken in at once.
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            app.submit(&json!({"name": format!("on-conv-{i}"), "model": "gpt-5",
                               "input": format!("question {i}"), "conversation": conv}))
                .await,
        );
    }
    for id in &ids {
        let j = app.wait_terminal(id, WITHIN).await;
        assert_eq!(j.status, JobStatus::Completed, "{j:?}");
    }
    // The first met the lock and was sent again; none failed for it.
    let events = app.events(&ids[0]).await;
    assert!(
        events.iter().any(|e| e["kind"] == "submit_retry"
            && e["message"]
                .as_str()
                .unwrap_or("")
                .contains("Another process is currently operating on this conversation")),
        "{events:?}"
    );
    // In the order they were taken in, one at a time.
    let responses: Vec<SimResponse> = ids.iter().map(|id| only_response(&app, id)).collect();
    assert_one_at_a_time(&responses);
    app.stop().await;
}
