//! Reading a Response object: only what the ledger needs is parsed; the whole JSON is kept.
//! Unknown output item types, content parts and error codes are tolerated.

use serde_json::Value;

use super::UpstreamError;
use crate::job::{JobError, JobStatus, Observation, ResponseId};

/// Reduces a Response JSON to an [`Observation`].
pub fn observe(raw: Value) -> Result<Observation, UpstreamError> {
    let id = raw
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| UpstreamError::InvalidResponse("a response without `id`".into()))?;
    let response_id =
        ResponseId::parse(id).map_err(|e| UpstreamError::InvalidResponse(e.to_string()))?;
    let status_text = raw.get("status").and_then(Value::as_str).unwrap_or("");
    let status = match status_text {
        "queued" => JobStatus::Queued,
        "in_progress" => JobStatus::InProgress,
        "completed" => JobStatus::Completed,
        "failed" => JobStatus::Failed,
        "incomplete" => JobStatus::Incomplete,
        "cancelled" => JobStatus::Cancelled,
        other => {
            return Err(UpstreamError::InvalidResponse(format!(
                "a response with unknown status `{other}`"
            )));
        }
    };
    // A JSON answer is the last message's text: a model may comment before it answers.
    let output_text = if crate::structured::Format::of(&raw).is_some() {
        crate::structured::answer_text(&raw)
    } else {
        output_text(&raw)
    };
    let usage = raw.get("usage").filter(|u| !u.is_null()).cloned();
    // A `completed` response that refused, or that asked for JSON and got something else, is
    // not an answer: the job fails with a code of its own rather than completing empty.
    let judged = match status {
        JobStatus::Completed => crate::structured::judge(&raw, output_text.as_deref()),
        _ => None,
    };
    if let Some((code, message)) = judged {
        return Ok(Observation {
            response_id,
            status: JobStatus::Failed,
            output_text,
            usage,
            error: Some(JobError {
                code: code.to_string(),
                message,
            }),
            raw,
        });
    }
    let error = match status {
        JobStatus::Failed => Some(match raw.get("error").filter(|e| !e.is_null()) {
            Some(e) => JobError {
                code: e
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown_error")
                    .to_string(),
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            },
            None => JobError {
                code: "unknown_error".into(),
                message: "the response failed without an error".into(),
            },
        }),
        JobStatus::Incomplete => {
            let reason = raw
                .pointer("/incomplete_details/reason")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string();
            Some(JobError {
                message: format!("the response is incomplete ({reason})"),
                code: reason,
            })
        }
        _ => None,
    };
    Ok(Observation {
        response_id,
        status,
        output_text,
        usage,
        error,
        raw,
    })
}

/// Every `output_text` part of every `message` item, joined: the SDKs' `output_text`.
/// `None` when the response has no message yet.
pub fn output_text(raw: &Value) -> Option<String> {
    crate::structured::text_of(crate::structured::messages(raw))
}

/// The response id in a body that is not valid JSON (cut short, or with garbage after it):
/// the first `"id": "resp_…"` in it. Only for a 2xx answer to our own request, where the
/// first `id` key is the response's (it precedes `output` in every Response OpenAI sends).
pub fn salvage_response_id(body: &[u8]) -> Option<ResponseId> {
    let text = String::from_utf8_lossy(body);
    let mut rest: &str = &text;
    while let Some(at) = rest.find("\"id\"") {
        rest = &rest[at + 4..];
        let after = rest.trim_start();
        let Some(after) = after.strip_prefix(':') else {
            continue;
        };
        let after = after.trim_start();
        let Some(value) = after.strip_prefix('"') else {
            continue;
        };
        let id: String = value
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if id.starts_with("resp_") && value[id.len()..].starts_with('"') {
            return ResponseId::parse(&id).ok();
        }
        return None;
    }
    None
}

