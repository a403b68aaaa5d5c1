//! `/stats`: jobs by status, tokens and cost by model over the last 7 and 30 days, and a
//! by-day table with a bar per day. One store query ([`Store::stats_since`]) over jobs and the
//! summaries of pruned ones, folded like `GET /v1/stats` does ([`crate::stats::fold`]).
//! Days are local days in `budget.timezone`; the windows are whole days, today included.
//!
//! [`Store::stats_since`]: crate::store::Store::stats_since

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use chrono_tz::Tz;
use minijinja::context;
use serde::Serialize;

use super::WebState;
use super::pages::SessionView;
use super::session::Session;
use super::view;
use super::{PageError, render};
use crate::job::JobStatus;
use crate::pricing::Prices;
use crate::stats::{GroupBy, Tally, days_back_start, fold, local_day};
use crate::store::StatsRow;

/// The width steps of the day bars, in percent: the CSP forbids inline styles, so a bar's
/// width is one of the `.w-N` classes of the stylesheet.
const BAR_STEP: i64 = 5;

#[derive(Serialize)]
struct WindowView {
    label: &'static str,
    /// The first day counted (`2026-11-19`).
    from: String,
    /// The list's `since` for the status links: the window's first instant (RFC 3339), so
    /// the list shows exactly the jobs counted.
    since: String,
    jobs: String,
    /// Extra responses paid for (0: the tile is not shown).
    duplicates: i64,
    tokens: String,
    cost: String,
    /// The part of `cost` that is tool fees (`None`: no tool was paid for; no tile).
    tool_fees: Option<String>,
    statuses: Vec<(String, i64)>,
    models: Vec<ModelView>,
    unpriced: Vec<String>,
}

#[derive(Serialize)]
struct ModelView {
    model: String,
    /// The job list filtered to this model.
    href: String,
    jobs: String,
    failed: i64,
    tokens: String,
    cost: String,
}

#[derive(Serialize)]
struct DayView {
    date: String,
    weekday: String,
    jobs: i64,
    completed: i64,
    failed: i64,
    other: i64,
    tokens: String,
    cost: String,
    /// Bar segments (completed, failed, other) as `.w-N` widths.
    bar: [i64; 3],
}

fn money(cost: Option<f64>) -> String {
    cost.map_or_else(|| "—".into(), view::money)
}

fn statuses(t: &Tally) -> Vec<(String, i64)> {
    JobStatus::ALL
        .iter()
        .map(|s| {
            let n = t.by_status.get(s.as_str()).copied().unwrap_or(0);
            (s.as_str().to_string(), n)
        })
        .collect()
}

fn window(
    label: &'static str,
    from: i64,
    rows: &[StatsRow],
    tz: Tz,
    prices: &Prices<'_>,
) -> WindowView {
    let rows: Vec<StatsRow> = rows.iter().filter(|r| r.bucket >= from).cloned().collect();
    let (totals, groups) = fold(&rows, GroupBy::Model, tz, prices);
    let since = chrono::DateTime::from_timestamp_millis(from)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    WindowView {
        label,
        from: local_day(from, tz).map_or_else(String::new, |d| d.format("%Y-%m-%d").to_string()),
        since: since.clone(),
        jobs: view::thousands(totals.jobs),
        duplicates: totals.paid_duplicates,
        tokens: view::thousands(totals.tokens.total),
        cost: money(totals.cost_usd),
        tool_fees: (totals.tool_fees_usd > 0.0).then(|| view::money(totals.tool_fees_usd)),
        statuses: statuses(&totals),
        unpriced: totals.unpriced_models.clone(),
        models: groups
            .into_iter()
            .map(|g| ModelView {
                href: format!(
                    "/?{}",
                    url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("model", &g.key)
                        .append_pair("since", &since)
                        .finish()
                ),
                model: g.key,
                jobs: view::thousands(g.tally.jobs),
                failed: g.tally.by_status.get("failed").copied().unwrap_or(0),
                tokens: view::thousands(g.tally.tokens.total),
                cost: money(g.tally.cost_usd),
            })
            .collect(),
    }
}

