//! Printing for people: tables, ages, durations, status colours (only on a terminal, and
//! never with `NO_COLOR`).

use std::io::IsTerminal;

use comfy_table::{ColumnConstraint, ContentArrangement, Row, Table, presets::UTF8_BORDERS_ONLY};
use serde::Serialize;
use serde_json::Value;

use crate::job::JobStatus;
use crate::view::JobView;

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
        // Bold magenta: someone must act.
        JobStatus::RequiresAction => "1;35",
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

/// A table for people, as wide as `COLUMNS` when that is set, else as the terminal (comfy-table
/// asks the terminal itself when stdout is one; piped, without `COLUMNS`, rows are not wrapped).
pub(super) fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if let Some(w) = columns(&crate::config::process_env) {
        t.set_width(w);
    } else if t.width().is_some_and(|w| w < MIN_WIDTH) {
        // A terminal that says it has (almost) no columns (`script`, some CI ptys) would get
        // one letter per line: do not wrap at all instead.
        t.set_width(u16::MAX);
    }
    t
}

/// Only column `i` (free text: a name, a message) gives way to fit the width; ids, statuses,
/// times and numbers stay whole (a table that cannot fit then overflows rather than print them
/// a letter per line).
fn only_wrap(t: &mut Table, i: usize) {
    for (n, c) in t.column_iter_mut().enumerate() {
        if n != i {
            c.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
}

/// Narrower than this, a `COLUMNS` or a terminal width is taken as unknown.
const MIN_WIDTH: u16 = 20;

/// The width `COLUMNS` asks for, if it is a sensible number.
fn columns(env: &dyn Fn(&str) -> Option<String>) -> Option<u16> {
    env("COLUMNS")?
        .trim()
        .parse()
        .ok()
        .filter(|w| *w >= MIN_WIDTH)
}

/// One line per job. On a narrow screen the name is cut (`…`, down to [`NAME_MIN`] characters)
/// rather than wrapped, then whole columns give way in [`DROP_ORDER`]; `respool jobs show` has
/// the rest.
pub fn jobs_table(jobs: &[JobView]) -> String {
    jobs_table_at(jobs, None)
}

/// [`jobs_table`] at `width` columns (`None`: `COLUMNS`, else the terminal's).
fn jobs_table_at(jobs: &[JobView], width: Option<u16>) -> String {
    let mut hidden: Vec<&str> = Vec::new();
    loop {
        let (text, fits) = jobs_table_without(jobs, &hidden, width);
        if fits || hidden.len() == DROP_ORDER.len() {
            return text;
        }
        hidden.push(DROP_ORDER[hidden.len()]);
    }
}

/// The job list's columns that give way, in this order, when the table is too wide.
const DROP_ORDER: [&str; 4] = ["TOKENS", "DURATION", "MODEL", "COST"];
/// The fewest characters of a name the job list shows before dropping a column instead.
const NAME_MIN: u16 = 12;

/// The job list without the `hidden` columns, and whether it fits the width.
fn jobs_table_without(jobs: &[JobView], hidden: &[&str], width: Option<u16>) -> (String, bool) {
    const HEADER: [&str; 8] = [
        "ID", "NAME", "STATUS", "MODEL", "CREATED", "DURATION", "TOKENS", "COST",
    ];
    let keep: Vec<bool> = HEADER.iter().map(|h| !hidden.contains(h)).collect();
    let shown = |cells: [String; 8]| -> Row {
        let mut row = Row::from(
            cells
                .into_iter()
                .zip(&keep)
                .filter_map(|(c, k)| k.then_some(c)),
        );
        row.max_height(1);
        row
    };
    let now = now_secs();
    let mut t = table();
    if let Some(w) = width {
        t.set_width(w);
    }
    t.set_truncation_indicator("…");
    t.set_header(shown(HEADER.map(String::from)));
    for j in jobs {
        t.add_row(shown([
            j.id.clone(),
            j.name.clone(),
            status(j.status),
            j.model.clone(),
            age(j.created_at, now),
            duration_of(j),
            tokens(&j.usage),
            cost(j.cost_usd),
        ]));
    }
    only_wrap(&mut t, 1);
    let longest_name = jobs
        .iter()
        .map(|j| j.name.chars().count())
        .max()
        .unwrap_or(0);
    let name_min = NAME_MIN.min(u16::try_from(longest_name).unwrap_or(NAME_MIN).max(4));
    if let Some(c) = t.column_mut(1) {
        c.set_constraint(ColumnConstraint::LowerBoundary(comfy_table::Width::Fixed(
            name_min,
        )));
    }
    let text = t.to_string();
    let fits = t
        .width()
        .is_none_or(|w| text.lines().all(|l| visible_width(l) <= usize::from(w)));
    (text, fits)
}

/// Characters on screen: ANSI colour sequences (`ESC [ … m`) take no room.
fn visible_width(line: &str) -> usize {
    let mut n = 0;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            n += 1;
        }
    }
    n
}

