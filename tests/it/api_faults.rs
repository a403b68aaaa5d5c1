//! Upstream faults from the simulator, through the real daemon: rate limits, quota, 5xx on
//! create and on polls, and responses that end failed or incomplete.

use std::time::{Duration, Instant};

use respool::config::UncertainCreatePolicy;
use respool::job::JobStatus;
use respool::sim::{Faults, SimConfig};
use serde_json::json;

use crate::helpers;

const DEADLINE: Duration = Duration::from_secs(30);

fn sim_with(faults: Faults) -> SimConfig {
    SimConfig {
        faults,
        ..SimConfig::default()
    }
}

/// Posts a job and returns its id.
fn job_with_sim(name: &str, sim: &str) -> serde_json::Value {
    let mut body = helpers::job_body(name);
    body["metadata"] = json!({ "sim": sim });
    body
}

#[tokio::test]
async fn rate_limit_429_waits_for_retry_after_then_succeeds() {
    let retry_after = Duration::from_secs(1);
    let app = helpers::spawn_app_with(
        |_| {},
        sim_with(Faults {
            rate_limit_next: 2,
            retry_after,
            ..Faults::default()
        }),
    )
    .await;
    let started = Instant::now();
    let id = app.submit(&helpers::job_body("rate-limited")).await;
    app.wait_for(&id, DEADLINE, |j| j.response_id.is_some())
        .await;
    let to_accept = started.elapsed();
    // Two refusals, each followed by a wait of at least Retry-After before the next try.
    assert!(
        to_accept >= retry_after * 2,
        "the create was accepted {to_accept:?} after the job was posted"
    );

    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    let stats = app.sim.stats();
    assert_eq!(stats.served_429, 2, "{stats:?}");
    assert_eq!(stats.creates_by_job_id.get(&id), Some(&1), "{stats:?}");
    // Retries of a create that surely did not arrive are not extra submissions.
    assert_eq!(job.attempts, 1);
    app.stop().await;
}

