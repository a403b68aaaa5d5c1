//! The simulator's `image_generation` tool over real HTTP: `image_generation_call` items whose
//! `result` decodes to a real PNG, as many as `SIM_IMAGE_COUNT` / `images=` ask (0, 1, 3),
//! the options echoed, the caption in the answer, and the stream's image events with partial
//! images when asked for.

use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use respool::sim::{self, SimConfig, SimHandle};
use serde_json::{Value, json};

use crate::helpers::sim_http::{create, stream};

async fn start() -> SimHandle {
    sim::spawn(SimConfig {
        queue_time: Duration::from_millis(30),
        run_time: Duration::from_millis(200),
        seed: Some(5),
        ..SimConfig::default()
    })
    .await
    .expect("sim starts")
}

/// Decodes a base64 PNG fully; returns its width, height and colour type.
fn decode_png(b64: &str) -> (u32, u32, png::ColorType) {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "PNG signature");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("the image data");
    (info.width, info.height, info.color_type)
}

fn items_of<'a>(response: &'a Value, kind: &str) -> Vec<&'a Value> {
    response["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter(|i| i["type"] == kind)
        .collect()
}

fn text_of(response: &Value) -> String {
    let message = response["output"]
        .as_array()
        .expect("output")
        .last()
        .expect("a message");
    assert_eq!(message["type"], "message", "{response}");
    message["content"][0]["text"]
        .as_str()
        .expect("text")
        .to_owned()
}

fn image_request(input: &str, tool: Value) -> Value {
    json!({"model": "gpt-5", "input": input, "tools": [tool]})
}

