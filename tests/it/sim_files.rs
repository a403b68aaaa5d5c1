//! The simulator's `/v1/files` and `/v1/vector_stores` over real HTTP, and files in
//! `POST /v1/responses`: uploads (multipart built by hand, byte for byte), lists, content,
//! delete and expiry, the two upload faults, file inputs checked and cited, vector stores
//! with their processing delay and failing files, `vector_store_timeout`, and the
//! `file_search_call` item with and without `include`.

use std::time::Duration;

use reqwest::StatusCode;
use respool::sim::{self, Faults, SimConfig, SimHandle};
use serde_json::{Value, json};

use crate::helpers::client;

async fn start(processing: Duration) -> SimHandle {
    sim::spawn(SimConfig {
        queue_time: Duration::from_millis(50),
        run_time: Duration::from_millis(200),
        file_processing_time: processing,
        seed: Some(11),
        ..SimConfig::default()
    })
    .await
    .expect("sim starts")
}

/// One part of a multipart form.
enum Part<'a> {
    File {
        name: &'a str,
        filename: Option<&'a str>,
        data: &'a [u8],
    },
    Text(&'a str, &'a str),
}

/// A `multipart/form-data` body and its content type (reqwest here has no multipart).
fn form(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "----respool-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            Part::File {
                name,
                filename,
                data,
            } => {
                let fname = filename.map_or(String::new(), |f| format!("; filename=\"{f}\""));
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"{fname}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                );
                body.extend_from_slice(data);
            }
            Part::Text(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}")
                        .as_bytes(),
                );
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let resp = req.bearer_auth("sk-test").send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

