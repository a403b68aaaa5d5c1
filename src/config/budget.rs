//! Spending limits (`budget`) and the checks of prices and budget. What a usage costs is
//! [`crate::pricing`]'s.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::pricing::ModelPrice;

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

/// Problems with prices and budget, as (key path, message).
pub(super) fn validate(
    prices: &BTreeMap<String, ModelPrice>,
    budget: &BudgetConfig,
) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    for (model, p) in prices {
        let tier = |t: Option<crate::pricing::TierPrice>| {
            [
                ("input", t.map(|t| t.input)),
                ("output", t.map(|t| t.output)),
                ("cached_input", t.and_then(|t| t.cached_input)),
            ]
        };
        let standard = [
            ("input", Some(p.input)),
            ("output", Some(p.output)),
            ("cached_input", p.cached_input),
        ];
        let all = [
            (None, standard),
            (Some("flex"), tier(p.flex)),
            (Some("priority"), tier(p.priority)),
        ];
        for (tier, values) in all {
            for (key, v) in values {
                if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                    let mut path = vec![model.clone()];
                    path.extend(tier.map(String::from));
                    path.push(key.to_string());
                    out.push((
                        path,
                        "must be a non-negative number of dollars per million tokens".to_string(),
                    ));
                }
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
    // No `pricing` is fine: OpenAI's models have built-in prices (`pricing::builtin`).
    out
}

#[cfg(test)]
mod tests {

    use super::*;

    fn price(input: f64, output: f64, cached: Option<f64>) -> ModelPrice {
        ModelPrice::standard(input, output, cached)
    }

    #[test]
    fn validation() {
        let mut prices = BTreeMap::new();
        prices.insert("m".to_string(), price(-1.0, 1.0, None));
        let mut tiered = price(1.0, 1.0, None);
        tiered.flex = Some(crate::pricing::TierPrice {
            input: 0.5,
            output: f64::INFINITY,
            cached_input: Some(-0.1),
        });
        prices.insert("t".to_string(), tiered);
        let budget = BudgetConfig {
            daily_usd: Some(f64::NAN),
            monthly_usd: None,
            timezone: "Mars/Olympus".into(),
        };
        let problems = validate(&prices, &budget);
        let keys: Vec<String> = problems.iter().map(|(k, _)| k.join(".")).collect();
        assert_eq!(
            keys,
            [
                "m.input",
                "t.flex.output",
                "t.flex.cached_input",
                "budget.daily_usd",
                "budget.timezone",
            ]
        );
        // A budget without configured prices is fine: the built-in ones count.
        assert!(
            validate(
                &BTreeMap::new(),
                &BudgetConfig {
                    daily_usd: Some(1.0),
                    ..Default::default()
                },
            )
            .is_empty()
        );
    }
}
