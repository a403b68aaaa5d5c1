//! A sample notification for `respool notify test SINK`: a made-up completed job with a
//! report, citations, a reasoning summary and usage, so every part of a message shows.

use serde_json::{Value, json};

use super::{Context, Notification, Sink, SinkError};
use crate::config::Config;
use crate::job::{JobSpec, JobStatus};
use crate::store::{EventRow, JobRow, SubmitState};

const REPORT: &str = "# Sample report\n\nThis is a **test notification** from respool. A real one carries the \
output of a finished job, like this [cited source](https://example.com/source).\n\n- Findings are listed\n- \
with Markdown formatting\n";

/// A completed job as respool would store it.
pub fn sample_job(now_ms: i64) -> (JobRow, Value, Vec<EventRow>) {
    let spec = JobSpec::from_value(
        json!({"name": "respool-test", "model": "o4-mini-deep-research", "input": "A test notification",
               "metadata": {"purpose": "notify test"}}),
        "sample",
    )
    .unwrap_or_else(|_| JobSpec {
        name: "respool-test".into(),
        request: serde_json::Map::new(),
        notify: None,
        idempotency_key: None,
        timeout: None,
        schedule: None,
        priority: 0,
        budget_exempt: false,
        attachments: Vec::new(),
        knowledge: Vec::new(),
        handlers: Default::default(),
        max_turns: None,
        progress: None,
        after: None,
        input_template: None,
        new_conversation: false,
    });
    let start = REPORT.find("[cited source]").unwrap_or(0);
    let response = json!({
        "id": "resp_sample", "object": "response", "status": "completed", "model": "o4-mini-deep-research",
        "output": [
            {"type": "reasoning", "id": "rs_sample", "summary": [{"type": "summary_text", "text": "Planned the search, read three sources, compared them."}]},
            {"type": "message", "id": "msg_sample", "role": "assistant", "status": "completed", "content": [
                {"type": "output_text", "text": REPORT, "annotations": [
                    {"type": "url_citation", "url": "https://example.com/source", "title": "Example source",
                     "start_index": start, "end_index": start + 36}]}]},
            {"type": "web_search_call", "id": "ws_sample", "status": "completed", "action": {"type": "search", "query": "respool sample"}}],
        "tools": [{"type": "web_search_preview"}], "service_tier": "default",
        "usage": {"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 800, "output_tokens_details": {"reasoning_tokens": 300}, "total_tokens": 2000}
    });
    let job = JobRow {
        id: crate::job::JobId::parse("job_00000000000000000000000000").expect("a job id"),
        name: spec.name.clone(),
        model: "o4-mini-deep-research".into(),
        status: JobStatus::Completed,
        spec,
        idempotency_key: None,
        spec_hash: String::new(),
        response_id: Some(crate::job::ResponseId::parse("resp_sample").expect("a response id")),
        attempt: 1,
        submit_state: SubmitState::Done,
        submissions: 1,
        created_at: now_ms - 65_000,
        updated_at: now_ms,
        submitted_at: Some(now_ms - 64_000),
        finished_at: Some(now_ms),
        deadline_at: None,
        next_check_at: None,
        lease_until: None,
        poll_interval_ms: 0,
        polls: 3,
        wake_pending: 0,
        cancel_requested: 0,
        cancel_reason: None,
        output_text: Some(REPORT.into()),
        error_code: None,
        error_message: None,
        usage: response.get("usage").cloned(),
        retry_of: None,
        tools: sample_tools(&response),
        turn: 0,
        chain_id: None,
    };
    let events = vec![
        EventRow {
            id: 1,
            job_id: job.id.clone(),
            at: now_ms - 65_000,
            kind: "accepted".into(),
            message: "accepted from notify test".into(),
            data: None,
        },
        EventRow {
            id: 2,
            job_id: job.id.clone(),
            at: now_ms,
            kind: "status".into(),
            message: "in_progress → completed (webhook)".into(),
            data: None,
        },
    ];
    (job, response, events)
}

/// Sends the sample through `sink`.
pub async fn send(sink: &Sink, config: &Config) -> Result<(), SinkError> {
    let now = chrono::Utc::now().timestamp_millis();
    let (job, response, events) = sample_job(now);
    let ctx = Context::build("job.completed", &job, Some(&response), &events, config);
    sink.deliver(&Notification {
        id: 0,
        event: "job.completed",
        job: &job,
        response: Some(&response),
        ctx: &ctx,
        artifacts: &[],
    })
    .await
}

/// The tool columns the store would keep for the sample response.
fn sample_tools(response: &serde_json::Value) -> crate::store::ToolColumns {
    let u = crate::pricing::ToolUsage::from_response(response, &Default::default());
    crate::store::ToolColumns {
        web_search_calls: Some(u.web_search_calls),
        web_search_preview_calls: Some(u.web_search_preview_calls),
        file_search_calls: Some(u.file_search_calls),
        code_containers: Some(u.code_containers),
        images: Some(u.images),
        image_fee_microusd: Some(u.image_fee_microusd),
        service_tier: crate::pricing::tools::service_tier(response).map(str::to_owned),
    }
}
