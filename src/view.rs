//! The public view of a job: what `GET /v1/jobs/{id}` answers, what the webhook sink posts,
//! what the CLI and the pages read. Built from a ledger row and the prices in force; what a
//! job cost comes from [`job_cost`], the one cost function applied to a stored row.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::job::{JobError, JobStatus};
use crate::pricing::{Cost, Prices, Tokens, cost, unpriced_reason};
use crate::store::{DuplicateRow, JobRow, ToolColumns};

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
    /// What the job cost: its tokens at its model's price (the configured `pricing`, else the
    /// built-in table) in the service tier its response used, plus its tool fees (see
    /// `cost`); `null` without usage or a price.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Why `cost_usd` is `null` although the job has usage or tool fees: its model has no
    /// price (the message names the model and how to give it one), or its response reported
    /// no token usage. `null` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_unknown: Option<String>,
    /// The cost split into tokens and tool fees, with the tier and tool calls it comes from;
    /// absent until the job has usage or a final response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostBreakdown>,
    /// The job this one retries (`respool jobs retry`), if any.
    #[serde(default)]
    pub retry_of: Option<String>,
    /// The job this one runs after (`after`), if any: it waits until that job completes.
    #[serde(default)]
    pub after: Option<String>,
    /// The chain the job belongs to, as its first job's id (`GET /v1/jobs?chain=…` lists it),
    /// if it runs after another job or another runs after it.
    #[serde(default)]
    pub chain_id: Option<String>,
    /// Its chain: every member in order with its status, the jobs that run after this one, and
    /// the conversation it runs on. Only on `GET /v1/jobs/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainView>,
    /// The job's spec as stored (respool's keys and the create body), with credentials in
    /// tools (`authorization`, `headers`, userinfo and query of `server_url`) redacted. Only on
    /// `GET /v1/jobs/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
    /// What the job's responses asked for, turn by turn: function calls and MCP approval
    /// requests, with who answered them and how. Those in state `waiting` wait for a person
    /// (`POST /v1/jobs/{id}/respond`). Only on `GET /v1/jobs/{id}` and `respond`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<crate::store::ActionRow>,
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

/// A job's chain (`after` links) and conversation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChainView {
    /// The chain's first job.
    pub id: Option<String>,
    /// Every job of the chain, oldest first, each with its status and the job it runs after.
    pub members: Vec<ChainLink>,
    /// The jobs that run after this one.
    pub followers: Vec<ChainLink>,
    /// The conversation the job runs on (`conv_…`; `null` while respool creates it).
    pub conversation: Option<String>,
}

/// One job of a chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChainLink {
    pub id: String,
    pub name: String,
    pub status: String,
    /// The job it runs after.
    pub after: Option<String>,
}

impl ChainView {
    /// The chain of a job: `None` for a job outside any chain or conversation.
    pub async fn of(
        store: &crate::store::Store,
        row: &JobRow,
    ) -> Result<Option<Self>, crate::store::StoreError> {
        let conversation = store.job_conversation(&row.id).await?;
        let members = match &row.chain_id {
            Some(c) => store.chain_members(c.as_str()).await?,
            None => Vec::new(),
        };
        if members.is_empty() && conversation.is_none() {
            return Ok(None);
        }
        Ok(Some(Self::new(
            row.id.as_str(),
            members,
            conversation.and_then(|(_, id)| id),
        )))
    }

    /// The chain of job `id` from its members (oldest first) and its conversation.
    pub fn new(
        id: &str,
        members: Vec<crate::store::ChainMember>,
        conversation: Option<String>,
    ) -> Self {
        let members: Vec<ChainLink> = members
            .into_iter()
            .map(|m| ChainLink {
                id: m.id,
                name: m.name,
                status: m.status,
                after: m.after,
            })
            .collect();
        let followers = members
            .iter()
            .filter(|m| m.after.as_deref() == Some(id))
            .cloned()
            .collect();
        ChainView {
            id: members.first().map(|m| m.id.clone()),
            members,
            followers,
            conversation,
        }
    }
}

/// A paid duplicate response of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DuplicateView {
    pub response_id: String,
    /// Its last known upstream status (`cancelled` once respool stopped it), or `unknown`.
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub usage: Option<Value>,
    /// What it cost, tokens and tool fees (`null` without usage or a price).
    pub cost_usd: Option<f64>,
    /// How it was found: `create`, `webhook` or `journal`.
    pub found_by: String,
    /// When it was found (unix seconds).
    pub found_at: i64,
}