async fn post_form(sim: &SimHandle, parts: &[Part<'_>]) -> (StatusCode, Value) {
    let (content_type, body) = form(parts);
    let (s, _, b) = send(
        client()
            .post(format!("{}/files", sim.base_url()))
            .header("content-type", content_type)
            .body(body),
    )
    .await;
    (s, b)
}

/// Uploads `data` as `filename`; returns the file object.
async fn upload(sim: &SimHandle, filename: &str, data: &[u8], purpose: &str) -> Value {
    let (status, body) = post_form(
        sim,
        &[
            Part::Text("purpose", purpose),
            Part::File {
                name: "file",
                filename: Some(filename),
                data,
            },
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn get(sim: &SimHandle, path: &str) -> (StatusCode, Value) {
    let (s, _, b) = send(client().get(format!("{}{path}", sim.base_url()))).await;
    (s, b)
}

async fn post(sim: &SimHandle, path: &str, body: Value) -> (StatusCode, Value) {
    let (s, _, b) = send(
        client()
            .post(format!("{}{path}", sim.base_url()))
            .json(&body),
    )
    .await;
    (s, b)
}

async fn delete(sim: &SimHandle, path: &str) -> (StatusCode, Value) {
    let (s, _, b) = send(client().delete(format!("{}{path}", sim.base_url()))).await;
    (s, b)
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, param: &str) {
    assert_eq!(status, want, "{body}");
    let err = &body["error"];
    assert_eq!(err["type"], "invalid_request_error", "{body}");
    assert_eq!(err["param"], param, "{body}");
    assert!(
        err.get("code").is_some() && err["message"].is_string(),
        "{body}"
    );
}

/// Polls `path` until `done` holds; panics after 10 s.
async fn poll(sim: &SimHandle, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = get(sim, path).await;
        if done(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids_of(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(id)
        .collect()
}

#[tokio::test]
async fn uploads_round_trip_byte_for_byte_and_delete() {
    let sim = start(Duration::from_millis(50)).await;
    let ascii = upload(&sim, "notes.txt", b"plain notes", "user_data").await;
    let fid = id(&ascii);
    assert!(fid.starts_with("file-") && fid[5..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(ascii["object"], "file");
    assert_eq!(ascii["bytes"], 11);
    assert_eq!(ascii["filename"], "notes.txt");
    assert_eq!(ascii["purpose"], "user_data");
    assert_eq!(ascii["status"], "processed");
    assert!(ascii["status_details"].is_null() && ascii["expires_at"].is_null());
    assert!(ascii["created_at"].is_i64());

    let unicode = upload(&sim, "résumé 東京.md", "ünïcode ✓".as_bytes(), "assistants").await;
    assert_eq!(unicode["filename"], "résumé 東京.md");
    // Every byte value, over axum's default 2 MiB body limit.
    let binary: Vec<u8> = (0..3 * 1024 * 1024)
        .map(|i: u32| (i * 7 % 256) as u8)
        .collect();
    let bin = upload(&sim, "blob.dat", &binary, "vision").await;
    assert_eq!(bin["bytes"].as_u64(), Some(binary.len() as u64));

    let (s, got) = get(&sim, &format!("/files/{fid}")).await;
    assert_eq!((s, &got), (StatusCode::OK, &ascii));
    for (file, want) in [
        (&bin, binary.as_slice()),
        (&unicode, "ünïcode ✓".as_bytes()),
    ] {
        let resp = client()
            .get(format!("{}/files/{}/content", sim.base_url(), id(file)))
            .bearer_auth("k")
            .send()
            .await
            .expect("content");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.expect("bytes").as_ref(), want);
    }

    let (s, gone) = delete(&sim, &format!("/files/{fid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(gone, json!({"id": fid, "object": "file", "deleted": true}));
    let (s, body) = get(&sim, &format!("/files/{fid}")).await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "id");
    assert_eq!(
        body["error"]["message"],
        format!("No such File object: {fid}")
    );
    let (s, body) = get(&sim, &format!("/files/{fid}/content")).await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "id");
    let (s, body) = delete(&sim, &format!("/files/{fid}")).await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "id");
    let (_, list) = get(&sim, "/files").await;
    assert_eq!(ids_of(&list), [id(&bin), id(&unicode)]);

    let files = sim.files();
    assert_eq!(files.len(), 3);
    assert!(files[0].deleted && !files[1].deleted);
    assert_eq!(files[2].content, binary);
    assert!(sim.delete_file(&id(&unicode)));
    assert!(!sim.delete_file(&id(&unicode)));
    let stats = sim.stats();
    assert_eq!(
        (stats.files_uploaded, stats.files_deleted, stats.file_lists),
        (3, 1, 1)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_64_mib_upload_is_accepted() {
    let sim = start(Duration::from_millis(50)).await;
    let big: Vec<u8> = (0..64 * 1024 * 1024u32).map(|i| (i >> 3) as u8).collect();
    let file = upload(&sim, "big.bin", &big, "batch").await;
    assert_eq!(file["bytes"].as_u64(), Some(big.len() as u64));
    // A batch file expires after 30 days unless told otherwise.
    let created = file["created_at"].as_i64().expect("created_at");
    assert_eq!(file["expires_at"].as_i64(), Some(created + 30 * 86_400));
    assert!(sim.files()[0].content == big);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_uploads_name_the_param() {
    let sim = start(Duration::from_millis(50)).await;
    let file = Part::File {
        name: "file",
        filename: Some("a.txt"),
        data: b"x",
    };
    let cases: Vec<(Vec<Part<'_>>, &str)> = vec![
        (vec![Part::Text("purpose", "user_data")], "file"),
        (
            vec![
                Part::Text("purpose", "user_data"),
                Part::File {
                    name: "file",
                    filename: None,
                    data: b"x",
                },
            ],
            "file",
        ),
        (
            vec![
                Part::Text("purpose", "user_data"),
                Part::File {
                    name: "file",
                    filename: Some("empty.txt"),
                    data: b"",
                },
            ],
            "file",
        ),
        (
            vec![Part::File {
                name: "file",
                filename: Some("a.txt"),
                data: b"x",
            }],
            "purpose",
        ),
        (vec![Part::Text("purpose", "training"), file], "purpose"),
    ];
    for (parts, param) in cases {
        let (s, body) = post_form(&sim, &parts).await;
        assert_error(s, &body, StatusCode::BAD_REQUEST, param);
    }
    let expiring = |anchor: &'static str, seconds: &'static str| {
        vec![
            Part::Text("purpose", "user_data"),
            Part::Text("expires_after[anchor]", anchor),
            Part::Text("expires_after[seconds]", seconds),
            Part::File {
                name: "file",
                filename: Some("a.txt"),
                data: b"x",
            },
        ]
    };
    for (anchor, seconds, param) in [
        ("created_at", "3599", "expires_after.seconds"),
        ("created_at", "2592001", "expires_after.seconds"),
        ("created_at", "soon", "expires_after.seconds"),
        ("last_active_at", "3600", "expires_after.anchor"),
    ] {
        let (s, body) = post_form(&sim, &expiring(anchor, seconds)).await;
        assert_error(s, &body, StatusCode::BAD_REQUEST, param);
    }
    // A JSON body is not a form.
    let (s, _, body) = send(
        client()
            .post(format!("{}/files", sim.base_url()))
            .json(&json!({"purpose": "user_data"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(sim.files().is_empty());
    assert_eq!(sim.stats().files_uploaded, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn file_lists_page_order_and_filter() {
    let sim = start(Duration::from_millis(50)).await;
    let mut ids = Vec::new();
    for (i, purpose) in ["user_data", "batch", "user_data", "evals", "user_data"]
        .iter()
        .enumerate()
    {
        ids.push(id(
            &upload(&sim, &format!("f{i}.txt"), b"data", purpose).await
        ));
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let (_, all) = get(&sim, "/files").await;
    assert_eq!(ids_of(&all), newest_first);
    assert_eq!(all["object"], "list");
    assert_eq!(all["has_more"], false);
    assert_eq!(all["first_id"], json!(newest_first[0]));
    assert_eq!(all["last_id"], json!(newest_first[4]));

    let (_, page1) = get(&sim, "/files?limit=2").await;
    assert_eq!(ids_of(&page1), newest_first[..2]);
    assert_eq!(page1["has_more"], true);
    let after = page1["last_id"].as_str().expect("last_id");
    let (_, page2) = get(&sim, &format!("/files?limit=2&after={after}")).await;
    assert_eq!(ids_of(&page2), newest_first[2..4]);
    let (_, asc) = get(&sim, "/files?order=asc&limit=3").await;
    assert_eq!(ids_of(&asc), ids[..3]);
    let (_, user) = get(&sim, "/files?purpose=user_data&order=asc").await;
    assert_eq!(
        ids_of(&user),
        [ids[0].clone(), ids[2].clone(), ids[4].clone()]
    );
    for bad in ["limit=0", "limit=10001", "order=sideways"] {
        let (s, body) = get(&sim, &format!("/files?{bad}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    assert_eq!(sim.stats().file_lists, 5, "refused lists are not counted");
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_files_behave_as_deleted() {
    let sim = start(Duration::from_millis(50)).await;
    let (s, file) = post_form(
        &sim,
        &[
            Part::Text("purpose", "user_data"),
            Part::Text("expires_after[anchor]", "created_at"),
            Part::Text("expires_after[seconds]", "3600"),
            Part::File {
                name: "file",
                filename: Some("short.txt"),
                data: b"short-lived",
            },
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{file}");
    let fid = id(&file);
    let created = file["created_at"].as_i64().expect("created_at");
    assert_eq!(file["expires_at"].as_i64(), Some(created + 3600));
    let (_, store) = post(&sim, "/vector_stores", json!({"file_ids": [fid]})).await;
    sim.advance_storage_clock(Duration::from_secs(3599));
    assert_eq!(get(&sim, &format!("/files/{fid}")).await.0, StatusCode::OK);
    sim.advance_storage_clock(Duration::from_secs(1));
    let (s, body) = get(&sim, &format!("/files/{fid}")).await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "id");
    let (_, list) = get(&sim, "/files").await;
    assert!(ids_of(&list).is_empty());
    let (_, store) = get(&sim, &format!("/vector_stores/{}", id(&store))).await;
    assert_eq!(store["file_counts"]["total"], 0, "{store}");
    assert!(sim.files()[0].deleted);
    let (s, body) = create_response(&sim, file_input(&fid)).await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, "input");
    sim.shutdown().await;
}

fn assert_no_answer(result: Result<reqwest::Response, reqwest::Error>) {
    match result {
        Ok(r) => panic!("expected no answer, got {}", r.status()),
        Err(e) => assert!(
            e.is_request() && !e.is_timeout() && !e.is_connect(),
            "{e:?}"
        ),
    }
}

#[tokio::test]
async fn upload_faults_drop_the_connection_before_or_after_storing() {
    let sim = start(Duration::from_millis(50)).await;
    let (content_type, body) = form(&[
        Part::Text("purpose", "user_data"),
        Part::File {
            name: "file",
            filename: Some("lost.txt"),
            data: b"lost answer",
        },
    ]);
    let try_upload = || {
        client()
            .post(format!("{}/files", sim.base_url()))
            .bearer_auth("k")
            .header("content-type", content_type.clone())
            .body(body.clone())
            .send()
    };
    sim.set_faults(Faults {
        upload_drop_before: 1.0,
        ..Faults::default()
    });
    assert_no_answer(try_upload().await);
    assert!(sim.files().is_empty());
    sim.set_faults(Faults {
        upload_then_drop: 1.0,
        ..Faults::default()
    });
    assert_no_answer(try_upload().await);
    let files = sim.files();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].content, b"lost answer");
    // The file exists: a client that lost the answer can find it in the list.
    sim.set_faults(Faults::default());
    let (_, list) = get(&sim, "/files").await;
    assert_eq!(ids_of(&list), [files[0].id.clone()]);
    let stats = sim.stats();
    assert_eq!((stats.dropped_connections, stats.files_uploaded), (2, 1));
    let bad = serde_json::from_value::<Faults>(json!({"upload_then_drop": 1.5}))
        .expect("parses")
        .validate();
    assert!(bad.is_err());
    sim.shutdown().await;
}

async fn create_response(sim: &SimHandle, body: Value) -> (StatusCode, Value) {
    post(sim, "/responses", body).await
}

fn file_input(file_id: &str) -> Value {
    json!({"model": "gpt-5", "background": true, "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "Summarise the attached file."},
        {"type": "input_file", "file_id": file_id},
    ]}]})
}

async fn wait_terminal(sim: &SimHandle, response_id: &str, query: &str) -> Value {
    poll(sim, &format!("/responses/{response_id}{query}"), |r| {
        matches!(
            r["status"].as_str(),
            Some("completed" | "failed" | "incomplete")
        )
    })
    .await
}

fn message_part(response: &Value) -> Value {
    let output = response["output"].as_array().expect("output");
    let message = output.last().expect("a message");
    assert_eq!(message["type"], "message", "{response}");
    message["content"][0].clone()
}

fn file_citations(part: &Value) -> Vec<Value> {
    part["annotations"]
        .as_array()
        .expect("annotations")
        .iter()
        .filter(|a| a["type"] == "file_citation")
        .cloned()
        .collect()
}

/// Each citation's `index` falls just after its file's name in the text.
fn assert_citations_point_at_names(part: &Value) {
    let chars: Vec<char> = part["text"].as_str().expect("text").chars().collect();
    for a in file_citations(part) {
        let index = a["index"].as_u64().expect("index") as usize;
        let name: Vec<char> = a["filename"].as_str().expect("filename").chars().collect();
        assert_eq!(chars[index - name.len()..index], name[..], "{a}");
    }
}

#[tokio::test]
async fn responses_check_their_file_inputs() {
    let sim = start(Duration::from_millis(50)).await;
    let (s, body) = create_response(&sim, file_input("file-doesnotexist")).await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, "input");
    assert_eq!(
        body["error"]["message"],
        "No file found with id 'file-doesnotexist'."
    );
    let fid = id(&upload(&sim, "gone.txt", b"soon deleted", "user_data").await);
    assert!(sim.delete_file(&fid));
    let (s, body) = create_response(&sim, file_input(&fid)).await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, "input");
    let with_part = |part: Value| {
        json!({"model": "gpt-5", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "Look."}, part]}]})
    };
    for (part, param) in [
        (
            json!({"type": "input_file", "file_data": "data:application/pdf;base64,aGVsbG8="}),
            "input[0].content[1].filename",
        ),
        (
            json!({"type": "input_file", "file_data": "not a data url", "filename": "a.pdf"}),
            "input[0].content[1].file_data",
        ),
        (
            json!({"type": "input_image", "image_url": "http://example.com/a.png", "detail": "auto"}),
            "input[0].content[1].image_url",
        ),
    ] {
        let (s, body) = create_response(&sim, with_part(part)).await;
        assert_error(s, &body, StatusCode::BAD_REQUEST, param);
    }
    assert_eq!(sim.stats().creates, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn file_inputs_are_mentioned_and_cited_and_the_request_is_recorded() {
    let sim = start(Duration::from_millis(50)).await;
    let doc = upload(
        &sim,
        "quarterly report.pdf",
        b"%PDF-1.4 numbers",
        "user_data",
    )
    .await;
    let img = upload(&sim, "chart.png", b"\x89PNG", "vision").await;
    let body = json!({"model": "gpt-5", "background": true, "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "What do these files say about revenue?"},
        {"type": "input_file", "file_id": id(&doc)},
        {"type": "input_image", "file_id": id(&img), "detail": "auto"},
        {"type": "input_file", "file_data": "data:text/plain;base64,aGVsbG8=", "filename": "inline-notes.txt"},
        {"type": "input_image", "image_url": "data:image/png;base64,aGVsbG8=", "detail": "low"},
    ]}], "metadata": {"respool_job_id": "job_files"}});
    let (s, created) = create_response(&sim, body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{created}");
    let rid = id(&created);
    let done = wait_terminal(&sim, &rid, "").await;
    assert_eq!(done["status"], "completed", "{done}");
    let part = message_part(&done);
    let text = part["text"].as_str().expect("text");
    for name in ["quarterly report.pdf", "chart.png", "inline-notes.txt"] {
        assert!(text.contains(name), "{name} in {text}");
    }
    let cited: Vec<(String, String)> = file_citations(&part)
        .iter()
        .map(|a| {
            (
                a["file_id"].as_str().unwrap().to_owned(),
                a["filename"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        cited,
        [
            (id(&doc), "quarterly report.pdf".to_owned()),
            (id(&img), "chart.png".to_owned())
        ]
    );
    assert_citations_point_at_names(&part);
    // The web citations are still there and still right.
    assert!(
        part["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["type"] == "url_citation")
    );

    assert_eq!(sim.request(&rid), Some(body));
    assert_eq!(
        delete(&sim, &format!("/responses/{rid}")).await.0,
        StatusCode::OK
    );
    assert!(sim.request(&rid).is_some(), "kept after the delete");
    assert_eq!(sim.request("resp_unknown"), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn vector_store_lifecycle_with_processing_delay() {
    let sim = start(Duration::from_millis(400)).await;
    let a = id(&upload(&sim, "alpha.md", b"alpha facts about tides", "assistants").await);
    let b = id(&upload(&sim, "beta.md", b"beta facts", "assistants").await);
    let (s, store) = post(
        &sim,
        "/vector_stores",
        json!({"name": "docs", "file_ids": [a], "metadata": {"team": "x"},
               "expires_after": {"anchor": "last_active_at", "days": 7},
               "chunking_strategy": {"type": "auto"}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{store}");
    let vs = id(&store);
    assert!(vs.starts_with("vs_"));
    assert_eq!(store["object"], "vector_store");
    assert_eq!(store["status"], "in_progress");
    assert_eq!(
        store["file_counts"],
        json!({"in_progress": 1, "completed": 0, "failed": 0, "cancelled": 0, "total": 1})
    );
    assert_eq!(
        store["expires_after"],
        json!({"anchor": "last_active_at", "days": 7})
    );
    assert_eq!(
        store["expires_at"].as_i64(),
        Some(store["last_active_at"].as_i64().unwrap() + 7 * 86_400)
    );

    let (s, attached) = post(
        &sim,
        &format!("/vector_stores/{vs}/files"),
        json!({"file_id": b, "attributes": {"lang": "en", "year": 2024, "draft": false}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{attached}");
    assert_eq!(
        attached["id"],
        json!(b),
        "the vector-store file id is the file id"
    );
    assert_eq!(attached["object"], "vector_store.file");
    assert_eq!(attached["vector_store_id"], json!(vs));
    assert_eq!(attached["status"], "in_progress");
    assert!(attached["last_error"].is_null());
    assert_eq!(attached["attributes"]["year"], 2024);
    assert_eq!(attached["chunking_strategy"]["type"], "static");
    let (s, headers, _) =
        send(client().get(format!("{}/vector_stores/{vs}/files/{b}", sim.base_url()))).await;
    assert_eq!(s, StatusCode::OK);
    let hint: u64 = headers["openai-poll-after-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((10..=1000).contains(&hint), "{hint}");

    let done = poll(&sim, &format!("/vector_stores/{vs}"), |v| {
        v["status"] == "completed"
    })
    .await;
    assert_eq!(done["file_counts"]["completed"], 2);
    assert_eq!(done["usage_bytes"], 33);
    let (_, file) = get(&sim, &format!("/vector_stores/{vs}/files/{b}")).await;
    assert_eq!(file["status"], "completed");
    let (_, listed) = get(
        &sim,
        &format!("/vector_stores/{vs}/files?filter=completed&order=asc"),
    )
    .await;
    assert_eq!(ids_of(&listed), [a.clone(), b.clone()]);
    let (_, none) = get(&sim, &format!("/vector_stores/{vs}/files?filter=failed")).await;
    assert!(ids_of(&none).is_empty());

    let (_, renamed) = post(
        &sim,
        &format!("/vector_stores/{vs}"),
        json!({"name": "renamed", "metadata": {"v": "2"}}),
    )
    .await;
    assert_eq!(
        (renamed["name"].clone(), renamed["metadata"].clone()),
        (json!("renamed"), json!({"v": "2"}))
    );
    let (_, stores) = get(&sim, "/vector_stores").await;
    assert_eq!(ids_of(&stores), std::slice::from_ref(&vs));

    // Deleting the file removes it from the store; detaching keeps the file.
    assert_eq!(delete(&sim, &format!("/files/{a}")).await.0, StatusCode::OK);
    let (s, body) = get(&sim, &format!("/vector_stores/{vs}/files/{a}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (_, detached) = delete(&sim, &format!("/vector_stores/{vs}/files/{b}")).await;
    assert_eq!(
        detached,
        json!({"id": b, "object": "vector_store.file.deleted", "deleted": true})
    );
    assert_eq!(get(&sim, &format!("/files/{b}")).await.0, StatusCode::OK);
    let (_, empty) = get(&sim, &format!("/vector_stores/{vs}")).await;
    assert_eq!(empty["file_counts"]["total"], 0);

    let (_, gone) = delete(&sim, &format!("/vector_stores/{vs}")).await;
    assert_eq!(
        gone,
        json!({"id": vs, "object": "vector_store.deleted", "deleted": true})
    );
    assert_eq!(
        get(&sim, &format!("/vector_stores/{vs}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, body) = post(&sim, "/vector_stores", json!({"file_ids": ["file-nope"]})).await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "file_ids");
    let (s, body) = post(
        &sim,
        "/vector_stores",
        json!({"expires_after": {"anchor": "last_active_at", "days": 0}}),
    )
    .await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, "expires_after.days");
    sim.shutdown().await;
}

#[tokio::test]
async fn failing_files_fail_with_their_code_and_counts_agree() {
    let sim = start(Duration::from_millis(150)).await;
    let good = id(&upload(&sim, "good.txt", b"all good", "assistants").await);
    let unsupported = id(&upload(&sim, "model.bin", b"\x00\x01", "assistants").await);
    let invalid = id(&upload(&sim, "broken.txt", b"xx SIM_INVALID_FILE xx", "assistants").await);
    let (_, store) = post(&sim, "/vector_stores", json!({"name": "mixed"})).await;
    let vs = id(&store);
    let (s, batch) = post(
        &sim,
        &format!("/vector_stores/{vs}/file_batches"),
        json!({"file_ids": [good, unsupported, invalid]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{batch}");
    assert_eq!(batch["object"], "vector_store.file_batch");
    assert_eq!(batch["status"], "in_progress");
    assert_eq!(batch["file_counts"]["in_progress"], 3);
    let batch_path = format!("/vector_stores/{vs}/file_batches/{}", id(&batch));
    let done = poll(&sim, &batch_path, |b| b["status"] == "completed").await;
    let counts = json!({"in_progress": 0, "completed": 1, "failed": 2, "cancelled": 0, "total": 3});
    assert_eq!(done["file_counts"], counts);
    let (_, store) = get(&sim, &format!("/vector_stores/{vs}")).await;
    assert_eq!(store["status"], "completed");
    assert_eq!(store["file_counts"], counts);
    for (fid, code) in [
        (&unsupported, "unsupported_file"),
        (&invalid, "invalid_file"),
    ] {
        let (_, f) = get(&sim, &format!("/vector_stores/{vs}/files/{fid}")).await;
        assert_eq!(f["status"], "failed");
        assert_eq!(f["last_error"]["code"], code, "{f}");
        assert!(f["last_error"]["message"].is_string());
        assert_eq!(f["usage_bytes"], 0);
    }
    let (_, failed) = get(&sim, &format!("/vector_stores/{vs}/files?filter=failed")).await;
    assert_eq!(ids_of(&failed).len(), 2);
    let (_, in_batch) = get(&sim, &format!("{batch_path}/files?filter=completed")).await;
    assert_eq!(ids_of(&in_batch), [good]);
    sim.shutdown().await;
}

#[tokio::test]
async fn vector_stores_expire_and_lose_their_files() {
    let sim = start(Duration::from_millis(20)).await;
    let fid = id(&upload(&sim, "kept.txt", b"kept", "assistants").await);
    let (_, store) = post(
        &sim,
        "/vector_stores",
        json!({"file_ids": [fid], "expires_after": {"anchor": "last_active_at", "days": 1}}),
    )
    .await;
    let vs = id(&store);
    poll(&sim, &format!("/vector_stores/{vs}"), |v| {
        v["status"] == "completed"
    })
    .await;
    sim.advance_storage_clock(Duration::from_secs(86_400));
    let (_, expired) = get(&sim, &format!("/vector_stores/{vs}")).await;
    assert_eq!(expired["status"], "expired");
    assert_eq!(expired["file_counts"]["total"], 0);
    assert_eq!(get(&sim, &format!("/files/{fid}")).await.0, StatusCode::OK);
    let (s, body) = post(
        &sim,
        &format!("/vector_stores/{vs}/files"),
        json!({"file_id": fid}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = create_response(&sim, search_body(&vs, None)).await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, "tools");
    sim.shutdown().await;
}

fn search_body(vs: &str, include: Option<&str>) -> Value {
    let mut body = json!({"model": "gpt-5", "input": "What do the tide tables say about spring tides?",
        "tools": [{"type": "file_search", "vector_store_ids": [vs]}]});
    if let Some(i) = include {
        body["include"] = json!([i]);
    }
    body
}

#[tokio::test]
async fn searching_a_store_still_ingesting_fails_with_vector_store_timeout() {
    let sim = start(Duration::from_secs(30)).await;
    let fid = id(&upload(&sim, "tides.txt", b"spring tides", "assistants").await);
    let (_, store) = post(&sim, "/vector_stores", json!({"file_ids": [fid]})).await;
    let mut body = search_body(&id(&store), None);
    body["background"] = json!(true);
    let (s, created) = create_response(&sim, body).await;
    assert_eq!(s, StatusCode::OK, "{created}");
    let done = wait_terminal(&sim, &id(&created), "").await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "vector_store_timeout");
    let (s, body) = create_response(&sim, search_body("vs_unknown", None)).await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, "tools");
    sim.shutdown().await;
}

#[tokio::test]
async fn file_search_output_with_and_without_results() {
    let sim = start(Duration::from_millis(20)).await;
    let tides = id(&upload(
        &sim,
        "tide tables.txt",
        b"Spring tides follow the new and full moon.",
        "assistants",
    )
    .await);
    let other = id(&upload(&sim, "menu.txt", b"Soup of the day.", "assistants").await);
    let (_, store) = post(&sim, "/vector_stores", json!({"file_ids": [tides, other]})).await;
    let vs = id(&store);
    poll(&sim, &format!("/vector_stores/{vs}"), |v| {
        v["status"] == "completed"
    })
    .await;

    // Synchronous creates: the answer is the finished response, `include` applied.
    let (s, plain) = create_response(&sim, search_body(&vs, None)).await;
    assert_eq!(s, StatusCode::OK, "{plain}");
    let call = &plain["output"][0];
    assert_eq!(call["type"], "file_search_call", "{plain}");
    assert!(call["id"].as_str().unwrap().starts_with("fs_"));
    assert_eq!(call["status"], "completed");
    assert_eq!(
        call["queries"],
        json!(["What do the tide tables say about spring"])
    );
    assert!(call["results"].is_null());
    let part = message_part(&plain);
    let cited: Vec<Value> = file_citations(&part)
        .iter()
        .map(|a| a["file_id"].clone())
        .collect();
    assert_eq!(cited, [json!(tides), json!(other)], "best match first");
    assert_citations_point_at_names(&part);

    let (_, full) = create_response(&sim, search_body(&vs, Some("file_search_call.results"))).await;
    let results = full["output"][0]["results"]
        .as_array()
        .expect("results")
        .clone();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["file_id"], json!(tides));
    assert_eq!(results[0]["filename"], "tide tables.txt");
    assert!(
        results[0]["text"]
            .as_str()
            .unwrap()
            .contains("Spring tides")
    );
    assert!(results[0]["score"].as_f64().unwrap() > results[1]["score"].as_f64().unwrap());
    assert!(results[0].get("attributes").is_some());

    // A background response: results only when the retrieve asks for them.
    let mut body = search_body(&vs, None);
    body["background"] = json!(true);
    let (_, created) = create_response(&sim, body).await;
    let rid = id(&created);
    let hidden = wait_terminal(&sim, &rid, "").await;
    assert!(hidden["output"][0]["results"].is_null());
    let (_, shown) = get(
        &sim,
        &format!("/responses/{rid}?include[]=file_search_call.results"),
    )
    .await;
    assert_eq!(
        shown["output"][0]["results"].as_array().map(Vec::len),
        Some(2)
    );
    sim.shutdown().await;
}
