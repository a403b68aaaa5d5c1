//! `POST /v1/jobs/{id}/respond`: a person answers what a job waiting in `requires_action`
//! asks for. The body mirrors the Responses API's own input items: `{"call_id", "output"}` for
//! a function call, `{"approval_request_id", "approve", "reason"?}` for an MCP approval, or a
//! list of them when several wait.

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::error::ErrorBody;
use super::extract::{ApiJson, ApiPath};
use super::jobs::{JobPath, not_found, parse_id};
use super::{ApiError, ApiState};
use crate::job::handler::{ActionKind, approval_output};
use crate::store::{PersonAnswer, Responded};
use crate::view::JobView;

/// The longest function output a person may give (what OpenAI takes as one output is about
/// 10 MB; a request body is bounded by the API's body limit anyway).
const MAX_OUTPUT_BYTES: usize = 10 * 1024 * 1024;
/// The longest reason of an approval or a denial.
const MAX_REASON_CHARS: usize = 2000;

/// The body's schema, as [`parse_answers`] takes it (the OpenAPI document states it).
pub fn body_schema() -> Value {
    let function = serde_json::json!({
        "type": "object",
        "description": "A function call's output.",
        "required": ["call_id", "output"],
        "additionalProperties": false,
        "properties": {
            "type": {"const": "function_call_output"},
            "call_id": {"type": "string", "minLength": 1},
            "output": {"type": "string", "maxLength": MAX_OUTPUT_BYTES / 4}
        }
    });
    let approval = serde_json::json!({
        "type": "object",
        "description": "An MCP approval request approved or denied.",
        "required": ["approval_request_id", "approve"],
        "additionalProperties": false,
        "properties": {
            "type": {"const": "mcp_approval_response"},
            "approval_request_id": {"type": "string", "minLength": 1},
            "approve": {"type": "boolean"},
            "reason": {"type": ["string", "null"], "maxLength": MAX_REASON_CHARS}
        }
    });
    let answer = serde_json::json!({"oneOf": [function, approval]});
    serde_json::json!({
        "oneOf": [answer.clone(), {"type": "array", "minItems": 1, "items": answer}]
    })
}