/// What a job cost, split (`cost` of a job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CostBreakdown {
    /// The tokens at the model's price in the service tier used; `null` when the model has no
    /// price or the response reported no usage.
    pub tokens_usd: Option<f64>,
    /// The tool fees together: the four below.
    pub tool_fees_usd: f64,
    /// Web search calls, per 1,000 (`web_search_preview` by a non-reasoning model costs more).
    pub web_search_usd: f64,
    /// File search calls, per 1,000.
    pub file_search_usd: f64,
    /// Code-interpreter containers.
    pub code_interpreter_usd: f64,
    /// Generated images, by quality and size.
    pub image_generation_usd: f64,
    /// The `service_tier` the response reported (`default`, `flex`, `priority`, `scale`, …),
    /// `null` when it named none: `flex` and `priority` have their own token prices, every
    /// other tier the standard ones.
    pub service_tier: Option<String>,
    pub web_search_calls: i64,
    pub file_search_calls: i64,
    /// Distinct code-interpreter containers.
    pub code_containers: i64,
    pub images: i64,
}

/// What a job (or a paid duplicate) of `model` cost, by [`crate::pricing::cost`] at `prices`:
/// its usage's tokens in the tier its final response used, and its tool fees. `None` while
/// nothing is recorded (no usage, no final response). The tokens have no cost (`tokens_usd:
/// None`) when the model has no price or there is no usage (a cancelled response reports none).
pub fn job_cost(
    prices: &Prices<'_>,
    model: &str,
    usage: Option<&Value>,
    tools: &ToolColumns,
) -> Option<Cost> {
    let recorded = tools.usage();
    if usage.is_none() && recorded.is_none() {
        return None;
    }
    let tokens = usage.map(Tokens::from_usage).unwrap_or_default();
    let mut c = cost(
        prices,
        model,
        tools.tier(),
        tokens,
        &recorded.unwrap_or_default(),
    );
    if usage.is_none() {
        c.tokens_usd = None;
    }
    Some(c)
}

impl CostBreakdown {
    /// The breakdown of a cost and the columns it came from.
    pub fn of(c: &Cost, tools: &ToolColumns) -> Self {
        let u = tools.usage().unwrap_or_default();
        Self {
            tokens_usd: c.tokens_usd,
            tool_fees_usd: c.tools_usd(),
            web_search_usd: c.tools.web_search,
            file_search_usd: c.tools.file_search,
            code_interpreter_usd: c.tools.code_interpreter,
            image_generation_usd: c.tools.image_generation,
            service_tier: tools.service_tier.clone(),
            web_search_calls: u.web_search_calls,
            file_search_calls: u.file_search_calls,
            code_containers: u.code_containers,
            images: u.images,
        }
    }

