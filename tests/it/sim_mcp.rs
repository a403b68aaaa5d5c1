//! The simulator's remote MCP tools over real HTTP: an `mcp` tool that needs no approval gets
//! an `mcp_list_tools` item first and `mcp_call`s (`search`, then `fetch`) before the message,
//! `allowed_tools` narrows both, `max_tool_calls` counts the calls, the `mcp_error` and
//! `mcp_list_error` directives break a call or the listing, a call that needs approval becomes
//! an `mcp_approval_request` answered by a follow-up (approved or denied), no credential of the tool reaches an item, a stream carries the MCP events, and a poll
//! sees each call `in_progress`, `calling`, then `completed`.

use std::time::Duration;

use reqwest::StatusCode;
use respool::sim::{self, SimConfig, SimHandle};
use serde_json::{Value, json};

use crate::helpers::sim_http::{create, stream};

const LIST_ERROR: &str = "Error retrieving tool list from MCP server: 'airnz_onsites'. Http status code: 424 (Failed Dependency)";

async fn start() -> SimHandle {
    sim::spawn(SimConfig {
        queue_time: Duration::from_millis(30),
        run_time: Duration::from_millis(200),
        seed: Some(11),
        ..SimConfig::default()
    })
    .await
    .expect("sim starts")
}

fn mcp_tool(extra: Value) -> Value {
    let mut tool = json!({
        "type": "mcp",
        "server_label": "airnz_onsites",
        "server_url": "https://airnz-onsites.example.net/sse/",
        "require_approval": "never",
    });
    if let (Some(t), Value::Object(extra)) = (tool.as_object_mut(), extra) {
        t.extend(extra);
    }
    tool
}

fn request(input: &str, tools: Value) -> Value {
    json!({"model": "gpt-4.1", "input": input, "tools": tools})
}

fn types(response: &Value) -> Vec<&str> {
    response["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter_map(|i| i["type"].as_str())
        .collect()
}

fn items_of<'a>(response: &'a Value, kind: &str) -> Vec<&'a Value> {
    response["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter(|i| i["type"] == kind)
        .collect()
}

fn text_of(response: &Value) -> &str {
    let message = response["output"]
        .as_array()
        .and_then(|o| o.last())
        .expect("a message");
    assert_eq!(message["type"], "message", "{response}");
    message["content"][0]["text"].as_str().expect("text")
}

fn parsed(text: &Value) -> Value {
    serde_json::from_str(text.as_str().expect("a string")).expect("a JSON string")
}

