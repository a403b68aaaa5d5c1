//! The simulator's code interpreter and `/v1/containers` over real HTTP: the
//! `code_interpreter_call` item (its `outputs` only with `include`, on create and on GET), the
//! `container_file_citation`s whose offsets cover the link naming each file, every cited file
//! downloading with the bytes its object says, pagination of a container's files, expiry
//! after 20 idle minutes on the storage clock, the `container_expired` and
//! `container_file_drop` faults, the stream's code interpreter events, and the 400s and 404s
//! for containers that do not exist.

use std::time::Duration;

use reqwest::StatusCode;
use respool::sim::{self, Faults, SimConfig, SimHandle};
use serde_json::{Value, json};

use crate::helpers::client;

async fn start(faults: Faults) -> SimHandle {
    sim::spawn(SimConfig {
        queue_time: Duration::from_millis(30),
        run_time: Duration::from_millis(200),
        seed: Some(9),
        faults,
        ..SimConfig::default()
    })
    .await
    .expect("sim starts")
}

/// Status, content type and body bytes.
async fn send(req: reqwest::RequestBuilder) -> (StatusCode, String, Vec<u8>) {
    let resp = req.bearer_auth("sk-test").send().await.expect("request");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ctype, resp.bytes().await.expect("body").to_vec())
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

async fn get(sim: &SimHandle, path: &str) -> (StatusCode, Value) {
    let (s, _, b) = send(client().get(format!("{}{path}", sim.base_url()))).await;
    (s, json_of(&b))
}

async fn get_bytes(sim: &SimHandle, path: &str) -> (StatusCode, String, Vec<u8>) {
    send(client().get(format!("{}{path}", sim.base_url()))).await
}

async fn post(sim: &SimHandle, path: &str, body: Value) -> (StatusCode, Value) {
    let (s, _, b) = send(
        client()
            .post(format!("{}{path}", sim.base_url()))
            .json(&body),
    )
    .await;
    (s, json_of(&b))
}

async fn delete(sim: &SimHandle, path: &str) -> (StatusCode, Value) {
    let (s, _, b) = send(client().delete(format!("{}{path}", sim.base_url()))).await;
    (s, json_of(&b))
}

fn code_request(input: &str) -> Value {
    json!({
        "model": "gpt-5", "input": input, "background": true,
        "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}],
    })
}

