//! What the templates see of a job: preformatted strings (ages, durations, token counts,
//! cost), so the templates stay free of arithmetic.

use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::notify::context::human_duration;
use crate::store::JobRow;

/// One row of the job list (and the job page's header facts).
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    pub id: String,
    pub name: String,
    pub status: String,
    pub terminal: bool,
    pub model: String,
    /// `3m ago`
    pub age: String,
    /// `2026-11-25 21:30:04 UTC`
    pub created: String,
    pub duration: Option<String>,
    pub tokens: Option<String>,
    /// `$0.42`, `unknown price`.
    pub cost: Option<String>,
    /// How the cost splits when there is more to it than tokens at standard prices: `tokens
    /// $0.39 (flex) + tools $0.03 for 3 web searches`.
    pub cost_detail: Option<String>,
    pub attempts: i64,
    pub cancel_requested: bool,
    /// The chain the job belongs to (its first job's id), for the list's chain link.
    pub chain_id: Option<String>,
    /// The job it runs after.
    pub after: Option<String>,
}

/// Token counts of a job's usage.
pub struct Tokens {
    pub input: i64,
    pub cached: i64,
    pub output: i64,
    pub reasoning: i64,
    pub total: i64,
}

pub fn tokens(usage: Option<&Value>) -> Option<Tokens> {
    let u = usage?;
    let g = |p: &str| u.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    Some(Tokens {
        input: g("/input_tokens"),
        cached: g("/input_tokens_details/cached_tokens"),
        output: g("/output_tokens"),
        reasoning: g("/output_tokens_details/reasoning_tokens"),
        total: g("/total_tokens"),
    })
}

pub fn money(usd: f64) -> String {
    if usd > 0.0 && usd < 0.01 {
        "<$0.01".into()
    } else {
        format!("${usd:.2}")
    }
}

/// `12,345`: the notifications' formatting, so a page and a message agree.
pub use crate::notify::chat::thousands;

/// `2026-11-25 21:30:04 UTC`
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// `just now`, `3m ago`, `2h ago`, `4d ago`.
pub fn age(ms: i64, now_ms: i64) -> String {
    let secs = (now_ms - ms).max(0) / 1000;
    match secs {
        0..=9 => "just now".into(),
        10..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// From submission to the end (or to now, while it runs).
pub fn duration_ms(row: &JobRow, now_ms: i64) -> Option<i64> {
    let start = row.submitted_at?;
    let end = row.finished_at.unwrap_or(if row.status.is_terminal() {
        start
    } else {
        now_ms
    });
    Some((end - start).max(0))
}

impl JobSummary {
    pub fn new(row: &JobRow, config: &Config, now_ms: i64) -> Self {
        let t = tokens(row.usage.as_ref());
        let cost = crate::view::job_cost(
            &config.pricing(),
            &row.model,
            row.usage.as_ref(),
            &row.tools,
        );
        let breakdown = cost.map(|c| crate::view::CostBreakdown::of(&c, &row.tools));
        JobSummary {
            id: row.id.to_string(),
            name: row.name.clone(),
            status: row.status.to_string(),
            terminal: row.status.is_terminal(),
            model: row.model.clone(),
            age: age(row.created_at, now_ms),
            created: timestamp(row.created_at),
            duration: duration_ms(row, now_ms).map(|d| human_duration(d / 1000)),
            tokens: t.as_ref().map(|t| thousands(t.total)),
            // Without usage (a cancelled response reports none) the tokens are unknown.
            cost: cost.and_then(|c| match c.total_usd() {
                Some(usd) => Some(money(usd)),
                None if row.usage.is_some() => Some("unknown price".to_string()),
                None => (c.tools_usd() > 0.0).then(|| "unknown".to_string()),
            }),
            cost_detail: breakdown
                .filter(|b| {
                    b.tool_fees_usd > 0.0
                        || matches!(b.service_tier.as_deref(), Some("flex" | "priority"))
                })
                .map(|b| b.describe(money)),
            attempts: row.submissions,
            cancel_requested: row.cancel_requested == 1,
            chain_id: row.chain_id.as_ref().map(ToString::to_string),
            after: row.spec.after.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(age(0, 5_000), "just now");
        assert_eq!(age(0, 125_000), "2m ago");
        assert_eq!(age(0, 3 * 86_400_000), "3d ago");
        assert_eq!(money(0.004), "<$0.01");
        assert_eq!(money(1.5), "$1.50");
    }
}
