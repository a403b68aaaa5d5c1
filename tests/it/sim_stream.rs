//! Server-sent events from the simulator: a background stream from `response.created` to
//! `response.completed` with gap-free sequence numbers, resuming with `starting_after`, and
//! the 400s for streams that cannot be resumed.

use std::time::Duration;

use reqwest::StatusCode;
use respool::sim::{self, Faults, SimConfig, SimHandle};
use serde_json::{Value, json};

use crate::helpers::{client, wait_for};

async fn start(config: SimConfig) -> SimHandle {
    sim::spawn(SimConfig {
        queue_time: Duration::from_millis(100),
        run_time: Duration::from_millis(500),
        seed: Some(3),
        ..config
    })
    .await
    .expect("sim")
}

/// Parses an SSE body into `(event name, data)` pairs, checking the framing.
fn parse_sse(text: &str) -> Vec<(String, Value)> {
    assert!(!text.contains("[DONE]"), "Responses streams have no [DONE]");
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut name = None;
            let mut data = None;
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(v).expect("data is json"));
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            let (name, data) = (name.expect("event line"), data.expect("data line"));
            assert_eq!(data["type"], name.as_str(), "event name matches type");
            (name, data)
        })
        .collect()
}

async fn stream_create(sim: &SimHandle, body: Value) -> (StatusCode, String, String) {
    let resp = client()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("k")
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ctype, resp.text().await.unwrap_or_default())
}

async fn resume(sim: &SimHandle, id: &str, query: &str) -> (StatusCode, String) {
    let resp = client()
        .get(format!(
            "{}/responses/{id}?stream=true{query}",
            sim.base_url()
        ))
        .bearer_auth("k")
        .send()
        .await
        .expect("send");
    (resp.status(), resp.text().await.unwrap_or_default())
}

