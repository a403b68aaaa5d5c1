//! What a notification says: the job as it ended, reduced to the variables templates see, and
//! the JSON event that machine sinks (webhook, command, file) carry.

use serde::Serialize;
use serde_json::{Value, json};

use super::markdown;
use crate::config::Config;
use crate::store::{ArtifactRow, EventRow, JobRow};
use crate::view::JobView;

/// The variables every template sees. See `docs/notifications.md`, "Templates".
#[derive(Debug, Clone, Default, Serialize)]
pub struct Context {
    /// `job.completed`, `job.failed`, `job.incomplete`, `job.cancelled`.
    pub event: String,
    /// `completed`, `failed`, …
    pub status: String,
    pub job: JobInfo,
    /// The output text exactly as the model wrote it (usually Markdown).
    pub output_text: String,
    /// The answer parsed as JSON, for a job that asks for JSON (`text.format`); else null.
    pub output_json: Option<Value>,
    /// The output as a Markdown report: a numbered marker after each cited passage, then "Tool
    /// activity" (searches, code runs, …) and "Sources" sections (a JSON answer: the JSON,
    /// indented, in a code block).
    pub output_markdown: String,
    /// The output rendered to sanitized HTML (safe to put in a mail or a page).
    pub output_html: String,
    /// The first few hundred characters of the output, cut at a word.
    pub excerpt: String,
    pub citations: Vec<markdown::Citation>,
    /// Reasoning summaries, in order.
    pub reasoning: Vec<String>,
    pub usage: Option<Usage>,
    pub cost: Option<Cost>,
    /// Why there is no `cost` although the job has usage or tool fees: its model has no price,
    /// or its response reported no usage.
    pub cost_unknown: Option<String>,
    /// The cost split into tokens and tool fees (also when the total is unknown: the tool
    /// fees are known); null until the job has usage or a final response.
    pub cost_breakdown: Option<crate::view::CostBreakdown>,
    pub timeline: Vec<TimelineEntry>,
    /// What the response made besides its text (generated images, files its code wrote), in
    /// order. See [`Context::with_artifacts`].
    pub artifacts: Vec<ArtifactInfo>,
    /// What the job waits for a person to answer (a `job.requires_action` event): function
    /// calls without a handler, MCP approval requests. See [`Context::with_actions`].
    pub actions: Vec<ActionInfo>,
}

/// One action waiting for a person, as templates see it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ActionInfo {
    /// `call_…` or `mcpr_…`: what `respond` names.
    pub item_id: String,
    /// `function` or `approval`.
    pub kind: String,
    pub name: String,
    pub server_label: Option<String>,
    /// The arguments as the model wrote them, cut to a few hundred characters.
    pub arguments: String,
    /// For a person: `the output of get_weather`, `an approval of docs.search`.
    pub what: String,
}

/// One artifact as templates see it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArtifactInfo {
    pub name: String,
    /// `image` or `container_file`.
    pub kind: String,
    pub media_type: String,
    pub bytes: i64,
    /// `bytes` for a person (`12.3 KiB`).
    pub size: String,
    /// A link to it on the job's page, when `public_url` is set and it was kept.
    pub url: Option<String>,
    /// Why it was not kept.
    pub error: Option<String>,
    /// Whether the message attaches it (email only: kept, and within
    /// `artifacts.email_max_bytes` on the wire with the ones before it).
    pub attached: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct JobInfo {
    pub id: String,
    pub name: String,
    pub status: String,
    pub model: String,
    pub response_id: Option<String>,
    /// RFC 3339 times.
    pub created_at: String,
    pub submitted_at: Option<String>,
    pub finished_at: Option<String>,
    /// From submission to end, in seconds, and as `1h 2m`.
    pub duration_secs: Option<i64>,
    pub duration: Option<String>,
    /// Create calls sent for the job.
    pub attempts: i64,
    pub error: Option<crate::job::JobError>,
    pub metadata: Value,
    /// A link to the job when `public_url` is set.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cached_tokens: i64,
    pub total_tokens: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// Tokens and tool fees together.
    pub usd: f64,
    /// `$0.42`
    pub display: String,
    /// How it splits when there is more to it than tokens at standard prices (tool fees, a
    /// `flex` or `priority` tier): `tokens $0.39 + tools $0.03 for 3 web searches`; else null.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub at: String,
    pub kind: String,
    pub message: String,
}

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339())
        .unwrap_or_default()
}

/// `3h 2m`, `45s`.
pub fn human_duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m"),
    }
}

/// `n` bytes for a person.
pub fn human_bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    if n < 1024.0 {
        format!("{n} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else if n < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else {
        format!("{:.1} GiB", n / (1024.0 * 1024.0 * 1024.0))
    }
}

/// The size of `n` bytes as an attachment on the wire: base64, 76 characters and a CRLF a
/// line.
pub fn encoded_size(n: u64) -> u64 {
    let chars = n.div_ceil(3) * 4;
    chars + chars.div_ceil(76) * 2
}

