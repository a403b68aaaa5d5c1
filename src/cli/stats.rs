//! `respool stats` (over REST): jobs, statuses, tokens and cost since a time, by model, day or
//! name, as a table with a TOTAL row (or the API's JSON with `--json`).

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use comfy_table::CellAlignment;

use super::output::{colour, cost, table};
use super::pager::print_direct;
use super::{ApiClient, ServerArgs};
use crate::stats::{GroupBy, StatsReport, Tally};

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Count jobs created since: a duration back from now (`7d`), an RFC 3339 time or unix
    /// seconds.
    #[arg(long, default_value = "30d")]
    pub since: String,
    /// What each row is.
    #[arg(long, value_enum, default_value_t = GroupBy::Model)]
    pub by: GroupBy,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn run(config: Option<&Path>, a: StatsArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::from_args(config, &a.server)?;
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("since", &a.since)
        .append_pair("by", a.by.as_str())
        .finish();
    let report: StatsReport = client.get(&format!("/v1/stats?{query}")).await?;
    if a.server.json {
        print_direct(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        print_direct(&render(&report, colour()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The report for people: one row per group and a TOTAL row; failed counts in red when
/// `colour`.
pub fn render(r: &StatsReport, colour: bool) -> String {
    let since = chrono::DateTime::from_timestamp(r.since, 0)
        .map_or_else(String::new, |d| d.format("%Y-%m-%d %H:%M UTC").to_string());
    let mut out = format!("jobs created since {since}, by {}", r.by.as_str());
    if r.by == GroupBy::Day {
        out.push_str(&format!(" ({})", r.timezone));
    }
    out.push('\n');
    let mut t = table();
    t.set_header([
        r.by.as_str().to_uppercase().as_str(),
        "JOBS",
        "COMPLETED",
        "FAILED",
        "OTHER",
        "TOKENS",
        "COST",
    ]);
    for g in &r.groups {
        t.add_row(row(&g.key, &g.tally, colour));
    }
    t.add_row(row("TOTAL", &r.totals, colour));
    for i in 1..=6 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    out.push_str(&t.to_string());
    out.push('\n');
    if r.totals.tool_fees_usd > 0.0 {
        let t = &r.totals.tools;
        out.push_str(&format!(
            "tool fees: {} of COST ({} web searches, {} file searches, {} containers, {} images)\n",
            cost(Some(r.totals.tool_fees_usd)),
            t.web_search_calls,
            t.file_search_calls,
            t.code_containers,
            t.images
        ));
    }
    if !r.totals.unpriced_models.is_empty() {
        out.push_str(&format!(
            "no price, built in or under `pricing` (their tokens are not in COST, their tool fees are): {}\n",
            r.totals.unpriced_models.join(", ")
        ));
    }
    if r.totals.paid_duplicates > 0 {
        out.push_str(&format!(
            "paid duplicates: {} (extra runs of these jobs, in TOKENS and COST; see `respool jobs show`)\n",
            r.totals.paid_duplicates
        ));
    }
    out
}

fn row(key: &str, t: &Tally, colour: bool) -> [String; 7] {
    let n = |s: &str| t.by_status.get(s).copied().unwrap_or(0);
    let (completed, failed) = (n("completed"), n("failed"));
    let failed_cell = if colour && failed > 0 {
        format!("\x1b[31m{failed}\x1b[0m")
    } else {
        failed.to_string()
    };
    [
        key.to_string(),
        t.jobs.to_string(),
        completed.to_string(),
        failed_cell,
        (t.jobs - completed - failed).to_string(),
        t.tokens.total.to_string(),
        cost(t.cost_usd),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::stats::{GroupBy, StatsGroup, TokenSums};

    fn tally(completed: i64, failed: i64, queued: i64, total: i64, cost: Option<f64>) -> Tally {
        Tally {
            jobs: completed + failed + queued,
            paid_duplicates: 0,
            by_status: BTreeMap::from([
                ("completed".into(), completed),
                ("failed".into(), failed),
                ("queued".into(), queued),
            ]),
            tokens: TokenSums {
                total,
                ..TokenSums::default()
            },
            tools: Default::default(),
            cost_usd: cost,
            tool_fees_usd: 0.0,
            unpriced_models: Vec::new(),
        }
    }

    #[test]
    fn renders_groups_a_total_and_colours_failures_only_when_asked() {
        let r = StatsReport {
            object: "stats".into(),
            since: 1_795_647_600,
            by: GroupBy::Model,
            timezone: "UTC".into(),
            totals: Tally {
                unpriced_models: vec!["o3-x".into()],
                ..tally(3, 1, 1, 1500, Some(1.5))
            },
            groups: vec![
                StatsGroup {
                    key: "gpt-5".into(),
                    tally: tally(2, 1, 0, 1000, Some(1.5)),
                },
                StatsGroup {
                    key: "o3-x".into(),
                    tally: tally(1, 0, 1, 500, None),
                },
            ],
        };
        let plain = render(&r, false);
        assert!(
            plain.contains("since 2026-11-25 23:00 UTC, by model"),
            "{plain}"
        );
        let line = |text: &str, key: &str| -> Vec<String> {
            text.lines()
                .find(|l| l.contains(key))
                .unwrap_or_default()
                .split(|c: char| c.is_whitespace() || c == '│')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            line(&plain, "gpt-5"),
            ["gpt-5", "3", "2", "1", "0", "1000", "$1.5000"]
        );
        assert_eq!(line(&plain, "o3-x ")[6], "-");
        assert_eq!(
            line(&plain, "TOTAL"),
            ["TOTAL", "5", "3", "1", "1", "1500", "$1.5000"]
        );
        assert!(plain.contains(
            "no price, built in or under `pricing` (their tokens are not in COST, their tool fees are): o3-x"
        ));
        assert!(!plain.contains("tool fees:"));
        assert!(!plain.contains('\x1b'));
        assert!(render(&r, true).contains("\x1b[31m1\x1b[0m"));
        assert!(!plain.contains("paid duplicates"));
        let mut r = r;
        r.totals.paid_duplicates = 2;
        assert!(render(&r, false).contains("paid duplicates: 2 "));
        r.totals.tool_fees_usd = 0.03;
        r.totals.tools.web_search_calls = 3;
        assert!(
            render(&r, false)
                .contains("tool fees: $0.0300 of COST (3 web searches, 0 file searches, 0 containers, 0 images)"),
            "{}",
            render(&r, false)
        );
    }
}
