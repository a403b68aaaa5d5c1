//! Printing for people: tables, ages, durations, status colours (only on a terminal, and
//! never with `NO_COLOR`).

use std::io::IsTerminal;

use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use serde_json::Value;

use crate::api::JobView;
use crate::job::JobStatus;

/// Whether stdout should get colours.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn status(s: JobStatus) -> String {
    if !colour() {
        return s.to_string();
    }
    let code = match s {
        JobStatus::Completed => "32",
        JobStatus::Failed => "31",
        JobStatus::Incomplete | JobStatus::Cancelled => "33",
        JobStatus::Queued | JobStatus::InProgress => "36",
        JobStatus::Pending => "2",
        JobStatus::Held => "35",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

/// `3m ago`, from unix seconds.
pub fn age(at: i64, now: i64) -> String {
    format!("{} ago", short_duration((now - at).max(0)))
}

/// `1h 2m`, `45s`.
pub fn short_duration(secs: i64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn tokens(usage: &Option<Value>) -> String {
    usage
        .as_ref()
        .and_then(|u| u.get("total_tokens"))
        .and_then(Value::as_i64)
        .map_or("-".into(), |t| t.to_string())
}

/// `$0.0123`, or `-` without usage or a price.
pub fn cost(usd: Option<f64>) -> String {
    usd.map_or("-".into(), |c| format!("${c:.4}"))
}

fn duration_of(j: &JobView) -> String {
    match (j.submitted_at, j.finished_at) {
        (Some(s), Some(f)) => short_duration(f - s),
        (Some(s), None) => format!("{}…", short_duration(now_secs() - s)),
        _ => "-".into(),
    }
}

pub fn jobs_table(jobs: &[JobView]) -> String {
    let now = now_secs();
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header([
        "ID", "NAME", "STATUS", "MODEL", "CREATED", "DURATION", "TOKENS", "COST",
    ]);
    for j in jobs {
        t.add_row([
            j.id.clone(),
            j.name.clone(),
            status(j.status),
            j.model.clone(),
            age(j.created_at, now),
            duration_of(j),
            tokens(&j.usage),
            cost(j.cost_usd),
        ]);
    }
    t.to_string()
}

pub fn job_details(j: &JobView) -> String {
    let fmt_time = |t: Option<i64>| {
        t.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .map_or("-".to_string(), |d| {
                d.format("%Y-%m-%d %H:%M:%S UTC").to_string()
            })
    };
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<13} {v}\n"));
    line("id", j.id.clone());
    line("name", j.name.clone());
    line("status", status(j.status));
    line("model", j.model.clone());
    line(
        "response",
        j.response_id.clone().unwrap_or_else(|| "-".into()),
    );
    line("created", fmt_time(Some(j.created_at)));
    line("submitted", fmt_time(j.submitted_at));
    line("finished", fmt_time(j.finished_at));
    line("duration", duration_of(j));
    line("create calls", j.attempts.to_string());
    if let Some(u) = &j.usage {
        let g = |k: &str| u.get(k).and_then(Value::as_i64).unwrap_or(0);
        let reasoning = u
            .pointer("/output_tokens_details/reasoning_tokens")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        line(
            "tokens",
            format!(
                "{} in, {} out ({reasoning} reasoning), {} total",
                g("input_tokens"),
                g("output_tokens"),
                g("total_tokens")
            ),
        );
    }
    if j.cost_usd.is_some() {
        line("cost", cost(j.cost_usd));
    }
    if let Some(orig) = &j.retry_of {
        line("retry of", orig.clone());
    }
    if let Some(e) = &j.error {
        line("error", format!("{}: {}", e.code, e.message));
    }
    if j.cancel_requested && !j.status.is_terminal() {
        line("cancel", "requested".into());
    }
    out
}

pub fn events_table(events: &[Value]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(["TIME", "EVENT", "DETAILS"]);
    for e in events {
        let at = e.get("at").and_then(Value::as_i64).unwrap_or(0);
        let time = chrono::DateTime::from_timestamp_millis(at).map_or("-".to_string(), |d| {
            d.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
        });
        let kind = e.get("kind").and_then(Value::as_str).unwrap_or("");
        let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
        t.add_row([time, kind.to_string(), msg.to_string()]);
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(short_duration(5), "5s");
        assert_eq!(short_duration(65), "1m 5s");
        assert_eq!(short_duration(3700), "1h 1m");
        assert_eq!(short_duration(90_000), "1d 1h");
    }
}