/// The details block of a job: one `key  value` line each.
pub fn job_details(j: &JobView) -> String {
    details(j, true)
}

fn fmt_time(t: Option<i64>) -> String {
    t.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or("-".to_string(), |d| {
            d.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        })
}

fn details(j: &JobView, with_error: bool) -> String {
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
    } else if let Some(why) = &j.cost_unknown {
        line("cost", why.clone());
    }
    // How it splits, when there is more to it than tokens at standard prices.
    if let Some(b) = j.cost.as_ref().filter(|b| {
        b.tool_fees_usd > 0.0 || matches!(b.service_tier.as_deref(), Some("flex" | "priority"))
    }) {
        line("cost split", b.describe(|usd| cost(Some(usd))));
    }
    if let Some(orig) = &j.retry_of {
        line("retry of", orig.clone());
    }
    if let Some(after) = &j.after {
        line("runs after", after.clone());
    }
    if let Some(c) = &j.chain {
        if !c.members.is_empty() {
            let steps: Vec<String> = c
                .members
                .iter()
                .map(|m| {
                    let me = if m.id == j.id { " ◀" } else { "" };
                    format!("{} {} ({}){me}", m.name, m.id, m.status)
                })
                .collect();
            line("chain", steps.join(" → "));
        }
        if !c.followers.is_empty() {
            let f: Vec<String> = c
                .followers
                .iter()
                .map(|m| format!("{} {} ({})", m.name, m.id, m.status))
                .collect();
            line("followed by", f.join(", "));
        }
        if let Some(conv) = &c.conversation {
            line("conversation", conv.clone());
        }
    }
    if !j.retried_by.is_empty() {
        line("retried by", j.retried_by.join(", "));
    }
    for d in &j.duplicates {
        let paid = match d.cost_usd {
            Some(_) => format!(", {}", cost(d.cost_usd)),
            None => String::new(),
        };
        line(
            "paid duplicate",
            format!(
                "{} ({}{paid}; found by {})",
                d.response_id, d.status, d.found_by
            ),
        );
    }
    if with_error && let Some(e) = &j.error {
        line("error", format!("{}: {}", e.code, e.message));
    }
    if j.cancel_requested && !j.status.is_terminal() {
        line("cancel", "requested".into());
    }
    for a in &j.actions {
        let what = match (a.kind.as_str(), &a.server_label) {
            ("approval", Some(s)) => format!("approve {s}.{}", a.name),
            _ => format!("{}({})", a.name, a.arguments),
        };
        let by = a
            .answered_by
            .as_deref()
            .map(|b| format!(", by {b}"))
            .unwrap_or_default();
        line(
            &format!("turn {}", a.turn + 1),
            format!("{} {what}: {}{by}", a.item_id, a.state),
        );
    }
    out
}

/// Something of a job's to download: the CLI command that prints it and the web UI's URL.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Artifact {
    /// `report.md` or `response.json`.
    pub name: &'static str,
    pub description: &'static str,
    pub command: String,
    /// Absolute when the daemon's URL is known (`--server`), else a path on the daemon.
    pub url: String,
}

/// What can be downloaded for this job: the Markdown report once it has output, the stored
/// Response once it has one upstream and has finished.
pub fn artifacts(j: &JobView, base: Option<&str>) -> Vec<Artifact> {
    let base = base.unwrap_or("").trim_end_matches('/');
    let mut out = Vec::new();
    if j.output_text.is_some() {
        out.push(Artifact {
            name: "report.md",
            description: "the output with its sources, in Markdown",
            command: format!("respool jobs output {} --format md", j.id),
            url: format!("{base}/jobs/{}/report.md", j.id),
        });
    }
    if j.response_id.is_some() && j.status.is_terminal() {
        out.push(Artifact {
            name: "response.json",
            description: "the whole stored Response",
            command: format!("respool jobs output {} --format json", j.id),
            url: format!("{base}/jobs/{}/response.json", j.id),
        });
    }
    out
}