#[tokio::test]
async fn an_mcp_tool_lists_then_searches_and_fetches_before_the_message() {
    let sim = start().await;
    for input in [
        "Can I bring more bags than my standard allowance?",
        "Puis-je emporter plus de bagages que ma franchise ? 東京→オークランド «économie»",
    ] {
        let (status, r) = create(&sim, request(input, json!([mcp_tool(json!({}))]))).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(r["status"], "completed");
        assert_eq!(
            types(&r),
            ["mcp_list_tools", "mcp_call", "mcp_call", "message"],
            "{r}"
        );

        let list = &r["output"][0];
        assert!(
            list["id"].as_str().expect("id").starts_with("mcpl_"),
            "{list}"
        );
        assert_eq!(list["server_label"], "airnz_onsites");
        assert_eq!(list["error"], Value::Null);
        let tools = list["tools"].as_array().expect("tools");
        let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, ["search", "fetch"]);
        for (tool, arg) in tools.iter().zip(["query", "id"]) {
            assert!(tool["description"].as_str().is_some_and(|d| !d.is_empty()));
            assert_eq!(tool["input_schema"]["type"], "object");
            assert_eq!(tool["input_schema"]["required"], json!([arg]));
            assert_eq!(tool["annotations"], Value::Null);
        }

        let calls = items_of(&r, "mcp_call");
        for (call, name) in calls.iter().zip(["search", "fetch"]) {
            assert!(
                call["id"].as_str().expect("id").starts_with("mcp_"),
                "{call}"
            );
            assert_eq!(call["server_label"], "airnz_onsites");
            assert_eq!(call["name"], name);
            assert_eq!(call["status"], "completed");
            assert_eq!(call["error"], Value::Null);
            assert_eq!(call["approval_request_id"], Value::Null);
            assert!(call["output"].is_string(), "{call}");
        }
        let topic = input.trim_end_matches('?');
        assert_eq!(parsed(&calls[0]["arguments"]), json!({"query": topic}));
        let found = parsed(&calls[0]["output"]);
        let first = &found["results"][0];
        assert_eq!(parsed(&calls[1]["arguments"]), json!({"id": first["id"]}));
        let fetched = parsed(&calls[1]["output"]);
        assert_eq!(fetched["id"], first["id"]);
        assert!(fetched["text"].as_str().is_some_and(|t| t.contains(topic)));

        // The answer says what the server answered.
        let text = text_of(&r);
        assert!(text.contains("## From airnz_onsites"), "{text}");
        assert!(
            text.contains(first["title"].as_str().expect("title")),
            "{text}"
        );

        // The same input, the same calls.
        let (_, again) = create(&sim, request(input, json!([mcp_tool(json!({}))]))).await;
        let outputs = |r: &Value| -> Vec<Value> {
            items_of(r, "mcp_call")
                .iter()
                .map(|c| json!([c["arguments"], c["output"]]))
                .collect()
        };
        assert_eq!(outputs(&again), outputs(&r));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn allowed_tools_limit_what_is_listed_and_called() {
    let sim = start().await;
    for (allowed, want) in [
        (json!(["search"]), vec!["search"]),
        (json!(["fetch"]), vec!["fetch"]),
        (
            json!({"tool_names": ["search", "fetch"]}),
            vec!["search", "fetch"],
        ),
        (json!([]), vec![]),
    ] {
        let tool = mcp_tool(json!({"allowed_tools": allowed}));
        let (status, r) = create(&sim, request("Baggage rules", json!([tool]))).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        let listed: Vec<&str> = r["output"][0]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(listed, want, "{allowed}");
        let called: Vec<&str> = items_of(&r, "mcp_call")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(called, want, "{allowed}");
        assert_eq!(types(&r).last(), Some(&"message"));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn the_error_directives_break_a_call_or_the_listing() {
    let sim = start().await;
    let with = |spec: &str| {
        let mut body = request("Baggage rules", json!([mcp_tool(json!({}))]));
        body["metadata"] = json!({"sim": spec});
        body
    };

    let (status, r) = create(&sim, with("mcp_error")).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "completed");
    assert_eq!(types(&r), ["mcp_list_tools", "mcp_call", "message"], "{r}");
    let call = &r["output"][1];
    assert_eq!(call["name"], "search");
    assert_eq!(call["status"], "failed");
    assert_eq!(call["output"], Value::Null);
    assert_eq!(
        call["error"],
        json!({"type": "http_error", "code": 502, "message": "Bad Gateway"})
    );
    assert!(parsed(&call["arguments"]).is_object());
    assert!(text_of(&r).contains("failed (HTTP 502"), "{}", text_of(&r));

    let (status, r) = create(&sim, with("mcp_list_error")).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "completed");
    assert_eq!(types(&r), ["mcp_list_tools", "message"], "{r}");
    assert_eq!(r["output"][0]["error"], LIST_ERROR);
    assert_eq!(r["output"][0]["tools"], json!([]));
    assert!(
        text_of(&r).contains("could not be listed"),
        "{}",
        text_of(&r)
    );

    let (status, err) = create(&sim, with("mcp_errors")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["param"], "metadata.sim");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_call_that_needs_approval_waits_for_the_client() {
    let sim = start().await;
    for (approval, before) in [
        (None, vec!["mcp_list_tools", "mcp_approval_request"]),
        (
            Some(json!("always")),
            vec!["mcp_list_tools", "mcp_approval_request"],
        ),
        (
            Some(json!({"never": {"tool_names": ["search"]}})),
            vec!["mcp_list_tools", "mcp_call", "mcp_approval_request"],
        ),
    ] {
        let mut tool = mcp_tool(json!({}));
        match &approval {
            Some(a) => tool["require_approval"] = a.clone(),
            None => {
                tool.as_object_mut()
                    .expect("tool")
                    .remove("require_approval");
            }
        }
        let (status, r) = create(&sim, request("Baggage rules für Zürich", json!([tool]))).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(r["status"], "completed");
        assert_eq!(types(&r), before, "{approval:?}: {r}");
        let asked = items_of(&r, "mcp_approval_request")[0].clone();
        assert!(asked["id"].as_str().expect("id").starts_with("mcpr_"));
        assert_eq!(asked["server_label"], "airnz_onsites");
        let name = asked["name"].as_str().expect("name").to_owned();
        assert!(parsed(&asked["arguments"]).is_object());

        // Approved: the call is made, carrying the request's id, then the answer.
        let (status, yes) = create(&sim, json!({"model": "gpt-4.1", "tools": [tool.clone()],
            "previous_response_id": r["id"],
            "input": [{"type": "mcp_approval_response", "approval_request_id": asked["id"], "approve": true}]})).await;
        assert_eq!(status, StatusCode::OK, "{yes}");
        assert_eq!(types(&yes), ["mcp_call", "message"], "{yes}");
        let call = &yes["output"][0];
        assert_eq!(call["approval_request_id"], asked["id"]);
        assert_eq!(call["name"], name.as_str());
        assert_eq!(call["arguments"], asked["arguments"]);
        assert!(call["output"].is_string());
        assert!(text_of(&yes).contains("## From airnz_onsites"));

        // Denied: no call, and the answer says so.
        let (_, no) = create(&sim, json!({"model": "gpt-4.1", "tools": [tool.clone()],
            "previous_response_id": r["id"],
            "input": [{"type": "mcp_approval_response", "approval_request_id": asked["id"], "approve": false, "reason": "too costly"}]})).await;
        assert_eq!(types(&no), ["message"], "{no}");
        assert!(
            text_of(&no).contains(&format!(
                "The call to airnz_onsites's `{name}` tool was not approved (too costly)"
            )),
            "{}",
            text_of(&no)
        );
    }
    // An approval the chain never asked for.
    let tool = mcp_tool(json!({"require_approval": "always"}));
    let (_, r) = create(&sim, request("Baggage rules", json!([tool.clone()]))).await;
    let (status, err) = create(&sim, json!({"model": "gpt-4.1", "tools": [tool],
        "previous_response_id": r["id"],
        "input": [{"type": "mcp_approval_response", "approval_request_id": "mcpr_nope", "approve": true}]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["param"], "input");
    // Covering every listed tool is as good as "never".
    let tool = mcp_tool(json!({
        "allowed_tools": ["search"],
        "require_approval": {"never": {"tool_names": ["search"]}},
    }));
    let (_, r) = create(&sim, request("Baggage rules", json!([tool]))).await;
    assert_eq!(types(&r), ["mcp_list_tools", "mcp_call", "message"], "{r}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_stream_carries_the_approval_request() {
    let sim = start().await;
    let tool = mcp_tool(json!({"require_approval": "always"}));
    let mut body = request("Baggage rules", json!([tool]));
    body["stream"] = json!(true);
    let events = stream(&sim, body).await;
    let added: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["type"] == "response.output_item.added" && e["item"]["type"] == "mcp_approval_request"
        })
        .collect();
    let done: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["type"] == "response.output_item.done" && e["item"]["type"] == "mcp_approval_request"
        })
        .collect();
    assert_eq!((added.len(), done.len()), (1, 1));
    assert_eq!(added[0]["item"], done[0]["item"]);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "response.mcp_list_tools.completed")
    );
    assert!(
        !events
            .iter()
            .any(|e| e["type"] == "response.output_text.delta")
    );
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some(json!("response.completed"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn no_credential_of_the_tool_reaches_an_item_or_the_answer() {
    let sim = start().await;
    let tool = mcp_tool(json!({
        "server_url": "https://user:pw-SECRET1@mcp-SECRET-host.example.net/sse/?token=SECRET2",
        "authorization": "sk-SECRET3",
        "headers": {"X-Api-Key": "hdr-SECRET4"},
    }));
    let (status, r) = create(&sim, request("Baggage rules", json!([tool]))).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let output = serde_json::to_string(&r["output"]).expect("json");
    assert!(output.contains("mcp_call"), "{output}");
    assert!(!output.contains("SECRET"), "{output}");
    sim.shutdown().await;
}

#[tokio::test]
async fn deep_research_lists_first_then_searches_the_web_and_calls_the_server() {
    let sim = start().await;
    let body = |max: Option<u64>| {
        let mut body = json!({
            "model": "o4-mini-deep-research",
            "input": "Can I bring more bags than my standard allowance for economy class?",
            "reasoning": {"summary": "auto"},
            "tools": [{"type": "web_search_preview"}, mcp_tool(json!({}))],
        });
        if let Some(max) = max {
            body["max_tool_calls"] = json!(max);
        }
        body
    };
    let (status, r) = create(&sim, body(None)).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        types(&r),
        [
            "mcp_list_tools",
            "reasoning",
            "web_search_call",
            "web_search_call",
            "web_search_call",
            "mcp_call",
            "mcp_call",
            "message"
        ],
        "{r}"
    );
    // The report's "Tool activity" names the calls and not the listing.
    let activity = respool::notify::markdown::activity(&r);
    assert_eq!(activity.len(), 2, "{activity:?}");
    assert_eq!(
        activity[1],
        "Called MCP tools twice: airnz_onsites/fetch, airnz_onsites/search"
    );
    // max_tool_calls counts the MCP calls with the searches.
    let (_, r) = create(&sim, body(Some(4))).await;
    assert_eq!(items_of(&r, "web_search_call").len(), 3);
    assert_eq!(items_of(&r, "mcp_call").len(), 1);
    let (_, r) = create(&sim, body(Some(2))).await;
    assert_eq!(items_of(&r, "mcp_call").len(), 0);
    assert_eq!(items_of(&r, "mcp_list_tools").len(), 1);

    // Deep research refuses an MCP tool that needs approval, as before.
    let mut refused = body(None);
    refused["tools"][1]["require_approval"] = json!("always");
    let (status, err) = create(&sim, refused).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    sim.shutdown().await;
}

/// The events about the item `id` (by `item_id` or `item.id`), as their types.
fn kinds_of<'a>(all: &'a [Value], id: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|e| e["item_id"] == id || e["item"]["id"] == id)
        .collect()
}

