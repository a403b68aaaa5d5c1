//! Knowledge sets through the real daemon and simulator: a set's files are uploaded once,
//! put in one vector store per set name, and the job is submitted only when every file is
//! processed, with `file_search` over the store; an unchanged set reuses its store, a changed
//! one is updated; a file OpenAI cannot process fails the job naming it.

use std::time::Duration;

use respool::config::KnowledgeSetConfig;
use respool::sim::SimConfig;
use serde_json::{Value, json};

use crate::helpers::{self, TestApp};

/// A folder of documents next to a config file naming it as the set `handbook`.
fn handbook() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("handbook")).unwrap();
    std::fs::write(
        dir.path().join("handbook/leave.md"),
        "# Leave\n\n25 days a year; carry over up to 5 — até 5 dias.\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("handbook/expenses.csv"),
        "item,limit\nhotel,180\nmeal,45\n",
    )
    .unwrap();
    dir
}

async fn app_with_handbook(dir: &std::path::Path) -> TestApp {
    let config_file = dir.join("respool.yaml");
    helpers::spawn_app_with(
        move |c| {
            c.file = Some(config_file);
            c.knowledge.sets.insert(
                "handbook".into(),
                KnowledgeSetConfig {
                    paths: vec!["handbook/*".into()],
                },
            );
        },
        SimConfig {
            file_processing_time: Duration::from_millis(1500),
            ..helpers::fast_sim()
        },
    )
    .await
}

async fn finish(app: &TestApp, body: Value) -> Value {
    let id = app.submit(&body).await;
    app.wait_terminal(&id, Duration::from_secs(40)).await;
    let (_, job) = app.get(&format!("/v1/jobs/{id}")).await;
    job
}

fn file_search_stores(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "file_search")
        .expect("a file_search tool")["vector_store_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_configured_set_is_searched_once_its_files_are_processed() {
    let dir = handbook();
    let app = app_with_handbook(dir.path()).await;
    let job = finish(
        &app,
        json!({"name": "leave", "model": "gpt-5", "input": "How many days of leave do I get?",
               "knowledge": ["handbook"]}),
    )
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    let request = app
        .sim
        .request(job["response_id"].as_str().unwrap())
        .unwrap();
    let stores = file_search_stores(&request);
    assert_eq!(stores.len(), 1);
    // The files went up once each, for search (purpose `assistants`), and were processed
    // before the create: the job waited for them.
    let files = app.sim.files();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().all(|f| f.purpose == "assistants"));
    let events = app.events(job["id"].as_str().unwrap()).await;
    let said = |needle: &str| {
        events
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains(needle))
    };
    assert!(said("made the vector store"), "{events:#?}");
    assert!(
        said("files of knowledge `handbook` to be processed"),
        "{events:#?}"
    );
    // Its polls ask for the search results, and the stored response has them.
    let (_, response) = app
        .get(&format!(
            "/v1/jobs/{}/response",
            job["id"].as_str().unwrap()
        ))
        .await;
    let search = response["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "file_search_call")
        .expect("a file_search_call");
    assert!(search["results"].is_array(), "{search:#}");

    // The same set again: the same store, nothing uploaded or attached again.
    let again = finish(
        &app,
        json!({"model": "gpt-5", "input": "And expenses?", "knowledge": ["handbook"]}),
    )
    .await;
    assert_eq!(again["status"], "completed", "{again}");
    let request = app
        .sim
        .request(again["response_id"].as_str().unwrap())
        .unwrap();
    assert_eq!(file_search_stores(&request), stores);
    assert_eq!(app.sim.files().len(), 2);

    // The set changes on disk: the next job's store is the same one, with the new file in it.
    std::fs::write(
        dir.path().join("handbook/travel.txt"),
        "Book trains under 4 hours.\n",
    )
    .unwrap();
    let third = finish(
        &app,
        json!({"model": "gpt-5", "input": "Trains or planes?", "knowledge": ["handbook"],
               "tools": [{"type": "file_search", "vector_store_ids": ["vs_mine"]}]}),
    )
    .await;
    assert_eq!(
        third["status"], "failed",
        "vs_mine does not exist upstream: {third}"
    );
    let files = app.sim.files();
    assert_eq!(files.len(), 3, "only the new file went up");
    // A job's own file_search tool gets the set's store added to its own.
    let fourth = finish(
        &app,
        json!({"model": "gpt-5", "input": "Trains or planes?", "knowledge": ["handbook"],
               "tools": [{"type": "file_search", "vector_store_ids": [], "max_num_results": 5}]}),
    )
    .await;
    assert_eq!(fourth["status"], "completed", "{fourth}");
    let request = app
        .sim
        .request(fourth["response_id"].as_str().unwrap())
        .unwrap();
    assert_eq!(file_search_stores(&request), stores);
    let tools = request["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1, "{tools:#?}");
    assert_eq!(tools[0]["max_num_results"], 5);
    app.stop().await;
}

#[tokio::test]
async fn a_file_that_cannot_be_processed_fails_the_job_naming_it() {
    let dir = handbook();
    let app = app_with_handbook(dir.path()).await;
    let upload = async |name: &str, data: &[u8]| -> String {
        let part = reqwest::multipart::Part::bytes(data.to_vec()).file_name(name.to_string());
        let r = app
            .request(reqwest::Method::POST, "/v1/attachments")
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let good = upload("policy.md", "# Policy\nAll good.\n".as_bytes()).await;
    let bad = upload("scan.txt", b"garbled SIM_INVALID_FILE bytes").await;
    let job = finish(
        &app,
        json!({"model": "gpt-5", "input": "Summarise", "knowledge": [
            {"name": "uploads", "files": [good, bad]}]}),
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "knowledge_file_failed");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(message.contains("`scan.txt`"), "{message}");
    assert!(message.contains("invalid_file"), "{message}");
    assert_eq!(app.sim.stats().creates, 0, "nothing was submitted");

    // A set the config does not have: 404, naming it; nothing stored.
    let (status, body) = app
        .post_job(&json!({"model": "gpt-5", "input": "x", "knowledge": ["nope"]}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "knowledge_not_found");
    assert_eq!(body["error"]["param"], "knowledge.0");
    app.stop().await;
}