#[tokio::test]
async fn image_generation_results_are_real_pngs_one_three_or_none() {
    let sim = start().await;
    let tool = json!({"type": "image_generation", "size": "1536x1024", "quality": "high", "output_format": "webp"});
    let cases = [
        ("A lighthouse in a storm", None, 1),
        (
            "Ein Leuchtturm im Sturm, über Wellen SIM_IMAGE_COUNT=3",
            None,
            3,
        ),
        ("東京の灯台 SIM_IMAGE_COUNT=3", Some("images=0"), 0),
        ("   ", None, 1),
    ];
    for (input, sim_spec, want) in cases {
        let mut body = image_request(input, tool.clone());
        if let Some(spec) = sim_spec {
            body["metadata"] = json!({"sim": spec});
        }
        let (status, response) = create(&sim, body).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        assert_eq!(response["status"], "completed");
        let calls = items_of(&response, "image_generation_call");
        assert_eq!(calls.len(), want, "{input}");
        let output = response["output"].as_array().expect("output");
        assert_eq!(output.last().expect("message")["type"], "message");
        let text = text_of(&response);
        let mut results = Vec::new();
        for (k, call) in calls.iter().enumerate() {
            let id = call["id"].as_str().expect("id");
            assert!(id.starts_with("ig_"), "{id}");
            assert_eq!(call["status"], "completed");
            assert_eq!(call["size"], "1536x1024");
            assert_eq!(call["quality"], "high");
            // Asked for webp; the bytes are a PNG, and the item says so.
            assert_eq!(call["output_format"], "png");
            assert_eq!(call["background"], "opaque");
            let prompt = call["revised_prompt"].as_str().expect("revised_prompt");
            assert!(
                text.contains(&format!("Image {}: {prompt}", k + 1)),
                "{text}"
            );
            let (w, h, color) = decode_png(call["result"].as_str().expect("result"));
            assert_eq!((w, h, color), (192, 128, png::ColorType::Rgb));
            results.push(call["result"].clone());
        }
        results.dedup();
        assert_eq!(results.len(), want, "each image differs");
        if want == 0 {
            assert!(!text.contains("## Images"), "{text}");
        }
    }

    // The same input draws the same image; a transparent background has an alpha channel.
    let (_, a) = create(
        &sim,
        image_request("A red fox", json!({"type": "image_generation"})),
    )
    .await;
    let (_, b) = create(
        &sim,
        image_request("A red fox", json!({"type": "image_generation"})),
    )
    .await;
    let result = |r: &Value| items_of(r, "image_generation_call")[0]["result"].clone();
    assert_eq!(result(&a), result(&b));
    let call = &items_of(&a, "image_generation_call")[0];
    assert_eq!(
        (call["size"].as_str(), call["quality"].as_str()),
        (Some("1024x1024"), Some("medium"))
    );
    let (_, clear) = create(
        &sim,
        image_request(
            "A red fox",
            json!({"type": "image_generation", "background": "transparent", "size": "auto"}),
        ),
    )
    .await;
    let (w, h, color) = decode_png(result(&clear).as_str().expect("result"));
    assert_eq!((w, h, color), (128, 128, png::ColorType::Rgba));
    // Images cost no output tokens of their own: only the answer's text counts.
    let chars = text_of(&a).chars().count() as u64;
    assert_eq!(
        a["usage"]["output_tokens"].as_u64(),
        Some(chars.div_ceil(4))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_counts_and_options_are_refused() {
    let sim = start().await;
    for (body, param) in [
        (
            image_request("SIM_IMAGE_COUNT=5", json!({"type": "image_generation"})),
            "input",
        ),
        (
            json!({"model": "gpt-5", "input": "x", "metadata": {"sim": "images=9"}}),
            "metadata.sim",
        ),
        (
            image_request(
                "x",
                json!({"type": "image_generation", "partial_images": 4}),
            ),
            "tools[0].partial_images",
        ),
        (
            image_request(
                "x",
                json!({"type": "image_generation", "output_format": "gif"}),
            ),
            "tools[0].output_format",
        ),
    ] {
        let (status, err) = create(&sim, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["error"]["param"], param, "{err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
    }
    assert_eq!(sim.stats().creates, 0);
    sim.shutdown().await;
}

fn image_events(all: &[Value]) -> Vec<&Value> {
    all.iter()
        .filter(|e| {
            let t = e["type"].as_str().unwrap_or("");
            t.starts_with("response.image_generation_call.")
                || (t.starts_with("response.output_item.")
                    && e["item"]["type"] == "image_generation_call")
        })
        .collect()
}

#[tokio::test]
async fn the_stream_shows_partial_images_when_asked() {
    let sim = start().await;
    let body = json!({
        "model": "gpt-5", "input": "Une forêt en hiver SIM_IMAGE_COUNT=2", "stream": true, "background": true,
        "tools": [{"type": "image_generation", "partial_images": 2}],
    });
    let all = stream(&sim, body).await;
    let seqs: Vec<u64> = all
        .iter()
        .filter_map(|e| e["sequence_number"].as_u64())
        .collect();
    assert_eq!(seqs, (0..all.len() as u64).collect::<Vec<_>>());
    let image = image_events(&all);
    let kinds: Vec<&str> = image.iter().filter_map(|e| e["type"].as_str()).collect();
    let one = [
        "response.output_item.added",
        "response.image_generation_call.in_progress",
        "response.image_generation_call.generating",
        "response.image_generation_call.partial_image",
        "response.image_generation_call.partial_image",
        "response.image_generation_call.completed",
        "response.output_item.done",
    ];
    assert_eq!(kinds, [one, one].concat());
    let completed = all.last().expect("events");
    assert_eq!(completed["type"], "response.completed");
    let calls = items_of(&completed["response"], "image_generation_call");
    for (n, call) in calls.iter().enumerate() {
        let id = call["id"].as_str().expect("id");
        let mine: Vec<&&Value> = image
            .iter()
            .filter(|e| e["item_id"] == id || e["item"]["id"] == id)
            .collect();
        assert_eq!(mine.len(), 7);
        let index = mine[0]["output_index"].as_u64().expect("index");
        assert!(mine.iter().all(|e| e["output_index"] == index));
        assert_eq!(completed["response"]["output"][index as usize]["id"], id);
        let added = &mine[0]["item"];
        assert_eq!(
            (added["status"].as_str(), added["result"].is_null()),
            (Some("in_progress"), true)
        );
        for (p, partial) in mine[3..5].iter().enumerate() {
            assert_eq!(partial["partial_image_index"], p, "{n}");
            decode_png(partial["partial_image_b64"].as_str().expect("partial"));
        }
        assert_eq!(mine[6]["item"]["result"], call["result"]);
        decode_png(call["result"].as_str().expect("result"));
    }
    assert_eq!(calls.len(), 2);

    // No partial images unless asked; an in-progress retrieve shows `generating` with no result.
    let quiet = stream(
        &sim,
        json!({"model": "gpt-5", "input": "x", "stream": true, "tools": [{"type": "image_generation"}]}),
    )
    .await;
    assert!(
        !quiet
            .iter()
            .any(|e| e["type"] == "response.image_generation_call.partial_image")
    );
    let generating = quiet
        .iter()
        .find(|e| e["type"] == "response.image_generation_call.generating")
        .expect("generating");
    assert_eq!(generating["output_index"], 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_background_poll_sees_the_image_generating_then_done() {
    let sim = sim::spawn(SimConfig {
        queue_time: Duration::from_millis(10),
        run_time: Duration::from_secs(3),
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let (_, created) = create(
        &sim,
        json!({"model": "gpt-5", "input": "A kite", "background": true, "tools": [{"type": "image_generation"}]}),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = sim.response(&id).expect("stored");
        if let Some(call) = items_of(&r, "image_generation_call").first() {
            let status = call["status"].as_str().expect("status").to_owned();
            assert_eq!(call["result"].is_null(), status != "completed", "{call}");
            if seen.last() != Some(&status) {
                seen.push(status);
            }
        }
        if r["status"] == "completed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(seen, ["in_progress", "generating", "completed"]);
    sim.shutdown().await;
}