    /// What the tools did, for a person: `3 web searches, 1 container`; empty when nothing.
    pub fn tool_calls(&self) -> String {
        let plural = |n: i64, one: &str, many: &str| {
            (n > 0).then(|| format!("{n} {}", if n == 1 { one } else { many }))
        };
        [
            plural(self.web_search_calls, "web search", "web searches"),
            plural(self.file_search_calls, "file search", "file searches"),
            plural(self.code_containers, "container", "containers"),
            plural(self.images, "image", "images"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
    }

    /// The cost split, for a person: `tokens $0.41 (flex) + tools $0.03 for 3 web searches`.
    /// `money` formats dollars.
    pub fn describe(&self, money: impl Fn(f64) -> String) -> String {
        let tier = match self.service_tier.as_deref() {
            Some(t @ ("flex" | "priority")) => format!(" ({t})"),
            _ => String::new(),
        };
        let tokens = self
            .tokens_usd
            .map_or_else(|| "unknown".to_string(), &money);
        let calls = self.tool_calls();
        if calls.is_empty() {
            format!("tokens {tokens}{tier}")
        } else {
            format!(
                "tokens {tokens}{tier} + tools {} for {calls}",
                money(self.tool_fees_usd)
            )
        }
    }
}

/// Why a job's total is unknown although something of it is recorded: its model has no price,
/// or its response reported no usage while its tools cost something. `None` when the total is
/// known or nothing is recorded.
pub fn cost_unknown_reason(
    prices: &Prices<'_>,
    model: &str,
    usage: Option<&Value>,
    c: Option<&Cost>,
) -> Option<String> {
    let c = c.filter(|c| c.total_usd().is_none())?;
    if usage.is_some() {
        let why = unpriced_reason(prices.models, model)?;
        return Some(if c.tools_usd() > 0.0 {
            format!("{why}; its tool fees were ${:.4}", c.tools_usd())
        } else {
            why
        });
    }
    (c.tools_usd() > 0.0).then(|| {
        format!(
            "unknown: the response reported no token usage (its tool fees were ${:.4})",
            c.tools_usd()
        )
    })
}

impl DuplicateView {
    /// The view of a stored duplicate of a job using `model`.
    pub fn priced(d: &DuplicateRow, model: &str, prices: &Prices<'_>) -> Self {
        Self {
            response_id: d.response_id.to_string(),
            status: d.status.clone(),
            usage: d.usage.clone(),
            cost_usd: job_cost(prices, model, d.usage.as_ref(), &d.tools)
                .and_then(|c| c.total_usd()),
            found_by: d.found_by.clone(),
            found_at: d.found_at.div_euclid(1000),
        }
    }
}

impl JobView {
    /// The view with `cost_usd`, `cost` and `cost_unknown` filled in from these prices.
    pub fn priced(row: &JobRow, prices: &Prices<'_>) -> Self {
        let mut v = JobView::from(row);
        let c = job_cost(prices, &row.model, row.usage.as_ref(), &row.tools);
        v.cost_usd = c.and_then(|c| c.total_usd());
        v.cost_unknown = cost_unknown_reason(prices, &row.model, row.usage.as_ref(), c.as_ref());
        v.cost = c.map(|c| CostBreakdown::of(&c, &row.tools));
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
            cost: None,
            retry_of: r.retry_of.as_ref().map(ToString::to_string),
            after: r.spec.after.clone(),
            chain_id: r.chain_id.as_ref().map(ToString::to_string),
            chain: None,
            spec: None,
            retried_by: Vec::new(),
            actions: Vec::new(),
            duplicates: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::pricing::ToolPrices;

    fn tools(web: i64, tier: Option<&str>) -> ToolColumns {
        ToolColumns {
            web_search_calls: Some(web),
            web_search_preview_calls: Some(0),
            file_search_calls: Some(0),
            code_containers: Some(1),
            images: Some(0),
            image_fee_microusd: Some(0),
            service_tier: tier.map(str::to_owned),
        }
    }

    #[test]
    fn a_jobs_cost_needs_usage_or_a_final_response() {
        let none = BTreeMap::new();
        let prices = Prices::new(&none, ToolPrices::BUILTIN);
        let usage = json!({"input_tokens": 1_000_000, "output_tokens": 0});
        // Nothing recorded: no cost at all (a pending job, a row from before the columns
        // with no usage).
        assert_eq!(
            job_cost(&prices, "gpt-5", None, &ToolColumns::default()),
            None
        );
        // Usage but no tool columns (a job that ended before they were counted): tokens only.
        let c = job_cost(&prices, "gpt-5", Some(&usage), &ToolColumns::default()).unwrap();
        assert_eq!((c.tokens_usd, c.tools_usd()), (Some(1.25), 0.0));
        // Flex halves the tokens; the tools cost their fees.
        let t = tools(2, Some("flex"));
        let c = job_cost(&prices, "gpt-5", Some(&usage), &t).unwrap();
        assert!((c.total_usd().unwrap() - (0.625 + 0.02 + 0.03)).abs() < 1e-12);
        let b = CostBreakdown::of(&c, &t);
        assert_eq!(
            b.describe(|d| format!("${d:.3}")),
            "tokens $0.625 (flex) + tools $0.050 for 2 web searches, 1 container"
        );
        assert_eq!(
            cost_unknown_reason(&prices, "gpt-5", Some(&usage), Some(&c)),
            None
        );
        // No usage (a cancelled response) but tool fees: the total is unknown, and says why.
        let c = job_cost(&prices, "gpt-5", None, &t).unwrap();
        assert_eq!(c.tokens_usd, None);
        assert_eq!(c.total_usd(), None);
        let why = cost_unknown_reason(&prices, "gpt-5", None, Some(&c)).unwrap();
        assert!(
            why.contains("no token usage") && why.contains("$0.0500"),
            "{why}"
        );
        assert_eq!(
            CostBreakdown::of(&c, &t).describe(|d| format!("${d:.2}")),
            "tokens unknown (flex) + tools $0.05 for 2 web searches, 1 container"
        );
        // An unpriced model: known tool fees, named in the reason.
        let c = job_cost(&prices, "acme", Some(&usage), &t).unwrap();
        let why = cost_unknown_reason(&prices, "acme", Some(&usage), Some(&c)).unwrap();
        assert!(
            why.contains("`acme`") && why.ends_with("its tool fees were $0.0500"),
            "{why}"
        );
        // No tools, standard tier: the split says tokens only.
        let plain = tools(0, Some("default"));
        let plain = ToolColumns {
            code_containers: Some(0),
            ..plain
        };
        let c = job_cost(&prices, "gpt-5", Some(&usage), &plain).unwrap();
        assert_eq!(
            CostBreakdown::of(&c, &plain).describe(|d| format!("${d:.2}")),
            "tokens $1.25"
        );
    }
}
