//! Prices and cost: the price of a model (the configured `pricing:`, by exact name or longest
//! prefix, else the built-in table of OpenAI's prices, [`builtin`], dated [`BUILTIN_AS_OF`])
//! and what a recorded `usage` cost at it. Used by budgets, stats, views and
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

/// The date the built-in prices were read from OpenAI's pricing page.
pub const BUILTIN_AS_OF: &str = "2025-12-01";
/// Where the built-in prices come from.
pub const BUILTIN_SOURCE: &str = "https://platform.openai.com/docs/pricing";

/// OpenAI's standard-tier token prices, dollars per million tokens: `(model, input, cached
/// input, output)`, as of [`BUILTIN_AS_OF`]. A model without a cached-input price (the `-pro`
/// models) has `None`: its cached tokens cost the input price.
const BUILTIN: &[(&str, f64, Option<f64>, f64)] = &[
    ("gpt-5", 1.25, Some(0.125), 10.00),
    ("gpt-5-chat-latest", 1.25, Some(0.125), 10.00),
    ("gpt-5-codex", 1.25, Some(0.125), 10.00),
    ("gpt-5-mini", 0.25, Some(0.025), 2.00),
    ("gpt-5-nano", 0.05, Some(0.005), 0.40),
    ("gpt-5-pro", 15.00, None, 120.00),
    ("gpt-5.1", 1.25, Some(0.125), 10.00),
    ("gpt-5.1-chat-latest", 1.25, Some(0.125), 10.00),
    ("gpt-5.1-codex", 1.25, Some(0.125), 10.00),
    ("gpt-5.1-codex-mini", 0.25, Some(0.025), 2.00),
    ("gpt-4.1", 2.00, Some(0.50), 8.00),
    ("gpt-4.1-mini", 0.40, Some(0.10), 1.60),
    ("gpt-4.1-nano", 0.10, Some(0.025), 0.40),
    ("gpt-4o", 2.50, Some(1.25), 10.00),
    ("gpt-4o-2024-05-13", 5.00, None, 15.00),
    ("gpt-4o-mini", 0.15, Some(0.075), 0.60),
    ("o1", 15.00, Some(7.50), 60.00),
    ("o1-pro", 150.00, None, 600.00),
    ("o3", 2.00, Some(0.50), 8.00),
    ("o3-pro", 20.00, None, 80.00),
    ("o3-mini", 1.10, Some(0.55), 4.40),
    ("o4-mini", 1.10, Some(0.275), 4.40),
    ("o3-deep-research", 10.00, Some(2.50), 40.00),
    ("o4-mini-deep-research", 2.00, Some(0.50), 8.00),
    ("codex-mini-latest", 1.50, Some(0.375), 6.00),
    ("computer-use-preview", 3.00, None, 12.00),
];

/// The built-in prices by model name.
pub fn builtin() -> &'static BTreeMap<String, ModelPrice> {
    static TABLE: std::sync::LazyLock<BTreeMap<String, ModelPrice>> =
        std::sync::LazyLock::new(|| {
            BUILTIN
                .iter()
                .map(|(model, input, cached, output)| {
                    let price = ModelPrice {
                        input: *input,
                        output: *output,
                        cached_input: *cached,
                    };
                    ((*model).to_string(), price)
                })
                .collect()
        });
    &TABLE
}

/// The built-in entry of `model`: its own, or that of the model it is a dated snapshot of
/// (`gpt-5-2025-08-07` is `gpt-5`; `gpt-5.2` is not `gpt-5`, and has no built-in price).
fn builtin_for(model: &str) -> Option<(&'static str, &'static ModelPrice)> {
    let table = builtin();
    if let Some((k, p)) = table.get_key_value(model) {
        return Some((k.as_str(), p));
    }
    // A snapshot: the name, `-`, then a date (`2025-08-07`) or a date-like number (`0613`).
    let (base, date) = model
        .rsplit_once('-')
        .filter(|(_, d)| d.chars().all(|c| c.is_ascii_digit()))?;
    let base = if date.len() == 2 {
        // `-2025-08-07`: take off the other two date parts.
        let (b, month) = base.rsplit_once('-')?;
        let (b, year) = b.rsplit_once('-')?;
        (month.len() == 2
            && year.len() == 4
            && month
                .chars()
                .chain(year.chars())
                .all(|c| c.is_ascii_digit()))
        .then_some(b)?
    } else if date.len() == 4 {
        base
    } else {
        return None;
    };
    table.get_key_value(base).map(|(k, p)| (k.as_str(), p))
}

