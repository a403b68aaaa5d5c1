//! The jobs REST API through the real daemon: cancel and timeout, validation, idempotency,
//! listing (pagination and filters), bearer tokens, and the health and OpenAPI endpoints.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use respool::job::JobStatus;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers;

const DEADLINE: Duration = Duration::from_secs(30);

fn job_with_sim(name: &str, sim: &str) -> Value {
    let mut body = helpers::job_body(name);
    body["metadata"] = json!({ "sim": sim });
    body
}

/// Asserts the API's error shape and returns the error object.
fn api_error(status: u16, body: &Value, want_status: u16, want_type: &str) -> Value {
    assert_eq!(status, want_status, "{body}");
    let error = &body["error"];
    assert_eq!(error["type"], want_type, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        error.get("param").is_some(),
        "`param` is always present: {body}"
    );
    error.clone()
}

#[tokio::test]
async fn cancelling_a_running_job_cancels_it_upstream() {
    let app = helpers::spawn_app().await;
    let id = app.submit(&job_with_sim("long", "run=30s")).await;
    let running = app
        .wait_for(&id, DEADLINE, |j| j.status == JobStatus::InProgress)
        .await;
    let resp_id = running.response_id.unwrap();

    let (status, body) = app.post(&format!("/v1/jobs/{id}/cancel")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["cancel_requested"], true, "{body}");
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(app.sim.stats().cancels >= 1);
    assert_eq!(app.sim.response(&resp_id).unwrap()["status"], "cancelled");
    let kinds = app.event_kinds(&id).await;
    assert!(kinds.iter().any(|k| k == "cancel_requested"), "{kinds:?}");

    // Cancelling again changes nothing and still answers with the job.
    let (status, body) = app.post(&format!("/v1/jobs/{id}/cancel")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_pending_job_never_submits_it() {
    let app = helpers::spawn_app_with(|cfg| cfg.limits.max_in_flight = 1, Default::default()).await;
    let first = app.submit(&job_with_sim("first", "run=30s")).await;
    app.wait_for(&first, DEADLINE, |j| j.response_id.is_some())
        .await;
    let second = app.submit(&helpers::job_body("second")).await;
    // The only in-flight slot is taken, so the second job waits.
    app.orchestrator.run_once().await.unwrap();
    assert_eq!(app.job(&second).await.status, JobStatus::Pending);
    // No response to show yet: a conflict with the job's state, not a 404 (the job is there).
    let (status, answer) = app.get(&format!("/v1/jobs/{second}/response")).await;
    let error = api_error(status, &answer, 409, "conflict_error");
    assert_eq!(error["code"], "no_response_yet", "{answer}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("no stored response"),
        "{answer}"
    );

    let (status, body) = app.post(&format!("/v1/jobs/{second}/cancel")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled", "{body}");
    assert_eq!(body["error"]["code"], "cancelled", "{body}");
    // Free the slot: the cancelled job must still not be sent.
    let (status, _) = app.post(&format!("/v1/jobs/{first}/cancel")).await;
    assert_eq!(status, 200);
    app.wait_for(&first, DEADLINE, |j| j.status == JobStatus::Cancelled)
        .await;
    for _ in 0..3 {
        app.orchestrator.run_once().await.unwrap();
    }
    let job = app.job(&second).await;
    assert_eq!(job.status, JobStatus::Cancelled);
    assert_eq!(job.attempts, 0);
    assert!(job.response_id.is_none());
    let stats = app.sim.stats();
    assert_eq!(stats.creates_by_job_id.get(&second), None, "{stats:?}");
    assert_eq!(stats.creates, 1, "{stats:?}");
    let kinds = app.event_kinds(&second).await;
    assert!(!kinds.iter().any(|k| k == "submitting"), "{kinds:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_job_past_its_timeout_is_cancelled_with_code_timeout() {
    let app = helpers::spawn_app().await;
    let mut body = job_with_sim("slow", "run=30s");
    body["timeout"] = json!(1);
    let id = app.submit(&body).await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Cancelled, "{job:?}");
    assert_eq!(job.error.as_ref().unwrap().code, "timeout", "{job:?}");
    assert!(job.deadline_at.is_some());
    // It had been submitted, so the upstream response was cancelled too.
    let resp_id = job.response_id.unwrap();
    assert!(app.sim.stats().cancels >= 1);
    assert_eq!(app.sim.response(&resp_id).unwrap()["status"], "cancelled");
    app.stop().await;
}

#[tokio::test]
async fn invalid_job_specs_are_refused_naming_the_field_and_nothing_is_stored() {
    let app = helpers::spawn_app().await;
    let cases = [
        (
            "missing model",
            json!({"name": "m", "input": "hi"}),
            "model",
        ),
        (
            "metadata value not a string",
            json!({"name": "m", "model": "gpt-5", "input": "hi", "metadata": {"team": 5}}),
            "metadata.team",
        ),
        (
            "metadata not a map",
            json!({"name": "m", "model": "gpt-5", "input": "hi", "metadata": "x"}),
            "metadata",
        ),
        (
            "background false",
            json!({"name": "m", "model": "gpt-5", "input": "hi", "background": false}),
            "background",
        ),
        (
            "unknown notify sink",
            json!({"name": "m", "model": "gpt-5", "input": "hi", "notify": ["nowhere"]}),
            "notify",
        ),
        (
            "bad timeout",
            json!({"name": "m", "model": "gpt-5", "input": "hi", "timeout": "soon"}),
            "timeout",
        ),
    ];
    for (what, body, field) in cases {
        let (status, answer) = app.post_job(&body).await;
        let error = api_error(status, &answer, 400, "invalid_request_error");
        assert_eq!(error["param"], field, "{what}: {answer}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{field}`")), "{what}: {message}");
    }
    // The unknown sink is named too.
    let (_, answer) = app
        .post_job(&json!({"name": "m", "model": "gpt-5", "input": "hi", "notify": ["nowhere"]}))
        .await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nowhere"),
        "{answer}"
    );

    for raw in ["{not json", "", "[1, 2]", "\"a string\""] {
        let r = app
            .request(Method::POST, "/v1/jobs")
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap();
        api_error(status, &answer, 400, "invalid_request_error");
    }

    let (status, list) = app.get("/v1/jobs").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"], json!([]), "{list}");
    assert_eq!(app.count_rows("jobs").await, 0);
    assert_eq!(app.count_rows("job_events").await, 0);
    assert_eq!(app.sim.stats().creates, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_body_openai_would_refuse_is_refused_at_intake_naming_the_field() {
    let app = helpers::spawn_app().await;
    let mut hot = helpers::job_body("hot");
    hot["temperature"] = json!("hot");
    let (status, answer) = app.post_job(&hot).await;
    let error = api_error(status, &answer, 400, "invalid_request_error");
    assert_eq!(error["param"], "temperature", "{answer}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("`temperature`") && message.contains("number"),
        "{message}"
    );

    // A nested field is named by its path.
    let mut parts = helpers::job_body("parts");
    parts["input"] = json!([{"role": "user", "content": [{"type": "input_text", "text": null}]}]);
    let (status, answer) = app.post_job(&parts).await;
    let error = api_error(status, &answer, 400, "invalid_request_error");
    assert_eq!(error["param"], "input[0].content[0].text", "{answer}");

    let (status, list) = app.get("/v1/jobs").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"], json!([]), "{list}");
    assert_eq!(app.count_rows("jobs").await, 0);
    assert_eq!(app.sim.stats().creates, 0);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_top_level_field_is_taken_with_a_warning_in_the_timeline() {
    let app = helpers::spawn_app().await;
    let mut body = helpers::job_body("future");
    body["future_param"] = json!({"x": 1});
    let (status, created) = app.post_job(&body).await;
    assert_eq!(status, 201, "{created}");
    // The answer says so too, so a client sees it without reading the timeline.
    let warnings = created["warnings"]
        .as_array()
        .expect("warnings in the answer");
    assert_eq!(warnings.len(), 1, "{created}");
    assert!(
        warnings[0].as_str().unwrap().contains("`future_param`"),
        "{created}"
    );
    let id = created["id"].as_str().unwrap().to_string();
    let (_, shown) = app.get(&format!("/v1/jobs/{id}")).await;
    assert!(
        shown.get("warnings").is_none(),
        "only the create answer carries them: {shown}"
    );
    let events = app.events(&id).await;
    let warning = events
        .iter()
        .find(|e| e["kind"] == "spec_warning")
        .unwrap_or_else(|| panic!("no spec_warning event: {events:?}"));
    assert_eq!(warning["data"]["field"], "future_param", "{warning}");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("`future_param`"),
        "{warning}"
    );
    // The field still goes to OpenAI.
    let done = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(app.sim.stats().creates, 1);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_key_replays_and_conflicts() {
    let app = helpers::spawn_app().await;
    let post = |body: Value, key: &str| {
        app.request(Method::POST, "/v1/jobs")
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let body = json!({"name": "once", "model": "gpt-5", "input": "Say it once.", "metadata": {"a": "1", "b": "2"}});
    let r = post(body.clone(), "key-1").await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let first: Value = r.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["idempotency_key"], "key-1");

    // A replay answers like the original (201), marked as a replay, with the same job.
    let r = post(body.clone(), "key-1").await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["id"], id.as_str());

    // The same job written with its keys in another order is the same job.
    let reordered = json!({"metadata": {"b": "2", "a": "1"}, "input": "Say it once.", "model": "gpt-5", "name": "once"});
    let r = post(reordered, "key-1").await.unwrap();
    let status = r.status().as_u16();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["id"], id.as_str());

    // The key in the body works like the header.
    let mut in_body = body.clone();
    in_body["idempotency_key"] = json!("key-1");
    let (status, answer) = app.post_job(&in_body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["id"], id.as_str());

    let mut different = body.clone();
    different["input"] = json!("Say something else.");
    let r = post(different, "key-1").await.unwrap();
    let status = r.status().as_u16();
    let answer: Value = r.json().await.unwrap();
    let error = api_error(status, &answer, 409, "idempotency_error");
    assert_eq!(error["param"], "idempotency_key");
    assert!(error["message"].as_str().unwrap().contains(&id), "{answer}");

    let (_, list) = app.get("/v1/jobs").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(app.sim.stats().creates_by_job_id.get(&id), Some(&1));
    app.stop().await;
}

#[tokio::test]
async fn listing_pages_through_every_job_once() {
    let app = helpers::spawn_app().await;
    let mut created = HashSet::new();
    for i in 0..5 {
        created.insert(app.submit(&helpers::job_body(&format!("page-{i}"))).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/jobs?limit=2&after={c}"),
            None => "/v1/jobs?limit=2".to_string(),
        };
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2, "{page}");
        seen.extend(data.iter().map(|j| j["id"].as_str().unwrap().to_string()));
        if page["has_more"] == true {
            cursor = Some(page["next_cursor"].as_str().unwrap().to_string());
        } else {
            assert_eq!(page["next_cursor"], Value::Null, "{page}");
            break;
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5, "{seen:?}");
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique, created);
    // Newest first.
    let (_, all) = app.get("/v1/jobs?limit=100").await;
    let all_ids: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(all_ids, seen.iter().map(String::as_str).collect::<Vec<_>>());

    let (status, answer) = app.get("/v1/jobs?limit=0").await;
    assert_eq!(
        api_error(status, &answer, 400, "invalid_request_error")["param"],
        "limit"
    );
    let (status, answer) = app.get("/v1/jobs?after=not-a-cursor").await;
    assert_eq!(
        api_error(status, &answer, 400, "invalid_request_error")["param"],
        "after"
    );
    app.stop().await;
}

