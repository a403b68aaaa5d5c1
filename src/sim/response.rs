//! The `Response` object as OpenAI returns it (`docs/upstream-api.md` §1.4): every required
//! field, request settings echoed, in OpenAI's field order.

use serde_json::{Value, json};

use super::validate::CreateRequest;

fn echo(req: &CreateRequest, key: &str, default: Value) -> Value {
    match req.body.get(key) {
        None | Some(Value::Null) => default,
        Some(v) => v.clone(),
    }
}

/// The initial snapshot of a new response (`status` as given, no output, no usage).
pub(crate) fn initial(req: &CreateRequest, id: &str, created_at: i64, status: &str) -> Value {
    let conversation = match req.body.get("conversation") {
        Some(Value::String(s)) => json!({"id": s}),
        Some(Value::Object(o)) => json!({"id": o.get("id").cloned().unwrap_or(Value::Null)}),
        _ => Value::Null,
    };
    let reasoning = match req.body.get("reasoning") {
        Some(Value::Object(r)) => json!({
            "effort": r.get("effort").cloned().unwrap_or(json!("medium")),
            "summary": r.get("summary").cloned().unwrap_or(Value::Null),
        }),
        _ => json!({"effort": null, "summary": null}),
    };
    let text = match req.body.get("text") {
        Some(Value::Object(t)) => json!({
            "format": t.get("format").cloned().unwrap_or(json!({"type": "text"})),
            "verbosity": t.get("verbosity").cloned().unwrap_or(json!("medium")),
        }),
        _ => json!({"format": {"type": "text"}, "verbosity": "medium"}),
    };
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": req.background,
        "completed_at": null,
        "conversation": conversation,
        "error": null,
        "incomplete_details": null,
        "instructions": echo(req, "instructions", Value::Null),
        "max_output_tokens": echo(req, "max_output_tokens", Value::Null),
        "max_tool_calls": echo(req, "max_tool_calls", Value::Null),
        "model": req.model,
        "output": [],
        "parallel_tool_calls": echo(req, "parallel_tool_calls", json!(true)),
        "previous_response_id": echo(req, "previous_response_id", Value::Null),
        "prompt_cache_key": echo(req, "prompt_cache_key", Value::Null),
        "reasoning": reasoning,
        "safety_identifier": echo(req, "safety_identifier", Value::Null),
        "service_tier": echo(req, "service_tier", json!("auto")),
        "store": req.store,
        "temperature": echo(req, "temperature", json!(1.0)),
        "text": text,
        "tool_choice": echo(req, "tool_choice", json!("auto")),
        "tools": req.tools,
        "top_logprobs": echo(req, "top_logprobs", json!(0)),
        "top_p": echo(req, "top_p", json!(1.0)),
        "truncation": echo(req, "truncation", json!("disabled")),
        "usage": null,
        "user": echo(req, "user", Value::Null),
        "metadata": req.metadata,
    })
}