#[tokio::test]
async fn a_stream_carries_the_listing_and_call_events() {
    let sim = start().await;
    for (input, spec, call_end) in [
        ("Baggage rules for a flight to Auckland", "", "completed"),
        ("Règles de bagages — Zürich → 東京", "mcp_error", "failed"),
    ] {
        let mut body = request(input, json!([mcp_tool(json!({}))]));
        body["stream"] = json!(true);
        body["metadata"] = json!({"sim": spec});
        let all = stream(&sim, body).await;
        let seqs: Vec<u64> = all
            .iter()
            .filter_map(|e| e["sequence_number"].as_u64())
            .collect();
        assert_eq!(seqs, (0..all.len() as u64).collect::<Vec<_>>());
        let completed = all.last().expect("events");
        assert_eq!(completed["type"], "response.completed");
        let output = completed["response"]["output"].as_array().expect("output");

        let list = &output[0];
        let mine = kinds_of(&all, list["id"].as_str().expect("id"));
        let kinds: Vec<&str> = mine.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "response.output_item.added",
                "response.mcp_list_tools.in_progress",
                "response.mcp_list_tools.completed",
                "response.output_item.done"
            ]
        );
        assert!(mine.iter().all(|e| e["output_index"] == 0));
        assert_eq!(mine[3]["item"], *list);

        let calls: Vec<&Value> = output.iter().filter(|i| i["type"] == "mcp_call").collect();
        assert!(!calls.is_empty());
        for call in calls {
            let id = call["id"].as_str().expect("id");
            let index = output.iter().position(|i| i["id"] == id).expect("index");
            let mine = kinds_of(&all, id);
            assert!(mine.iter().all(|e| e["output_index"] == index), "{mine:?}");
            let kinds: Vec<&str> = mine.iter().filter_map(|e| e["type"].as_str()).collect();
            let deltas = kinds.len() - 5;
            assert!(deltas >= 1, "{kinds:?}");
            let want: Vec<String> = [
                "response.output_item.added".to_owned(),
                "response.mcp_call.in_progress".to_owned(),
            ]
            .into_iter()
            .chain(std::iter::repeat_n(
                "response.mcp_call_arguments.delta".to_owned(),
                deltas,
            ))
            .chain([
                "response.mcp_call_arguments.done".to_owned(),
                format!("response.mcp_call.{call_end}"),
                "response.output_item.done".to_owned(),
            ])
            .collect();
            assert_eq!(kinds, want);
            let added = &mine[0]["item"];
            assert_eq!(
                (added["status"].as_str(), added["arguments"].as_str()),
                (Some("in_progress"), Some(""))
            );
            let streamed: String = mine[2..2 + deltas]
                .iter()
                .filter_map(|e| e["delta"].as_str())
                .collect();
            assert_eq!(streamed, call["arguments"].as_str().expect("arguments"));
            assert_eq!(mine[2 + deltas]["arguments"], call["arguments"]);
            assert!(mine[2]["obfuscation"].is_string(), "{}", mine[2]);
            assert_eq!(mine[kinds.len() - 1]["item"], *call);
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_background_poll_sees_each_call_in_progress_calling_then_done() {
    let sim = sim::spawn(SimConfig {
        queue_time: Duration::from_millis(10),
        run_time: Duration::from_secs(4),
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let mut body = request("Baggage rules", json!([mcp_tool(json!({}))]));
    body["background"] = json!(true);
    let (_, created) = create(&sim, body).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let mut seen: Vec<(String, String)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = sim.response(&id).expect("stored");
        for call in items_of(&r, "mcp_call") {
            let status = call["status"].as_str().expect("status");
            assert_eq!(call["output"].is_null(), status != "completed", "{call}");
            let name = call["name"].as_str().expect("name").to_owned();
            if !seen.contains(&(name.clone(), status.to_owned())) {
                seen.push((name, status.to_owned()));
            }
        }
        if r["status"] == "completed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let of = |name: &str| -> Vec<&str> {
        seen.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| s.as_str())
            .collect()
    };
    assert_eq!(of("search"), ["in_progress", "calling", "completed"]);
    assert_eq!(of("fetch"), ["in_progress", "calling", "completed"]);
    sim.shutdown().await;
}
