//! The simulator's JSON API over real HTTP: lifecycle, cancel matrix, delete, input items,
//! validation errors, auth and the standard headers.

use std::time::Duration;

use reqwest::StatusCode;
use respool::sim::{self, SimConfig, SimHandle};
use serde_json::{Value, json};

use crate::helpers::client;

async fn start(config: SimConfig) -> SimHandle {
    sim::spawn(SimConfig {
        seed: Some(7),
        ..config
    })
    .await
    .expect("sim starts")
}

fn fast() -> SimConfig {
    SimConfig {
        queue_time: Duration::from_millis(150),
        run_time: Duration::from_millis(600),
        ..SimConfig::default()
    }
}

async fn call(req: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let resp = req.bearer_auth("sk-test").send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body)
}

async fn create(sim: &SimHandle, body: Value) -> (StatusCode, Value) {
    let (s, _, b) = call(
        client()
            .post(format!("{}/responses", sim.base_url()))
            .json(&body),
    )
    .await;
    (s, b)
}

async fn get(sim: &SimHandle, id: &str) -> Value {
    call(client().get(format!("{}/responses/{id}", sim.base_url())))
        .await
        .2
}

/// Polls `GET` until `pred` holds or the deadline passes; returns the last snapshot.
async fn poll_until(sim: &SimHandle, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(sim, id).await;
        if pred(&r) || tokio::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status(r: &Value) -> &str {
    r["status"].as_str().unwrap_or("")
}

fn bg(input: &str) -> Value {
    json!({"model": "gpt-5", "input": input, "background": true, "store": true,
           "metadata": {"respool_job_id": "job_1"}})
}

#[tokio::test]
async fn background_response_runs_queued_in_progress_completed() {
    // Long enough in progress that a slow poll still sees it.
    let sim = start(SimConfig {
        run_time: Duration::from_millis(1500),
        ..fast()
    })
    .await;
    let (code, created) = create(&sim, json!({"model": "o3", "input": "Why is the sky blue?", "background": true,
        "reasoning": {"effort": "high", "summary": "auto"}, "metadata": {"respool_job_id": "job_a"}}))
    .await;
    assert_eq!(code, StatusCode::OK);
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("resp_"));
    assert_eq!(created["object"], "response");
    assert_eq!(created["status"], "queued");
    assert_eq!(created["background"], true);
    assert_eq!(created["store"], true);
    assert_eq!(created["output"], json!([]));
    assert!(
        created["usage"].is_null()
            && created["completed_at"].is_null()
            && created["error"].is_null()
    );
    assert!(created["created_at"].is_i64());
    assert_eq!(created["metadata"]["respool_job_id"], "job_a");
    for key in [
        "incomplete_details",
        "instructions",
        "model",
        "tools",
        "tool_choice",
        "temperature",
        "top_p",
        "parallel_tool_calls",
        "reasoning",
        "text",
        "truncation",
        "service_tier",
        "max_output_tokens",
        "previous_response_id",
        "user",
    ] {
        assert!(created.get(key).is_some(), "missing {key}");
    }

    let running = poll_until(&sim, &id, |r| status(r) != "queued").await;
    assert_eq!(status(&running), "in_progress");
    let done = poll_until(&sim, &id, |r| status(r) == "completed").await;
    assert_eq!(status(&done), "completed");
    assert!(
        done["completed_at"].as_i64().expect("completed_at")
            >= done["created_at"].as_i64().expect("created")
    );
    let output = done["output"].as_array().expect("output");
    assert_eq!(output[0]["type"], "reasoning");
    assert!(output[0]["id"].as_str().expect("rs id").starts_with("rs_"));
    assert_eq!(output[0]["summary"][0]["type"], "summary_text");
    let message = output.last().expect("message");
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["status"], "completed");
    let part = &message["content"][0];
    assert_eq!(part["type"], "output_text");
    let text = part["text"].as_str().expect("text");
    assert!(text.contains("Why is the sky blue"));
    let chars: Vec<char> = text.chars().collect();
    for a in part["annotations"].as_array().expect("annotations") {
        assert_eq!(a["type"], "url_citation");
        let (s, e) = (
            a["start_index"].as_u64().expect("s") as usize,
            a["end_index"].as_u64().expect("e") as usize,
        );
        let span: String = chars[s..e].iter().collect();
        assert!(span.contains(a["url"].as_str().expect("url")), "{span}");
    }
    let usage = &done["usage"];
    let (i, o) = (
        usage["input_tokens"].as_u64().expect("in"),
        usage["output_tokens"].as_u64().expect("out"),
    );
    assert_eq!(usage["total_tokens"].as_u64(), Some(i + o));
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 0);
    assert!(
        usage["output_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .expect("rt")
            > 0
    );

    let stats = sim.stats();
    assert_eq!(stats.creates, 1);
    assert_eq!(stats.creates_by_job_id.get("job_a"), Some(&1));
    assert!(stats.retrieves >= 2);
    assert_eq!(sim.response(&id).expect("snapshot")["status"], "completed");
    sim.shutdown().await;
}

