//! Money and housekeeping settings: prices (`pricing`, formerly `notify.pricing`), spending
//! limits (`budget`), how long finished jobs are kept (`retention`), and the lookups that turn
//! recorded usage into dollars.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::de_opt_duration;
pub use super::sinks::ModelPrice;

/// Spending limits. Spend is the cost of the jobs finished in the period (and the usage so far
/// of those still running), from their recorded usage and `pricing`. When a limit is reached,
/// jobs not yet submitted are `held` until the period rolls over or the limit is raised.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Dollars per calendar day (unset: no daily limit).
    pub daily_usd: Option<f64>,
    /// Dollars per calendar month (unset: no monthly limit).
    pub monthly_usd: Option<f64>,
    /// The IANA time zone whose midnight starts a day and a month (`Europe/Paris`).
    pub timezone: String,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            daily_usd: None,
            monthly_usd: None,
            timezone: "UTC".into(),
        }
    }
}

impl BudgetConfig {
    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.daily_usd.is_some() || self.monthly_usd.is_some()
    }

    /// The time zone (UTC if it does not parse; `validate` reports that).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::UTC)
    }
}

/// How long finished jobs, and the records that grow with time, are kept. Every table has a
/// rule (`docs/operations.md`, "Retention", lists them); the ones worth tuning are here, the
/// others are fixed (webhook delivery records: 7 days; retired webhook secrets: 30 days after
/// they stopped being accepted).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Finished jobs older than this (by their end) are deleted with their timeline and
    /// notifications (unset: kept until deleted by hand). Webhook delivery records are always
    /// pruned after 7 days.
    #[serde(deserialize_with = "de_opt_duration")]
    pub jobs: Option<Duration>,
    /// Keep a summary row of each pruned job (name, model, status, times, usage, cost, error
    /// code), so spend and counts still include it.
    pub keep_summary: bool,
    /// Summaries of pruned jobs that ended longer ago than this are deleted (`null`: kept
    /// forever). At least `32d`, so the current month's spend never loses a job.
    #[serde(deserialize_with = "de_opt_duration")]
    pub summaries: Option<Duration>,
    /// The record of a schedule's tick (`respool schedules runs`) is deleted once the tick is
    /// older than this (`null`: kept forever), except the newest `schedule_runs_kept` runs of
    /// each schedule, a run whose job is still unfinished or waits for its turn, and ticks the
    /// schedule has not moved past yet. A schedule's count of runs still includes the deleted
    /// ones.
    #[serde(deserialize_with = "de_opt_duration")]
    pub schedule_runs: Option<Duration>,
    /// The newest runs of each schedule kept whatever their age.
    pub schedule_runs_kept: u32,
}

/// The default of `retention.summaries`: a year and a month, so a year-on-year comparison
/// still has the whole month.
pub const DEFAULT_SUMMARY_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);
/// The default of `retention.schedule_runs`.
pub const DEFAULT_SCHEDULE_RUN_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest `retention.summaries`: longer than any month.
const MIN_SUMMARY_RETENTION: Duration = Duration::from_secs(32 * 24 * 3600);

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            jobs: None,
            keep_summary: true,
            summaries: Some(DEFAULT_SUMMARY_RETENTION),
            schedule_runs: Some(DEFAULT_SCHEDULE_RUN_RETENTION),
            schedule_runs_kept: 100,
        }
    }
}

/// The price of `model`: its own entry, else the longest configured prefix (`gpt-5` prices
/// `gpt-5-2025-08-07`).
pub fn price_for<'a>(
    prices: &'a BTreeMap<String, ModelPrice>,
    model: &str,
) -> Option<&'a ModelPrice> {
    longest_prefix(prices, model).map(|(_, p)| p)
}

/// Dollars a job's `usage` cost at these prices; `None` when the model has no price.
pub fn usage_cost_usd(
    prices: &BTreeMap<String, ModelPrice>,
    model: &str,
    usage: &Value,
) -> Option<f64> {
    price_for(prices, model).map(|p| p.cost_usd(Tokens::from_usage(usage)))
}

/// The entry of `map` whose key is `model` or its longest prefix.
pub fn longest_prefix<'a, T>(
    map: &'a BTreeMap<String, T>,
    model: &str,
) -> Option<(&'a str, &'a T)> {
    if let Some((k, v)) = map.get_key_value(model) {
        return Some((k.as_str(), v));
    }
    map.iter()
        .filter(|(k, _)| model.starts_with(k.as_str()))
        .max_by_key(|(k, _)| k.len())
        .map(|(k, v)| (k.as_str(), v))
}

/// Token counts of an upstream `usage` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: i64,
    /// Part of `input` served from the cache.
    pub cached: i64,
    pub output: i64,
}

impl Tokens {
    /// Reads `input_tokens`, `input_tokens_details.cached_tokens` and `output_tokens`.
    pub fn from_usage(usage: &Value) -> Self {
        let g = |p: &str| usage.pointer(p).and_then(Value::as_i64).unwrap_or(0).max(0);
        Self {
            input: g("/input_tokens"),
            cached: g("/input_tokens_details/cached_tokens"),
            output: g("/output_tokens"),
        }
    }
}