/// A spec for reading: long strings cut to `max` characters (`…`), so a prompt does not fill
/// the screen, and unset (`null`) keys left out.
fn shorten_strings(v: &Value, max: usize) -> Value {
    match v {
        Value::String(s) if s.chars().count() > max => {
            let cut: String = s.chars().take(max).collect();
            Value::String(format!("{cut}… ({} characters)", s.chars().count()))
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| shorten_strings(x, max)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), shorten_strings(x, max)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The start of a job's output: about `max` characters, cut after a paragraph when one ends in
/// the second half, else at a word.
fn output_excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    match cut.rfind("\n\n") {
        Some(i) if i > cut.len() / 2 => format!("{}\n…", cut[..i].trim_end()),
        _ => crate::notify::markdown::excerpt(text, max),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("  {l}\n")
            }
        })
        .collect()
}

fn heading(title: &str) -> String {
    if colour() {
        format!("\n\x1b[1m{title}\x1b[0m\n")
    } else {
        format!("\n{title}\n")
    }
}

/// `respool jobs show`: everything about a job on one screen (a pager's worth).
pub fn job_page(j: &JobView, events: &[Value], notes: &[Value], artifacts: &[Artifact]) -> String {
    let mut out = String::new();
    if let Some(e) = &j.error {
        let label = if colour() {
            "\x1b[1;31merror:\x1b[0m"
        } else {
            "error:"
        };
        out.push_str(&format!("{label} {} ({})\n", e.message, e.code));
        if j.status.is_terminal() {
            out.push_str(&format!(
                "       `respool jobs retry {}` runs it again.\n",
                j.id
            ));
        }
        out.push('\n');
    }
    out.push_str(&details(j, false));
    if let Some(spec) = &j.spec {
        let pretty = serde_json::to_string_pretty(&shorten_strings(spec, 200)).unwrap_or_default();
        out.push_str(&heading("spec:"));
        out.push_str(&indent(&pretty));
    }
    if let Some(text) = &j.output_text {
        let partial = if j.status == JobStatus::Completed {
            ""
        } else {
            "partial "
        };
        out.push_str(&heading(&format!(
            "{partial}output ({} characters; `respool jobs output {}` for all of it):",
            text.chars().count(),
            j.id
        )));
        out.push_str(&indent(&output_excerpt(text, 400)));
    }
    if !artifacts.is_empty() {
        out.push_str(&heading("downloads:"));
        for a in artifacts {
            out.push_str(&format!(
                "  {:<14} {}\n  {:<14} {}\n  {:<14} {}\n",
                a.name, a.description, "", a.command, "", a.url
            ));
        }
    }
    out.push_str(&heading("timeline:"));
    out.push_str(&events_table(events));
    out.push('\n');
    if !notes.is_empty() {
        out.push_str(&heading("notifications:"));
        for n in notes {
            let err = n["last_error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  #{} {} → {}: {} after {} tries{err}\n",
                n["id"],
                n["event"].as_str().unwrap_or(""),
                n["sink"].as_str().unwrap_or(""),
                n["state"].as_str().unwrap_or(""),
                n["attempts"]
            ));
        }
    }
    out
}

/// One job as a row of `respool jobs list --format csv`: times in RFC 3339 UTC, absent values
/// as empty cells.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CsvRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub model: String,
    pub created_at: String,
    pub submitted_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_s: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub cost_usd: Option<String>,
    pub response_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub retry_of: Option<String>,
}

/// A free-text cell made safe to open in a spreadsheet: text starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return would run as a formula (OWASP "CSV injection"), so it gets a
/// leading `'`, which spreadsheets show as text and hide. Job names are anyone's input and
/// error messages come from upstream.
fn spreadsheet_safe(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    }
}