#[tokio::test]
async fn partial_output_grows_while_in_progress() {
    let sim = start(SimConfig {
        run_time: Duration::from_secs(2),
        ..fast()
    })
    .await;
    let (_, created) = create(&sim, bg("Partial please")).await;
    let id = created["id"].as_str().expect("id");
    let partial = poll_until(&sim, id, |r| {
        r["output"]
            .as_array()
            .and_then(|o| o.last())
            .and_then(|m| m["content"][0]["text"].as_str())
            .is_some_and(|t| !t.is_empty())
            && status(r) == "in_progress"
    })
    .await;
    assert_eq!(status(&partial), "in_progress");
    assert_eq!(partial["output"][0]["status"], "in_progress");
    assert!(partial["usage"].is_null());
    sim.shutdown().await;
}

#[tokio::test]
async fn synchronous_create_completes_at_once() {
    let sim = start(fast()).await;
    let (code, r) = create(&sim, json!({"model": "gpt-5", "input": "hello"})).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(r["status"], "completed");
    assert_eq!(r["background"], false);
    assert!(r["usage"]["total_tokens"].as_u64().is_some());
    // No store: not retrievable.
    let (_, r2) = create(
        &sim,
        json!({"model": "gpt-5", "input": "hello", "store": false}),
    )
    .await;
    let (code, _, _) = call(client().get(format!(
        "{}/responses/{}",
        sim.base_url(),
        r2["id"].as_str().expect("id")
    )))
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    sim.shutdown().await;
}

