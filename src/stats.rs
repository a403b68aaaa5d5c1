//! The stats fold: jobs, statuses, tokens, tool calls and cost since a time, grouped by model,
//! local day or job name. The rows come from one store query ([`Store::stats_since`]);
//! [`fold`] turns them into groups, pricing each model and service tier's sums with the one
//! cost function ([`crate::pricing::cost`]). `GET /v1/stats`, the web's `/stats` page and
//! `respool stats` all use it.
//!
//! [`Store::stats_since`]: crate::store::Store::stats_since

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::pricing::{Prices, ServiceTier, ToolUsage, cost};
use crate::store::StatsRow;

const DAY_MS: i64 = 86_400_000;

/// What the groups are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// The job's model.
    Model,
    /// The day the job was created (`YYYY-MM-DD` in `budget.timezone`).
    Day,
    /// The job's name.
    Name,
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Model => "model",
            GroupBy::Day => "day",
            GroupBy::Name => "name",
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "model" => Ok(GroupBy::Model),
            "day" => Ok(GroupBy::Day),
            "name" => Ok(GroupBy::Name),
            _ => Err(format!("`by` must be `model`, `day` or `name`, not `{s}`")),
        }
    }
}

/// Token sums of a set of jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenSums {
    pub input: i64,
    /// Part of `input` served from the cache.
    pub cached: i64,
    pub output: i64,
    /// Part of `output` spent on reasoning.
    pub reasoning: i64,
    pub total: i64,
}

impl TokenSums {
    fn add(&mut self, r: &StatsRow) {
        self.input += r.input_tokens;
        self.cached += r.cached_tokens;
        self.output += r.output_tokens;
        self.reasoning += r.reasoning_tokens;
        self.total += r.total_tokens;
    }
}

/// Hosted-tool calls of a set of jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ToolSums {
    pub web_search_calls: i64,
    pub file_search_calls: i64,
    /// Distinct code-interpreter containers (each job's own).
    pub code_containers: i64,
    pub images: i64,
}

/// Counts, tokens and cost of a set of jobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tally {
    pub jobs: i64,
    /// Extra responses created for these jobs and paid for (an uncertain create resubmitted
    /// whose first run turned up later); their tokens are in `tokens` and `cost_usd`.
    pub paid_duplicates: i64,
    /// Jobs by status (only the statuses present).
    pub by_status: BTreeMap<String, i64>,
    pub tokens: TokenSums,
    pub tools: ToolSums,
    /// Dollars at the prices in force: each model's summed tokens in each service tier, plus
    /// every job's tool fees. The tokens of models without a price are left out (those models
    /// are named in `unpriced_models`; their tool fees count); null when no model has a price
    /// and no tool fee was paid.
    pub cost_usd: Option<f64>,
    /// The part of `cost_usd` that is tool fees (web search, file search, containers, images).
    pub tool_fees_usd: f64,
    /// Models of these jobs that have no price in `pricing`.
    pub unpriced_models: Vec<String>,
}

/// One group: its key (a model, a day or a name) and its tally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsGroup {
    pub key: String,
    #[serde(flatten)]
    pub tally: Tally,
}

/// Stats since a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsReport {
    /// Always `stats`.
    pub object: String,
    /// The start of the period (unix seconds): jobs created at or after it are counted.
    pub since: i64,
    pub by: GroupBy,
    /// The time zone of the days (`budget.timezone`).
    pub timezone: String,
    pub totals: Tally,
    /// Days in ascending order; models and names by jobs (most first), then by key.
    pub groups: Vec<StatsGroup>,
}

/// Jobs, statuses and token and tool sums per model and tier, before pricing.
#[derive(Default)]
struct Acc {
    jobs: i64,
    duplicates: i64,
    by_status: BTreeMap<String, i64>,
    by_model: BTreeMap<(String, ServiceTier), (TokenSums, ToolUsage)>,
}

