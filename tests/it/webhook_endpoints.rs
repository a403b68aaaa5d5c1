//! Webhook endpoints managed by the daemon (`/v1/webhook`) against the simulator: register
//! stores the secret and deliveries signed with it verify (with no secret in the config),
//! rotation keeps the old secret accepted until its expiry and not after, and `test` reports
//! whether the test event arrived and verified.

use std::time::Duration;

use helpers::{TestApp, event_body, job_body, signed_headers, spawn_app_with, unix_now};
use respool::sim::SimConfig;
use serde_json::{Value, json};

use crate::helpers;

/// The daemon with no webhook secret in its config, and a simulator whose configured target
/// is unset, so deliveries come only from registered endpoints (old secrets kept 2 s upstream).
async fn spawn_bare(sim: SimConfig) -> TestApp {
    let app = spawn_app_with(
        |c| c.webhook.secrets.clear(),
        SimConfig {
            secret_rotation_overlap: Duration::from_secs(2),
            ..sim
        },
    )
    .await;
    app.sim.set_webhook_target(None, Vec::new());
    app
}

async fn admin(app: &TestApp, path: &str, body: Value) -> (u16, Value, String) {
    let r = app
        .request(reqwest::Method::POST, path)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

async fn register(app: &TestApp, url: &str) -> String {
    let (status, body, _) = admin(app, "/v1/webhook/register", json!({"url": url})).await;
    assert_eq!(status, 201, "{body}");
    body["endpoint"]["id"].as_str().expect("id").to_owned()
}

/// A delivery signed with `secret` only, posted to the daemon's receiver; the status.
async fn deliver_signed_with(app: &TestApp, secret: &str) -> u16 {
    let body = event_body("response.completed", "resp_unknown");
    let id = format!("wh_{}", ulid::Ulid::new());
    let headers = signed_headers(secret, &id, unix_now(), body.as_bytes());
    app.post_webhook(body, &headers).await.0
}

/// Submits a job and waits until it has finished and a verified webhook named its response.
async fn job_completes_by_webhook(app: &TestApp, name: &str) {
    let (status, job) = app.post_job(&job_body(name)).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().expect("job id").to_owned();
    let j = app.wait_terminal(&id, Duration::from_secs(15)).await;
    assert_eq!(j.status.to_string(), "completed");
    app.wait_until(
        "a verified webhook for the job",
        Duration::from_secs(10),
        async || app.count_events(&id, "webhook").await >= 1,
    )
    .await;
}

#[tokio::test]
async fn register_stores_the_secret_and_deliveries_verify_with_it() {
    let app = spawn_bare(SimConfig::default()).await;
    // Nothing verifies before: no secret anywhere.
    assert_eq!(deliver_signed_with(&app, &app.secret).await, 400);

    let (status, body, text) = admin(
        &app,
        "/v1/webhook/register",
        json!({"url": app.webhook_url, "name": "respool-test"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let endpoint = &body["endpoint"];
    let id = endpoint["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("we_"), "{body}");
    assert_eq!(endpoint["url"], app.webhook_url.as_str());
    assert_eq!(endpoint["name"], "respool-test");
    assert_eq!(
        endpoint["event_types"],
        json!([
            "response.completed",
            "response.failed",
            "response.incomplete",
            "response.cancelled"
        ])
    );
    assert_eq!(endpoint["managed"], true);

    // The simulator has the endpoint; the answer shows the secret by its hint only.
    let upstream = app.sim.webhook_endpoints();
    assert_eq!(upstream.len(), 1);
    assert_eq!(upstream[0]["id"], id.as_str());
    assert_eq!(upstream[0]["url"], app.webhook_url.as_str());
    let secrets = app.sim.webhook_endpoint_secrets(&id);
    let secret = secrets[0].as_str();
    assert!(
        !text.contains(secret) && !text.contains(&secret[6..20]),
        "{text}"
    );
    assert_eq!(
        endpoint["secrets"][0]["hint"],
        format!("…{}", &secret[secret.len() - 4..]).as_str()
    );
    assert_eq!(endpoint["secrets"][0]["expires_at"], Value::Null);
    assert_eq!(app.count_rows("webhook_secrets").await, 1);

    // Jobs complete through webhooks signed with the stored secret (the config has none).
    job_completes_by_webhook(&app, "first").await;
    assert_eq!(deliver_signed_with(&app, secret).await, 200);
    assert_eq!(deliver_signed_with(&app, &app.secret).await, 400);
    app.stop().await;
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_until_it_expires() {
    let app = spawn_bare(SimConfig::default()).await;
    let id = register(&app, &app.webhook_url).await;
    let old = app.sim.webhook_endpoint_secrets(&id)[0].clone();

    let (status, body, text) = admin(&app, "/v1/webhook/rotate", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "webhook.rotated");
    let upstream = app.sim.webhook_endpoint_secrets(&id);
    assert_eq!(upstream.len(), 2, "the simulator signs with both");
    let new = upstream[0].clone();
    assert_eq!(upstream[1], old);
    assert!(!text.contains(&new) && !text.contains(&old));
    let held = body["endpoint"]["secrets"].as_array().expect("secrets");
    assert_eq!(held.len(), 2, "{body}");
    assert_eq!(
        held[0]["hint"],
        format!("…{}", &new[new.len() - 4..]).as_str()
    );
    assert_eq!(held[0]["expires_at"], Value::Null);
    let expires = held[1]["expires_at"].as_i64().expect("old secret expires");
    let day = 24 * 3600;
    assert!((expires - unix_now() - day).abs() < 60, "{expires}");

    // During the overlap deliveries carry two signatures and verify; so does each alone.
    job_completes_by_webhook(&app, "overlap").await;
    assert_eq!(deliver_signed_with(&app, &old).await, 200);
    assert_eq!(deliver_signed_with(&app, &new).await, 200);

    // Once the simulator's (shortened) overlap has passed, it signs with the new one only.
    app.wait_until(
        "the upstream overlap to end",
        Duration::from_secs(10),
        async || app.sim.webhook_endpoint_secrets(&id).len() == 1,
    )
    .await;
    job_completes_by_webhook(&app, "after-overlap").await;

    // Past the daemon's 24 hours, a delivery signed with the old secret alone is refused.
    app.clock.advance(Duration::from_secs(24 * 3600 + 60));
    assert_eq!(deliver_signed_with(&app, &old).await, 400);
    assert_eq!(deliver_signed_with(&app, &new).await, 200);
    let (status, overview) = app.get("/v1/webhook").await;
    assert_eq!(status, 200);
    assert_eq!(
        overview["endpoints"][0]["secrets"].as_array().map(Vec::len),
        Some(1),
        "{overview}"
    );
    app.stop().await;
}

#[tokio::test]
async fn webhook_test_reports_arrival_and_verification() {
    let app = spawn_bare(SimConfig::default()).await;
    let ours = register(&app, &app.webhook_url).await;
    let (status, report, _) = admin(&app, "/v1/webhook/test", json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["object"], "webhook.test");
    assert_eq!(report["endpoint_id"], ours.as_str());
    assert_eq!(report["event_type"], "response.completed");
    assert_eq!(report["upstream_status_code"], 200);
    assert_eq!(report["upstream_success"], true);
    assert_eq!(report["verified"], true, "{report}");
    assert!(
        report["webhook_id"]
            .as_str()
            .expect("webhook id")
            .starts_with("wh_")
    );

    // An endpoint whose URL points nowhere.
    let [port] = crate::helpers::free_ports();
    let nowhere = register(&app, &format!("http://127.0.0.1:{port}/webhooks/openai")).await;
    let (status, err, _) = admin(&app, "/v1/webhook/test", json!({})).await;
    assert_eq!(status, 409, "two endpoints: which one? {err}");
    assert_eq!(err["error"]["param"], "endpoint_id");
    let (status, report, _) = admin(
        &app,
        "/v1/webhook/test",
        json!({"endpoint_id": nowhere, "event_type": "response.failed"}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["upstream_status_code"], Value::Null);
    assert_eq!(report["upstream_success"], false);
    assert_eq!(report["verified"], false);
    assert!(
        report["message"]
            .as_str()
            .expect("message")
            .contains("did not arrive")
    );

    // An endpoint registered elsewhere (its secret unknown here) that points at the daemon:
    // it arrives, but the daemon refuses it.
    let created: Value = reqwest::Client::new()
        .post(format!("{}/webhook_endpoints", app.sim.base_url()))
        .bearer_auth("sk-test-key")
        .json(&json!({"name": "dashboard", "url": app.webhook_url, "event_types": ["response.completed"]}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let foreign = created["id"].as_str().expect("id");
    let (_, report, _) = admin(&app, "/v1/webhook/test", json!({"endpoint_id": foreign})).await;
    assert_eq!(report["upstream_status_code"], 400, "{report}");
    assert_eq!(report["verified"], false);

    // The overview lists all three; only ours hold secrets, shown as hints.
    let (status, overview) = app.get("/v1/webhook").await;
    assert_eq!(status, 200, "{overview}");
    let endpoints = overview["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 3, "{overview}");
    let managed: Vec<&str> = endpoints
        .iter()
        .filter(|e| e["managed"] == true)
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(managed.len(), 2);
    assert!(managed.contains(&ours.as_str()) && managed.contains(&nowhere.as_str()));
    assert_eq!(overview["config_secrets"], 0);
    assert_eq!(overview["upstream_error"], Value::Null);
    assert!(!overview.to_string().contains("whsec_"), "{overview}");
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_and_upstream_refusals_are_reported() {
    let app = spawn_bare(SimConfig::default()).await;
    let (status, err, _) = admin(&app, "/v1/webhook/register", json!({"url": "not a url"})).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["param"], "url");
    let (status, err, _) = admin(
        &app,
        "/v1/webhook/register",
        json!({"url": app.webhook_url, "events": []}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["param"], "events");
    let (status, err, _) = admin(
        &app,
        "/v1/webhook/register",
        json!({"url": app.webhook_url, "secret": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    let (status, err, _) = admin(
        &app,
        "/v1/webhook/register",
        json!({"url": app.webhook_url, "events": ["response.exploded"]}),
    )
    .await;
    assert_eq!(status, 400, "respool refuses an unknown event type: {err}");
    assert_eq!(err["error"]["param"], "events[0]", "{err}");
    assert!(
        app.sim.webhook_endpoints().is_empty(),
        "nothing reached OpenAI"
    );
    let (status, err, _) = admin(&app, "/v1/webhook/test", json!({"endpoint_id": "we_gone"})).await;
    assert_eq!(status, 404, "{err}");
    for path in ["/v1/webhook/rotate", "/v1/webhook/test"] {
        let (status, err, _) = admin(&app, path, json!({})).await;
        // A well-formed request that what is stored cannot answer: a conflict.
        assert_eq!(status, 409, "{path}: nothing registered yet: {err}");
        assert_eq!(err["error"]["code"], "state_conflict", "{err}");
        assert_eq!(err["error"]["param"], "endpoint_id");
    }
    assert!(app.sim.webhook_endpoints().is_empty());
    let (_, doc) = app.get("/openapi.json").await;
    for path in [
        "/v1/webhook",
        "/v1/webhook/register",
        "/v1/webhook/rotate",
        "/v1/webhook/test",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} is in the OpenAPI document"
        );
    }
    app.stop().await;

    // A key the upstream refuses.
    let app = spawn_bare(SimConfig {
        api_key: Some("sk-another-key".into()),
        ..SimConfig::default()
    })
    .await;
    let (status, err, _) = admin(
        &app,
        "/v1/webhook/register",
        json!({"url": app.webhook_url}),
    )
    .await;
    assert_eq!(status, 502, "{err}");
    assert_eq!(err["error"]["type"], "upstream_error");
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("message")
            .contains("permission to manage"),
        "{err}"
    );
    let (status, overview) = app.get("/v1/webhook").await;
    assert_eq!(status, 200);
    assert!(overview["upstream_error"].is_string(), "{overview}");
    assert_eq!(app.count_rows("webhook_secrets").await, 0);
    app.stop().await;
}