#[tokio::test]
async fn rate_limit_longer_than_max_retry_delay_reschedules_the_submission() {
    let retry_after = Duration::from_secs(2);
    let app = helpers::spawn_app_with(
        |cfg| cfg.upstream.max_retry_delay = Duration::from_secs(1),
        sim_with(Faults {
            rate_limit_next: 1,
            retry_after,
            ..Faults::default()
        }),
    )
    .await;
    let id = app.submit(&helpers::job_body("rescheduled")).await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.attempts, 1);
    assert_eq!(app.sim.stats().served_429, 1);
    assert_eq!(app.sim.stats().creates_by_job_id.get(&id), Some(&1));

    let events = app.events(&id).await;
    let at = |kind: &str| -> Vec<i64> {
        events
            .iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| e["at"].as_i64().unwrap())
            .collect()
    };
    let retries = at("submit_retry");
    let submits = at("submitting");
    assert_eq!(retries.len(), 1, "{events:#?}");
    assert_eq!(submits.len(), 2, "{events:#?}");
    let waited = submits[1] - retries[0];
    assert!(
        waited >= retry_after.as_millis() as i64,
        "submitted again {waited} ms after the 429: {events:#?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn quota_429_fails_the_job_without_retrying() {
    let app = helpers::spawn_app_with(
        |_| {},
        sim_with(Faults {
            quota_exceeded: 1.0,
            ..Faults::default()
        }),
    )
    .await;
    let id = app.submit(&helpers::job_body("no-quota")).await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.clone().unwrap();
    assert_eq!(error.code, "insufficient_quota", "{error:?}");
    assert!(error.message.contains("quota"), "{error:?}");
    assert!(job.response_id.is_none());
    // More worker passes send nothing more.
    for _ in 0..3 {
        app.orchestrator.run_once().await.unwrap();
    }
    let stats = app.sim.stats();
    assert_eq!(stats.served_429, 1, "{stats:?}");
    assert_eq!(stats.creates, 0, "{stats:?}");
    assert_eq!(job.attempts, 1);
    let kinds = app.event_kinds(&id).await;
    assert!(!kinds.iter().any(|k| k == "submit_retry"), "{kinds:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_500_from_the_api_is_retried_and_the_job_completes() {
    // The sim's `server_error` is OpenAI's own 500: its error envelope and an x-request-id,
    // answered before anything was created. The evidence says nothing was created, so the
    // create is retried (as the SDKs do) instead of parking the job as uncertain.
    let app = helpers::spawn_app_with(
        |cfg| cfg.upstream.uncertain_create = UncertainCreatePolicy::Fail,
        sim_with(Faults {
            server_error_next: 1,
            ..Faults::default()
        }),
    )
    .await;
    let id = app.submit(&helpers::job_body("create-500")).await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let stats = app.sim.stats();
    assert_eq!(stats.served_5xx, 1, "{stats:?}");
    assert_eq!(stats.creates_by_job_id.get(&id), Some(&1), "{stats:?}");
    let kinds = app.event_kinds(&id).await;
    assert!(!kinds.iter().any(|k| k == "submit_uncertain"), "{kinds:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_500_from_the_api_without_inline_retries_is_rescheduled_not_uncertain() {
    let app = helpers::spawn_app_with(
        |cfg| cfg.upstream.max_retries = 0,
        sim_with(Faults {
            server_error_next: 1,
            ..Faults::default()
        }),
    )
    .await;
    let id = app.submit(&helpers::job_body("create-500-later")).await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(
        app.sim.stats().creates_by_job_id.get(&id),
        Some(&1),
        "one response"
    );
    let kinds = app.event_kinds(&id).await;
    assert!(kinds.iter().any(|k| k == "submit_retry"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "submit_uncertain"), "{kinds:?}");
    app.stop().await;
}

/// A create that was accepted upstream but whose answer never came back (held past the
/// client's timeout), with every webhook lost: nothing can reveal the response.
async fn lost_answer(policy: UncertainCreatePolicy) -> (helpers::TestApp, String) {
    let app = helpers::spawn_app_with(
        move |cfg| {
            cfg.upstream.uncertain_create = policy;
            cfg.upstream.request_timeout = Duration::from_secs(1);
            cfg.upstream.max_retries = 0;
            cfg.upstream.uncertain_create_wait = Some(Duration::from_millis(500));
        },
        sim_with(Faults {
            create_accept_then_hang: 1.0,
            hang_for: Duration::from_secs(10),
            webhook_drop: 1.0,
            ..Faults::default()
        }),
    )
    .await;
    let id = app.submit(&helpers::job_body("lost-answer")).await;
    (app, id)
}

#[tokio::test]
async fn a_lost_create_answer_with_policy_fail_fails_the_job_as_uncertain() {
    let (app, id) = lost_answer(UncertainCreatePolicy::Fail).await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.error.as_ref().unwrap().code,
        "submit_uncertain",
        "{job:?}"
    );
    assert!(job.response_id.is_none());
    for _ in 0..3 {
        app.orchestrator.run_once().await.unwrap();
    }
    let stats = app.sim.stats();
    // The one create reached OpenAI (that is the cost of `fail` without webhooks) and was
    // never sent again.
    assert_eq!(stats.creates_by_job_id.get(&id), Some(&1), "{stats:?}");
    assert_eq!(job.attempts, 1);
    let kinds = app.event_kinds(&id).await;
    assert!(kinds.iter().any(|k| k == "submit_uncertain"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "resubmit"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| *k == "submitting").count(),
        1,
        "{kinds:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_lost_create_answer_with_policy_resubmit_completes() {
    let (app, id) = lost_answer(UncertainCreatePolicy::Resubmit).await;
    app.wait_until("the create is uncertain", DEADLINE, async || {
        app.count_events(&id, "submit_uncertain").await == 1
    })
    .await;
    // Upstream answers again: the resubmission gets through.
    app.sim.set_faults(Faults {
        webhook_drop: 1.0,
        ..Faults::default()
    });
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    // Two responses: the lost one and the resubmission (the documented cost of `resubmit`).
    assert_eq!(app.sim.stats().creates_by_job_id.get(&id), Some(&2));
    let kinds = app.event_kinds(&id).await;
    let pos = |k: &str| kinds.iter().position(|x| x == k);
    assert!(pos("submit_uncertain").is_some(), "{kinds:?}");
    assert!(pos("resubmit") > pos("submit_uncertain"), "{kinds:?}");
    assert!(pos("submitted") > pos("resubmit"), "{kinds:?}");
    app.stop().await;
}

/// Waits until the job has a response id, then makes the next `n` upstream requests (its
/// polls: webhooks are dropped) fail with a 500.
async fn fail_next_polls(app: &helpers::TestApp, id: &str, n: u32) {
    app.wait_for(id, DEADLINE, |j| j.response_id.is_some())
        .await;
    app.sim.set_faults(Faults {
        webhook_drop: 1.0,
        server_error_next: n,
        ..Faults::default()
    });
}

#[tokio::test]
async fn poll_5xx_is_retried_by_the_client_and_the_job_completes() {
    let app = helpers::spawn_app().await;
    let id = app
        .submit(&job_with_sim("poll-500", "run=3s;webhook=drop"))
        .await;
    fail_next_polls(&app, &id, 2).await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let stats = app.sim.stats();
    assert_eq!(stats.served_5xx, 2, "{stats:?}");
    assert_eq!(stats.creates_by_job_id.get(&id), Some(&1), "{stats:?}");
    assert_eq!(job.attempts, 1);
    app.stop().await;
}

#[tokio::test]
async fn poll_5xx_without_client_retries_reschedules_the_poll() {
    let app =
        helpers::spawn_app_with(|cfg| cfg.upstream.max_retries = 0, SimConfig::default()).await;
    let id = app
        .submit(&job_with_sim("poll-500-noretry", "run=3s;webhook=drop"))
        .await;
    fail_next_polls(&app, &id, 3).await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let stats = app.sim.stats();
    assert_eq!(stats.served_5xx, 3, "{stats:?}");
    assert_eq!(stats.creates_by_job_id.get(&id), Some(&1), "{stats:?}");
    assert_eq!(job.attempts, 1);
    // The failures are in the timeline once (the 1st, 10th, 100th… in a row are noted, not
    // every one), and none of them moved the job.
    let events = app.events(&id).await;
    let errors = events
        .iter()
        .filter(|e| {
            e["kind"] == "error" && e["message"].as_str().unwrap().starts_with("poll failed")
        })
        .count();
    assert_eq!(errors, 1, "{events:#?}");
    app.stop().await;
}

#[tokio::test]
async fn upstream_failure_fails_the_job_with_its_code() {
    let app = helpers::spawn_app().await;
    let id = app
        .submit(&job_with_sim("fails", "outcome=failed:server_error"))
        .await;
    let other = app
        .submit(&job_with_sim(
            "fails-other",
            "outcome=failed:vector_store_timeout",
        ))
        .await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.clone().unwrap();
    assert_eq!(error.code, "server_error");
    assert!(!error.message.is_empty());
    let job = app.wait_terminal(&other, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().code, "vector_store_timeout");
    // The failed response is kept whole.
    let (s, stored) = app.get(&format!("/v1/jobs/{id}/response")).await;
    assert_eq!(s, 200);
    assert_eq!(stored["status"], "failed");
    assert_eq!(stored["error"]["code"], "server_error");
    app.stop().await;
}

#[tokio::test]
async fn upstream_incomplete_ends_the_job_incomplete_with_the_reason() {
    let app = helpers::spawn_app().await;
    let id = app
        .submit(&job_with_sim(
            "cut-short",
            "outcome=incomplete:max_output_tokens",
        ))
        .await;
    let filtered = app
        .submit(&job_with_sim(
            "filtered",
            "outcome=incomplete:content_filter",
        ))
        .await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Incomplete);
    assert_eq!(job.error.unwrap().code, "max_output_tokens");
    let job = app.wait_terminal(&filtered, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Incomplete);
    assert_eq!(job.error.unwrap().code, "content_filter");
    app.stop().await;
}
