//! The simulator's function calling over real HTTP: a create with `function` tools ends
//! `completed` with `function_call` items whose arguments follow each schema and no message;
//! a follow-up with `function_call_output`s and `previous_response_id` gets an answer quoting
//! each output; unknown and missing outputs are OpenAI's 400s; `tool_choice`,
//! `parallel_tool_calls`, `function_turns=N` and `SIM_FUNCTION_TURNS=N` decide the calls; a
//! stream carries the argument deltas; usage counts the arguments.

use std::time::Duration;

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

fn weather() -> Value {
    json!({"type": "function", "name": "get_weather", "strict": true,
           "description": "The weather at a place.",
           "parameters": {"type": "object", "additionalProperties": false,
                          "required": ["location", "unit", "days"],
                          "properties": {"location": {"type": "string"},
                                         "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                                         "days": {"type": "integer", "minimum": 1, "maximum": 7}}}})
}

fn clock() -> Value {
    json!({"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}})
}

fn calls(response: &Value) -> Vec<&Value> {
    response["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter(|i| i["type"] == "function_call")
        .collect()
}

fn message_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["text"].as_str().map(str::to_owned))
        .collect()
}

fn answer(call: &Value, output: Value) -> Value {
    json!({"type": "function_call_output", "call_id": call["call_id"], "output": output})
}

#[tokio::test]
async fn a_function_loop_calls_then_answers_with_the_outputs() {
    let sim = start().await;
    for (question, result) in [
        (
            "What's the weather in Paris?",
            json!("{\"temp\": 18, \"sky\": \"clear\"}"),
        ),
        (
            "Quel temps fait-il à Zürich ? 天気",
            json!("Ciel dégagé, 3 °C — 晴れ"),
        ),
        ("Weather in Oslo", json!("")),
        (
            "Weather in Lima",
            json!([{"type": "input_text", "text": "Fog, 16 °C"}]),
        ),
    ] {
        let (status, first) = create(
            &sim,
            json!({"model": "gpt-5", "input": question, "tools": [weather(), clock()]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(first["status"], "completed");
        assert_eq!(
            message_text(&first),
            "",
            "no message while calling functions"
        );
        let made = calls(&first);
        assert_eq!(made.len(), 2, "one call per function tool, in tool order");
        assert_eq!(made[0]["name"], "get_weather");
        assert_eq!(made[1]["name"], "get_time");
        let call = made[0];
        assert!(call["id"].as_str().expect("id").starts_with("fc_"));
        assert!(
            call["call_id"]
                .as_str()
                .expect("call_id")
                .starts_with("call_")
        );
        assert_eq!(call["status"], "completed");
        let args: Value = serde_json::from_str(call["arguments"].as_str().expect("a JSON string"))
            .expect("arguments parse");
        let topic = question.trim_end_matches('?').trim_end();
        assert!(
            args["location"].as_str().expect("location").contains(topic),
            "{args}"
        );
        assert!(["celsius", "fahrenheit"].contains(&args["unit"].as_str().expect("unit")));
        let days = args["days"].as_i64().expect("days");
        assert!((1..=7).contains(&days));
        let usage = &first["usage"];
        assert!(
            usage["output_tokens"].as_u64().expect("tokens") as usize
                >= call["arguments"].as_str().unwrap_or("").len() / 4
        );

        let (status, second) = create(
            &sim,
            json!({"model": "gpt-5", "previous_response_id": first["id"],
                   "tools": [weather(), clock()],
                   "input": [answer(made[0], result.clone()), answer(made[1], json!("12:00"))]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{second}");
        assert!(calls(&second).is_empty(), "one function turn by default");
        let text = message_text(&second);
        let quoted = match &result {
            Value::String(s) if s.is_empty() => "returned nothing (an empty output)".to_owned(),
            Value::String(s) => format!("returned \"{s}\""),
            _ => "returned \"Fog, 16 °C\"".to_owned(),
        };
        assert!(text.contains(&quoted), "{text}");
        assert!(text.contains(&format!(
            "`get_time` ({})",
            made[1]["call_id"].as_str().unwrap_or("")
        )));
        assert!(
            text.contains(topic),
            "the answer is about the question: {text}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn outputs_are_checked_against_the_chain() {
    let sim = start().await;
    let (_, first) = create(
        &sim,
        json!({"model": "gpt-5", "input": "Weather?", "tools": [weather()]}),
    )
    .await;
    let call = calls(&first)[0].clone();
    let err_of = |body: Value| {
        let sim = &sim;
        async move {
            let (status, body) = create(sim, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            body["error"].clone()
        }
    };
    let unknown = err_of(json!({"model": "gpt-5", "previous_response_id": first["id"], "tools": [weather()],
        "input": [answer(&call, json!("x")), {"type": "function_call_output", "call_id": "call_nope", "output": "y"}]}))
    .await;
    assert_eq!(
        unknown["message"],
        "No tool call found for function call output with call_id call_nope."
    );
    assert_eq!(unknown["param"], "input");
    assert_eq!(unknown["type"], "invalid_request_error");
    let missing = err_of(
        json!({"model": "gpt-5", "previous_response_id": first["id"], "tools": [weather()],
        "input": "Never mind, tell me a joke."}),
    )
    .await;
    assert_eq!(
        missing["message"],
        format!(
            "No tool output found for function call {}.",
            call["call_id"].as_str().expect("call_id")
        )
    );
    assert_eq!(missing["param"], "input");
    let unchained = err_of(
        json!({"model": "gpt-5", "tools": [weather()], "input": [answer(&call, json!("x"))]}),
    )
    .await;
    assert_eq!(unchained["param"], "input");
    let bad_choice = err_of(json!({"model": "gpt-5", "tools": [weather()], "input": "x",
        "tool_choice": {"type": "function", "name": "nope"}}))
    .await;
    assert_eq!(bad_choice["param"], "tool_choice");
    sim.shutdown().await;
}

#[tokio::test]
async fn tool_choice_parallel_calls_and_function_turns_decide_the_calls() {
    let sim = start().await;
    let names = |r: &Value| -> Vec<String> {
        calls(r)
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let base = |extra: Value| {
        let mut body = json!({"model": "gpt-5", "input": "Weather and time in Rome", "tools": [weather(), clock()]});
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        body
    };
    let (_, r) = create(&sim, base(json!({"parallel_tool_calls": false}))).await;
    assert_eq!(names(&r), ["get_weather"]);
    assert_eq!(r["parallel_tool_calls"], false);
    let (_, r) = create(&sim, base(json!({"tool_choice": "none"}))).await;
    assert!(names(&r).is_empty());
    assert!(message_text(&r).contains("Weather and time in Rome"));
    let (_, r) = create(
        &sim,
        base(json!({"tool_choice": {"type": "function", "name": "get_time"}})),
    )
    .await;
    assert_eq!(names(&r), ["get_time"]);
    let (_, r) = create(&sim, base(json!({"metadata": {"sim": "function_turns=0"}}))).await;
    assert!(names(&r).is_empty() && !message_text(&r).is_empty());

    // Three function turns, then the answer; `required` calls even after them.
    for spec in [
        json!({"metadata": {"sim": "function_turns=3"}}),
        json!({"input": "Weather in Rome SIM_FUNCTION_TURNS=3"}),
    ] {
        let (_, mut r) = create(&sim, base(spec.clone())).await;
        for turn in 1..=3 {
            assert_eq!(names(&r).len(), 2, "turn {turn} calls: {r}");
            let outputs: Vec<Value> = calls(&r)
                .iter()
                .map(|c| answer(c, json!(format!("result {turn}"))))
                .collect();
            let mut next = base(json!({"previous_response_id": r["id"], "input": outputs}));
            if let Some(meta) = spec.get("metadata") {
                next["metadata"] = meta.clone();
            }
            r = create(&sim, next).await.1;
        }
        assert!(names(&r).is_empty(), "answers after three turns: {r}");
        assert!(message_text(&r).contains("result 3"));
        let (status, forced) = create(&sim, base(json!({"previous_response_id": r["id"], "tool_choice": "required", "input": "again"}))).await;
        assert_eq!(status, StatusCode::OK, "{forced}");
        assert_eq!(names(&forced).len(), 2);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_stream_carries_the_argument_deltas() {
    let sim = start().await;
    let events = stream(
        &sim,
        json!({"model": "gpt-5", "input": "Wetter in Genf, bitte 🌦", "tools": [weather()], "stream": true, "background": true}),
    )
    .await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let added = events
        .iter()
        .find(|e| e["type"] == "response.output_item.added")
        .expect("added");
    assert_eq!(added["item"]["type"], "function_call");
    assert_eq!(added["item"]["status"], "in_progress");
    assert_eq!(added["item"]["arguments"], "");
    let deltas: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .collect();
    assert!(deltas.len() > 2, "several chunks");
    assert!(
        deltas
            .iter()
            .all(|d| d["obfuscation"].is_string() && d["item_id"] == added["item"]["id"])
    );
    let joined: String = deltas.iter().filter_map(|d| d["delta"].as_str()).collect();
    let done = events
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .expect("arguments done");
    assert_eq!(done["arguments"], joined.as_str());
    assert_eq!(done["name"], "get_weather");
    let item_done = events
        .iter()
        .find(|e| e["type"] == "response.output_item.done")
        .expect("item done");
    assert_eq!(item_done["item"]["arguments"], joined.as_str());
    assert_eq!(item_done["item"]["status"], "completed");
    assert!(!kinds.contains(&"response.output_text.delta"));
    let completed = events.last().expect("events");
    assert_eq!(completed["type"], "response.completed");
    assert_eq!(
        completed["response"]["output"][0]["arguments"],
        joined.as_str()
    );
    sim.shutdown().await;
}