/// Each of the 30 days, oldest first, days without jobs included.
fn days(from: i64, now: i64, rows: &[StatsRow], tz: Tz, prices: &Prices<'_>) -> Vec<DayView> {
    let (_, groups) = fold(rows, GroupBy::Day, tz, prices);
    let by_day: BTreeMap<String, Tally> = groups.into_iter().map(|g| (g.key, g.tally)).collect();
    let max = by_day.values().map(|t| t.jobs).max().unwrap_or(0).max(1);
    let step = |pct: i64| (pct + BAR_STEP / 2) / BAR_STEP * BAR_STEP;
    let (Some(first), Some(today)) = (local_day(from, tz), local_day(now, tz)) else {
        return Vec::new();
    };
    first
        .iter_days()
        .take_while(|d| *d <= today)
        .map(|d| {
            let date = d.format("%Y-%m-%d").to_string();
            let empty = Tally::default();
            let t = by_day.get(&date).unwrap_or(&empty);
            let n = |s: &str| t.by_status.get(s).copied().unwrap_or(0);
            let (completed, failed) = (n("completed"), n("failed"));
            let other = t.jobs - completed - failed;
            // A day with jobs gets at least one step; the segments split its bar by the
            // cumulative counts, so they add up to it.
            let bar = if t.jobs > 0 {
                step(t.jobs * 100 / max).max(BAR_STEP)
            } else {
                0
            };
            let seg = |n: i64| {
                if t.jobs > 0 {
                    step(n * bar / t.jobs)
                } else {
                    0
                }
            };
            let (a, b) = (seg(completed), seg(completed + failed));
            DayView {
                weekday: d.format("%a").to_string(),
                date,
                jobs: t.jobs,
                completed,
                failed,
                other,
                tokens: view::thousands(t.tokens.total),
                cost: if t.jobs == 0 {
                    "—".into()
                } else {
                    money(t.cost_usd)
                },
                bar: [a, b - a, bar - b],
            }
        })
        .collect()
}

pub async fn stats(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
) -> Result<Response, PageError> {
    let store = &state.store;
    let config = state.config.get();
    let now = state.clock.now_ms();
    let tz = config.budget.tz();
    let prices = &config.pricing();
    let month_start = days_back_start(now, 29, tz);
    let week_start = days_back_start(now, 6, tz);
    let rows = store.stats_since(month_start).await?;
    let windows = vec![
        window("Last 7 days", week_start, &rows, tz, prices),
        window("Last 30 days", month_start, &rows, tz, prices),
    ];
    let mut days = days(month_start, now, &rows, tz, prices);
    // The empty days before the first with any job say nothing: the table starts there (a new
    // install shows today only). Empty days after it stay: a quiet day is worth seeing.
    let first = days
        .iter()
        .position(|d| d.jobs > 0)
        .unwrap_or(days.len().saturating_sub(1));
    days.drain(..first);
    let counts = store.count_by_status().await?;
    // In the status machine's order, like the windows above.
    let all_time: Vec<(String, i64)> = JobStatus::ALL
        .iter()
        .filter_map(|s| counts.iter().find(|(k, _)| k == s.as_str()).cloned())
        .collect();
    render(
        "stats.html",
        context! {
            page => "stats",
            session => super::ser(SessionView::from(&session)),
            windows => super::ser(windows),
            days => super::ser(days),
            timezone => tz.name(),
            all_time => super::ser(all_time),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, bucket: i64, jobs: i64) -> StatsRow {
        StatsRow {
            status: status.into(),
            model: "gpt-5".into(),
            name: "n".into(),
            bucket,
            jobs,
            duplicates: 0,
            input_tokens: 0,
            cached_tokens: 0,
            output_tokens: 0,
            reasoning_tokens: 0,
            total_tokens: 0,
            service_tier: None,
            web_search_calls: 0,
            web_search_preview_calls: 0,
            file_search_calls: 0,
            code_containers: 0,
            images: 0,
            image_fee_microusd: 0,
        }
    }

    #[test]
    fn every_day_has_a_row_and_bars_add_up() {
        const DAY: i64 = 86_400_000;
        // 2026-11-25 00:00 UTC, and three days on.
        let from = 1_795_564_800_000;
        let now = from + 3 * DAY + 1000;
        let rows = [
            row("completed", from, 30),
            row("failed", from, 9),
            row("queued", from, 1),
            row("completed", from + 2 * DAY, 1),
        ];
        let none = BTreeMap::new();
        let prices = Prices::new(&none, crate::pricing::ToolPrices::BUILTIN);
        let days = days(from, now, &rows, chrono_tz::UTC, &prices);
        let dates: Vec<_> = days.iter().map(|d| d.date.as_str()).collect();
        assert_eq!(
            dates,
            ["2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28"]
        );
        assert_eq!((days[0].jobs, days[0].failed, days[0].other), (40, 9, 1));
        assert_eq!(days[0].bar, [75, 20, 5]);
        assert_eq!(days[1].bar, [0, 0, 0]);
        assert_eq!(days[1].cost, "—");
        // One job of forty still shows.
        assert_eq!(days[2].bar, [5, 0, 0]);
    }
}
