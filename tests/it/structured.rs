//! Structured outputs through the real daemon and simulator: a JSON answer is parsed and
//! checked against the job's schema, and a refusal or an answer off its schema ends the job
//! `failed` with a code of its own, never as an empty `completed`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{self, TestApp};

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
            "findings": {"type": "array", "minItems": 1, "items": {
                "type": "object",
                "properties": {"claim": {"type": "string"}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
                "required": ["claim", "confidence"], "additionalProperties": false}},
            "verdict": {"type": "string", "enum": ["yes", "no", "unclear"]},
            "caveat": {"type": ["string", "null"]},
        },
        "required": ["title", "year", "findings", "verdict", "caveat"],
        "additionalProperties": false,
    })
}

fn structured_job(name: &str, input: &str, sim: Option<&str>) -> Value {
    let mut body = json!({
        "name": name, "model": "gpt-5", "input": input,
        "text": {"format": {"type": "json_schema", "name": "study", "schema": schema(), "strict": true}},
    });
    if let Some(directives) = sim {
        body["metadata"] = json!({"sim": directives});
    }
    body
}

async fn finish(app: &TestApp, body: &Value) -> Value {
    let (status, created) = app.post_job(body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    app.wait_terminal(&id, Duration::from_secs(20)).await;
    let (status, job) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status, 200);
    job
}

#[tokio::test]
async fn a_json_answer_is_exposed_parsed_and_matches_its_schema() {
    let app = helpers::spawn_app().await;
    let validator = jsonschema::validator_for(&schema()).unwrap();
    // ASCII, accented and CJK text, and one long line: each reaches the answer's strings.
    let long = "word ".repeat(3000);
    for input in [
        "Does coffee improve focus?",
        "Résumé des études sur le café — 東京の研究も含む",
        long.as_str(),
    ] {
        let job = finish(&app, &structured_job("study", input, None)).await;
        assert_eq!(job["status"], "completed", "{job}");
        assert!(job["error"].is_null(), "{job}");
        let answer = &job["output_json"];
        assert!(validator.is_valid(answer), "{answer:#}");
        // The same answer as the text the model wrote.
        let text: Value = serde_json::from_str(job["output_text"].as_str().unwrap()).unwrap();
        assert_eq!(&text, answer);
        let first_line: String = input.trim().chars().take(20).collect();
        assert!(
            answer["title"].as_str().unwrap().contains(&first_line),
            "{answer:#}"
        );
        // What OpenAI received: the schema, as the job gave it.
        let response = app
            .sim
            .response(job["response_id"].as_str().unwrap())
            .unwrap();
        assert_eq!(response["text"]["format"]["schema"], schema());
    }
    // A plain job has no `output_json`.
    let plain = finish(&app, &helpers::job_body("plain")).await;
    assert_eq!(plain["status"], "completed");
    assert!(plain["output_json"].is_null(), "{plain}");
    app.stop().await;
}

#[tokio::test]
async fn a_refusal_fails_the_job_with_the_models_words() {
    let app = helpers::spawn_app().await;
    for (sim, words) in [
        (
            "output=refusal",
            "I'm sorry, but I can't help with that request.",
        ),
        (
            "output=refusal:Je ne peux pas répondre à cela.",
            "Je ne peux pas répondre à cela.",
        ),
    ] {
        let job = finish(&app, &structured_job("refused", "Anything", Some(sim))).await;
        assert_eq!(job["status"], "failed", "{job}");
        assert_eq!(job["error"]["code"], "refusal", "{job}");
        assert!(
            job["error"]["message"].as_str().unwrap().ends_with(words),
            "{job}"
        );
        assert!(job["output_json"].is_null());
        // Paid for all the same: its usage is kept.
        assert!(job["usage"]["output_tokens"].as_i64().unwrap() > 0, "{job}");
    }
    // A plain-text job can be refused too.
    let mut plain = helpers::job_body("plain refused");
    plain["metadata"] = json!({"sim": "output=refusal"});
    let job = finish(&app, &plain).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"]["code"], "refusal");
    app.stop().await;
}