fn seqs(events: &[(String, Value)]) -> Vec<u64> {
    events
        .iter()
        .map(|(_, d)| d["sequence_number"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test]
async fn background_stream_runs_to_completed_and_resumes() {
    let sim = start(SimConfig::default()).await;
    let body = json!({"model": "o3", "input": "Stream a report", "background": true, "stream": true,
                      "reasoning": {"summary": "auto"}});
    let (status, ctype, text) = stream_create(&sim, body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..3],
        [
            "response.created",
            "response.queued",
            "response.in_progress"
        ]
    );
    assert_eq!(events[0].1["response"]["status"], "queued");
    assert_eq!(names.last(), Some(&"response.completed"));
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("response.completed"))
            .count(),
        1
    );
    assert_eq!(seqs(&events), (0..events.len() as u64).collect::<Vec<_>>());
    for expected in [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.annotation.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.reasoning_summary_text.delta",
    ] {
        assert!(names.contains(&expected), "missing {expected}");
    }
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().expect("delta"))
        .collect();
    let done = events
        .iter()
        .find(|(n, _)| n == "response.output_text.done")
        .expect("done");
    assert_eq!(deltas, done.1["text"].as_str().expect("text"));
    assert!(
        events
            .iter()
            .filter(|(n, _)| n.ends_with(".delta"))
            .all(|(_, d)| d["obfuscation"].is_string())
    );
    let completed = &events.last().expect("last").1["response"];
    assert_eq!(completed["status"], "completed");
    assert!(completed["usage"]["total_tokens"].as_u64().is_some());

    // Resume after N: only later events, no response.created.
    let id = events[0].1["response"]["id"].as_str().expect("id");
    let n = 4;
    let (status, text) = resume(&sim, id, &format!("&starting_after={n}")).await;
    assert_eq!(status, StatusCode::OK);
    let later = parse_sse(&text);
    assert_eq!(
        seqs(&later),
        ((n + 1)..events.len() as u64).collect::<Vec<_>>()
    );
    assert!(later.iter().all(|(name, _)| name != "response.created"));
    // No starting_after: full replay.
    let (_, text) = resume(&sim, id, "").await;
    assert_eq!(parse_sse(&text).len(), events.len());
    // N at or past the last event: an empty stream.
    let (status, text) = resume(&sim, id, &format!("&starting_after={}", events.len() + 5)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(parse_sse(&text).is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn resume_while_running_follows_the_live_log() {
    let sim = start(SimConfig {
        run_time: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await;
    // Start a stream and cut it after the first bytes.
    let resp = client()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("k")
        .json(&json!({"model": "gpt-5", "input": "live", "background": true, "stream": true}))
        .send()
        .await
        .expect("send");
    let mut resp = resp;
    let first = resp.chunk().await.expect("chunk").expect("some bytes");
    drop(resp);
    let first = parse_sse(std::str::from_utf8(&first).expect("utf8"));
    let id = first[0].1["response"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let last_seen = seqs(&first).last().copied().expect("seq");
    let (status, text) = resume(&sim, &id, &format!("&starting_after={last_seen}")).await;
    assert_eq!(status, StatusCode::OK);
    let rest = parse_sse(&text);
    assert_eq!(
        rest.first().map(|(_, d)| d["sequence_number"].as_u64()),
        Some(Some(last_seen + 1))
    );
    assert_eq!(
        rest.last().map(|(n, _)| n.as_str()),
        Some("response.completed")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn resume_errors() {
    let sim = start(SimConfig {
        stream_resume_window: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let base = sim.base_url();
    let create = |body: Value| {
        let url = format!("{base}/responses");
        async move {
            let r: Value = client()
                .post(url)
                .bearer_auth("k")
                .json(&body)
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            r["id"].as_str().expect("id").to_owned()
        }
    };
    let sync_id = create(json!({"model": "gpt-5", "input": "x"})).await;
    let (status, text) = resume(&sim, &sync_id, "&starting_after=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        err["error"]["message"],
        "This response cannot be streamed because it was not created with background=true."
    );
    assert_eq!(err["error"]["param"], "stream");

    let polled_id = create(json!({"model": "gpt-5", "input": "x", "background": true})).await;
    assert_eq!(
        resume(&sim, &polled_id, "").await.0,
        StatusCode::BAD_REQUEST
    );

    let (_, _, text) = stream_create(
        &sim,
        json!({"model": "gpt-5", "input": "x", "background": true, "stream": true}),
    )
    .await;
    let id = parse_sse(&text)[0].1["response"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let err = loop {
        let (status, text) = resume(&sim, &id, "&starting_after=1").await;
        if status == StatusCode::BAD_REQUEST {
            break serde_json::from_str::<Value>(&text).expect("json");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "resume never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("msg")
            .starts_with("This response can no longer be streamed because it is more than")
    );
    assert_eq!(
        resume(&sim, "resp_unknown", "").await.0,
        StatusCode::NOT_FOUND
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn obfuscation_can_be_disabled_and_sync_streams_work() {
    let sim = start(SimConfig::default()).await;
    let (_, _, text) = stream_create(
        &sim,
        json!({"model": "gpt-5", "input": "x", "stream": true,
        "stream_options": {"include_obfuscation": false}}),
    )
    .await;
    let events = parse_sse(&text);
    assert_eq!(events[0].1["response"]["status"], "in_progress");
    assert_eq!(events[0].1["response"]["background"], false);
    assert!(events.iter().all(|(_, d)| d.get("obfuscation").is_none()));
    assert_eq!(
        events.last().map(|(n, _)| n.as_str()),
        Some("response.completed")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn stream_drop_cuts_the_stream_but_work_goes_on() {
    let sim = start(SimConfig {
        faults: Faults {
            stream_drop: 1.0,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let resp = client()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("k")
        .json(&json!({"model": "gpt-5", "input": "x", "background": true, "stream": true}))
        .send()
        .await
        .expect("send");
    let mut resp = resp;
    let mut got = Vec::new();
    let broken = loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => got.extend_from_slice(&bytes),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(broken, "the stream should end abruptly");
    let events = parse_sse(std::str::from_utf8(&got).expect("utf8"));
    assert!(events.len() < 10);
    let id = events[0].1["response"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sim.response(&id).is_none_or(|r| r["status"] != "completed") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "response never completed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_event_types_are_sprinkled_in() {
    let faults = Faults {
        stream_unknown_events: 1.0,
        ..Faults::default()
    };
    let sim = start(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await;
    let (_, _, text) = stream_create(
        &sim,
        json!({"model": "gpt-5", "input": "x", "background": true, "stream": true}),
    )
    .await;
    let events = parse_sse(&text);
    assert!(events.iter().any(|(n, _)| n == "response.sim_future_event"));
    assert_eq!(seqs(&events), (0..events.len() as u64).collect::<Vec<_>>());
    sim.shutdown().await;
}

#[tokio::test]
async fn aborting_a_queued_stream_can_leave_it_stuck() {
    let faults = Faults {
        stream_abort_sticks: 1.0,
        ..Faults::default()
    };
    let sim = start(SimConfig {
        faults,
        queue_time: Duration::from_millis(400),
        ..SimConfig::default()
    })
    .await;
    let mut resp = client()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("k")
        .json(&json!({"model": "gpt-5", "input": "x", "background": true, "stream": true}))
        .send()
        .await
        .expect("send");
    let first = resp.chunk().await.expect("chunk").expect("bytes");
    drop(resp);
    let first = parse_sse(std::str::from_utf8(&first).expect("utf8"));
    let id = first[0].1["response"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // A response created after it (no stream to abort), with the same queue and run time,
    // completes: the simulator's clock is past the stuck one's queue and run time, and it is
    // still queued.
    let later: Value = client()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("k")
        .json(&json!({"model": "gpt-5", "input": "x", "background": true}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let later = later["id"].as_str().expect("id").to_owned();
    wait_for("the later response to complete", || {
        sim.response(&later).expect("exists")["status"] == "completed"
    })
    .await;
    assert_eq!(sim.response(&id).expect("exists")["status"], "queued");
    sim.shutdown().await;
}

/// Reads a stream until it ends or is cut; its events and whether it was cut.
async fn read_until_cut(resp: reqwest::Response) -> (Vec<(String, Value)>, bool) {
    let mut resp = resp;
    let mut text = String::new();
    let cut = loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    (parse_sse(&text), cut)
}

async fn poll_status(sim: &SimHandle, id: &str) -> String {
    let r: Value = client()
        .get(format!("{}/responses/{id}", sim.base_url()))
        .bearer_auth("k")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    r["status"].as_str().unwrap_or("").to_owned()
}

/// Polls a response until it has `status`.
async fn wait_status(sim: &SimHandle, id: &str, status: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while poll_status(sim, id).await != status {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never {status}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn stream_drop_cuts_every_live_and_resumed_stream_after_n_events() {
    let sim = start(SimConfig::default()).await;
    let resp = client()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("k")
        .json(
            &json!({"model": "o3", "input": "Cut me", "background": true, "stream": true,
                      "metadata": {"sim": "stream_drop=4"}}),
        )
        .send()
        .await
        .expect("send");
    let (events, cut) = read_until_cut(resp).await;
    assert!(cut, "the live stream is cut");
    assert_eq!(seqs(&events), [0, 1, 2, 3]);
    let id = events[0].1["response"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let resp = client()
        .get(format!(
            "{}/responses/{id}?stream=true&starting_after=3",
            sim.base_url()
        ))
        .bearer_auth("k")
        .send()
        .await
        .expect("send");
    let (resumed, cut) = read_until_cut(resp).await;
    assert!(cut, "a resumed stream is cut too");
    assert_eq!(seqs(&resumed), [4, 5, 6, 7]);
    // The work goes on.
    wait_status(&sim, &id, "completed").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn stream_abort_sticks_leaves_a_response_queued_when_its_client_leaves() {
    let sim = start(SimConfig::default()).await;
    let mut ids = Vec::new();
    for spec in ["queue=300ms;stream_abort_sticks", "queue=300ms"] {
        let mut resp = client()
            .post(format!("{}/responses", sim.base_url()))
            .bearer_auth("k")
            .json(
                &json!({"model": "o3", "input": "Leave early", "background": true, "stream": true,
                          "metadata": {"sim": spec}}),
            )
            .send()
            .await
            .expect("send");
        let first = resp.chunk().await.expect("a chunk").expect("bytes");
        let events = parse_sse(&String::from_utf8_lossy(&first));
        assert_eq!(events[0].1["response"]["status"], "queued");
        ids.push(
            events[0].1["response"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
        drop(resp);
    }
    wait_status(&sim, &ids[1], "completed").await;
    // The other left at the same moment and had the same queue time: still queued.
    assert_eq!(poll_status(&sim, &ids[0]).await, "queued");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_resume_window_is_configurable_and_answers_openais_text() {
    let sim = start(SimConfig {
        stream_resume_window: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let (_, _, text) = stream_create(
        &sim,
        json!({"model": "gpt-5", "input": "x", "background": true, "stream": true}),
    )
    .await;
    let id = parse_sse(&text)[0].1["response"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let err = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "resume never expired"
        );
        let (status, text) = resume(&sim, &id, "&starting_after=0").await;
        if status == StatusCode::BAD_REQUEST {
            break serde_json::from_str::<Value>(&text).expect("json");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        err["error"]["message"],
        "This response can no longer be streamed because it is more than 5 minutes old."
    );
    assert_eq!(err["error"]["param"], "stream");
    sim.shutdown().await;
}