/// Parses a respond body: one answer or a list of them. Errors name the field (`[1].output`).
pub fn parse_answers(body: &Value) -> Result<Vec<PersonAnswer>, (String, String)> {
    let (items, indexed): (Vec<&Value>, bool) = match body {
        Value::Array(a) if a.is_empty() => {
            return Err(("(body)".into(), "the list of answers is empty".into()));
        }
        Value::Array(a) => (a.iter().collect(), true),
        other => (vec![other], false),
    };
    let at = |i: usize, field: &str| {
        if indexed {
            format!("[{i}].{field}")
        } else {
            field.to_string()
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Some(m) = item.as_object() else {
            return Err((
                at(i, "(answer)").replace(".(answer)", ""),
                "an answer is an object: `{\"call_id\", \"output\"}` or `{\"approval_request_id\", \"approve\", \"reason\"}`".into(),
            ));
        };
        let text = |k: &str| m.get(k).and_then(Value::as_str);
        let known = [
            "call_id",
            "output",
            "approval_request_id",
            "approve",
            "reason",
            "type",
        ];
        if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
            return Err((at(i, k), "is not a field of an answer".into()));
        }
        // The API's own item types may be given, and must then be the right one.
        let wanted = if m.contains_key("call_id") {
            "function_call_output"
        } else {
            "mcp_approval_response"
        };
        if m.get("type").is_some_and(|t| t.as_str() != Some(wanted)) {
            return Err((at(i, "type"), format!("must be `{wanted}` (or left out)")));
        }
        match (m.get("call_id"), m.get("approval_request_id")) {
            (Some(_), Some(_)) => {
                return Err((
                    at(i, "call_id"),
                    "an answer is to a function call (`call_id`) or to an approval request (`approval_request_id`), not both".into(),
                ));
            }
            (Some(_), None) => {
                let Some(call_id) = text("call_id").filter(|s| !s.is_empty()) else {
                    return Err((at(i, "call_id"), "must be a non-empty string".into()));
                };
                let output = match m.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    None => {
                        return Err((
                            at(i, "output"),
                            "is required: the function's output, a string".into(),
                        ));
                    }
                    Some(_) => {
                        return Err((
                            at(i, "output"),
                            "must be a string (JSON output goes as its text)".into(),
                        ));
                    }
                };
                if output.len() > MAX_OUTPUT_BYTES {
                    return Err((
                        at(i, "output"),
                        format!("is longer than {MAX_OUTPUT_BYTES} bytes"),
                    ));
                }
                if m.contains_key("approve") || m.contains_key("reason") {
                    return Err((
                        at(i, "approve"),
                        "goes with `approval_request_id`, not `call_id`".into(),
                    ));
                }
                out.push(PersonAnswer {
                    item_id: call_id.to_string(),
                    kind: ActionKind::Function,
                    output,
                });
            }
            (None, Some(_)) => {
                let Some(id) = text("approval_request_id").filter(|s| !s.is_empty()) else {
                    return Err((
                        at(i, "approval_request_id"),
                        "must be a non-empty string".into(),
                    ));
                };
                let approve = match m.get("approve") {
                    Some(Value::Bool(b)) => *b,
                    None => return Err((at(i, "approve"), "is required: true or false".into())),
                    Some(_) => return Err((at(i, "approve"), "must be true or false".into())),
                };
                let reason = match m.get("reason") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(r)) if r.chars().count() <= MAX_REASON_CHARS => {
                        Some(r.as_str())
                    }
                    Some(Value::String(_)) => {
                        return Err((
                            at(i, "reason"),
                            format!("is longer than {MAX_REASON_CHARS} characters"),
                        ));
                    }
                    Some(_) => return Err((at(i, "reason"), "must be a string".into())),
                };
                if m.contains_key("output") {
                    return Err((
                        at(i, "output"),
                        "goes with `call_id`, not `approval_request_id`".into(),
                    ));
                }
                out.push(PersonAnswer {
                    item_id: id.to_string(),
                    kind: ActionKind::Approval,
                    output: approval_output(approve, reason),
                });
            }
            (None, None) => {
                return Err((
                    at(i, "call_id"),
                    "an answer names what it answers: `call_id` (a function call) or `approval_request_id` (an MCP approval request)".into(),
                ));
            }
        }
    }
    Ok(out)
}