/// The price of `model`: the most specific of its configured entry (its own name, else the
/// longest configured prefix: `gpt-5` prices `gpt-5-2025-08-07`) and its built-in one (the
/// model's, or that of the model it is a dated snapshot of). The configured entry wins unless
/// the built-in one names a longer model: `pricing: {o3: …}` prices `o3` and
/// `o3-2025-04-16`, not `o3-deep-research`, which keeps its own built-in price. `None` when
/// neither knows it.
pub fn price_for<'a>(
    prices: &'a BTreeMap<String, ModelPrice>,
    model: &str,
) -> Option<&'a ModelPrice> {
    match (longest_prefix(prices, model), builtin_for(model)) {
        (Some((key, configured)), Some((base, built_in))) => Some(if base.len() > key.len() {
            built_in
        } else {
            configured
        }),
        (Some((_, configured)), None) => Some(configured),
        (None, built_in) => built_in.map(|(_, p)| p),
    }
}

/// Why a job has no cost, for a person: `None` when `model` has a price.
pub fn unpriced_reason(prices: &BTreeMap<String, ModelPrice>, model: &str) -> Option<String> {
    price_for(prices, model).is_none().then(|| {
        format!(
            "unknown: respool has no price for model `{model}` (add it under `pricing:` in the config)"
        )
    })
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
    fn built_in_prices_cover_openais_models_and_their_snapshots() {
        let none = BTreeMap::new();
        let p = |m: &str| price_for(&none, m).map(|p| (p.input, p.cached_input, p.output));
        assert_eq!(p("gpt-5"), Some((1.25, Some(0.125), 10.0)));
        assert_eq!(p("gpt-5-2025-08-07"), p("gpt-5"));
        assert_eq!(p("gpt-5-mini-2025-08-07"), p("gpt-5-mini"));
        assert_eq!(
            p("o3-deep-research-2025-06-26"),
            Some((10.0, Some(2.5), 40.0))
        );
        assert_eq!(p("gpt-4o-2024-08-06"), p("gpt-4o"));
        assert_eq!(p("o4-mini-deep-research"), Some((2.0, Some(0.5), 8.0)));
        // Not a snapshot of a known model: no price rather than a wrong one.
        assert_eq!(p("gpt-5.2"), None);
        assert_eq!(p("gpt-5-turbo"), None);
        assert_eq!(p("my-fine-tune"), None);
        assert_eq!(p("gpt-5-20"), None);
        assert_eq!(p(""), None);
        assert!(
            unpriced_reason(&none, "my-model")
                .unwrap()
                .contains("`my-model`")
        );
        assert_eq!(unpriced_reason(&none, "o3"), None);
        // Every built-in price is sane: cached input below input, output at least input.
        for (m, price) in builtin() {
            assert!(price.input > 0.0 && price.output >= price.input, "{m}");
            assert!(price.cached_input.is_none_or(|c| c < price.input), "{m}");
        }
    }

    #[test]
    fn the_documented_table_is_the_built_in_one() {
        let doc = include_str!("../docs/notifications.md");
        let dollars = |cell: &str| -> Option<f64> {
            let cell = cell.trim();
            (cell != "—").then(|| cell.trim_start_matches('$').parse().expect(cell))
        };
        let mut documented = BTreeMap::new();
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            if cells.len() != 4 {
                continue;
            }
            let model = cells[0].trim().trim_matches('`').to_string();
            let price = ModelPrice {
                input: dollars(cells[1]).unwrap(),
                cached_input: dollars(cells[2]),
                output: dollars(cells[3]).unwrap(),
            };
            documented.insert(model, price);
        }
        assert_eq!(
            &documented,
            builtin(),
            "docs/notifications.md, \"Cost\", lists other prices"
        );
        assert!(doc.contains(BUILTIN_AS_OF) && doc.contains(BUILTIN_SOURCE));
    }

    #[test]
    fn configured_prices_override_and_extend_the_built_in_ones() {
        let mut prices = BTreeMap::new();
        prices.insert("gpt-5".to_string(), price(9.0, 9.0, None));
        prices.insert("acme-".to_string(), price(1.0, 2.0, None));
        assert_eq!(price_for(&prices, "gpt-5").map(|p| p.input), Some(9.0));
        assert_eq!(
            price_for(&prices, "gpt-5-2025-08-07").map(|p| p.input),
            Some(9.0)
        );
        // A configured prefix does not reprice a longer model the table knows
        // (`gpt-5-pro` at gpt-5's price would be 12 times too low)...
        assert_eq!(
            price_for(&prices, "gpt-5-mini").map(|p| p.input),
            Some(0.25)
        );
        assert_eq!(
            price_for(&prices, "gpt-5-pro").map(|p| p.output),
            Some(120.0)
        );
        // ...but covers the models the table does not know.
        assert_eq!(
            price_for(&prices, "gpt-5-turbo").map(|p| p.input),
            Some(9.0)
        );
        assert_eq!(
            price_for(&prices, "acme-large").map(|p| p.output),
            Some(2.0)
        );
        assert_eq!(price_for(&prices, "o3").map(|p| p.input), Some(2.0));
        // An entry of its own always wins.
        prices.insert("gpt-5-pro".to_string(), price(1.0, 1.0, None));
        assert_eq!(price_for(&prices, "gpt-5-pro").map(|p| p.output), Some(1.0));
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
        assert!(price_for(&prices, "my-model").is_none());
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