/// The job (and its turn) respool tagged a response with, if any ([`crate::job::turn_tag`]).
pub fn tagged_job_id(raw: &Value) -> Option<(crate::job::JobId, i64)> {
    crate::job::parse_turn_tag(
        raw.get("metadata")?
            .get(crate::job::METADATA_JOB_KEY)?
            .as_str()?,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn completed_response() {
        let raw = json!({"id": "resp_1", "status": "completed", "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "some_future_item"},
            {"type": "message", "content": [{"type": "output_text", "text": "Hello ", "annotations": []},
                                            {"type": "refusal", "refusal": "no"},
                                            {"type": "output_text", "text": "world"}]}],
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
            "metadata": {"respool_job_id": "job_01KBN8V3ZQ4W7G8Y2H5J6K9M0P:2"}});
        let obs = observe(raw.clone()).unwrap();
        assert_eq!(obs.status, JobStatus::Completed);
        assert_eq!(obs.output_text.as_deref(), Some("Hello world"));
        assert_eq!(obs.usage.unwrap()["total_tokens"], 5);
        let (job, turn) = tagged_job_id(&raw).unwrap();
        assert_eq!((job.as_str(), turn), ("job_01KBN8V3ZQ4W7G8Y2H5J6K9M0P", 2));
        assert_eq!(
            tagged_job_id(&json!({"metadata": {"respool_job_id": "job_x"}})),
            None
        );
    }

    #[test]
    fn a_refusal_or_a_json_answer_off_its_schema_fails_the_job() {
        let refused = observe(json!({"id": "resp_1", "status": "completed", "output": [
            {"type": "message", "content": [{"type": "refusal", "refusal": "I can't help with that."}]}],
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}})).unwrap();
        assert_eq!(refused.status, JobStatus::Failed);
        assert_eq!(
            refused.error.as_ref().unwrap().code,
            crate::structured::REFUSAL
        );
        // Its usage is kept: a refusal is paid for.
        assert_eq!(refused.usage.unwrap()["total_tokens"], 5);

        let schema =
            json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
        let answer = |text: &str| {
            json!({"id": "resp_1", "status": "completed",
            "text": {"format": {"type": "json_schema", "name": "count", "schema": schema}},
            "output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}]})
        };
        let ok = observe(answer(r#"{"n": 3}"#)).unwrap();
        assert_eq!(ok.status, JobStatus::Completed);
        assert_eq!(ok.error, None);
        let off = observe(answer(r#"{"n": "three"}"#)).unwrap();
        assert_eq!(off.status, JobStatus::Failed);
        assert_eq!(off.error.unwrap().code, crate::structured::SCHEMA_MISMATCH);
        assert_eq!(
            off.output_text.as_deref(),
            Some(r#"{"n": "three"}"#),
            "the text is kept"
        );
        // Only a completed response is judged.
        let mut running = answer("{");
        running["status"] = json!("in_progress");
        assert_eq!(observe(running).unwrap().status, JobStatus::InProgress);
    }

    #[test]
    fn salvages_the_id_of_a_body_cut_short() {
        let body =
            br#"{"id": "resp_abc123", "object": "response", "status": "queued", "output": [{"#;
        assert_eq!(
            salvage_response_id(body).map(|r| r.as_str().to_string()),
            Some("resp_abc123".into())
        );
        assert!(salvage_response_id(b"<html>502 Bad Gateway</html>").is_none());
        assert!(salvage_response_id(br#"{"id": "msg_1"}"#).is_none());
        assert!(
            salvage_response_id(br#"{"id": "resp_1"#).is_none(),
            "an id cut short is no id"
        );
        assert!(salvage_response_id(b"").is_none());
    }

    #[test]
    fn failed_and_incomplete() {
        let f = observe(json!({"id": "resp_1", "status": "failed", "error": {"code": "brand_new_code", "message": "m"}})).unwrap();
        assert_eq!(f.error.unwrap().code, "brand_new_code");
        let i = observe(json!({"id": "resp_1", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}})).unwrap();
        assert_eq!(i.error.unwrap().code, "max_output_tokens");
        assert!(observe(json!({"id": "resp_1", "status": "weird"})).is_err());
        assert!(observe(json!({"status": "queued"})).is_err());
    }
}