#[tokio::test]
async fn listing_filters_by_status_name_and_since() {
    let app = helpers::spawn_app().await;
    let done = app.submit(&helpers::job_body("alpha")).await;
    let stuck = app.submit(&job_with_sim("beta", "stuck")).await;
    app.wait_for(&done, DEADLINE, |j| j.status == JobStatus::Completed)
        .await;
    app.wait_for(&stuck, DEADLINE, |j| j.status == JobStatus::Queued)
        .await;

    let ids = |list: &Value| -> Vec<String> {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, list) = app.get("/v1/jobs?status=completed").await;
    assert_eq!(ids(&list), vec![done.clone()]);
    let (_, list) = app.get("/v1/jobs?status=queued").await;
    assert_eq!(ids(&list), vec![stuck.clone()]);
    let (_, list) = app.get("/v1/jobs?status=failed").await;
    assert!(ids(&list).is_empty());
    let (_, list) = app.get("/v1/jobs?name=beta").await;
    assert_eq!(ids(&list), vec![stuck.clone()]);
    let (_, list) = app.get("/v1/jobs?name=alpha&status=queued").await;
    assert!(ids(&list).is_empty());

    let (_, list) = app.get("/v1/jobs?since=1h").await;
    assert_eq!(ids(&list).len(), 2);
    let an_hour_ago = helpers::unix_now() - 3600;
    let (_, list) = app.get(&format!("/v1/jobs?since={an_hour_ago}")).await;
    assert_eq!(ids(&list).len(), 2);
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, list) = app.get(&format!("/v1/jobs?since={later}")).await;
    assert_eq!(status, 200, "{list}");
    assert!(ids(&list).is_empty(), "{list}");

    let (status, answer) = app.get("/v1/jobs?status=sleeping").await;
    assert_eq!(
        api_error(status, &answer, 400, "invalid_request_error")["param"],
        "status"
    );
    let (status, answer) = app.get("/v1/jobs?since=yesterday").await;
    assert_eq!(
        api_error(status, &answer, 400, "invalid_request_error")["param"],
        "since"
    );
    app.stop().await;
}

