//! The simulator's network input: `POST /v1/responses` bodies (with `metadata.sim` overrides)
//! and the SSE frames its streams write. respool has no SSE client (it polls), so the stream
//! side is checked by reading each frame back as an SSE client would: one event, whose `event:`
//! name is the JSON's `type` and whose `data:` is the JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use respool::sim::fuzzing::{parse_create, parse_overrides, sse_frame};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let _ = parse_create(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_overrides(text);
    }
    if let Some(value) = respool_fuzz::json_or_value(data) {
        // A create built around the value, so the deeper checks are reached.
        let body = serde_json::json!({
            "model": "o3", "input": "hi", "background": true, "metadata": {"sim": value.as_str().unwrap_or("run=1s")},
            "tools": value.clone(),
        });
        let _ = parse_create(body.to_string().as_bytes());

        let Some(kind) = value.get("type").and_then(Value::as_str) else {
            return;
        };
        if kind.contains(['\n', '\r']) {
            return; // the simulator's event types are fixed names
        }
        let frame = sse_frame(&value);
        let (event, data) = read_one_event(&frame);
        assert_eq!(event, kind);
        let back: Value = serde_json::from_str(&data).expect("data is JSON");
        assert_eq!(back, value);
    }
});

/// A minimal SSE reader (WHATWG event-stream rules): `field: value` lines, `data` joined with
/// `\n`, an event ends at a blank line. Asserts exactly one event.
fn read_one_event(frame: &str) -> (String, String) {
    assert!(frame.ends_with("\n\n"), "{frame:?}");
    let body = &frame[..frame.len() - 2];
    assert!(!body.contains("\n\n"), "more than one event: {frame:?}");
    let (mut event, mut data) = (String::new(), Vec::new());
    for line in body.split('\n') {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value.to_string(),
            "data" => data.push(value),
            _ => panic!("unexpected line {line:?}"),
        }
    }
    (event, data.join("\n"))
}