#[tokio::test]
async fn an_answer_off_its_schema_or_not_json_fails_the_job_and_keeps_the_text() {
    let app = helpers::spawn_app().await;
    let off = r#"{"title": "T", "year": 1066, "findings": [], "verdict": "maybe", "caveat": null}"#;
    let job = finish(
        &app,
        &structured_job("off", "x", Some(&format!("output=text:{off}"))),
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "output_schema_mismatch");
    let message = job["error"]["message"].as_str().unwrap();
    for at in ["/year", "/findings", "/verdict"] {
        assert!(message.contains(at), "{message}");
    }
    assert_eq!(job["output_text"], off, "the text is kept");
    // It parses, so it is shown as JSON even though it is off the schema.
    assert_eq!(job["output_json"]["year"], 1066);

    for text in [
        "Sure! Here is the study you asked for.",
        "",
        "{\"title\": \"cut sh",
    ] {
        let job = finish(
            &app,
            &structured_job("not json", "x", Some(&format!("output=text:{text}"))),
        )
        .await;
        assert_eq!(job["status"], "failed", "{job}");
        assert_eq!(job["error"]["code"], "output_not_json", "{job}");
        assert!(job["output_json"].is_null());
    }
    app.stop().await;
}

#[tokio::test]
async fn a_schema_that_cannot_work_is_refused_at_intake_and_nothing_is_stored() {
    let app = helpers::spawn_app().await;
    let mut array = structured_job("array", "x", None);
    array["text"]["format"]["schema"] = json!({"type": "array", "items": {"type": "string"}});
    let mut broken = structured_job("broken", "x", None);
    broken["text"]["format"]["schema"]["properties"]["year"]["type"] = json!("integr");
    let mut from_file = structured_job("file", "x", None);
    let format = from_file["text"]["format"].as_object_mut().unwrap();
    format.remove("schema");
    format.insert("schema_file".into(), json!("/etc/passwd"));
    for (body, field, says) in [
        (&array, "text.format.schema.type", "object"),
        (&broken, "text.format.schema", "not a valid JSON Schema"),
        (
            &from_file,
            "text.format.schema_file",
            "give the schema itself",
        ),
    ] {
        let (status, error) = app.post_job(body).await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["param"], field, "{error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(!message.contains("root:x:"), "no file is read: {message}");
    }
    assert_eq!(app.count_rows("jobs").await, 0);
    assert_eq!(app.sim.stats().creates, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_schema_strict_mode_refuses_is_taken_with_a_warning_and_fails_as_openai_refuses_it() {
    let app = helpers::spawn_app().await;
    let mut open = structured_job("open", "x", None);
    open["text"]["format"]["schema"]["additionalProperties"] = json!(true);
    let (status, created) = app.post_job(&open).await;
    assert_eq!(status, 201, "{created}");
    let warnings = created["warnings"].to_string();
    assert!(
        warnings.contains("OpenAI refuses this in strict mode"),
        "{created}"
    );
    let id = created["id"].as_str().unwrap();
    app.wait_terminal(id, Duration::from_secs(20)).await;
    let (_, job) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "invalid_json_schema", "{job}");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("additionalProperties"),
        "{job}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_job_page_shows_a_json_answer_as_tables_escaped() {
    let app = helpers::spawn_app().await;
    // The model's strings carry markup: the page must show it as text.
    let job = finish(
        &app,
        &structured_job("page", "<img src=x onerror=alert(1)> & coffee", None),
    )
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    let id = job["id"].as_str().unwrap();
    let page = app.page(&format!("/jobs/{id}")).await;
    assert!(
        page.contains(r#"<div class="json-answer" id="answer-json"><table class="json-obj">"#),
        "{page}"
    );
    // `findings` is a list of flat objects: one table, a column per key.
    assert!(
        page.contains(r#"<th scope="col">claim</th><th scope="col">confidence</th>"#),
        "{page}"
    );
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt; &amp; coffee"),
        "{page}"
    );
    assert!(!page.contains("<img src=x"), "{page}");
    // The JSON text is not rendered as a Markdown report as well.
    assert!(!page.contains(r#"<article class="prose">"#), "{page}");
    app.stop().await;
}
