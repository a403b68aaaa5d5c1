//! The public view of a job: what `GET /v1/jobs/{id}` answers, what the webhook sink posts,
//! what the CLI and the pages read. Built from a ledger row and the configured prices.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::job::{JobError, JobStatus};
use crate::pricing::{ModelPrice, usage_cost_usd};
use crate::store::{DuplicateRow, JobRow};

/// A job as the API shows it. Times are unix seconds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: String,
    /// Always `job`.
    pub object: String,
    pub name: String,
    pub status: JobStatus,
    pub model: String,
    pub response_id: Option<String>,
    pub created_at: i64,
    pub submitted_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub output_text: Option<String>,
    /// The answer parsed as JSON, for a job that asks for JSON (`text.format` of type
    /// `json_schema` or `json_object`) once it has ended; `null` otherwise, while it runs (a
    /// partial answer is in `output_text`), or when it does not parse (the job's `error` then
    /// says so).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub output_json: Option<Value>,
    pub error: Option<JobError>,
    #[schema(value_type = Option<Object>)]
    pub usage: Option<Value>,
    /// Create calls sent upstream for this job (1 in the normal case).
    pub attempts: i64,
    pub cancel_requested: bool,
    pub idempotency_key: Option<String>,
    /// Submission order among waiting jobs: higher first.
    #[serde(default)]
    pub priority: i64,
    /// When the job's timeout cancels it, if it has one.
    pub deadline_at: Option<i64>,
    /// The job's metadata pairs (without respool's own tag); `{}` when it has none.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub metadata: Value,
    /// What the job's usage cost at its model's price (the configured `pricing`, else the
    /// built-in table); `null` without usage or a price.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Why `cost_usd` is `null` although the job has usage: its model has no price (the
    /// message names the model and how to give it one). `null` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_unknown: Option<String>,
    /// The job this one retries (`respool jobs retry`), if any.
    #[serde(default)]
    pub retry_of: Option<String>,
    /// The job's spec as stored (respool's keys and the create body), with credentials in
    /// tools (`authorization`, `headers`, userinfo and query of `server_url`) redacted. Only on
    /// `GET /v1/jobs/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
    /// Ids of the jobs that retry this one, oldest first. Only on `GET /v1/jobs/{id}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried_by: Vec<String>,
    /// Responses created for this job besides the one it holds (a create sent again after
    /// its answer was lost, a run revealed later): cancelled while they ran, paid for all the
    /// same. Only on `GET /v1/jobs/{id}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<DuplicateView>,
    /// Only in the answer to `POST /v1/jobs`: fields OpenAI's create-request schema does not
    /// name, passed through as they are (a typo, or a parameter newer than respool's copy of
    /// the schema). Each is also in the job's timeline (`spec_warning`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A paid duplicate response of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DuplicateView {
    pub response_id: String,
    /// Its last known upstream status (`cancelled` once respool stopped it), or `unknown`.
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub usage: Option<Value>,
    /// What its usage cost at the configured prices (`null` without usage or a price).
    pub cost_usd: Option<f64>,
    /// How it was found: `create`, `webhook` or `journal`.
    pub found_by: String,
    /// When it was found (unix seconds).
    pub found_at: i64,
}

impl DuplicateView {
    /// The view of a stored duplicate of a job using `model`.
    pub fn priced(d: &DuplicateRow, model: &str, prices: &BTreeMap<String, ModelPrice>) -> Self {
        Self {
            response_id: d.response_id.to_string(),
            status: d.status.clone(),
            usage: d.usage.clone(),
            cost_usd: d
                .usage
                .as_ref()
                .and_then(|u| usage_cost_usd(prices, model, u)),
            found_by: d.found_by.clone(),
            found_at: d.found_at.div_euclid(1000),
        }
    }
}

impl JobView {
    /// The view with `cost_usd` filled in from these prices.
    pub fn priced(row: &JobRow, prices: &BTreeMap<String, ModelPrice>) -> Self {
        let mut v = JobView::from(row);
        v.cost_usd = row
            .usage
            .as_ref()
            .and_then(|u| usage_cost_usd(prices, &row.model, u));
        if row.usage.is_some() && v.cost_usd.is_none() {
            v.cost_unknown = crate::pricing::unpriced_reason(prices, &row.model);
        }
        v
    }
}

impl From<&JobRow> for JobView {
    fn from(r: &JobRow) -> Self {
        let secs = |ms: i64| ms.div_euclid(1000);
        JobView {
            id: r.id.to_string(),
            object: "job".into(),
            name: r.name.clone(),
            status: r.status,
            model: r.model.clone(),
            response_id: r.response_id.as_ref().map(ToString::to_string),
            created_at: secs(r.created_at),
            submitted_at: r.submitted_at.map(secs),
            finished_at: r.finished_at.map(secs),
            output_text: r.output_text.clone(),
            output_json: r
                .status
                .is_terminal()
                .then(|| crate::structured::output_json(&r.spec.request, r.output_text.as_deref()))
                .flatten(),
            error: r.error(),
            usage: r.usage.clone(),
            attempts: r.submissions,
            cancel_requested: r.cancel_requested == 1,
            idempotency_key: r.idempotency_key.clone(),
            priority: r.spec.priority,
            deadline_at: r.deadline_at.map(secs),
            metadata: r
                .spec
                .request
                .get("metadata")
                .filter(|m| m.is_object())
                .cloned()
                .unwrap_or_else(|| serde_json::json!({})),
            cost_usd: None,
            cost_unknown: None,
            retry_of: r.retry_of.as_ref().map(ToString::to_string),
            spec: None,
            retried_by: Vec::new(),
            duplicates: Vec::new(),
            warnings: Vec::new(),
        }
    }
}