#[tokio::test]
async fn bearer_tokens_guard_the_api() {
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.api.tokens = vec![
                SecretString::from("tok-right"),
                SecretString::from("tok-other"),
            ]
        },
        Default::default(),
    )
    .await;
    let get = async |token: Option<&str>| {
        let mut rb = app.request(Method::GET, "/v1/jobs");
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (status, body) = get(None).await;
    api_error(status, &body, 401, "authentication_error");
    let (status, body) = get(Some("tok-wrong")).await;
    api_error(status, &body, 401, "authentication_error");
    let (status, body) = get(Some("tok-right")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!([]));
    let (status, _) = get(Some("tok-other")).await;
    assert_eq!(status, 200);

    // A job cannot be posted without a token either, and nothing is stored.
    let (status, body) = app.post_job(&helpers::job_body("sneaky")).await;
    api_error(status, &body, 401, "authentication_error");
    assert_eq!(app.count_rows("jobs").await, 0);
    let r = app
        .request(Method::POST, "/v1/jobs")
        .bearer_auth("tok-right")
        .json(&helpers::job_body("allowed"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    // Health and the webhook receiver are not behind the token.
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn health_openapi_and_not_found() {
    let app = helpers::spawn_app().await;
    let (status, body) = app.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");

    let r = app
        .request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "{doc}"
    );
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/jobs/{id}/cancel",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    assert!(paths["/v1/jobs"].get("post").is_some());
    assert!(paths["/v1/jobs"].get("get").is_some());

    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("respool_jobs{status=\"pending\"} 0"),
        "{metrics}"
    );

    let missing = "job_01JAAAAAAAAAAAAAAAAAAAAAAA";
    for path in [
        format!("/v1/jobs/{missing}"),
        format!("/v1/jobs/{missing}/events"),
        format!("/v1/jobs/{missing}/response"),
    ] {
        let (status, body) = app.get(&path).await;
        let error = api_error(status, &body, 404, "not_found_error");
        assert!(
            error["message"].as_str().unwrap().contains(missing),
            "{body}"
        );
    }
    let (status, body) = app.post(&format!("/v1/jobs/{missing}/cancel")).await;
    api_error(status, &body, 404, "not_found_error");
    let (status, body) = app.get("/v1/nothing-here").await;
    api_error(status, &body, 404, "not_found_error");
    app.stop().await;
}

#[tokio::test]
async fn a_pending_job_past_its_timeout_is_cancelled_without_a_create() {
    let app = helpers::spawn_app_with(|cfg| cfg.limits.max_in_flight = 1, Default::default()).await;
    let first = app.submit(&job_with_sim("blocker", "run=30s")).await;
    app.wait_for(&first, DEADLINE, |j| j.response_id.is_some())
        .await;
    let mut body = helpers::job_body("waits-too-long");
    body["timeout"] = json!("1s");
    let second = app.submit(&body).await;
    let job = app.wait_terminal(&second, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Cancelled, "{job:?}");
    assert_eq!(job.error.as_ref().unwrap().code, "timeout", "{job:?}");
    assert_eq!(job.attempts, 0);
    assert_eq!(app.sim.stats().creates_by_job_id.get(&second), None);
    app.stop().await;
}

#[tokio::test]
async fn finished_jobs_stay_finished() {
    let app = helpers::spawn_app().await;
    let id = app.submit(&helpers::job_body("done")).await;
    let done = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(done.status, JobStatus::Completed);
    let cancels = app.sim.stats().cancels;

    let (status, body) = app.post(&format!("/v1/jobs/{id}/cancel")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    app.orchestrator.run_once().await.unwrap();
    let job = app.job(&id).await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.output_text, done.output_text);
    assert_eq!(
        app.sim.stats().cancels,
        cancels,
        "no upstream cancel for a finished job"
    );

    // The header and the body must agree on the key: two well-formed keys that differ are a
    // conflict (409), as a reused key is; the document cannot say it, so it is not a 400.
    let mut body = helpers::job_body("two-keys");
    body["idempotency_key"] = json!("in-body");
    let r = app
        .request(Method::POST, "/v1/jobs")
        .header("Idempotency-Key", "in-header")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        api_error(status, &answer, 409, "idempotency_error")["param"],
        "idempotency_key"
    );
    app.stop().await;
}