/// Answer what a job waiting for a person asks: function outputs, MCP approvals.
#[utoipa::path(post, path = "/v1/jobs/{id}/respond", tag = "jobs", params(("id" = String, Path)),
    request_body(content = Object, description = "`{\"call_id\", \"output\"}` for a function call, `{\"approval_request_id\", \"approve\", \"reason\"?}` for an MCP approval request, or a list of them"),
    responses((status = 200, description = "Taken; the job goes on once nothing waits", body = JobView),
        (status = 400, description = "A malformed answer, or one that names nothing the job waits for (`param` names it)", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The job does not wait for a person (code `not_waiting`)", body = ErrorBody)))]
pub async fn respond(
    State(state): State<ApiState>,
    ApiPath(super::jobs::JobPath { id }): ApiPath<JobPath>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_id(&id)?;
    let answers = parse_answers(&body)
        .map_err(|(field, m)| ApiError::invalid(format!("`{field}` {m}"), Some(field)))?;
    match state.orchestrator.respond(&id, &answers).await? {
        Responded::Taken { .. } => {}
        Responded::Missing => return Err(not_found(&id)),
        Responded::NotWaiting(status) => {
            return Err(ApiError::state_conflict(
                format!("job `{id}` does not wait for an answer (it is {status})"),
                None,
            )
            .with_code("not_waiting"));
        }
        Responded::Unknown(i, reason) => {
            let field = match (&body, answers.get(i).map(|a| a.kind)) {
                (Value::Array(_), Some(ActionKind::Approval)) => {
                    format!("[{i}].approval_request_id")
                }
                (Value::Array(_), _) => format!("[{i}].call_id"),
                (_, Some(ActionKind::Approval)) => "approval_request_id".into(),
                _ => "call_id".into(),
            };
            return Err(ApiError::invalid(reason, Some(field)).with_code("unknown_action"));
        }
    }
    let row = state
        .store
        .get_job(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let mut v = JobView::priced(&row, &state.config.get().pricing());
    v.actions = state.store.job_actions(&id).await?;
    Ok(Json(v))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn answers_parse_with_their_field_named() {
        let one = parse_answers(&json!({"call_id": "call_1", "output": "Zürich: 3°C"})).unwrap();
        assert_eq!(one[0].kind, ActionKind::Function);
        assert_eq!(one[0].output, "Zürich: 3°C");
        let both = parse_answers(&json!([
            {"call_id": "call_1", "output": ""},
            {"approval_request_id": "mcpr_1", "approve": false, "reason": "no"},
        ]))
        .unwrap();
        assert_eq!(both[1].output, approval_output(false, Some("no")));
        let err = |v: Value| parse_answers(&v).unwrap_err();
        assert_eq!(err(json!([])).0, "(body)");
        assert_eq!(err(json!({"call_id": "c"})).0, "output");
        assert_eq!(err(json!({"call_id": "c", "output": 3})).0, "output");
        assert_eq!(
            err(json!([{"call_id": "c", "output": "x"}, {"approval_request_id": "m"}])).0,
            "[1].approve"
        );
        assert_eq!(
            err(json!({"approval_request_id": "m", "approve": "yes"})).0,
            "approve"
        );
        assert_eq!(
            err(json!({"call_id": "c", "approval_request_id": "m"})).0,
            "call_id"
        );
        assert_eq!(err(json!({"outptu": "x", "call_id": "c"})).0, "outptu");
        assert_eq!(err(json!({})).0, "call_id");
        assert_eq!(err(json!("text")).0, "(answer)");
        assert_eq!(
            err(json!({"type": "message", "call_id": "c", "output": ""})).0,
            "type"
        );
    }

    /// What the document states is what the parser takes: each sample is accepted by both or
    /// refused by both.
    #[test]
    fn the_schema_and_the_parser_agree() {
        let schema = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&body_schema())
            .unwrap();
        let samples = [
            json!({"call_id": "call_1", "output": "x"}),
            json!({"call_id": " ", "output": ""}),
            json!({"type": "function_call_output", "call_id": "c", "output": "Zürich"}),
            json!({"approval_request_id": "mcpr_1", "approve": true}),
            json!({"approval_request_id": "mcpr_1", "approve": false, "reason": null}),
            json!({"type": "mcp_approval_response", "approval_request_id": "m", "approve": true, "reason": "ok"}),
            json!([{"call_id": "c", "output": "x"}, {"approval_request_id": "m", "approve": true}]),
            json!([]),
            json!({}),
            json!({"call_id": "", "output": "x"}),
            json!({"call_id": "c"}),
            json!({"call_id": "c", "output": 1}),
            json!({"call_id": "c", "output": "x", "approve": true}),
            json!({"approval_request_id": "m"}),
            json!({"approval_request_id": "m", "approve": "yes"}),
            json!({"approval_request_id": "m", "approve": true, "reason": "r".repeat(2001)}),
            json!({"approval_request_id": "m", "approve": true, "output": "x"}),
            json!({"call_id": "c", "output": "x", "extra": 1}),
            json!({"type": "message", "call_id": "c", "output": "x"}),
            json!(["x"]),
            json!(7),
        ];
        for s in samples {
            assert_eq!(
                schema.is_valid(&s),
                parse_answers(&s).is_ok(),
                "schema and parser disagree on {s}"
            );
        }
    }
}
