//! Finding jobs: full-text search over name, input and output (hostile input included), and the
//! model and metadata filters, documented in the OpenAPI.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);

async fn submit(app: &common::TestApp, body: &Value) -> String {
    let (status, created) = app.post_job(body).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_string()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The ids `GET /v1/jobs?{query}` returns, asserting a 200.
async fn ids(app: &common::TestApp, query: &str) -> Vec<String> {
    let (status, body) = app.get(&format!("/v1/jobs?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn search_finds_jobs_by_name_input_and_output() {
    let app = common::spawn_app().await;
    let walrus = submit(
        &app,
        &json!({"name": "zoo-report", "model": "gpt-5", "input": "Tell me about the walrus."}),
    )
    .await;
    let items = submit(
        &app,
        &json!({"name": "items", "model": "gpt-5", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Describe the narwhal"}]},
            {"role": "user", "content": "and the ocelot"}
        ]}),
    )
    .await;
    let other = submit(&app, &common::job_body("penguins")).await;

    assert_eq!(ids(&app, "search=walrus").await, vec![walrus.clone()]);
    assert_eq!(ids(&app, "search=Zoo-Report").await, vec![walrus.clone()]);
    assert_eq!(ids(&app, "search=narwhal").await, vec![items.clone()]);
    assert_eq!(ids(&app, "search=ocelot").await, vec![items.clone()]);
    // Every word must match.
    assert_eq!(
        ids(&app, "search=walrus%20narwhal").await,
        Vec::<String>::new()
    );
    assert_eq!(ids(&app, "search=").await.len(), 3);

    // Output text is indexed once the job finishes.
    let done = app.wait_terminal(&other, DEADLINE).await;
    let output = done.output_text.unwrap();
    let input_words = "penguins write about";
    let word = output
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| w.len() > 3 && !input_words.contains(&w.to_lowercase()))
        .expect("a word only the output has")
        .to_string();
    let found = ids(&app, &format!("search={}", enc(&word))).await;
    assert!(found.contains(&other), "{word}: {found:?}");
}

#[tokio::test]
async fn hostile_search_text_is_never_a_server_error() {
    let app = common::spawn_app().await;
    let id = submit(
        &app,
        &json!({"name": "foo", "model": "gpt-5", "input": "foo bar: baz"}),
    )
    .await;
    for text in [
        "\"foo OR -bar:\"",
        "foo OR -bar:",
        "\"",
        "\"\"\"",
        "-",
        "*",
        "name:foo",
        "NEAR(foo bar)",
        "foo AND",
        "(",
        "^foo",
        "{name}: x",
        "'; DROP TABLE jobs; --",
        "\u{0}",
    ] {
        let (status, body) = app.get(&format!("/v1/jobs?search={}", enc(text))).await;
        assert_eq!(status, 200, "{text:?}: {body}");
    }
    // Operators are words: `foo OR -bar:` needs the tokens foo, or and bar.
    assert!(ids(&app, &format!("search={}", enc("foo bar:"))).await == vec![id.clone()]);
    assert!(
        ids(&app, &format!("search={}", enc("foo OR -bar:")))
            .await
            .is_empty()
    );
    // The job is still there.
    assert_eq!(ids(&app, "").await, vec![id]);
}

#[tokio::test]
async fn model_and_metadata_filters() {
    let app = common::spawn_app().await;
    let a = submit(
        &app,
        &json!({"name": "a", "model": "gpt-5", "input": "x",
                "metadata": {"team": "blue", "env": "prod"}}),
    )
    .await;
    let b = submit(
        &app,
        &json!({"name": "b", "model": "gpt-5-mini", "input": "x",
                "metadata": {"team": "blue", "env": "dev"}}),
    )
    .await;
    let c = submit(&app, &json!({"name": "c", "model": "gpt-5", "input": "x"})).await;

    assert_eq!(ids(&app, "model=gpt-5-mini").await, vec![b.clone()]);
    assert_eq!(ids(&app, "model=gpt-5").await, vec![c.clone(), a.clone()]);
    assert_eq!(
        ids(&app, "metadata=team%3Dblue").await,
        vec![b.clone(), a.clone()]
    );
    assert_eq!(
        ids(&app, "metadata=team%3Dblue&metadata=env%3Dprod").await,
        vec![a.clone()]
    );
    assert_eq!(ids(&app, "metadata=team%3Dblue&model=gpt-5").await, vec![a]);
    assert!(ids(&app, "metadata=team%3Dred").await.is_empty());
    // A key with JSON-path characters is just a key.
    assert!(
        ids(&app, &format!("metadata={}", enc("a.b\"[0]=x")))
            .await
            .is_empty()
    );

    let (status, body) = app.get("/v1/jobs?metadata=novalue").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "metadata");
}

#[tokio::test]
async fn the_openapi_document_lists_the_new_filters() {
    let app = common::spawn_app().await;
    let doc: Value = app
        .request(reqwest::Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let params: Vec<&str> = doc["paths"]["/v1/jobs"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for want in ["search", "model", "metadata"] {
        assert!(params.contains(&want), "{params:?}");
    }
}
