//! Prices and cost: the configured price of a model (`pricing:`, by exact name or longest
//! prefix) and what a recorded `usage` cost at it. Used by budgets, stats, views and
//! notifications; configured in `config` but depending on nothing of it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    /// Cached input tokens (default: the input price).
    pub cached_input: Option<f64>,
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
}
