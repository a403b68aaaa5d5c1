//! The API's contract as a client meets it: every error, whatever refuses the request (a query
//! string, a path, a body, its content type or size, a method, an unknown route), is JSON in
//! the envelope `{"error": {"message", "type", "param", "code"}}` with the parameter named; and
//! the served document says what the server enforces (the sinks a job may name, the links, the
//! bearer scheme).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers;

/// Sends a request and returns the status, the headers and the body as JSON (asserting it is
/// JSON, with the envelope's content type).
async fn send(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(ct.starts_with("application/json"), "{status} {ct}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, headers, body)
}

/// The envelope, with its four fields, and the error object.
fn envelope(body: &Value) -> &Value {
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(e["type"].is_string(), "{body}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "{body}"
    );
    e
}

#[tokio::test]
async fn every_error_is_json_in_the_envelope_and_names_the_parameter() {
    let app = helpers::spawn_app().await;
    // (what, request, status, param, code)
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, Option<&str>, &str)> = vec![
        ("a boolean for a number", app.request(Method::GET, "/v1/notifications?limit=true"), 400, Some("limit"), "invalid_query_parameter"),
        ("a number past i64", app.request(Method::GET, "/v1/schedules/0/runs?limit=9223372036854775808"), 400, Some("limit"), "invalid_query_parameter"),
        ("a limit out of range", app.request(Method::GET, "/v1/jobs?limit=-516"), 400, Some("limit"), "invalid_query_parameter"),
        ("an empty enum value", app.request(Method::GET, "/v1/notifications?state="), 400, Some("state"), "invalid_query_parameter"),
        ("a status that is none", app.request(Method::GET, "/v1/jobs?status=done"), 400, Some("status"), "invalid_query_parameter"),
        ("a since that is no time", app.request(Method::GET, "/v1/stats?since=yesterday"), 400, Some("since"), "invalid_query_parameter"),
        ("a grouping that is none", app.request(Method::GET, "/v1/stats?by="), 400, Some("by"), "invalid_query_parameter"),
        ("a cursor that is not ours", app.request(Method::GET, "/v1/jobs?after=abc"), 400, Some("after"), "invalid_query_parameter"),
        ("a metadata pair without a key", app.request(Method::GET, "/v1/jobs?metadata=%3Dx"), 400, Some("metadata"), "invalid_value"),
        ("a path id that is no number", app.request(Method::POST, "/v1/notifications/abc/retry"), 400, Some("id"), "invalid_path_parameter"),
        ("a path id past i64", app.request(Method::POST, "/v1/notifications/9223372036854775808/retry"), 400, Some("id"), "invalid_path_parameter"),
        ("a body that is not JSON", app.request(Method::POST, "/v1/jobs").header("content-type", "application/json").body("{"), 400, None, "invalid_json"),
        ("a body of another type", app.request(Method::POST, "/v1/jobs").header("content-type", "text/plain").body("{}"), 415, Some("Content-Type"), "unsupported_media_type"),
        ("a body past 4 MiB", app.request(Method::POST, "/v1/jobs").header("content-type", "application/json").body(format!("{{\"model\": \"m\", \"input\": \"{}\"}}", "é".repeat(2_200_000))), 413, None, "body_too_large"),
        ("an empty job", app.request(Method::POST, "/v1/jobs").json(&json!({})), 400, Some("model"), "invalid_value"),
        ("a create parameter of the wrong type", app.request(Method::POST, "/v1/jobs").json(&json!({"model": "m", "input": "x", "temperature": "hot"})), 400, Some("temperature"), "invalid_value"),
        ("a nested one", app.request(Method::POST, "/v1/jobs").json(&json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": null}]}]})), 400, Some("input[0].content[0].text"), "invalid_value"),
        ("an empty URL", app.request(Method::POST, "/v1/webhook/register").json(&json!({"url": ""})), 400, Some("url"), "invalid_value"),
        ("an unknown event type", app.request(Method::POST, "/v1/webhook/register").json(&json!({"url": "https://x.example/h", "events": ["response.exploded"]})), 400, Some("events[0]"), "invalid_value"),
        ("nulls where strings go", app.request(Method::POST, "/v1/webhook/test").json(&json!({"endpoint_id": null, "event_type": 5})), 400, Some("event_type"), "invalid_value"),
        ("a wait past 30 s", app.request(Method::POST, "/v1/webhook/test").json(&json!({"wait_ms": 30001})), 400, Some("wait_ms"), "invalid_value"),
        ("an unknown key", app.request(Method::POST, "/v1/webhook/rotate").json(&json!({"secret": "x"})), 400, Some("secret"), "invalid_value"),
        ("a timeout in two parts (a jobs file takes it; the API does not)", app.request(Method::POST, "/v1/jobs").json(&json!({"model": "m", "input": "x", "timeout": "1h 30m"})), 400, Some("timeout"), "invalid_value"),
        ("no event types", app.request(Method::POST, "/v1/webhook/register").json(&json!({"url": "https://x.example/h", "events": []})), 400, Some("events"), "invalid_value"),
        ("a since of another form", app.request(Method::GET, "/v1/jobs?since=1.5h"), 400, Some("since"), "invalid_query_parameter"),
        ("a method the route does not take", app.request(Method::DELETE, "/v1/jobs"), 405, None, "method_not_allowed"),
        ("a route that is none", app.request(Method::GET, "/v1/nothing-here"), 404, None, "not_found"),
        ("a job that is none", app.request(Method::GET, "/v1/jobs/job_01KBQ4Y2ZJ3M9W7T0QX5V8R6NC"), 404, None, "not_found"),
        ("a schedule that is none", app.request(Method::GET, "/v1/schedules/nope/runs"), 404, None, "not_found"),
    ];
    for (what, req, want_status, want_param, want_code) in cases {
        let (status, headers, body) = send(req).await;
        assert_eq!(status, want_status, "{what}: {body}");
        let e = envelope(&body);
        assert_eq!(e["param"].as_str(), want_param, "{what}: {body}");
        assert_eq!(e["code"], want_code, "{what}: {body}");
        if status == 405 {
            assert!(
                headers.contains_key("allow"),
                "{what}: the Allow header is kept"
            );
        }
    }
    // Nothing of it was stored.
    assert_eq!(app.count_rows("jobs").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn the_document_names_the_configured_sinks_and_links_creations_to_their_uses() {
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.sinks
                .insert("team-log".into(), respool::config::SinkConfig::Console {});
        },
        helpers::fast_sim(),
    )
    .await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    let job = &doc["components"]["schemas"]["JobRequest"];
    let sink = &job["properties"]["notify"]["items"]["anyOf"][0];
    assert_eq!(sink["enum"], json!(["team-log"]), "{sink}");
    // `input` is required unless `input_template` gives it (a rule of `allOf`).
    assert_eq!(job["required"], json!(["model"]));
    assert!(job["allOf"].to_string().contains("input_template"), "{job}");
    // OpenAI's own parameters are there, as intake checks them.
    assert_eq!(
        job["properties"]["temperature"]["anyOf"][0]["type"], "number",
        "{}",
        job["properties"]["temperature"]
    );
    let create = &doc["paths"]["/v1/jobs"]["post"];
    assert_eq!(create["security"], json!([{"bearer": []}]));
    let links = &create["responses"]["201"]["links"];
    for (name, op) in [
        ("GetJob", "get_job"),
        ("CancelJob", "cancel_job"),
        ("GetEvents", "get_events"),
    ] {
        assert_eq!(links[name]["operationId"], op, "{links}");
        assert_eq!(links[name]["parameters"]["id"], "$response.body#/id");
    }
    // Every answer has a description (OpenAPI requires one; generators refuse a document
    // without).
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (code, r) in op["responses"].as_object().unwrap() {
                assert!(r["description"].is_string(), "{method} {path} {code}");
            }
        }
    }
    app.stop().await;
}