#[tokio::test]
async fn cancel_matrix() {
    let sim = start(SimConfig {
        queue_time: Duration::from_secs(30),
        ..fast()
    })
    .await;
    let cancel = |id: &str| client().post(format!("{}/responses/{id}/cancel", sim.base_url()));

    // queued → cancelled; twice is idempotent.
    let (_, r) = create(&sim, bg("cancel me")).await;
    let id = r["id"].as_str().expect("id").to_owned();
    let (code, _, body) = call(cancel(&id)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "cancelled");
    assert!(body["usage"].is_null() && body["completed_at"].is_null());
    let (code, _, again) = call(cancel(&id)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(again, body);
    assert_eq!(status(&get(&sim, &id).await), "cancelled");

    // completed → 400.
    let (_, r) = create(
        &sim,
        json!({"model": "gpt-5", "input": "x", "background": true,
        "metadata": {"sim": "queue=0s;run=50ms"}}),
    )
    .await;
    let done_id = r["id"].as_str().expect("id").to_owned();
    poll_until(&sim, &done_id, |r| status(r) == "completed").await;
    let (code, _, err) = call(cancel(&done_id)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        err["error"]["message"],
        "Cannot cancel a completed response."
    );
    assert_eq!(err["error"]["type"], "invalid_request_error");
    for key in ["message", "type", "param", "code"] {
        assert!(err["error"].get(key).is_some(), "envelope lacks {key}");
    }

    // failed → 400.
    let (_, r) = create(
        &sim,
        json!({"model": "gpt-5", "input": "x", "background": true,
        "metadata": {"sim": "queue=0s;run=50ms;outcome=failed:vector_store_timeout"}}),
    )
    .await;
    let failed_id = r["id"].as_str().expect("id").to_owned();
    let failed = poll_until(&sim, &failed_id, |r| status(r) == "failed").await;
    assert_eq!(failed["error"]["code"], "vector_store_timeout");
    assert!(failed["error"]["message"].is_string());
    assert_eq!(call(cancel(&failed_id)).await.0, StatusCode::BAD_REQUEST);

    // synchronous → 400; unknown → 404.
    let (_, r) = create(&sim, json!({"model": "gpt-5", "input": "x"})).await;
    let (code, _, err) = call(cancel(r["id"].as_str().expect("id"))).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        err["error"]["message"],
        "Cannot cancel a synchronous response."
    );
    let (code, _, err) = call(cancel("resp_missing")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(
        err["error"]["message"],
        "Response with id 'resp_missing' not found."
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn cancel_in_progress_keeps_or_clears_partial_output() {
    for clear in [false, true] {
        let sim = start(SimConfig {
            cancel_clears_output: clear,
            run_time: Duration::from_secs(5),
            ..fast()
        })
        .await;
        let (_, r) = create(&sim, bg("long job")).await;
        let id = r["id"].as_str().expect("id").to_owned();
        poll_until(&sim, &id, |r| {
            r["output"].as_array().is_some_and(|o| !o.is_empty())
        })
        .await;
        let (code, _, body) =
            call(client().post(format!("{}/responses/{id}/cancel", sim.base_url()))).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body["status"], "cancelled");
        assert_eq!(body["output"].as_array().expect("output").is_empty(), clear);
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn incomplete_when_max_output_tokens_is_small() {
    let sim = start(fast()).await;
    let (_, r) = create(
        &sim,
        json!({"model": "gpt-5", "input": "write a lot", "max_output_tokens": 16}),
    )
    .await;
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(r["usage"]["output_tokens"], 16);
    assert!(r["completed_at"].is_null());
    sim.shutdown().await;
}

#[tokio::test]
async fn delete_and_input_items() {
    let sim = start(fast()).await;
    let (_, r) = create(&sim, json!({"model": "gpt-5", "input": [
        {"role": "user", "content": "first"}, {"role": "user", "content": [{"type": "input_text", "text": "second"}]}
    ]}))
    .await;
    let id = r["id"].as_str().expect("id").to_owned();
    let (code, _, list) = call(client().get(format!(
        "{}/responses/{id}/input_items?order=asc",
        sim.base_url()
    )))
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"].as_array().expect("data").len(), 2);
    assert_eq!(list["data"][0]["content"][0]["text"], "first");
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], list["data"][0]["id"]);

    let (code, _, body) = call(client().delete(format!("{}/responses/{id}", sim.base_url()))).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": id, "object": "response", "deleted": true})
    );
    let (code, _, _) = call(client().delete(format!("{}/responses/{id}", sim.base_url()))).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _, _) = call(client().get(format!("{}/responses/{id}", sim.base_url()))).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_body_breaking_openais_schema_is_a_400_naming_the_param() {
    let sim = start(fast()).await;
    let cases = [
        (
            json!({"model": "gpt-5", "input": "x", "temperature": "hot"}),
            "temperature",
            "invalid_type",
        ),
        (
            json!({"model": "gpt-5", "input": [{"role": "user", "content": [
                {"type": "input_text", "text": "fine"}, {"type": "input_text", "text": null}]}]}),
            "input[0].content[1].text",
            "invalid_type",
        ),
        (
            json!({"model": "gpt-5", "input": "x", "reasoning": {"effort": "extreme"}}),
            "reasoning.effort",
            "invalid_value",
        ),
        (
            json!({"model": "gpt-5", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}),
            "input[0].content[0].text",
            "missing_required_parameter",
        ),
    ];
    for (body, param, code) in cases {
        let (status, err) = create(&sim, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(err["error"]["type"], "invalid_request_error", "{err}");
        assert_eq!(err["error"]["param"], param, "{err}");
        assert_eq!(err["error"]["code"], code, "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("'{param}'")), "{message}");
    }
    // An unknown top-level field is let through, as respool lets it through.
    let (status, created) = create(
        &sim,
        json!({"model": "gpt-5", "input": "x", "future_param": {"x": 1}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(sim.stats().creates, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn validation_errors_name_the_param() {
    let sim = start(fast()).await;
    let many: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        (json!({"input": "x"}), "model", None),
        (json!({"model": "gpt-5"}), "input", None),
        (
            json!({"model": "gpt-5", "input": "x", "metadata": many}),
            "metadata",
            None,
        ),
        (
            json!({"model": "gpt-5", "input": "x", "metadata": {"k".repeat(65): "v"}}),
            "metadata",
            None,
        ),
        (
            json!({"model": "gpt-5", "input": "x", "metadata": {"k": "v".repeat(513)}}),
            "metadata.k",
            None,
        ),
        (
            json!({"model": "gpt-5", "input": "x", "max_output_tokens": 15}),
            "max_output_tokens",
            None,
        ),
        (
            json!({"model": "gpt-5", "input": "x", "background": true, "store": false}),
            "background",
            Some("unsupported_parameter"),
        ),
        (
            json!({"model": "gpt-5", "input": "x", "previous_response_id": "resp_nope"}),
            "previous_response_id",
            Some("previous_response_not_found"),
        ),
        (
            json!({"model": "gpt-5", "input": "x", "previous_response_id": "resp_a", "conversation": "conv_1"}),
            "previous_response_id",
            None,
        ),
        (
            json!({"model": "o3-deep-research", "input": "x"}),
            "tools",
            None,
        ),
        (
            json!({"model": "o3-deep-research", "input": "x", "tools": [{"type": "web_search_preview"}, {"type": "function", "name": "f"}]}),
            "tools",
            None,
        ),
        (
            json!({"model": "gpt-5", "input": "x", "metadata": {"sim": "explode"}}),
            "metadata.sim",
            None,
        ),
    ];
    for (body, param, code) in cases {
        let (status, err) = create(&sim, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert_eq!(err["error"]["param"], param, "{body}");
        if let Some(code) = code {
            assert_eq!(err["error"]["code"], code);
        }
    }
    // Bad JSON is a 400 envelope, not a panic.
    let resp = client()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("k")
        .body("{nope")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err: Value = resp.json().await.expect("json");
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("could not parse the JSON body")
    );
    // A valid deep-research create with a chain from a stored response works.
    let (_, first) = create(&sim, json!({"model": "gpt-5", "input": "x"})).await;
    let (code, dr) = create(
        &sim,
        json!({"model": "o4-mini-deep-research", "input": "Research cats", "background": true,
        "tools": [{"type": "web_search_preview"}], "previous_response_id": first["id"]}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let done = poll_until(&sim, dr["id"].as_str().expect("id"), |r| {
        status(r) == "completed"
    })
    .await;
    let kinds: Vec<&str> = done["output"]
        .as_array()
        .expect("o")
        .iter()
        .filter_map(|i| i["type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"web_search_call") && kinds.last() == Some(&"message"),
        "{kinds:?}"
    );
    assert_eq!(done["output"][0]["action"]["type"], "search");
    sim.shutdown().await;
}

#[tokio::test]
async fn auth_and_standard_headers() {
    let sim = start(SimConfig {
        api_key: Some("sk-right".into()),
        ..fast()
    })
    .await;
    let url = format!("{}/responses/resp_x", sim.base_url());
    let resp = client().get(&url).send().await.expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = client()
        .get(&url)
        .bearer_auth("sk-wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["code"], "invalid_api_key");
    let resp = client()
        .get(&url)
        .bearer_auth("sk-right")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let h = resp.headers();
    assert!(h["x-request-id"].to_str().expect("id").starts_with("req_"));
    for name in [
        "limit-requests",
        "limit-tokens",
        "remaining-requests",
        "remaining-tokens",
        "reset-requests",
        "reset-tokens",
    ] {
        assert!(
            h.contains_key(format!("x-ratelimit-{name}").as_str()),
            "{name}"
        );
    }
    let reset = h["x-ratelimit-reset-requests"].to_str().expect("reset");
    assert!(reset.ends_with('s'), "{reset}");
    sim.shutdown().await;
}
