//! The webhook receiver through the real daemon: lost and duplicated deliveries from the
//! simulator, hand-made forged / stale / tampered / unsigned / oversized deliveries, and a
//! webhook that reveals the response of a create whose reply never came back.

use std::time::Duration;

use helpers::{event_body, signed_headers, unix_now};
use respool::config::SinkConfig;
use respool::job::JobStatus;
use respool::sim::{Faults, SimConfig};
use serde_json::json;

use crate::helpers;

const DEADLINE: Duration = Duration::from_secs(30);

/// Webhook headers, name and value.
type Headers = Vec<(String, String)>;

fn console_sink(cfg: &mut respool::config::Config) {
    cfg.sinks.insert("console".into(), SinkConfig::Console {});
    cfg.notify.default = vec!["console".into()];
}

/// With healthy webhooks a poll is only the safety net, due `max_interval` after the create:
/// jobs that end sooner cost their create and the one retrieve their webhook asks for. (It
/// used to poll each job first at `min_interval`, then doubling: 5 requests a job at scale.)
#[tokio::test]
async fn healthy_webhooks_cost_a_create_and_one_retrieve_a_job() {
    let app = helpers::spawn_app_with(
        |cfg| cfg.polling.max_interval = Duration::from_secs(20),
        SimConfig {
            queue_time: Duration::from_millis(200),
            run_time: Duration::from_millis(1500),
            ..SimConfig::default()
        },
    )
    .await;
    let mut ids = Vec::new();
    for name in ["plain", "ünïcödé-naïve", "x"] {
        let (status, created) = app.post_job(&helpers::job_body(name)).await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let job = app.wait_terminal(id, DEADLINE).await;
        assert_eq!(job.status, JobStatus::Completed);
        let kinds = app.event_kinds(id).await;
        assert!(kinds.iter().any(|k| k == "webhook"), "{kinds:?}");
    }
    let stats = app.sim.stats();
    assert_eq!(stats.creates, 3, "{stats:?}");
    assert_eq!(stats.retrieves, 3, "{stats:?}");
    app.stop().await;
}