/// Creates a response and polls `GET /responses/{id}{query}` until it is terminal.
async fn run(sim: &SimHandle, body: Value, query: &str) -> Value {
    let (status, created) = post(sim, "/responses", body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, r) = get(sim, &format!("/responses/{id}{query}")).await;
        if matches!(
            r["status"].as_str(),
            Some("completed" | "failed" | "incomplete")
        ) {
            return r;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn call_of(response: &Value) -> Value {
    let calls: Vec<&Value> = response["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter(|i| i["type"] == "code_interpreter_call")
        .collect();
    assert_eq!(calls.len(), 1, "{response}");
    calls[0].clone()
}

fn message_part(response: &Value) -> Value {
    let message = response["output"]
        .as_array()
        .expect("output")
        .last()
        .expect("a message")
        .clone();
    assert_eq!(message["type"], "message", "{response}");
    message["content"][0].clone()
}

fn container_citations(response: &Value) -> Vec<Value> {
    message_part(response)["annotations"]
        .as_array()
        .expect("annotations")
        .iter()
        .filter(|a| a["type"] == "container_file_citation")
        .cloned()
        .collect()
}

/// Every citation's span is the markdown link naming its file; returns them.
fn checked_citations(response: &Value) -> Vec<Value> {
    let part = message_part(response);
    let chars: Vec<char> = part["text"].as_str().expect("text").chars().collect();
    let container = call_of(response)["container_id"].clone();
    let cites = container_citations(response);
    for a in &cites {
        assert_eq!(a["container_id"], container, "{a}");
        let start = a["start_index"].as_u64().expect("start") as usize;
        let end = a["end_index"].as_u64().expect("end") as usize;
        let span: String = chars[start..end].iter().collect();
        let name = a["filename"].as_str().expect("filename");
        assert!(!name.contains('/'), "a base name: {name}");
        assert_eq!(span, format!("[{name}](sandbox:/mnt/data/{name})"));
    }
    cites
}

fn decode_png(bytes: &[u8]) -> (u32, u32) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("the image data");
    (info.width, info.height)
}

fn assert_not_found(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let err = &body["error"];
    assert_eq!(err["type"], "invalid_request_error", "{body}");
    assert!(err["message"].is_string() && err.get("param").is_some() && err.get("code").is_some());
}

#[tokio::test]
async fn the_code_interpreter_cites_files_that_download_with_their_bytes() {
    let sim = start(Faults::default()).await;
    for (input, files) in [
        ("Plot the monthly rainfall for Lisbon and Porto", 2),
        (
            "Analysiere die Preise für Käse in Zürich SIM_CONTAINER_FILES=5",
            5,
        ),
        ("東京 SIM_CONTAINER_FILES=1", 1),
        ("?", 2),
    ] {
        let response = run(&sim, code_request(input), "").await;
        assert_eq!(response["status"], "completed", "{response}");
        let call = call_of(&response);
        assert!(call["id"].as_str().expect("id").starts_with("ci_"));
        assert_eq!(call["status"], "completed");
        assert!(call["outputs"].is_null(), "outputs only when included");
        let code = call["code"].as_str().expect("code");
        let container_id = call["container_id"].as_str().expect("container_id");
        assert!(container_id.starts_with("cntr_"));
        let output = response["output"].as_array().expect("output");
        assert_eq!(output.len(), 2, "the call, then the message");

        let (s, container) = get(&sim, &format!("/containers/{container_id}")).await;
        assert_eq!(s, StatusCode::OK, "{container}");
        assert_eq!(container["object"], "container");
        assert_eq!(container["status"], "running");
        assert_eq!(
            container["expires_after"],
            json!({"anchor": "last_active_at", "minutes": 20})
        );
        assert!(container["created_at"].is_i64() && container["last_active_at"].is_i64());
        assert!(container["name"].is_string());

        let cites = checked_citations(&response);
        assert_eq!(cites.len(), files, "{input}");
        for cite in &cites {
            let file_id = cite["file_id"].as_str().expect("file_id");
            assert!(file_id.starts_with("cfile_"));
            let name = cite["filename"].as_str().expect("filename");
            assert!(code.contains(&format!("/mnt/data/{name}")), "{code}");
            let (s, file) = get(&sim, &format!("/containers/{container_id}/files/{file_id}")).await;
            assert_eq!(s, StatusCode::OK, "{file}");
            assert_eq!(file["object"], "container.file");
            assert_eq!(file["container_id"], container_id);
            assert_eq!(file["path"], format!("/mnt/data/{name}"));
            assert_eq!(file["source"], "assistant");
            let (s, ctype, bytes) = get_bytes(
                &sim,
                &format!("/containers/{container_id}/files/{file_id}/content"),
            )
            .await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(ctype, "application/octet-stream");
            assert_eq!(file["bytes"].as_u64(), Some(bytes.len() as u64), "{name}");
            match name {
                "results.csv" => {
                    let csv = String::from_utf8(bytes).expect("utf-8");
                    assert!(csv.starts_with("rank,term,count,share,city\n"), "{csv}");
                    assert!(!csv.is_ascii(), "the CSV has non-ASCII text");
                }
                "chart.png" => assert_eq!(decode_png(&bytes), (160, 100)),
                "summary.json" => {
                    serde_json::from_slice::<Value>(&bytes).expect("json");
                }
                _ => assert!(String::from_utf8(bytes).is_ok()),
            }
        }
        if files == 0 {
            assert!(
                message_part(&response)["text"]
                    .as_str()
                    .expect("text")
                    .contains("saved no files")
            );
        }
    }
    let (_, list) = get(&sim, "/containers?order=asc").await;
    assert_eq!(list["data"].as_array().expect("data").len(), 4);
    let containers = sim.containers();
    assert_eq!(containers.len(), 4);
    assert_eq!(containers[1].files.len(), 5);
    assert!(containers[1].files.iter().all(|f| f.source == "assistant"));
    assert_eq!(sim.stats().container_file_downloads, 10);
    sim.shutdown().await;
}

#[tokio::test]
async fn no_files_and_the_same_input_gives_the_same_bytes() {
    let sim = start(Faults::default()).await;
    let none = run(
        &sim,
        code_request("Count to three SIM_CONTAINER_FILES=0"),
        "",
    )
    .await;
    assert!(container_citations(&none).is_empty());
    assert!(
        message_part(&none)["text"]
            .as_str()
            .expect("text")
            .contains("saved no files")
    );
    let a = run(&sim, code_request("Crème brûlée sales by city"), "").await;
    let b = run(&sim, code_request("Crème brûlée sales by city"), "").await;
    assert_ne!(call_of(&a)["container_id"], call_of(&b)["container_id"]);
    assert_eq!(call_of(&a)["code"], call_of(&b)["code"]);
    let containers = sim.containers();
    let bytes = |i: usize| -> Vec<Vec<u8>> {
        containers[i]
            .files
            .iter()
            .map(|f| f.content.clone())
            .collect()
    };
    assert_eq!(bytes(1), bytes(2));
    assert!(containers[0].files.is_empty());
    // The code the model wrote counts as output.
    let text = message_part(&a)["text"]
        .as_str()
        .expect("text")
        .chars()
        .count() as u64;
    let code = call_of(&a)["code"].as_str().expect("code").chars().count() as u64;
    assert_eq!(
        a["usage"]["output_tokens"].as_u64(),
        Some(text.div_ceil(4) + code.div_ceil(4))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn outputs_are_shown_only_when_included() {
    let sim = start(Faults::default()).await;
    // A create that is not in the background answers with its output, `include` applied.
    let mut body = code_request("Summarise the table");
    body["include"] = json!(["code_interpreter_call.outputs"]);
    body["background"] = json!(false);
    let (s, included) = post(&sim, "/responses", body.clone()).await;
    assert_eq!(
        (s, included["status"].as_str()),
        (StatusCode::OK, Some("completed"))
    );
    let outputs = &call_of(&included)["outputs"];
    assert_eq!(outputs[0]["type"], "logs", "{outputs}");
    let logs = outputs[0]["logs"].as_str().expect("logs");
    assert!(logs.contains("Saved /mnt/data/results.csv"), "{logs}");

    body["include"] = json!([]);
    let (_, excluded) = post(&sim, "/responses", body).await;
    assert!(call_of(&excluded)["outputs"].is_null());

    // Include on GET: the create's include does not stick, the GET's applies.
    let id = included["id"].as_str().expect("id");
    let (_, plain) = get(&sim, &format!("/responses/{id}")).await;
    assert!(call_of(&plain)["outputs"].is_null());
    let (_, asked) = get(
        &sim,
        &format!("/responses/{id}?include[]=code_interpreter_call.outputs"),
    )
    .await;
    assert_eq!(&call_of(&asked)["outputs"], outputs);
    let later = run(
        &sim,
        code_request("Summarise the table"),
        "?include[]=code_interpreter_call.outputs",
    )
    .await;
    assert_eq!(call_of(&later)["outputs"][0]["type"], "logs");
    assert!(
        sim.response(id)
            .is_some_and(|r| call_of(&r)["outputs"].is_array())
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_stream_shows_the_code_being_written_and_run() {
    let sim = start(Faults::default()).await;
    for include in [false, true] {
        let mut body = code_request("Tabulate the tides of Saint-Malo");
        body["stream"] = json!(true);
        if include {
            body["include"] = json!(["code_interpreter_call.outputs"]);
        }
        let (s, _, raw) = send(
            client()
                .post(format!("{}/responses", sim.base_url()))
                .json(&body),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let all = crate::helpers::sim_http::events(&String::from_utf8(raw).expect("utf-8"));
        let mine: Vec<&Value> = all
            .iter()
            .filter(|e| {
                e["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("response.code_interpreter_call"))
                    || e["item"]["type"] == "code_interpreter_call"
            })
            .collect();
        let mut kinds: Vec<&str> = mine.iter().filter_map(|e| e["type"].as_str()).collect();
        kinds.dedup();
        assert_eq!(
            kinds,
            [
                "response.output_item.added",
                "response.code_interpreter_call.in_progress",
                "response.code_interpreter_call_code.delta",
                "response.code_interpreter_call_code.done",
                "response.code_interpreter_call.interpreting",
                "response.code_interpreter_call.completed",
                "response.output_item.done",
            ]
        );
        let deltas: String = mine
            .iter()
            .filter(|e| e["type"] == "response.code_interpreter_call_code.delta")
            .map(|e| {
                assert!(e["obfuscation"].is_string());
                e["delta"].as_str().expect("delta")
            })
            .collect();
        let done = mine
            .iter()
            .find(|e| e["type"] == "response.code_interpreter_call_code.done")
            .expect("code done");
        assert_eq!(done["code"].as_str(), Some(deltas.as_str()));
        let item_id = mine[0]["item"]["id"].clone();
        assert_eq!(mine[0]["item"]["status"], "in_progress");
        assert!(
            mine[1..mine.len() - 1]
                .iter()
                .all(|e| e["item_id"] == item_id)
        );
        let last = mine.last().expect("done");
        assert_eq!(last["item"]["code"].as_str(), Some(deltas.as_str()));
        assert_eq!(last["item"]["outputs"].is_array(), include);
        let completed = all.last().expect("events");
        assert_eq!(completed["type"], "response.completed");
        let added: Vec<&Value> = all
            .iter()
            .filter(|e| e["type"] == "response.output_text.annotation.added")
            .map(|e| &e["annotation"])
            .filter(|a| a["type"] == "container_file_citation")
            .collect();
        assert_eq!(added.len(), 2);
        assert_eq!(
            added.into_iter().cloned().collect::<Vec<_>>(),
            container_citations(&completed["response"])
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_container_s_files_page() {
    let sim = start(Faults::default()).await;
    let response = run(
        &sim,
        code_request("Five files please SIM_CONTAINER_FILES=5"),
        "",
    )
    .await;
    let container = call_of(&response)["container_id"]
        .as_str()
        .expect("container")
        .to_owned();
    let path = format!("/containers/{container}/files");
    let (_, all) = get(&sim, &format!("{path}?order=asc")).await;
    let ids: Vec<String> = all["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|f| f["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 5);
    let cited: Vec<String> = container_citations(&response)
        .iter()
        .map(|c| c["file_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, cited);
    let (_, first) = get(&sim, &format!("{path}?order=asc&limit=2")).await;
    assert_eq!(first["has_more"], true);
    assert_eq!(first["first_id"], ids[0].as_str());
    assert_eq!(first["last_id"], ids[1].as_str());
    let (_, second) = get(&sim, &format!("{path}?order=asc&limit=2&after={}", ids[1])).await;
    assert_eq!(second["data"][0]["id"], ids[2].as_str());
    assert_eq!(second["has_more"], true);
    let (_, last) = get(&sim, &format!("{path}?order=asc&limit=2&after={}", ids[3])).await;
    assert_eq!(last["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(last["has_more"], false);
    let (_, newest) = get(&sim, &format!("{path}?limit=1")).await;
    assert_eq!(
        newest["data"][0]["id"],
        ids[4].as_str(),
        "newest first by default"
    );
    let (s, err) = get(&sim, &format!("{path}?limit=0")).await;
    assert_eq!(
        (s, &err["error"]["param"]),
        (StatusCode::BAD_REQUEST, &json!("limit"))
    );

    // Deleting a file takes it out of the list and its routes.
    let (s, gone) = delete(&sim, &format!("{path}/{}", ids[0])).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        gone,
        json!({"id": ids[0], "object": "container.file.deleted", "deleted": true})
    );
    let (s, body) = get(&sim, &format!("{path}/{}/content", ids[0])).await;
    assert_not_found(s, &body);
    let (_, after) = get(&sim, &path).await;
    assert_eq!(after["data"].as_array().map(Vec::len), Some(4));
    sim.shutdown().await;
}

#[tokio::test]
async fn containers_expire_after_twenty_idle_minutes() {
    let sim = start(Faults::default()).await;
    let response = run(&sim, code_request("Expiring analysis"), "").await;
    let container = call_of(&response)["container_id"]
        .as_str()
        .expect("container")
        .to_owned();
    let file = container_citations(&response)[0]["file_id"]
        .as_str()
        .expect("file")
        .to_owned();
    let content = format!("/containers/{container}/files/{file}/content");
    let minute = Duration::from_secs(60);

    // Downloading keeps it alive: 19 minutes, use, 19 more minutes: still running.
    sim.advance_storage_clock(minute * 19);
    let (_, before) = get(&sim, &format!("/containers/{container}")).await;
    assert_eq!(get_bytes(&sim, &content).await.0, StatusCode::OK);
    sim.advance_storage_clock(minute * 19);
    let (_, running) = get(&sim, &format!("/containers/{container}")).await;
    assert_eq!(running["status"], "running");
    assert!(running["last_active_at"].as_i64() >= before["last_active_at"].as_i64());
    assert_eq!(sim.containers()[0].files.len(), 2);

    // 20 idle minutes after the last use: expired, its data gone.
    sim.advance_storage_clock(minute * 20);
    let (s, expired) = get(&sim, &format!("/containers/{container}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(expired["status"], "expired");
    assert_eq!(expired["last_active_at"], running["last_active_at"]);
    for path in [
        content.clone(),
        format!("/containers/{container}/files/{file}"),
        format!("/containers/{container}/files"),
    ] {
        let (s, body) = get(&sim, &path).await;
        assert_not_found(s, &body);
    }
    let seen = &sim.containers()[0];
    assert_eq!((seen.status.as_str(), seen.files.len()), ("expired", 0));
    let (_, list) = get(&sim, "/containers").await;
    assert_eq!(list["data"][0]["status"], "expired");

    // A response naming the expired container is refused as OpenAI refuses it.
    let (s, err) = post(
        &sim,
        "/responses",
        json!({"model": "gpt-5", "input": "again", "tools": [{"type": "code_interpreter", "container": container}]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["message"], "Container is expired.");

    // expire_container does the same at once.
    let other = run(&sim, code_request("Another"), "").await;
    let other_id = call_of(&other)["container_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(sim.expire_container(&other_id));
    assert!(!sim.expire_container(&other_id));
    assert!(!sim.expire_container("cntr_nope"));
    let (s, body) = get(&sim, &format!("/containers/{other_id}/files")).await;
    assert_not_found(s, &body);
    sim.shutdown().await;
}

#[tokio::test]
async fn container_expired_leaves_a_completed_response_whose_files_are_gone() {
    for (faults, spec) in [
        (
            Faults {
                container_expired: 1.0,
                ..Faults::default()
            },
            None,
        ),
        (Faults::default(), Some("container_expired")),
    ] {
        let sim = start(faults).await;
        let mut body = code_request("Chart the budget");
        if let Some(spec) = spec {
            body["metadata"] = json!({"sim": spec});
        }
        let response = run(&sim, body, "").await;
        assert_eq!(response["status"], "completed");
        let container = call_of(&response)["container_id"]
            .as_str()
            .expect("container")
            .to_owned();
        let cites = checked_citations(&response);
        assert_eq!(cites.len(), 2);
        let (_, c) = get(&sim, &format!("/containers/{container}")).await;
        assert_eq!(c["status"], "expired");
        for cite in cites {
            let file = cite["file_id"].as_str().expect("file");
            let (s, body) = get(
                &sim,
                &format!("/containers/{container}/files/{file}/content"),
            )
            .await;
            assert_not_found(s, &body);
        }
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn container_file_drop_fails_each_first_download_once() {
    for (faults, spec) in [
        (
            Faults {
                container_file_drop: 1.0,
                ..Faults::default()
            },
            None,
        ),
        (Faults::default(), Some("container_file_drop")),
    ] {
        let sim = start(faults).await;
        let mut body = code_request("Données météo SIM_CONTAINER_FILES=3");
        if let Some(spec) = spec {
            body["metadata"] = json!({"sim": spec});
        }
        let response = run(&sim, body, "").await;
        let container = call_of(&response)["container_id"]
            .as_str()
            .expect("container")
            .to_owned();
        let cites = checked_citations(&response);
        assert_eq!(cites.len(), 3);
        for cite in &cites {
            let file = cite["file_id"].as_str().expect("file");
            let path = format!("/containers/{container}/files/{file}/content");
            let (s, _, body) = get_bytes(&sim, &path).await;
            assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
            let err = json_of(&body);
            assert_eq!(err["error"]["type"], "server_error", "{err}");
            assert!(err["error"]["param"].is_null() && err["error"]["code"].is_null());
            let (s, _, bytes) = get_bytes(&sim, &path).await;
            assert_eq!(s, StatusCode::OK);
            let (_, meta) = get(&sim, &format!("/containers/{container}/files/{file}")).await;
            assert_eq!(meta["bytes"].as_u64(), Some(bytes.len() as u64));
        }
        let stats = sim.stats();
        assert_eq!((stats.served_5xx, stats.container_file_downloads), (3, 3));
        sim.shutdown().await;
    }
}

/// Uploads a file (multipart built by hand); returns its id.
async fn upload(sim: &SimHandle, filename: &str, data: &[u8]) -> String {
    let boundary = "----respool-containers-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nuser_data\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (s, _, answer) = send(
        client()
            .post(format!("{}/files", sim.base_url()))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body),
    )
    .await;
    let file = json_of(&answer);
    assert_eq!(s, StatusCode::OK, "{file}");
    file["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn containers_are_made_listed_used_and_deleted() {
    let sim = start(Faults::default()).await;
    let upload = upload(&sim, "notes ü.txt", "Grüße aus Köln".as_bytes()).await;
    let (s, err) = post(&sim, "/containers", json!({})).await;
    assert_eq!(
        (s, &err["error"]["param"]),
        (StatusCode::BAD_REQUEST, &json!("name"))
    );
    let (s, err) = post(
        &sim,
        "/containers",
        json!({"name": "x", "memory_limit": "2g"}),
    )
    .await;
    assert_eq!(
        (s, &err["error"]["param"]),
        (StatusCode::BAD_REQUEST, &json!("memory_limit"))
    );
    let (s, err) = post(
        &sim,
        "/containers",
        json!({"name": "x", "file_ids": ["file-nope"]}),
    )
    .await;
    assert_not_found(s, &err);
    assert_eq!(err["error"]["param"], "file_ids");
    let (s, err) = post(&sim, "/containers", json!({"name": "x", "colour": "red"})).await;
    assert_eq!(
        (s, &err["error"]["param"]),
        (StatusCode::BAD_REQUEST, &json!("colour"))
    );

    let (s, made) = post(
        &sim,
        "/containers",
        json!({"name": "Données", "expires_after": {"anchor": "last_active_at", "minutes": 5}, "memory_limit": "4g", "file_ids": [upload]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{made}");
    let id = made["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("cntr_"));
    assert_eq!(made["object"], "container");
    assert_eq!(made["status"], "running");
    assert_eq!(made["name"], "Données");
    assert_eq!(made["memory_limit"], "4g");
    assert_eq!(made["expires_after"]["minutes"], 5);
    assert_eq!(made["created_at"], made["last_active_at"]);
    let (_, other) = post(&sim, "/containers", json!({"name": "other"})).await;
    let (_, named) = get(&sim, "/containers?name=Donn%C3%A9es").await;
    assert_eq!(named["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(named["data"][0]["id"], id.as_str());
    let (_, page) = get(&sim, "/containers?limit=1").await;
    assert_eq!(
        (page["data"][0]["id"].clone(), page["has_more"].clone()),
        (other["id"].clone(), json!(true))
    );

    // A response runs its code in the container it names; an unknown one is a 400.
    let named_tool = |c: &str| json!({"model": "gpt-5", "input": "Use it", "tools": [{"type": "image_generation"}, {"type": "code_interpreter", "container": c}]});
    let (s, response) = post(&sim, "/responses", named_tool(&id)).await;
    assert_eq!(s, StatusCode::OK, "{response}");
    assert_eq!(call_of(&response)["container_id"], id.as_str());
    let (_, files) = get(&sim, &format!("/containers/{id}/files?order=asc")).await;
    let files = files["data"].as_array().expect("data").clone();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0]["source"], "user");
    assert_eq!(files[0]["path"], "/mnt/data/notes ü.txt");
    let user_file = files[0]["id"].as_str().expect("id");
    let (_, _, copied) =
        get_bytes(&sim, &format!("/containers/{id}/files/{user_file}/content")).await;
    assert_eq!(copied, "Grüße aus Köln".as_bytes());
    assert!(files[1..].iter().all(|f| f["source"] == "assistant"));
    // An `auto` container with `file_ids` gets them copied in too.
    let mut with_files = code_request("With my notes");
    with_files["tools"][0]["container"]["file_ids"] = json!([upload]);
    let response = run(&sim, with_files, "").await;
    let auto_id = call_of(&response)["container_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let seen = sim.containers();
    let auto = seen
        .iter()
        .find(|c| c.id == auto_id)
        .expect("the container");
    let sources: Vec<&str> = auto.files.iter().map(|f| f.source.as_str()).collect();
    assert_eq!(sources, ["user", "assistant", "assistant"]);
    assert_eq!(
        container_citations(&response).len(),
        2,
        "only what the code saved is cited"
    );
    let (s, err) = post(&sim, "/responses", named_tool("cntr_doesnotexist")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["param"], "tools[1].container");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(
        err["error"]["message"],
        "Container with id 'cntr_doesnotexist' not found."
    );
    let (s, err) = post(
        &sim,
        "/responses",
        json!({"model": "gpt-5", "input": "x", "tools": [{"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["file-nope"]}}]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["param"], "tools[0].container.file_ids");
    let (s, err) = post(
        &sim,
        "/responses",
        json!({"model": "gpt-5", "input": "x", "tools": [{"type": "code_interpreter"}]}),
    )
    .await;
    assert_eq!(
        (s, &err["error"]["param"]),
        (StatusCode::BAD_REQUEST, &json!("tools[0].container"))
    );

    // Delete: gone from the API, kept (flagged) for the handle.
    let (s, gone) = delete(&sim, &format!("/containers/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        gone,
        json!({"id": id, "object": "container.deleted", "deleted": true})
    );
    let (s, body) = get(&sim, &format!("/containers/{id}")).await;
    assert_not_found(s, &body);
    assert_eq!(
        body["error"]["message"],
        format!("Container with id '{id}' not found.")
    );
    let (s, body) = delete(&sim, &format!("/containers/{id}")).await;
    assert_not_found(s, &body);
    let (s, body) = get(&sim, "/containers/cntr_nope/files").await;
    assert_not_found(s, &body);
    let (s, body) = get(
        &sim,
        &format!(
            "/containers/{}/files/cfile_nope/content",
            other["id"].as_str().expect("id")
        ),
    )
    .await;
    assert_not_found(s, &body);
    assert!(
        sim.containers()
            .iter()
            .any(|c| c.id == id && c.status == "deleted")
    );
    let (_, list) = get(&sim, "/containers").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));
    // Auth like every other route.
    let resp = client()
        .get(format!("{}/containers", sim.base_url()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    sim.shutdown().await;
}
