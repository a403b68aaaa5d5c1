//! What the simulator created, per job: `GET /_sim/responses[?job_id=…]` and
//! [`SimHandle::responses`](super::SimHandle::responses). A test counts with it how many
//! responses a client started for one job (`metadata.respool_job_id`), how each one ended and
//! what its output text was, and whether its create's answer was lost on the way.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::Shared;

/// One response the simulator created, as it stands now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimResponse {
    /// `resp_…`.
    pub id: String,
    /// `metadata.respool_job_id` of its create, if any.
    pub job_id: Option<String>,
    /// `queued`, `in_progress`, `completed`, `failed`, `incomplete`, `cancelled`, or
    /// `deleted` once deleted or past retention.
    pub status: String,
    /// Its `output_text` the way the SDKs join it (every `output_text` part of every
    /// `message` item); `None` when it has no message.
    pub output_text: Option<String>,
    /// `error.code` of a failed response, `incomplete_details.reason` of an incomplete one.
    pub error_code: Option<String>,
    /// Wall-clock creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Wall-clock time it reached its terminal status, Unix milliseconds.
    pub finished_ms: Option<i64>,
    /// `ok` when the create was answered normally, else the fault that lost the answer:
    /// `hang`, `create_then_drop`, `create_then_gateway_error`.
    pub answer: String,
    /// The webhook fault dropped its terminal event: no webhook revealed it.
    #[serde(default)]
    pub webhook_dropped: bool,
}

impl Shared {
    /// Every response created (for `job_id` only, if given), oldest first, advanced to now.
    pub fn responses(&self, job_id: Option<&str>) -> Vec<SimResponse> {
        let ids: Vec<(Option<String>, String)> = {
            let inner = self.lock();
            inner
                .created
                .iter()
                // A job's later turns are tagged `job_…:N`: they are the job's too.
                .filter(|(j, _)| match (job_id, j.as_deref()) {
                    (None, _) => true,
                    (Some(want), Some(tag)) => {
                        tag == want
                            || tag
                                .strip_prefix(want)
                                .is_some_and(|rest| rest.starts_with(':'))
                    }
                    (Some(_), None) => false,
                })
                .cloned()
                .collect()
        };
        ids.into_iter()
            .map(|(job, id)| {
                let seen = self
                    .with_any_entry(&id, |e| {
                        let finished_ms = e.terminal_at.map(|t| {
                            let ms = t.saturating_duration_since(e.created).as_millis();
                            e.created_ms + i64::try_from(ms).unwrap_or(i64::MAX)
                        });
                        let snapshot = &e.snapshot;
                        let error_code = snapshot
                            .pointer("/error/code")
                            .or_else(|| snapshot.pointer("/incomplete_details/reason"))
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                        (
                            e.status.as_str().to_owned(),
                            output_text(snapshot),
                            error_code,
                            e.created_ms,
                            finished_ms,
                            e.answer_lost.unwrap_or("ok").to_owned(),
                            e.webhook_dropped,
                        )
                    })
                    .unwrap_or_else(|| {
                        (
                            "deleted".into(),
                            None,
                            None,
                            0,
                            None,
                            "unknown".into(),
                            false,
                        )
                    });
                let (status, output_text, error_code, created_ms, finished_ms, answer, dropped) =
                    seen;
                SimResponse {
                    id,
                    job_id: job,
                    status,
                    output_text,
                    error_code,
                    created_ms,
                    finished_ms,
                    answer,
                    webhook_dropped: dropped,
                }
            })
            .collect()
    }
}

/// Every `output_text` part of every `message` item, joined (the SDKs' `output_text`).
pub(crate) fn output_text(response: &Value) -> Option<String> {
    let items = response.get("output")?.as_array()?;
    let mut out = String::new();
    let mut any = false;
    for item in items
        .iter()
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("message"))
    {
        let parts = item.get("content").and_then(Value::as_array);
        for part in parts.into_iter().flatten() {
            if part.get("type").and_then(Value::as_str) == Some("output_text")
                && let Some(t) = part.get("text").and_then(Value::as_str)
            {
                out.push_str(t);
                any = true;
            }
        }
    }
    any.then_some(out)
}