impl Acc {
    fn add(&mut self, r: &StatsRow) {
        self.jobs += r.jobs;
        self.duplicates += r.duplicates;
        if r.jobs > 0 {
            *self.by_status.entry(r.status.clone()).or_default() += r.jobs;
        }
        let tier = ServiceTier::of(r.service_tier.as_deref());
        let (tokens, tools) = self.by_model.entry((r.model.clone(), tier)).or_default();
        tokens.add(r);
        tools.add(&r.tools());
    }

    fn finish(self, prices: &Prices<'_>) -> Tally {
        let mut tokens = TokenSums::default();
        let mut tools = ToolSums::default();
        let mut usd = None::<f64>;
        let mut tool_fees_usd = 0.0;
        let mut unpriced_models = Vec::new();
        for ((model, tier), (t, u)) in &self.by_model {
            tokens.input += t.input;
            tokens.cached += t.cached;
            tokens.output += t.output;
            tokens.reasoning += t.reasoning;
            tokens.total += t.total;
            tools.web_search_calls += u.web_search_calls;
            tools.file_search_calls += u.file_search_calls;
            tools.code_containers += u.code_containers;
            tools.images += u.images;
            let c = cost(
                prices,
                model,
                *tier,
                crate::pricing::Tokens {
                    input: t.input,
                    cached: t.cached,
                    output: t.output,
                },
                u,
            );
            if c.tokens_usd.is_none() && !unpriced_models.contains(model) {
                unpriced_models.push(model.clone());
            }
            if c.tokens_usd.is_some() || c.tools_usd() > 0.0 {
                *usd.get_or_insert(0.0) += c.known_usd();
            }
            tool_fees_usd += c.tools_usd();
        }
        Tally {
            jobs: self.jobs,
            paid_duplicates: self.duplicates,
            by_status: self.by_status,
            tokens,
            tools,
            cost_usd: usd,
            tool_fees_usd,
            unpriced_models,
        }
    }
}

/// The local date (in `tz`) of a unix ms time.
pub fn local_day(ms: i64, tz: Tz) -> Option<NaiveDate> {
    tz.timestamp_millis_opt(ms).single().map(|t| t.date_naive())
}

/// The first instant (unix ms) of `date` in `tz`: midnight, or where a DST change skips
/// midnight, the first hour that exists.
pub fn day_start(date: NaiveDate, tz: Tz) -> i64 {
    (0..24)
        .find_map(|h| {
            date.and_hms_opt(h, 0, 0)
                .and_then(|t| tz.from_local_datetime(&t).earliest())
        })
        .map_or_else(
            || {
                date.and_hms_opt(0, 0, 0)
                    .map_or(0, |t| t.and_utc().timestamp_millis())
            },
            |t| t.timestamp_millis(),
        )
}

/// The start (unix ms) of the local day `days_back` days before the one containing `now_ms`.
pub fn days_back_start(now_ms: i64, days_back: u64, tz: Tz) -> i64 {
    local_day(now_ms, tz)
        .and_then(|d| d.checked_sub_days(chrono::Days::new(days_back)))
        .map_or(now_ms - days_back as i64 * DAY_MS, |d| day_start(d, tz))
}

/// The key of a row when grouping `by`.
fn key_of(r: &StatsRow, by: GroupBy, tz: Tz) -> String {
    match by {
        GroupBy::Model => r.model.clone(),
        GroupBy::Name => r.name.clone(),
        GroupBy::Day => local_day(r.bucket, tz)
            .map_or_else(|| "unknown".into(), |d| d.format("%Y-%m-%d").to_string()),
    }
}