/// Which kept artifacts an email attaches: each in order while their size on the wire
/// ([`encoded_size`]) stays within `max` bytes in all (one that does not fit is skipped; a
/// smaller one after it may still fit).
pub fn attached(rows: &[ArtifactRow], max: u64) -> Vec<bool> {
    let mut used: u64 = 0;
    rows.iter()
        .map(|r| {
            let n = encoded_size(r.bytes.max(0) as u64);
            let fits = r.is_kept() && used.saturating_add(n) <= max && (n > 0 || max > 0);
            if fits {
                used += n;
            }
            fits
        })
        .collect()
}

impl Context {
    /// The same context with the job's artifacts (`rows`, in order); `attaching`: for a sink
    /// that attaches them (email), which it attaches.
    pub fn with_artifacts(
        mut self,
        rows: &[ArtifactRow],
        config: &Config,
        attaching: bool,
    ) -> Self {
        let max = if attaching {
            config.artifacts.email_max_bytes
        } else {
            0
        };
        let attach = attached(rows, max);
        self.artifacts = rows
            .iter()
            .zip(attach)
            .map(|(r, attached)| ArtifactInfo {
                name: r.name.clone(),
                kind: r.kind.clone(),
                media_type: r.media_type.clone(),
                bytes: r.bytes,
                size: human_bytes(r.bytes),
                url: config.public_url.as_ref().filter(|_| r.is_kept()).map(|u| {
                    format!(
                        "{}/jobs/{}/artifacts/{}",
                        u.trim_end_matches('/'),
                        self.job.id,
                        crate::artifacts::encode_name(&r.name)
                    )
                }),
                error: r.error.clone(),
                attached,
            })
            .collect();
        self
    }

    /// The same context with the actions of the job's current turn that wait for a person.
    pub fn with_actions(mut self, rows: &[crate::store::ActionRow]) -> Self {
        self.actions = rows
            .iter()
            .filter(|a| a.state == "waiting")
            .map(|a| ActionInfo {
                item_id: a.item_id.clone(),
                kind: a.kind.clone(),
                name: a.name.clone(),
                server_label: a.server_label.clone(),
                arguments: cut(&a.arguments, 400),
                what: match (a.kind.as_str(), &a.server_label) {
                    ("approval", Some(s)) => {
                        format!("an approval to call {} on MCP server {s}", a.name)
                    }
                    ("approval", None) => format!("an approval to call {}", a.name),
                    _ => format!("the output of function {}", a.name),
                },
            })
            .collect();
        self
    }

    /// Builds the context of `event` for a job, its stored response and its timeline.
    pub fn build(
        event: &str,
        job: &JobRow,
        response: Option<&Value>,
        events: &[EventRow],
        config: &Config,
    ) -> Self {
        let output_text = job.output_text.clone().unwrap_or_default();
        let full = markdown::Report::of(&output_text, response);
        let citations = full.citations.clone();
        let reasoning = response
            .map(markdown::reasoning_summaries)
            .unwrap_or_default();
        let usage = job.usage.as_ref().map(|u| {
            let g = |p: &str| u.pointer(p).and_then(Value::as_i64).unwrap_or(0);
            Usage {
                input_tokens: g("/input_tokens"),
                output_tokens: g("/output_tokens"),
                reasoning_tokens: g("/output_tokens_details/reasoning_tokens"),
                cached_tokens: g("/input_tokens_details/cached_tokens"),
                total_tokens: g("/total_tokens"),
            }
        });
        // The one cost function, as the API, the pages and the budgets use it.
        let prices = config.pricing();
        let priced = crate::view::job_cost(&prices, &job.model, job.usage.as_ref(), &job.tools);
        let cost_breakdown = priced.map(|c| crate::view::CostBreakdown::of(&c, &job.tools));
        let dollars = |usd: f64| format!("${usd:.2}");
        let cost = priced.and_then(|c| c.total_usd()).map(|usd| Cost {
            usd,
            display: dollars(usd),
            detail: cost_breakdown
                .as_ref()
                .filter(|b| {
                    b.tool_fees_usd > 0.0
                        || matches!(b.service_tier.as_deref(), Some("flex" | "priority"))
                })
                .map(|b| b.describe(dollars)),
        });
        let output_json =
            crate::structured::output_json(&job.spec.request, job.output_text.as_deref());
        let report = match &output_json {
            Some(v) => {
                markdown::code_block("json", &serde_json::to_string_pretty(v).unwrap_or_default())
            }
            None => full.markdown(),
        };
        let cost_unknown = crate::view::cost_unknown_reason(
            &prices,
            &job.model,
            job.usage.as_ref(),
            priced.as_ref(),
        );
        let duration_secs = match (job.submitted_at, job.finished_at) {
            (Some(s), Some(f)) => Some((f - s) / 1000),
            _ => None,
        };
        let url = config
            .public_url
            .as_ref()
            .map(|u| format!("{}/jobs/{}", u.trim_end_matches('/'), job.id));
        Context {
            event: event.to_string(),
            // A wait is told as a wait, even when the answer came before the message went.
            status: if event == "job.requires_action" {
                "requires_action".into()
            } else {
                job.status.to_string()
            },
            job: JobInfo {
                id: job.id.to_string(),
                name: job.name.clone(),
                status: job.status.to_string(),
                model: job.model.clone(),
                response_id: job.response_id.as_ref().map(ToString::to_string),
                created_at: rfc3339_ms(job.created_at),
                submitted_at: job.submitted_at.map(rfc3339_ms),
                finished_at: job.finished_at.map(rfc3339_ms),
                duration_secs,
                duration: duration_secs.map(human_duration),
                attempts: job.submissions,
                error: job.error(),
                metadata: job
                    .spec
                    .request
                    .get("metadata")
                    .cloned()
                    .unwrap_or_else(|| json!({})),
                url,
            },
            output_html: markdown::to_safe_html(&report),
            output_markdown: report,
            output_json,
            excerpt: markdown::excerpt(&output_text, 500),
            output_text,
            citations,
            reasoning,
            usage,
            cost_unknown,
            cost,
            cost_breakdown,
            timeline: events
                .iter()
                .map(|e| TimelineEntry {
                    at: rfc3339_ms(e.at),
                    kind: e.kind.clone(),
                    message: e.message.clone(),
                })
                .collect(),
            artifacts: Vec::new(),
            actions: Vec::new(),
        }
    }
}