impl ModelPrice {
    /// Dollars for these tokens (cached input at `cached_input`, else the input price).
    pub fn cost_usd(&self, t: Tokens) -> f64 {
        let uncached = (t.input - t.cached).max(0) as f64;
        (uncached * self.input
            + t.cached as f64 * self.cached_input.unwrap_or(self.input)
            + t.output as f64 * self.output)
            / 1_000_000.0
    }
}

/// Problems with prices, budget and retention, as (key path, message).
pub(super) fn validate(
    prices: &BTreeMap<String, ModelPrice>,
    budget: &BudgetConfig,
    retention: &RetentionConfig,
) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    for (model, p) in prices {
        for (key, v) in [
            ("input", Some(p.input)),
            ("output", Some(p.output)),
            ("cached_input", p.cached_input),
        ] {
            if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                out.push((
                    vec![model.clone(), key.to_string()],
                    "must be a non-negative number of dollars per million tokens".to_string(),
                ));
            }
        }
    }
    for (key, v) in [
        ("daily_usd", budget.daily_usd),
        ("monthly_usd", budget.monthly_usd),
    ] {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            out.push((
                vec!["budget".into(), key.into()],
                "must be a non-negative number of dollars".into(),
            ));
        }
    }
    if budget.timezone.parse::<chrono_tz::Tz>().is_err() {
        out.push((
            vec!["budget".into(), "timezone".into()],
            format!(
                "`{}` is not an IANA time zone (e.g. `UTC`, `Europe/Paris`, `America/New_York`)",
                budget.timezone
            ),
        ));
    }
    if budget.is_set() && prices.is_empty() {
        out.push((
            vec!["budget".into()],
            "a budget needs prices: set `pricing` (dollars per million tokens per model)".into(),
        ));
    }
    if retention
        .jobs
        .is_some_and(|d| d < Duration::from_secs(3600))
    {
        out.push((
            vec!["retention".into(), "jobs".into()],
            "must be at least `1h` (finished jobs are pruned by the hour)".into(),
        ));
    }
    if retention
        .summaries
        .is_some_and(|d| d < MIN_SUMMARY_RETENTION)
    {
        out.push((
            vec!["retention".into(), "summaries".into()],
            "must be at least `32d` (the current month's spend counts the summaries)".into(),
        ));
    }
    if retention
        .schedule_runs
        .is_some_and(|d| d < Duration::from_secs(3600))
    {
        out.push((
            vec!["retention".into(), "schedule_runs".into()],
            "must be at least `1h` (schedule runs are pruned by the hour)".into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn price(input: f64, output: f64, cached: Option<f64>) -> ModelPrice {
        ModelPrice {
            input,
            output,
            cached_input: cached,
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let mut prices = BTreeMap::new();
        prices.insert("gpt-5".to_string(), price(1.0, 2.0, None));
        prices.insert("gpt-5-mini".to_string(), price(0.5, 1.0, None));
        assert_eq!(price_for(&prices, "gpt-5").map(|p| p.input), Some(1.0));
        assert_eq!(
            price_for(&prices, "gpt-5-2025-08-07").map(|p| p.input),
            Some(1.0)
        );
        assert_eq!(
            price_for(&prices, "gpt-5-mini-2025").map(|p| p.input),
            Some(0.5)
        );
        assert!(price_for(&prices, "o3").is_none());
    }

    #[test]
    fn cost_of_usage() {
        let usage = json!({"input_tokens": 1_000_000, "input_tokens_details": {"cached_tokens": 500_000},
                           "output_tokens": 2_000_000});
        let t = Tokens::from_usage(&usage);
        assert_eq!(
            t,
            Tokens {
                input: 1_000_000,
                cached: 500_000,
                output: 2_000_000
            }
        );
        let cost = price(2.0, 8.0, Some(0.5)).cost_usd(t);
        assert!((cost - (1.0 + 0.25 + 16.0)).abs() < 1e-9, "{cost}");
        let cost = price(2.0, 8.0, None).cost_usd(t);
        assert!((cost - (1.0 + 1.0 + 16.0)).abs() < 1e-9, "{cost}");
        assert_eq!(Tokens::from_usage(&json!({})), Tokens::default());
    }

    #[test]
    fn validation() {
        let mut prices = BTreeMap::new();
        prices.insert("m".to_string(), price(-1.0, 1.0, None));
        let budget = BudgetConfig {
            daily_usd: Some(f64::NAN),
            monthly_usd: None,
            timezone: "Mars/Olympus".into(),
        };
        let retention = RetentionConfig {
            jobs: Some(Duration::from_secs(60)),
            keep_summary: true,
            summaries: Some(Duration::from_secs(86_400)),
            schedule_runs: Some(Duration::from_secs(60)),
            schedule_runs_kept: 100,
        };
        let problems = validate(&prices, &budget, &retention);
        let keys: Vec<String> = problems.iter().map(|(k, _)| k.join(".")).collect();
        assert_eq!(
            keys,
            [
                "m.input",
                "budget.daily_usd",
                "budget.timezone",
                "retention.jobs",
                "retention.summaries",
                "retention.schedule_runs"
            ]
        );
        assert!(
            validate(
                &BTreeMap::new(),
                &BudgetConfig {
                    daily_usd: Some(1.0),
                    ..Default::default()
                },
                &RetentionConfig::default()
            )
            .iter()
            .any(|(_, m)| m.contains("needs prices"))
        );
    }
}