fn rfc3339(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

impl From<&JobView> for CsvRow {
    fn from(j: &JobView) -> Self {
        let usage = |k: &str| j.usage.as_ref()?.get(k)?.as_i64();
        CsvRow {
            id: j.id.clone(),
            name: spreadsheet_safe(j.name.clone()),
            status: j.status.to_string(),
            model: spreadsheet_safe(j.model.clone()),
            created_at: rfc3339(j.created_at).unwrap_or_default(),
            submitted_at: j.submitted_at.and_then(rfc3339),
            finished_at: j.finished_at.and_then(rfc3339),
            duration_s: j.submitted_at.zip(j.finished_at).map(|(s, f)| f - s),
            input_tokens: usage("input_tokens"),
            output_tokens: usage("output_tokens"),
            total_tokens: usage("total_tokens"),
            cost_usd: j.cost_usd.map(|c| format!("{c:.6}")),
            response_id: j.response_id.clone(),
            error_code: j.error.as_ref().map(|e| spreadsheet_safe(e.code.clone())),
            error_message: j
                .error
                .as_ref()
                .map(|e| spreadsheet_safe(e.message.clone())),
            retry_of: j.retry_of.clone(),
        }
    }
}

/// Jobs as CSV with a header row (quoted as RFC 4180 says where needed).
pub fn jobs_csv(jobs: &[JobView]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if jobs.is_empty() {
        // `serialize` writes the header with the first row; an empty list still gets one.
        w.write_record(CSV_HEADER)?;
    }
    for j in jobs {
        w.serialize(CsvRow::from(j))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The CSV columns, in order (the field names of [`CsvRow`]).
pub const CSV_HEADER: [&str; 16] = [
    "id",
    "name",
    "status",
    "model",
    "created_at",
    "submitted_at",
    "finished_at",
    "duration_s",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "response_id",
    "error_code",
    "error_message",
    "retry_of",
];

pub fn events_table(events: &[Value]) -> String {
    let mut t = table();
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
    only_wrap(&mut t, 2);
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: JobStatus) -> JobView {
        serde_json::from_value(serde_json::json!({
            "id": "job_01JAAAAAAAAAAAAAAAAAAAAAAA",
            "object": "job",
            "name": "weekly, \"quoted\" report",
            "status": status,
            "model": "gpt-5",
            "response_id": "resp_123",
            "created_at": 1_764_000_000,
            "submitted_at": 1_764_000_002,
            "finished_at": 1_764_000_062,
            "output_text": null,
            "error": null,
            "usage": null,
            "attempts": 1,
            "cancel_requested": false,
            "idempotency_key": null,
            "deadline_at": null,
            "metadata": {},
        }))
        .unwrap()
    }

    #[test]
    fn csv_row_of_a_completed_job() {
        let mut j = job(JobStatus::Completed);
        j.usage =
            Some(serde_json::json!({"input_tokens": 10, "output_tokens": 32, "total_tokens": 42}));
        j.cost_usd = Some(0.000_123_4);
        j.retry_of = Some("job_01JBBBBBBBBBBBBBBBBBBBBBBB".into());
        let csv = jobs_csv(&[j]).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(CSV_HEADER.join(",").as_str()));
        assert_eq!(
            lines.next(),
            Some(
                "job_01JAAAAAAAAAAAAAAAAAAAAAAA,\"weekly, \"\"quoted\"\" report\",completed,gpt-5,\
                 2025-11-24T16:00:00Z,2025-11-24T16:00:02Z,2025-11-24T16:01:02Z,60,10,32,42,\
                 0.000123,resp_123,,,job_01JBBBBBBBBBBBBBBBBBBBBBBB"
            )
        );
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn csv_row_of_a_failed_job_has_the_error_and_empty_cells() {
        let mut j = job(JobStatus::Failed);
        j.finished_at = None;
        j.error = Some(crate::job::JobError {
            code: "server_error".into(),
            message: "line one\nline two".into(),
        });
        let row = CsvRow::from(&j);
        assert_eq!(row.finished_at, None);
        assert_eq!(row.duration_s, None);
        assert_eq!(row.total_tokens, None);
        assert_eq!(row.cost_usd, None);
        assert_eq!(row.error_code.as_deref(), Some("server_error"));
        let csv = jobs_csv(&[j]).unwrap();
        // A newline inside a cell is quoted, so the file still reads back as one row.
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][6], "");
        assert_eq!(&rows[0][13], "server_error");
        assert_eq!(&rows[0][14], "line one\nline two");
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_text() {
        let mut j = job(JobStatus::Failed);
        j.name = "=HYPERLINK(\"http://x\",\"y\")".into();
        j.error = Some(crate::job::JobError {
            code: "server_error".into(),
            message: "@SUM(1+1)".into(),
        });
        let csv = jobs_csv(&[j]).unwrap();
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let row = r.records().next().unwrap().unwrap();
        assert_eq!(&row[1], "'=HYPERLINK(\"http://x\",\"y\")");
        assert_eq!(&row[13], "server_error");
        assert_eq!(&row[14], "'@SUM(1+1)");
        assert_eq!(spreadsheet_safe("plain -dash".into()), "plain -dash");
        assert_eq!(spreadsheet_safe("-1".into()), "'-1");
    }

    #[test]
    fn csv_of_no_jobs_is_the_header() {
        assert_eq!(
            jobs_csv(&[]).unwrap(),
            format!("{}\n", CSV_HEADER.join(","))
        );
    }

    #[test]
    fn columns_from_env() {
        let env = |v: &'static str| move |k: &str| (k == "COLUMNS").then(|| v.to_string());
        assert_eq!(columns(&env("120")), Some(120));
        assert_eq!(columns(&env(" 80 ")), Some(80));
        assert_eq!(columns(&env("wide")), None);
        assert_eq!(columns(&env("3")), None);
        assert_eq!(columns(&|_| None), None);
    }

    #[test]
    fn narrow_job_lists_drop_columns_instead_of_overflowing() {
        let mut j = job(JobStatus::Completed);
        j.name = "a rather long job name for a narrow screen".into();
        let jobs = [j];
        let widest = |t: &str| t.lines().map(visible_width).max().unwrap_or(0);
        let header = |t: &str| t.lines().nth(1).unwrap_or("").to_string();

        let wide = jobs_table_at(&jobs, Some(200));
        for col in [
            "ID", "NAME", "STATUS", "MODEL", "CREATED", "DURATION", "TOKENS", "COST",
        ] {
            assert!(header(&wide).contains(col), "{col} at 200 columns:\n{wide}");
        }
        assert!(
            wide.contains("a rather long job name for a narrow screen"),
            "{wide}"
        );

        // Narrower: the name gives way, then TOKENS and DURATION go (at least).
        let narrow = jobs_table_at(&jobs, Some(80));
        assert!(widest(&narrow) <= 80, "fits 80:\n{narrow}");
        let h = header(&narrow);
        assert!(!h.contains("TOKENS") && !h.contains("DURATION"), "{narrow}");
        assert!(
            h.contains("ID") && h.contains("STATUS") && h.contains("CREATED"),
            "{narrow}"
        );
        assert!(narrow.contains('…'), "the name is cut: {narrow}");

        // At every width, the columns gone are the first few of DROP_ORDER, and the table
        // fits whenever dropping all of them makes it fit.
        let (minimal, _) = jobs_table_without(&jobs, &DROP_ORDER, Some(u16::MAX));
        let least = widest(&minimal);
        for w in 40..=200u16 {
            let t = jobs_table_at(&jobs, Some(w));
            let h = header(&t);
            let gone = DROP_ORDER.iter().take_while(|c| !h.contains(*c)).count();
            assert!(
                DROP_ORDER[gone..].iter().all(|c| h.contains(c)),
                "at {w}, columns went out of order:\n{t}"
            );
            if usize::from(w) >= least {
                assert!(widest(&t) <= usize::from(w), "fits {w}:\n{t}");
            }
        }

        assert_eq!(visible_width("\x1b[31mfailed\x1b[0m"), 6);
    }

    #[test]
    fn artifacts_follow_what_the_job_has() {
        let mut j = job(JobStatus::InProgress);
        assert!(artifacts(&j, None).is_empty());
        j.status = JobStatus::Completed;
        j.output_text = Some("hello".into());
        let a = artifacts(&j, Some("http://127.0.0.1:8080/"));
        let names: Vec<_> = a.iter().map(|a| a.name).collect();
        assert_eq!(names, ["report.md", "response.json"]);
        assert_eq!(
            a[0].url,
            "http://127.0.0.1:8080/jobs/job_01JAAAAAAAAAAAAAAAAAAAAAAA/report.md"
        );
        assert_eq!(
            a[1].command,
            "respool jobs output job_01JAAAAAAAAAAAAAAAAAAAAAAA --format json"
        );
        assert_eq!(
            artifacts(&j, None)[1].url,
            "/jobs/job_01JAAAAAAAAAAAAAAAAAAAAAAA/response.json"
        );
    }

    #[test]
    fn long_spec_strings_are_cut_and_nulls_left_out() {
        let v = serde_json::json!({"input": "x".repeat(300), "n": [1, "short"], "timeout": null});
        let short = shorten_strings(&v, 10);
        assert_eq!(
            short,
            serde_json::json!({"input": "xxxxxxxxxx… (300 characters)", "n": [1, "short"]})
        );
    }

    #[test]
    fn excerpts_end_after_a_paragraph_when_they_can() {
        assert_eq!(output_excerpt("short", 10), "short");
        let text = format!("{}\n\n{}", "a".repeat(30), "b ".repeat(30));
        assert_eq!(output_excerpt(&text, 40), format!("{}\n…", "a".repeat(30)));
        let text = "one two three four five six";
        assert_eq!(output_excerpt(text, 12), "one two…");
    }

    #[test]
    fn durations() {
        assert_eq!(short_duration(5), "5s");
        assert_eq!(short_duration(65), "1m 5s");
        assert_eq!(short_duration(3700), "1h 1m");
        assert_eq!(short_duration(90_000), "1d 1h");
    }
}