/// Folds store rows into the totals and the groups `by`, sorted (days ascending; models and
/// names by jobs, most first, then by key). Costs are per model and service tier from summed
/// usage and tool calls.
pub fn fold(
    rows: &[StatsRow],
    by: GroupBy,
    tz: Tz,
    prices: &Prices<'_>,
) -> (Tally, Vec<StatsGroup>) {
    let mut totals = Acc::default();
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    for r in rows {
        totals.add(r);
        groups.entry(key_of(r, by, tz)).or_default().add(r);
    }
    let mut groups: Vec<StatsGroup> = groups
        .into_iter()
        .map(|(key, acc)| StatsGroup {
            key,
            tally: acc.finish(prices),
        })
        .collect();
    if by != GroupBy::Day {
        groups.sort_by(|a, b| b.tally.jobs.cmp(&a.tally.jobs).then(a.key.cmp(&b.key)));
    }
    (totals.finish(prices), groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::ModelPrice;
    use crate::store::STATS_BUCKET_MS;

    fn row(status: &str, model: &str, name: &str, bucket: i64, jobs: i64, tok: i64) -> StatsRow {
        StatsRow {
            status: status.into(),
            model: model.into(),
            name: name.into(),
            bucket,
            jobs,
            duplicates: 0,
            input_tokens: tok,
            cached_tokens: 0,
            output_tokens: tok,
            reasoning_tokens: tok / 2,
            total_tokens: 2 * tok,
            service_tier: Some("default".into()),
            web_search_calls: 0,
            web_search_preview_calls: 0,
            file_search_calls: 0,
            code_containers: 0,
            images: 0,
            image_fee_microusd: 0,
        }
    }

    fn models() -> BTreeMap<String, ModelPrice> {
        BTreeMap::from([("gpt-5".to_string(), ModelPrice::standard(1.0, 2.0, None))])
    }

    /// `gpt-5` at $1 in and $2 out a million tokens; the built-in tool fees.
    fn prices(models: &BTreeMap<String, ModelPrice>) -> Prices<'_> {
        Prices::new(models, crate::pricing::ToolPrices::BUILTIN)
    }

    // 2026-11-25 23:00 UTC: still the 25th in UTC, already the 26th in Paris.
    const LATE: i64 = 1_795_647_600_000;

    #[test]
    fn folds_by_model_with_costs_per_model() {
        let rows = [
            row("completed", "gpt-5", "a", LATE, 2, 1_000_000),
            row("failed", "gpt-5", "b", LATE, 1, 0),
            row("completed", "o3-x", "a", LATE + STATS_BUCKET_MS, 3, 10),
        ];
        let (totals, groups) = fold(&rows, GroupBy::Model, chrono_tz::UTC, &prices(&models()));
        assert_eq!(totals.jobs, 6);
        assert_eq!(totals.by_status["completed"], 5);
        assert_eq!(totals.by_status["failed"], 1);
        assert_eq!(totals.tokens.total, 2_000_020);
        // 1M input at $1 + 1M output at $2; o3-x has no price.
        assert_eq!(totals.cost_usd, Some(3.0));
        assert_eq!(totals.unpriced_models, vec!["o3-x".to_string()]);
        let keys: Vec<_> = groups.iter().map(|g| g.key.as_str()).collect();
        // Three jobs each: by key.
        assert_eq!(keys, ["gpt-5", "o3-x"]);
        assert_eq!(groups[0].tally.cost_usd, Some(3.0));
        assert_eq!(groups[0].tally.by_status["failed"], 1);
        assert_eq!(groups[1].tally.cost_usd, None);
        assert_eq!(groups[1].tally.tokens.reasoning, 5);
    }

    #[test]
    fn paid_duplicates_cost_money_but_are_not_jobs() {
        let mut dup = row("completed", "gpt-5", "a", LATE, 0, 1_000_000);
        dup.duplicates = 1;
        let rows = [row("completed", "gpt-5", "a", LATE, 1, 1_000_000), dup];
        let (totals, groups) = fold(&rows, GroupBy::Model, chrono_tz::UTC, &prices(&models()));
        assert_eq!((totals.jobs, totals.paid_duplicates), (1, 1));
        assert_eq!(totals.by_status["completed"], 1);
        // Both runs were paid: 2 × ($1 + $2).
        assert_eq!(totals.cost_usd, Some(6.0));
        assert_eq!(groups[0].tally.paid_duplicates, 1);
        // A window with only a duplicate in it lists no status with 0 jobs.
        let mut only = row("failed", "gpt-5", "a", LATE, 0, 10);
        only.duplicates = 1;
        let (totals, _) = fold(&[only], GroupBy::Model, chrono_tz::UTC, &prices(&models()));
        assert!(totals.by_status.is_empty());
    }

    #[test]
    fn tiers_and_tool_fees_are_priced_per_group() {
        let mut flex = row("completed", "gpt-5", "a", LATE, 1, 1_000_000);
        flex.service_tier = Some("flex".into());
        let mut tooled = row("completed", "o3-x", "a", LATE, 2, 0);
        tooled.web_search_calls = 1000;
        tooled.code_containers = 2;
        tooled.images = 1;
        tooled.image_fee_microusd = 42_000;
        let rows = [
            row("completed", "gpt-5", "a", LATE, 1, 1_000_000),
            flex,
            tooled,
        ];
        let (totals, groups) = fold(&rows, GroupBy::Model, chrono_tz::UTC, &prices(&models()));
        // Standard $3, flex half of it; o3-x has no price but its tools cost $10 + $0.06 +
        // $0.042.
        let tools = 10.0 + 0.06 + 0.042;
        assert!(
            (totals.cost_usd.unwrap() - (4.5 + tools)).abs() < 1e-9,
            "{totals:?}"
        );
        assert!((totals.tool_fees_usd - tools).abs() < 1e-9, "{totals:?}");
        assert_eq!(totals.tools.web_search_calls, 1000);
        assert_eq!(totals.tools.code_containers, 2);
        assert_eq!(totals.unpriced_models, ["o3-x"]);
        let o3 = groups.iter().find(|g| g.key == "o3-x").unwrap();
        assert!((o3.tally.cost_usd.unwrap() - tools).abs() < 1e-9);
    }

    #[test]
    fn folds_by_name_and_by_local_day() {
        let rows = [
            row("completed", "gpt-5", "a", LATE, 1, 5),
            row("completed", "gpt-5", "b", LATE - DAY_MS, 2, 5),
            row("failed", "gpt-5", "a", LATE - DAY_MS, 1, 5),
        ];
        let (_, by_name) = fold(&rows, GroupBy::Name, chrono_tz::UTC, &prices(&models()));
        let names: Vec<_> = by_name
            .iter()
            .map(|g| (g.key.as_str(), g.tally.jobs))
            .collect();
        // Equal job counts: by key.
        assert_eq!(names, [("a", 2), ("b", 2)]);
        let (_, utc) = fold(&rows, GroupBy::Day, chrono_tz::UTC, &prices(&models()));
        let days: Vec<_> = utc.iter().map(|g| (g.key.as_str(), g.tally.jobs)).collect();
        assert_eq!(days, [("2026-11-24", 3), ("2026-11-25", 1)]);
        let (_, paris) = fold(
            &rows,
            GroupBy::Day,
            chrono_tz::Europe::Paris,
            &prices(&models()),
        );
        let days: Vec<_> = paris.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(days, ["2026-11-25", "2026-11-26"]);
    }

    #[test]
    fn day_starts_follow_the_time_zone() {
        let paris = chrono_tz::Europe::Paris;
        // 23:00 UTC on the 25th is the 26th in Paris; that day began at 23:00 UTC.
        assert_eq!(days_back_start(LATE, 0, paris), LATE);
        assert_eq!(days_back_start(LATE, 1, paris), LATE - DAY_MS);
        assert_eq!(
            days_back_start(LATE, 0, chrono_tz::UTC),
            LATE - 23 * 3_600_000
        );
        assert_eq!(
            "week".parse::<GroupBy>().unwrap_err(),
            "`by` must be `model`, `day` or `name`, not `week`"
        );
    }
}