#[tokio::test]
async fn lost_webhooks_are_covered_by_polling() {
    let max_interval = Duration::from_secs(2);
    let app = helpers::spawn_app_with(
        |cfg| cfg.polling.max_interval = max_interval,
        SimConfig {
            faults: Faults {
                webhook_drop: 1.0,
                ..Faults::default()
            },
            ..SimConfig::default()
        },
    )
    .await;
    // Long enough that the poll schedule backs off to its cap before the response finishes.
    let mut body = helpers::job_body("lost-webhook");
    body["metadata"] = json!({"sim": "run=4s"});
    let (status, created) = app.post_job(&body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    let stats = app.sim.stats();
    assert!(stats.webhooks_dropped >= 1, "{stats:?}");
    assert_eq!(stats.webhooks_delivered, 0, "{stats:?}");

    // Found by polling, at most about one max_interval after upstream finished (times are
    // whole seconds on both sides; the slack absorbs rounding and a slow machine).
    let resp = app
        .sim
        .response(job.response_id.as_deref().unwrap())
        .unwrap();
    let upstream_done = resp["completed_at"].as_i64().unwrap();
    let lag = job.finished_at.unwrap() - upstream_done;
    assert!(
        lag <= max_interval.as_secs() as i64 + 4,
        "finished {lag} s after upstream completed"
    );

    let kinds = app.event_kinds(&id).await;
    assert!(!kinds.iter().any(|k| k == "webhook"), "{kinds:?}");
    let events = app.events(&id).await;
    let done = events
        .iter()
        .find(|e| e["kind"] == "status" && e["data"]["to"] == "completed")
        .unwrap_or_else(|| panic!("no status event to completed: {events:?}"));
    assert_eq!(done["data"]["source"], "poll", "{done}");
    assert_eq!(app.metric("respool_webhook_deliveries").await, Some(0.0));
    assert_eq!(app.count_rows("webhook_deliveries").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn duplicate_deliveries_are_recorded_and_acted_on_once() {
    let app = helpers::spawn_app_with(
        console_sink,
        SimConfig {
            faults: Faults {
                webhook_duplicate: 1.0,
                ..Faults::default()
            },
            ..SimConfig::default()
        },
    )
    .await;
    let (status, created) = app.post_job(&helpers::job_body("dup-webhook")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    // Both copies reached us and were answered 200.
    app.wait_until(
        "both copies of the webhook delivered",
        DEADLINE,
        async || app.sim.stats().webhooks_delivered >= 2,
    )
    .await;
    app.wait_until("the notification is sent", DEADLINE, async || {
        app.count_events(&id, "notified").await >= 1
    })
    .await;

    assert_eq!(app.count_rows("webhook_deliveries").await, 1);
    assert_eq!(app.metric("respool_webhook_deliveries").await, Some(1.0));
    // A few more worker passes change nothing.
    for _ in 0..3 {
        app.orchestrator.run_once().await.unwrap();
    }
    let events = app.events(&id).await;
    let completed = events
        .iter()
        .filter(|e| e["kind"] == "status" && e["data"]["to"] == "completed")
        .count();
    assert_eq!(completed, 1, "{events:#?}");
    assert_eq!(app.count_events(&id, "notified").await, 1, "{events:#?}");
    assert_eq!(app.count_events(&id, "webhook").await, 1, "{events:#?}");
    assert_eq!(app.count_rows("notifications").await, 1);
    assert_eq!(app.sim.stats().creates_by_job_id.get(&id), Some(&1));
    assert_eq!(app.job(&id).await.attempts, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_redelivery_with_a_fresh_signature_is_a_duplicate() {
    let app = helpers::spawn_app().await;
    let body = event_body("response.completed", "resp_unknown_to_anyone");
    let first = signed_headers(&app.secret, "wh_redelivered", unix_now(), body.as_bytes());
    assert_eq!(app.post_webhook(body.clone(), &first).await.0, 200);
    // A retry of the same event: same webhook-id, new timestamp and signature.
    let again = signed_headers(
        &app.secret,
        "wh_redelivered",
        unix_now() - 5,
        body.as_bytes(),
    );
    assert_eq!(app.post_webhook(body.clone(), &again).await.0, 200);
    assert_eq!(app.count_rows("webhook_deliveries").await, 1);
    assert_eq!(app.metric("respool_webhook_deliveries").await, Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn bad_deliveries_are_refused_and_leave_no_trace() {
    let app = helpers::spawn_app().await;
    let body = event_body("response.completed", "resp_abc123");
    let now = unix_now();
    let other_secret = helpers::new_secret();

    let tampered_body = body.replace("resp_abc123", "resp_abc124");
    let garbage = b"this is not json".to_vec();
    let no_type = json!({"id": "evt_1", "data": {"id": "resp_abc123"}}).to_string();
    let cases: Vec<(&str, Vec<u8>, Headers)> = vec![
        (
            "forged (wrong secret)",
            body.clone().into_bytes(),
            signed_headers(&other_secret, "wh_forged", now, body.as_bytes()),
        ),
        (
            "replayed (timestamp 301 s old)",
            body.clone().into_bytes(),
            signed_headers(&app.secret, "wh_replayed", now - 301, body.as_bytes()),
        ),
        (
            // Well past the 300 s tolerance: `now` was read before the earlier cases ran, and
            // on a loaded machine a second or more goes by before this one is sent.
            "from the future (timestamp 600 s ahead)",
            body.clone().into_bytes(),
            signed_headers(&app.secret, "wh_future", now + 600, body.as_bytes()),
        ),
        (
            "tampered (body changed after signing)",
            tampered_body.into_bytes(),
            signed_headers(&app.secret, "wh_tampered", now, body.as_bytes()),
        ),
        (
            "unsigned (no headers)",
            body.clone().into_bytes(),
            Vec::new(),
        ),
        (
            "signature header missing",
            body.clone().into_bytes(),
            signed_headers(&app.secret, "wh_nosig", now, body.as_bytes())
                .into_iter()
                .filter(|(k, _)| k != "webhook-signature")
                .collect(),
        ),
        (
            "non-JSON body, correctly signed",
            garbage.clone(),
            signed_headers(&app.secret, "wh_garbage", now, &garbage),
        ),
        (
            "JSON without an event type, correctly signed",
            no_type.clone().into_bytes(),
            signed_headers(&app.secret, "wh_notype", now, no_type.as_bytes()),
        ),
    ];
    for (what, payload, headers) in cases {
        let (status, answer) = app.post_webhook(payload, &headers).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(
            answer["error"]["type"], "invalid_webhook",
            "{what}: {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {answer}"
        );
        assert_eq!(app.count_rows("webhook_deliveries").await, 0, "{what}");
    }
    assert_eq!(app.metric("respool_webhook_deliveries").await, Some(0.0));
    // A refused delivery is not a hint either: nothing was fetched upstream.
    app.orchestrator.run_once().await.unwrap();
    assert_eq!(app.sim.stats().retrieves, 0);

    // Nothing was written for the tampered delivery, so a genuine one with its id is new.
    let genuine = signed_headers(&app.secret, "wh_tampered", unix_now(), body.as_bytes());
    assert_eq!(app.post_webhook(body.clone(), &genuine).await.0, 200);
    assert_eq!(app.count_rows("webhook_deliveries").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn unknown_event_types_are_acknowledged() {
    let app = helpers::spawn_app().await;
    for (i, kind) in ["batch.completed", "eval.run.succeeded", "something.new"]
        .iter()
        .enumerate()
    {
        let body = event_body(kind, &format!("batch_{i}"));
        let headers = signed_headers(
            &app.secret,
            &format!("wh_extra_{i}"),
            unix_now(),
            body.as_bytes(),
        );
        let (status, answer) = app.post_webhook(body, &headers).await;
        assert_eq!(status, 200, "{kind}: {answer}");
    }
    // A payload without `data.id` at all (a SIP call event).
    let call = json!({
        "object": "event", "id": "evt_call", "type": "realtime.call.incoming",
        "created_at": unix_now(),
        "data": {"call_id": "rtc_1", "sip_headers": [{"name": "From", "value": "x"}]},
    })
    .to_string();
    let headers = signed_headers(&app.secret, "wh_call", unix_now(), call.as_bytes());
    let (status, answer) = app.post_webhook(call, &headers).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(app.count_rows("webhook_deliveries").await, 4);
    // They need no hand-off: nothing is fetched upstream for them, no job appears.
    for _ in 0..3 {
        app.orchestrator.run_once().await.unwrap();
    }
    assert_eq!(app.sim.stats().retrieves, 0);
    let (_, list) = app.get("/v1/jobs").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "{list}");
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_and_leave_no_trace() {
    let app = helpers::spawn_app().await;
    let limit = 1024 * 1024;
    // A signed, otherwise valid event padded past the limit.
    let padding = "x".repeat(limit + 1);
    let body = json!({
        "object": "event", "id": "evt_big", "type": "response.completed",
        "created_at": unix_now(), "data": {"id": "resp_big"}, "padding": padding,
    })
    .to_string();
    let headers = signed_headers(&app.secret, "wh_big", unix_now(), body.as_bytes());
    let (status, _) = app.post_webhook(body.clone(), &headers).await;
    assert_eq!(status, 413);

    // The same without a Content-Length (chunked): the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
        .as_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (status, _) = app.post_webhook(stream, &headers).await;
    assert_eq!(status, 413);
    assert_eq!(app.count_rows("webhook_deliveries").await, 0);

    // Just under the limit is fine.
    let small = json!({
        "object": "event", "id": "evt_ok", "type": "response.completed",
        "created_at": unix_now(), "data": {"id": "resp_ok"}, "padding": "x".repeat(limit - 1024),
    })
    .to_string();
    assert!(small.len() < limit);
    let headers = signed_headers(&app.secret, "wh_ok", unix_now(), small.as_bytes());
    assert_eq!(app.post_webhook(small, &headers).await.0, 200);
    assert_eq!(app.count_rows("webhook_deliveries").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_reveals_the_response_of_an_uncertain_create() {
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.upstream.request_timeout = Duration::from_secs(1);
            cfg.upstream.max_retries = 0;
            // Long enough that only the webhook can resolve the job.
            cfg.upstream.uncertain_create_wait = Some(Duration::from_secs(120));
        },
        SimConfig {
            faults: Faults {
                create_accept_then_hang: 1.0,
                hang_for: Duration::from_secs(10),
                ..Faults::default()
            },
            ..SimConfig::default()
        },
    )
    .await;
    let (status, created) = app.post_job(&helpers::job_body("adopted")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(job.attempts, 1);
    let stats = app.sim.stats();
    assert_eq!(stats.creates_by_job_id.get(&id), Some(&1), "{stats:?}");
    assert_eq!(stats.creates, 1, "{stats:?}");
    let resp_id = job.response_id.clone().unwrap();
    let upstream = app.sim.response(&resp_id).unwrap();
    assert_eq!(upstream["metadata"]["respool_job_id"], id.as_str());
    assert!(job.output_text.as_deref().is_some_and(|t| !t.is_empty()));

    let kinds = app.event_kinds(&id).await;
    assert!(kinds.iter().any(|k| k == "submit_uncertain"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "adopted"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "submitted"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "resubmit"), "{kinds:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_finishes_a_job_long_before_its_next_poll() {
    // Polls are far apart: only the webhook can tell us in time.
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.polling.min_interval = Duration::from_secs(60);
            cfg.polling.max_interval = Duration::from_secs(120);
        },
        SimConfig::default(),
    )
    .await;
    let (status, created) = app.post_job(&helpers::job_body("hinted")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let job = app.wait_terminal(&id, Duration::from_secs(30)).await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(app.count_events(&id, "webhook").await, 1);
    assert_eq!(app.metric("respool_webhook_deliveries").await, Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn any_configured_secret_verifies_during_a_rotation() {
    let new = helpers::new_secret();
    let new_for_cfg = new.clone();
    let app = helpers::spawn_app_with(
        move |cfg| {
            cfg.webhook
                .secrets
                .push(secrecy::SecretString::from(new_for_cfg))
        },
        SimConfig::default(),
    )
    .await;
    let body = event_body("response.completed", "resp_rotated");
    for (i, secret) in [app.secret.clone(), new].iter().enumerate() {
        let headers = signed_headers(secret, &format!("wh_rot_{i}"), unix_now(), body.as_bytes());
        let (status, answer) = app.post_webhook(body.clone(), &headers).await;
        assert_eq!(status, 200, "secret #{i}: {answer}");
    }
    assert_eq!(app.count_rows("webhook_deliveries").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_late_webhook_reopens_a_job_failed_as_uncertain_with_its_result() {
    // Regression: the job ended `failed` by the uncertain-create policy and the response it
    // had started (and that was paid for) was only noted as a `late_response` event.
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.upstream.request_timeout = Duration::from_secs(1);
            cfg.upstream.max_retries = 0;
            cfg.upstream.uncertain_create_wait = Some(Duration::from_millis(200));
        },
        SimConfig {
            faults: Faults {
                create_accept_then_hang: 1.0,
                hang_for: Duration::from_secs(10),
                // The webhook comes well after the wait for it is over.
                webhook_delay: Duration::from_secs(4),
                ..Faults::default()
            },
            ..SimConfig::default()
        },
    )
    .await;
    let (status, created) = app.post_job(&helpers::job_body("too-late")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert_eq!(job.error.as_ref().unwrap().code, "submit_uncertain");

    // The webhook reveals the response: the job takes its outcome and its result.
    let job = app
        .wait_for(&id, DEADLINE, |j| j.status == JobStatus::Completed)
        .await;
    assert!(job.error.is_none(), "{job:?}");
    assert!(job.output_text.as_deref().is_some_and(|t| !t.is_empty()));
    let resp_id = job.response_id.clone().unwrap();
    assert_eq!(
        app.sim.response(&resp_id).unwrap()["metadata"]["respool_job_id"],
        id.as_str()
    );
    assert_eq!(job.attempts, 1);
    assert_eq!(app.sim.stats().creates_by_job_id.get(&id), Some(&1));
    let kinds = app.event_kinds(&id).await;
    let pos = |k: &str| kinds.iter().position(|x| x == k);
    assert!(pos("reopened") > pos("submit_uncertain"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "late_response"), "{kinds:?}");
    // Both ends are in the timeline: failed, then completed once the response was revealed.
    let events = app.events(&id).await;
    let ends: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "status")
        .filter_map(|e| e["data"]["to"].as_str())
        .collect();
    assert_eq!(ends, vec!["failed", "completed"], "{events:#?}");
    app.stop().await;
}

#[tokio::test]
async fn a_resubmitted_jobs_first_response_is_cancelled_and_kept_as_a_paid_duplicate() {
    // Regression: with `resubmit`, the first run was neither adopted nor cancelled.
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.upstream.request_timeout = Duration::from_secs(1);
            cfg.upstream.max_retries = 0;
            cfg.upstream.uncertain_create = respool::config::UncertainCreatePolicy::Resubmit;
            cfg.upstream.uncertain_create_wait = Some(Duration::from_millis(100));
            // A dollar a token, so the budget's spend is the token count.
            cfg.pricing = helpers::gpt5_priced(1_000_000.0, 1_000_000.0);
        },
        SimConfig {
            queue_time: Duration::from_millis(300),
            run_time: Duration::from_secs(4),
            faults: Faults {
                create_accept_then_hang: 1.0,
                hang_for: Duration::from_secs(10),
                ..Faults::default()
            },
            ..SimConfig::default()
        },
    )
    .await;
    let (status, created) = app.post_job(&helpers::job_body("resubmitted")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    app.wait_until("the create is uncertain", DEADLINE, async || {
        app.count_events(&id, "submit_uncertain").await == 1
    })
    .await;
    app.sim.set_faults(Faults::default());
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(app.sim.stats().creates_by_job_id.get(&id), Some(&2));
    // The first run's webhook reveals it: it is a duplicate, cancelled and recorded.
    app.wait_until("the duplicate is recorded", DEADLINE, async || {
        app.count_rows("duplicate_responses").await == 1
    })
    .await;
    let held = job.response_id.clone().unwrap();
    let (status, view) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status, 200);
    let dups = view["duplicates"].as_array().cloned().unwrap_or_default();
    assert_eq!(dups.len(), 1, "{view:#}");
    let dup_id = dups[0]["response_id"].as_str().unwrap();
    assert_ne!(dup_id, held);
    // A webhook comes when a run has ended: this one completed, and what it used is kept so
    // its cost shows next to the job's own.
    assert_eq!(dups[0]["status"], "completed", "{view:#}");
    assert!(
        dups[0]["usage"]["total_tokens"].as_i64().unwrap() > 0,
        "{view:#}"
    );
    assert_eq!(dups[0]["found_by"], "webhook");
    assert_eq!(
        app.sim.response(dup_id).unwrap()["metadata"]["respool_job_id"],
        id.as_str()
    );
    assert_eq!(app.count_events(&id, "duplicate").await, 1);
    // The job kept its own response and result.
    let after = app.job(&id).await;
    assert_eq!(after.response_id.as_deref(), Some(held.as_str()));
    assert_eq!(after.status, JobStatus::Completed);
    // Stats count it apart from the jobs, and its tokens with theirs: both runs were paid.
    let (status, stats) = app.get("/v1/stats").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["totals"]["jobs"], 1, "{stats:#}");
    assert_eq!(stats["totals"]["paid_duplicates"], 1, "{stats:#}");
    let own = after.usage.as_ref().unwrap()["total_tokens"]
        .as_i64()
        .unwrap();
    let extra = dups[0]["usage"]["total_tokens"].as_i64().unwrap();
    assert_eq!(
        stats["totals"]["tokens"]["total"].as_i64(),
        Some(own + extra),
        "{stats:#}"
    );
    // The budget counts the money of both runs.
    let tokens = |u: &serde_json::Value| {
        u["input_tokens"].as_i64().unwrap() + u["output_tokens"].as_i64().unwrap()
    };
    let paid = tokens(after.usage.as_ref().unwrap()) + tokens(&dups[0]["usage"]);
    app.wait_until("the budget counts the duplicate", DEADLINE, async || {
        let (_, budget) = app.get("/v1/budget").await;
        budget["day"]["spent_usd"].as_f64() == Some(paid as f64)
    })
    .await;
    let html = app
        .request(reqwest::Method::GET, "/stats")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(
            r#"<span class="tile-n n-bad">1</span><span class="tile-l">paid duplicates</span>"#
        ),
        "{html}"
    );
    app.stop().await;
}

/// Deliveries naming responses no job knows (not ours, or not recorded yet) wait between
/// look-ups in the database, out of the way: 1,200 of them, received before a job's own
/// webhook, do not hold back its hand-off (the oldest unknown ones used to fill every page of
/// the hand-off while they waited). They are looked up at `webhook.lookups_per_second` (each a
/// `GET` that upstream counts against the request limits), the others booked a later time:
/// none is forgotten or given up, and no more are looked up than the pace allows.
#[tokio::test]
async fn unknown_deliveries_do_not_hold_back_a_known_one() {
    const PACE: u32 = 40;
    let app = helpers::spawn_app_with(
        |cfg| {
            console_sink(cfg);
            cfg.webhook.lookups_per_second = PACE;
        },
        SimConfig::default(),
    )
    .await;
    let started = std::time::Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..1_200 {
        let body = event_body("response.completed", &format!("resp_notours{i:05}"));
        let headers = signed_headers(
            &app.secret,
            &format!("wh_x{i}"),
            unix_now(),
            body.as_bytes(),
        );
        let (http, url) = (app.http.clone(), app.webhook_url.clone());
        sends.spawn(async move {
            let mut rb = http.post(url).header("content-type", "application/json");
            for (k, v) in headers {
                rb = rb.header(k, v);
            }
            rb.body(body).send().await.unwrap().status().as_u16()
        });
    }
    while let Some(status) = sends.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let id = app.submit(&helpers::job_body("behind-unknowns")).await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    app.wait_until("the job's own webhook handed to it", DEADLINE, async || {
        app.count_events(&id, "webhook").await >= 1
    })
    .await;
    // Every unknown one was looked up or booked a time for its look-up: none is forgotten.
    app.wait_until("every unknown delivery looked up or booked", DEADLINE, async || {
        app.scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE object_id LIKE 'resp_notours%' AND looks = 0 AND look_booked = 0")
            .await
            == 0
    })
    .await;
    // Looked up at the pace: some, not all (1,200 at 40 a second take 30 s).
    let looked = app
        .scalar("SELECT COALESCE(SUM(looks), 0) FROM webhook_deliveries WHERE object_id LIKE 'resp_notours%'")
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let most = 8.0 + f64::from(PACE) * (elapsed + 0.25) + 1.0;
    assert!(
        looked >= 1 && (looked as f64) <= most,
        "{looked} looked up in {elapsed:.1} s at {PACE} a second"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE object_id LIKE 'resp_notours%' AND handled_at IS NULL")
            .await,
        1_200,
        "none given up"
    );
    // The metrics show the pace at work (counters of this test process: at least ours).
    let lookups =
        |outcome| app.labelled_metric("respool_webhook_lookups_total", "outcome", outcome);
    let (booked, started) = (lookups("booked").await, lookups("started").await);
    assert!(booked.is_some_and(|n| n >= 600.0), "{booked:?}");
    assert!(started.is_some_and(|n| n >= 1.0), "{started:?}");
    app.stop().await;
}
