//! The simulator's `/v1/webhook_endpoints` over real HTTP: the CRUD surface and its
//! validation, deliveries of response events to every subscribed endpoint signed with its own
//! secret, secret rotation with and without the overlap, and `test` deliveries.

use std::time::Duration;

use axum::http::HeaderMap;
use reqwest::StatusCode;
use respool::sim::{self, SimConfig, SimHandle};
use serde_json::{Value, json};

use crate::helpers::receiver::{Hit, Receiver, Reply};
use crate::helpers::{client, wait_for};

/// A recording receiver that answers 200, and its URL.
async fn receiver() -> (Receiver, String) {
    let r = Receiver::start(Vec::new()).await;
    let url = r.url.clone();
    (r, url)
}

/// The last request a receiver got.
fn last(r: &Receiver) -> Hit {
    r.hits().pop().expect("a delivery")
}

async fn start(overlap: Duration) -> SimHandle {
    sim::spawn(SimConfig {
        queue_time: Duration::from_millis(50),
        run_time: Duration::from_millis(200),
        webhook_retry_schedule: vec![Duration::from_millis(50)],
        secret_rotation_overlap: overlap,
        seed: Some(5),
        ..SimConfig::default()
    })
    .await
    .expect("sim starts")
}

async fn call(
    sim: &SimHandle,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut rb = client()
        .request(method, format!("{}{path}", sim.base_url()))
        .bearer_auth("sk-test");
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post(sim: &SimHandle, path: &str, body: Value) -> (StatusCode, Value) {
    call(sim, reqwest::Method::POST, path, Some(body)).await
}

async fn get(sim: &SimHandle, path: &str) -> (StatusCode, Value) {
    call(sim, reqwest::Method::GET, path, None).await
}

async fn register(sim: &SimHandle, url: &str, events: &[&str]) -> Value {
    let (status, body) = post(
        sim,
        "/webhook_endpoints",
        json!({"name": "test", "url": url, "event_types": events}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn signatures(h: &HeaderMap) -> Vec<String> {
    h.get("webhook-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn verifies(secret: &str, hit: &Hit) -> bool {
    hit.verify(secret).is_ok()
}

/// (type, response id) of each event a receiver got, in order.
fn events(r: &Receiver) -> Vec<(String, Value)> {
    r.hits()
        .iter()
        .map(|hit| {
            let event = hit.json();
            (
                event["type"].as_str().unwrap_or("?").to_owned(),
                event["data"]["id"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn create_list_get_update_delete() {
    let sim = start(Duration::from_secs(3600)).await;
    let created = register(&sim, "https://example.com/hook", &["response.completed"]).await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("we_"), "{created}");
    assert_eq!(created["object"], "webhook_endpoint");
    assert_eq!(created["name"], "test");
    assert_eq!(created["url"], "https://example.com/hook");
    assert_eq!(created["event_types"], json!(["response.completed"]));
    assert!(created["created_at"].as_i64().is_some());
    assert_eq!(created["created_at"], created["updated_at"]);
    let secret = created["signing_secret"].as_str().expect("secret");
    assert!(secret.starts_with("whsec_"));
    standardwebhooks::Webhook::new(secret).expect("a usable secret");
    let hint = created["signing_secret_hint"].as_str().expect("hint");
    assert!(hint.ends_with(&secret[secret.len() - 4..]), "{hint}");
    assert!(!hint.contains(&secret[6..20]));

    // The secret is shown only at creation.
    let (status, got) = get(&sim, &format!("/webhook_endpoints/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(got.get("signing_secret").is_none(), "{got}");
    assert_eq!(got["signing_secret_hint"], created["signing_secret_hint"]);

    // A cursor page, newest first.
    let mut ids = vec![id.clone()];
    for i in 0..2 {
        let e = register(
            &sim,
            &format!("https://example.com/{i}"),
            &["response.failed"],
        )
        .await;
        ids.push(e["id"].as_str().expect("id").to_owned());
    }
    let (_, page) = get(&sim, "/webhook_endpoints?limit=2").await;
    assert_eq!(page["object"], "list");
    assert_eq!(page["has_more"], true);
    assert_eq!(page["first_id"], ids[2].as_str());
    assert_eq!(page["last_id"], ids[1].as_str());
    assert!(
        page["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|e| e.get("signing_secret").is_none())
    );
    let (_, rest) = get(
        &sim,
        &format!("/webhook_endpoints?limit=2&after={}", ids[1]),
    )
    .await;
    assert_eq!(rest["has_more"], false);
    assert_eq!(rest["data"][0]["id"], id.as_str());
    let (status, _) = get(&sim, "/webhook_endpoints?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Update: any subset; event_types is the whole new set.
    let (status, updated) = post(
        &sim,
        &format!("/webhook_endpoints/{id}"),
        json!({"name": "renamed", "event_types": ["response.failed", "response.cancelled"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["url"], "https://example.com/hook");
    assert_eq!(
        updated["event_types"],
        json!(["response.failed", "response.cancelled"])
    );
    assert!(updated.get("signing_secret").is_none());
    // An update that changes nothing keeps `updated_at`.
    let (_, same) = post(
        &sim,
        &format!("/webhook_endpoints/{id}"),
        json!({"name": "renamed"}),
    )
    .await;
    assert_eq!(same["updated_at"], updated["updated_at"]);
    let (status, err) = post(
        &sim,
        &format!("/webhook_endpoints/{id}"),
        json!({"url": "nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["param"], "url");

    // Delete.
    let (status, deleted) = call(
        &sim,
        reqwest::Method::DELETE,
        &format!("/webhook_endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        deleted,
        json!({"id": id, "object": "webhook_endpoint.deleted", "deleted": true})
    );
    for (method, path) in [
        (reqwest::Method::GET, format!("/webhook_endpoints/{id}")),
        (reqwest::Method::DELETE, format!("/webhook_endpoints/{id}")),
        (
            reqwest::Method::POST,
            format!("/webhook_endpoints/{id}/rotate_secret"),
        ),
    ] {
        let (status, err) = call(&sim, method, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
    }
    assert_eq!(sim.webhook_endpoints().len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn create_validation_names_the_param() {
    let sim = start(Duration::from_secs(3600)).await;
    let ok =
        json!({"name": "n", "url": "https://example.com/h", "event_types": ["response.completed"]});
    let without = |key: &str| {
        let mut b = ok.clone();
        b.as_object_mut().expect("object").remove(key);
        b
    };
    let with = |key: &str, v: Value| {
        let mut b = ok.clone();
        b[key] = v;
        b
    };
    let cases = [
        (without("name"), "name", "missing_required_parameter"),
        (without("url"), "url", "missing_required_parameter"),
        (
            without("event_types"),
            "event_types",
            "missing_required_parameter",
        ),
        (with("name", json!(3)), "name", "invalid_type"),
        (
            with("url", json!("ftp://example.com")),
            "url",
            "invalid_value",
        ),
        (with("event_types", json!([])), "event_types", "empty_array"),
        (
            with("event_types", json!("response.completed")),
            "event_types",
            "invalid_type",
        ),
        (
            with(
                "event_types",
                json!(["response.completed", "response.exploded"]),
            ),
            "event_types[1]",
            "invalid_value",
        ),
        (with("secret", json!("mine")), "secret", "unknown_parameter"),
    ];
    for (body, param, code) in cases {
        let (status, err) = post(&sim, "/webhook_endpoints", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["error"]["param"], param, "{body}: {err}");
        assert_eq!(err["error"]["code"], code, "{body}: {err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
    }
    let resp = client()
        .post(format!("{}/webhook_endpoints", sim.base_url()))
        .body("{not json")
        .bearer_auth("sk-test")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // The API key is required, as everywhere under /v1.
    let resp = client()
        .get(format!("{}/webhook_endpoints", sim.base_url()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(sim.webhook_endpoints().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn response_events_reach_every_subscribed_endpoint_signed_with_its_secret() {
    let sim = start(Duration::from_secs(3600)).await;
    let (done, done_url) = receiver().await;
    let (also, also_url) = receiver().await;
    let (failed_only, failed_url) = receiver().await;
    let a = register(&sim, &done_url, &["response.completed", "response.failed"]).await;
    let b = register(&sim, &also_url, &["response.completed"]).await;
    register(&sim, &failed_url, &["response.failed"]).await;

    let (status, resp) = post(
        &sim,
        "/responses",
        json!({"model": "gpt-5", "input": "hook me", "background": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    wait_for("both subscribed endpoints", || {
        done.hits().len() == 1 && also.hits().len() == 1
    })
    .await;
    let (da, db) = (last(&done), last(&also));
    let (sa, sb) = (
        a["signing_secret"].as_str().expect("secret"),
        b["signing_secret"].as_str().expect("secret"),
    );
    assert!(verifies(sa, &da) && !verifies(sb, &da));
    assert!(verifies(sb, &db) && !verifies(sa, &db));
    assert_eq!(signatures(&da.headers).len(), 1);
    // One event, one delivery (and webhook-id) per endpoint.
    let (ea, eb): (Value, Value) = (
        serde_json::from_slice(&da.body).expect("json"),
        serde_json::from_slice(&db.body).expect("json"),
    );
    assert_eq!(ea["type"], "response.completed");
    assert_eq!(ea["data"]["id"], resp["id"]);
    assert_eq!(ea["id"], eb["id"]);
    assert_ne!(da.headers.get("webhook-id"), db.headers.get("webhook-id"));
    // Nothing for the endpoint that wants failures only, nor a second copy anywhere. Shown by
    // a later event rather than a pause: a failure, dispatched after the completion, reaches
    // the two endpoints that want it, and still the failures-only one has nothing else.
    let (status, failed) = post(
        &sim,
        "/responses",
        json!({"model": "gpt-5", "input": "fail me", "background": true,
               "metadata": {"sim": "outcome=failed"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{failed}");
    // The simulator counts a delivery once its endpoint has answered, a moment after the
    // endpoint saw it: wait for the count too.
    wait_for("the failure at both endpoints that want it", || {
        !failed_only.hits().is_empty()
            && done.hits().len() == 2
            && sim.stats().webhooks_delivered >= 4
    })
    .await;
    let completed = ("response.completed".to_owned(), resp["id"].clone());
    let failure = ("response.failed".to_owned(), failed["id"].clone());
    assert_eq!(events(&failed_only), std::slice::from_ref(&failure));
    assert_eq!(events(&done), [completed.clone(), failure]);
    assert_eq!(events(&also), std::slice::from_ref(&completed));
    assert_eq!(sim.stats().webhooks_delivered, 4);

    // A deleted endpoint gets nothing more.
    let b_id = b["id"].as_str().expect("id");
    call(
        &sim,
        reqwest::Method::DELETE,
        &format!("/webhook_endpoints/{b_id}"),
        None,
    )
    .await;
    post(
        &sim,
        "/responses",
        json!({"model": "gpt-5", "input": "again", "background": true}),
    )
    .await;
    wait_for("the third delivery", || done.hits().len() == 3).await;
    // Its receiver, subscribed again through a new endpoint, gets the next event, and still
    // nothing of the one dispatched while it was deleted.
    register(&sim, &also_url, &["response.completed"]).await;
    let (_, last) = post(
        &sim,
        "/responses",
        json!({"model": "gpt-5", "input": "once more", "background": true}),
    )
    .await;
    wait_for("the last event at the new endpoint", || {
        also.hits().len() == 2
    })
    .await;
    assert_eq!(
        events(&also),
        [
            completed,
            ("response.completed".to_owned(), last["id"].clone())
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn rotation_with_overlap_signs_with_both_until_it_ends() {
    let sim = start(Duration::from_millis(1500)).await;
    let (r, url) = receiver().await;
    let created = register(&sim, &url, &["response.completed"]).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let first = created["signing_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let test = json!({"event_type": "response.completed"});

    // Without the flag the old secret dies at once.
    let (status, rotated) = post(
        &sim,
        &format!("/webhook_endpoints/{id}/rotate_secret"),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second = rotated["signing_secret"]
        .as_str()
        .expect("new secret")
        .to_owned();
    assert_ne!(first, second);
    assert!(
        rotated["signing_secret_hint"]
            .as_str()
            .expect("hint")
            .ends_with(&second[second.len() - 4..])
    );
    post(&sim, &format!("/webhook_endpoints/{id}/test"), test.clone()).await;
    let d = last(&r);
    assert_eq!(signatures(&d.headers).len(), 1);
    assert!(verifies(&second, &d) && !verifies(&first, &d));
    assert_eq!(sim.webhook_endpoint_secrets(&id), vec![second.clone()]);

    // With it, both sign: two `v1,` entries, each verifying with its secret.
    let (_, rotated) = post(
        &sim,
        &format!("/webhook_endpoints/{id}/rotate_secret"),
        json!({"keep_old_secret_active_for_24_hours": true}),
    )
    .await;
    let third = rotated["signing_secret"]
        .as_str()
        .expect("new secret")
        .to_owned();
    post(&sim, &format!("/webhook_endpoints/{id}/test"), test.clone()).await;
    let d = last(&r);
    let sigs = signatures(&d.headers);
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    assert!(sigs.iter().all(|s| s.starts_with("v1,")));
    assert!(verifies(&third, &d) && verifies(&second, &d));
    assert_eq!(
        sim.webhook_endpoint_secrets(&id),
        vec![third.clone(), second.clone()]
    );
    // Response events too.
    let before = r.hits().len();
    post(
        &sim,
        "/responses",
        json!({"model": "gpt-5", "input": "x", "background": true}),
    )
    .await;
    wait_for("response event", || r.hits().len() > before).await;
    let d = last(&r);
    let event: Value = serde_json::from_slice(&d.body).expect("json");
    assert!(
        event["data"]["id"]
            .as_str()
            .expect("id")
            .starts_with("resp_")
    );
    assert_eq!(signatures(&d.headers).len(), 2);
    assert!(verifies(&third, &d) && verifies(&second, &d));

    // Once the overlap has passed, only the new secret signs.
    wait_for("overlap to end", || {
        sim.webhook_endpoint_secrets(&id).len() == 1
    })
    .await;
    post(&sim, &format!("/webhook_endpoints/{id}/test"), test).await;
    let d = last(&r);
    assert_eq!(signatures(&d.headers).len(), 1);
    assert!(verifies(&third, &d) && !verifies(&second, &d));

    let (status, err) = post(
        &sim,
        &format!("/webhook_endpoints/{id}/rotate_secret"),
        json!({"keep_old_secret_active_for_24_hours": "yes"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["param"], "keep_old_secret_active_for_24_hours");
    sim.shutdown().await;
}

#[tokio::test]
async fn test_delivery_reports_the_endpoints_answer() {
    let sim = start(Duration::from_secs(3600)).await;
    // 200 to the first test delivery, 400 to the second.
    let r = Receiver::start(vec![Reply::status(200), Reply::status(400)]).await;
    let created = register(&sim, &r.url, &["response.completed"]).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let secret = created["signing_secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    let (status, answer) = post(
        &sim,
        &format!("/webhook_endpoints/{id}/test"),
        json!({"event_type": "batch.completed"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"object": "webhook_endpoint.test", "webhook_endpoint_id": id,
               "event_type": "batch.completed", "status_code": 200, "success": true})
    );
    // Sent now, signed, to the endpoint's URL (any type, subscribed or not).
    let d = last(&r);
    assert!(verifies(&secret, &d));
    let event: Value = serde_json::from_slice(&d.body).expect("json");
    assert_eq!(event["type"], "batch.completed");
    assert!(
        event["data"]["id"]
            .as_str()
            .expect("data.id")
            .starts_with("batch_")
    );

    let (_, answer) = post(
        &sim,
        &format!("/webhook_endpoints/{id}/test"),
        json!({"event_type": "response.completed"}),
    )
    .await;
    // `success` says the test ran (always true, as the SDK types it); the code is the answer.
    assert_eq!(answer["status_code"], 400);
    assert_eq!(answer["success"], true);

    // An endpoint whose URL points nowhere: an error, not a result.
    let [port] = crate::helpers::free_ports();
    let nowhere = register(
        &sim,
        &format!("http://127.0.0.1:{port}/hook"),
        &["response.completed"],
    )
    .await;
    let (status, answer) = post(
        &sim,
        &format!(
            "/webhook_endpoints/{}/test",
            nowhere["id"].as_str().expect("id")
        ),
        json!({"event_type": "response.completed"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("message")
            .contains("could not be reached"),
        "{answer}"
    );

    for (body, param) in [
        (json!({}), "event_type"),
        (json!({"event_type": "nope"}), "event_type"),
    ] {
        let (status, err) = post(&sim, &format!("/webhook_endpoints/{id}/test"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(err["error"]["param"], param);
    }
    let (status, _) = post(
        &sim,
        "/webhook_endpoints/we_missing/test",
        json!({"event_type": "response.completed"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    sim.shutdown().await;
}