/// `s` cut to `max` characters, with an ellipsis when cut.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The JSON event machine sinks carry: `{type, id, created_at, data: {job, output_text, response}}`,
/// the job's cost (`cost_usd`, `cost`, `cost_unknown`) as `ctx` priced it. `id` is stable per
/// (job, event), so receivers can dedupe retries.
pub fn event_json(event: &str, job: &JobRow, response: Option<&Value>, ctx: &Context) -> Value {
    let mut view = JobView::from(job);
    view.cost_usd = ctx.cost.as_ref().map(|c| c.usd);
    view.cost_unknown = ctx.cost_unknown.clone();
    view.cost = ctx.cost_breakdown.clone();
    json!({
        "object": "event",
        "id": stable_event_id(&job.id, &event_key(event, job.turn)),
        "type": event,
        "created_at": job.finished_at.unwrap_or(job.updated_at) / 1000,
        "data": {
            "job": view,
            "output_text": job.output_text,
            "response": response,
        }
    })
}

/// What makes one occurrence of `event` for a job: the event itself, and for a wait for a
/// person the turn that waits (a job may wait at several turns, each a new notification with
/// its own ids, which receivers that dedupe must not drop).
pub fn event_key(event: &str, turn: i64) -> std::borrow::Cow<'_, str> {
    if event == "job.requires_action" {
        std::borrow::Cow::Owned(format!("{event}.turn{}", turn + 1))
    } else {
        std::borrow::Cow::Borrowed(event)
    }
}

/// `evt_` and a hash of (job id, event): the same for every retry and every sink.
pub fn stable_event_id(job_id: &str, event: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{job_id}\n{event}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("evt_{hex}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn emails_attach_what_fits_in_order() {
        let row = |name: &str, bytes: i64, error: Option<&str>| crate::store::ArtifactRow {
            name: name.into(),
            kind: "image".into(),
            media_type: "image/png".into(),
            bytes,
            sha256: None,
            source: "ig_1".into(),
            path: None,
            error: error.map(Into::into),
            created_at: 0,
        };
        let rows = [
            row("a", 600, None),
            row("b", 500, None),
            row("c", 0, Some("gone")),
            row("d", 400, None),
            row("e", 0, None),
        ];
        // 600 bytes are 800 in base64, on 11 lines; 400 are 536 on 8.
        assert_eq!(super::encoded_size(600), 822);
        assert_eq!(super::encoded_size(400), 552);
        assert_eq!(super::encoded_size(0), 0);
        assert_eq!(
            super::attached(&rows, 1_374),
            [true, false, false, true, true]
        );
        assert_eq!(
            super::attached(&rows, 1_373),
            [true, false, false, false, true]
        );
        assert_eq!(super::attached(&rows, 0), [false; 5]);
        assert_eq!(
            super::attached(&rows, u64::MAX),
            [true, true, false, true, true]
        );
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
    }

    use super::*;

    #[test]
    fn stable_ids() {
        assert_eq!(
            stable_event_id("job_1", "job.completed"),
            stable_event_id("job_1", "job.completed")
        );
        assert_ne!(
            stable_event_id("job_1", "job.completed"),
            stable_event_id("job_1", "job.failed")
        );
        assert!(stable_event_id("a", "b").starts_with("evt_"));
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(61), "1m 1s");
        assert_eq!(human_duration(7300), "2h 1m");
    }
}
