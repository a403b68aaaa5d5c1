//! The simulator's Conversations API over real HTTP: create (with items, at most 20),
//! retrieve, update, delete, the items (list with cursors, append, retrieve, delete), the
//! error envelope of unknown ids; a response on a conversation sees the earlier items, echoes
//! `conversation: {id}`, appends its items once it completes, and locks the conversation
//! while it runs (`conversation_locked`).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use respool::sim::{self, SimConfig, SimHandle};
use serde_json::{Value, json};

use crate::helpers::client;
use crate::helpers::sim_http::create;

async fn start() -> SimHandle {
    sim::spawn(SimConfig {
        queue_time: Duration::from_millis(30),
        run_time: Duration::from_millis(300),
        seed: Some(8),
        ..SimConfig::default()
    })
    .await
    .expect("sim starts")
}

async fn call(
    sim: &SimHandle,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = client()
        .request(method, format!("{}{path}", sim.base_url()))
        .bearer_auth("sk-test");
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

fn text_of(response: &Value) -> String {
    response["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["text"].as_str().map(str::to_owned))
        .collect()
}

async fn wait_done(sim: &SimHandle, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, r) = call(sim, Method::GET, &format!("/responses/{id}"), None).await;
        if r["status"] != "queued" && r["status"] != "in_progress" {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never finished: {r}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn conversations_and_their_items_are_served_like_openai() {
    let sim = start().await;
    let (status, conv) = call(
        &sim,
        Method::POST,
        "/conversations",
        Some(json!({"metadata": {"topic": "démo"}, "items": [
            {"type": "message", "role": "user", "content": "Hello, I am Ana from Zürich."},
            {"role": "assistant", "content": "Hi Ana!"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{conv}");
    let id = conv["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("conv_"));
    assert_eq!(conv["object"], "conversation");
    assert_eq!(conv["metadata"], json!({"topic": "démo"}));
    assert!(conv["created_at"].is_i64());

    let (_, got) = call(&sim, Method::GET, &format!("/conversations/{id}"), None).await;
    assert_eq!(got, conv);
    let (_, updated) = call(
        &sim,
        Method::POST,
        &format!("/conversations/{id}"),
        Some(json!({"metadata": {"k": "v"}})),
    )
    .await;
    assert_eq!(updated["metadata"], json!({"k": "v"}));

    let (status, added) = call(&sim, Method::POST, &format!("/conversations/{id}/items"),
        Some(json!({"items": [{"role": "user", "content": "One"}, {"role": "user", "content": "Two"}]}))).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(added["object"], "list");
    assert_eq!(added["data"].as_array().expect("data").len(), 2);

    let (_, page) = call(
        &sim,
        Method::GET,
        &format!("/conversations/{id}/items?limit=3"),
        None,
    )
    .await;
    let texts: Vec<&str> = page["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|i| i["content"][0]["text"].as_str())
        .collect();
    assert_eq!(texts, ["Two", "One", "Hi Ana!"], "newest first");
    assert_eq!(page["has_more"], true);
    let last = page["last_id"].as_str().expect("last_id");
    let (_, rest) = call(
        &sim,
        Method::GET,
        &format!("/conversations/{id}/items?after={last}"),
        None,
    )
    .await;
    assert_eq!(
        rest["data"][0]["content"][0]["text"],
        "Hello, I am Ana from Zürich."
    );
    assert_eq!(rest["has_more"], false);

    let item_id = added["data"][0]["id"].as_str().expect("item id").to_owned();
    let (status, item) = call(
        &sim,
        Method::GET,
        &format!("/conversations/{id}/items/{item_id}"),
        None,
    )
    .await;
    assert_eq!(
        (status, item["content"][0]["text"].as_str()),
        (StatusCode::OK, Some("One"))
    );
    let (status, after_delete) = call(
        &sim,
        Method::DELETE,
        &format!("/conversations/{id}/items/{item_id}"),
        None,
    )
    .await;
    assert_eq!(
        (status, &after_delete["object"]),
        (StatusCode::OK, &json!("conversation"))
    );
    let (status, gone) = call(
        &sim,
        Method::GET,
        &format!("/conversations/{id}/items/{item_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");

    // Errors: too many items, unknown ids, deleted conversations.
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    let (status, err) = call(
        &sim,
        Method::POST,
        "/conversations",
        Some(json!({"items": many})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["param"], "items");
    for key in ["message", "type", "param", "code"] {
        assert!(err["error"].get(key).is_some(), "{err}");
    }
    let (status, err) = call(&sim, Method::GET, "/conversations/conv_nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        err["error"]["message"],
        "Conversation with id 'conv_nope' not found."
    );
    let (status, deleted) = call(&sim, Method::DELETE, &format!("/conversations/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        deleted,
        json!({"id": id, "object": "conversation.deleted", "deleted": true})
    );
    let (status, _) = call(
        &sim,
        Method::GET,
        &format!("/conversations/{id}/items"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(sim.conversations().iter().any(|c| c.id == id && c.deleted));
    sim.shutdown().await;
}

#[tokio::test]
async fn responses_on_a_conversation_see_earlier_turns_and_append_theirs() {
    let sim = start().await;
    let (_, conv) = call(
        &sim,
        Method::POST,
        "/conversations",
        Some(json!({"items": [{"role": "user", "content": "My name is Ana and I like Gruyère."}]})),
    )
    .await;
    let conv_id = conv["id"].as_str().expect("id").to_owned();

    let (status, first) = create(
        &sim,
        json!({"model": "gpt-5", "input": "Suggest a cheese dish.",
        "conversation": conv_id, "background": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["conversation"], json!({"id": conv_id}));
    // While it runs, the conversation is locked.
    let (status, err) = create(
        &sim,
        json!({"model": "gpt-5", "input": "And a wine?",
        "conversation": {"id": conv_id}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "conversation_locked");
    assert_eq!(err["error"]["param"], "conversation");
    assert_eq!(
        err["error"]["message"],
        "Another process is currently operating on this conversation. Please retry in a few seconds."
    );
    // Nothing is appended before it completes.
    assert_eq!(sim.conversations()[0].items.len(), 1);

    let first = wait_done(&sim, first["id"].as_str().expect("id")).await;
    assert_eq!(first["status"], "completed");
    assert!(
        text_of(&first)
            .contains("Earlier in this conversation: user: \"My name is Ana and I like Gruyère.\""),
        "{}",
        text_of(&first)
    );
    let items = &sim.conversations()[0].items;
    assert_eq!(items.len(), 3, "input and output appended: {items:?}");
    assert_eq!(items[1]["content"][0]["text"], "Suggest a cheese dish.");
    assert_eq!(items[2]["type"], "message");
    assert_eq!(items[2]["role"], "assistant");

    let (status, second) = create(
        &sim,
        json!({"model": "gpt-5", "input": "And a wine?",
        "conversation": {"id": conv_id}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let text = text_of(&second);
    assert!(text.contains("user: \"Suggest a cheese dish.\""), "{text}");
    assert!(
        text.contains("assistant: \"# Report: Suggest a cheese dish"),
        "{text}"
    );
    let (_, listed) = call(
        &sim,
        Method::GET,
        &format!("/conversations/{conv_id}/items?order=asc&limit=100"),
        None,
    )
    .await;
    assert_eq!(listed["data"].as_array().expect("data").len(), 5);

    // Unknown conversation; with previous_response_id.
    let (status, err) = create(
        &sim,
        json!({"model": "gpt-5", "input": "x", "conversation": "conv_nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    assert_eq!(err["error"]["param"], "conversation");
    let (status, _) = create(
        &sim,
        json!({"model": "gpt-5", "input": "x", "conversation": conv_id,
        "previous_response_id": second["id"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}
