//! Talking to the simulator directly over HTTP, for the tests of its endpoints: a create, a
//! streamed create, and the events of an SSE body.

use reqwest::StatusCode;
use respool::sim::SimHandle;
use serde_json::Value;

use super::client;

/// `POST /responses`; the status and the JSON body (`null` when there is none).
pub async fn create(sim: &SimHandle, body: Value) -> (StatusCode, Value) {
    let resp = client()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .expect("create");
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

/// Parses an SSE body into its events' data.
pub fn events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("a data line");
            serde_json::from_str(data).expect("json")
        })
        .collect()
}

/// A streamed create (`body` has `stream: true`); its events, in order.
pub async fn stream(sim: &SimHandle, body: Value) -> Vec<Value> {
    let resp = client()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), StatusCode::OK);
    events(&resp.text().await.expect("body"))
}
