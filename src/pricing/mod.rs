//! Prices and cost: the price of a model (the configured `pricing:`, by exact name or longest
//! prefix, else the built-in table of OpenAI's prices, [`builtin`], dated [`BUILTIN_AS_OF`]) in
//! each service tier ([`ServiceTier`]), the fees of the hosted tools a response called
//! ([`tools`]: web search, file search, code-interpreter containers, image generation), and
//! the one function that says what a job cost ([`cost::cost`]). Used by budgets, stats,
//! retention, views and notifications; configured in `config` but depending on nothing of it.

pub mod cost;
pub mod tools;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

pub use cost::{Cost, Prices, ToolFees, cost};
pub use tools::{ImagePrices, ToolPrices, ToolPricing, ToolUsage};

/// Dollars per million tokens in the standard tier, and optionally in the others.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    /// Cached input tokens (default: the input price).
    pub cached_input: Option<f64>,
    /// The `flex` tier's prices (default: half the standard ones, as OpenAI charges).
    pub flex: Option<TierPrice>,
    /// The `priority` tier's prices (default: twice the standard ones).
    pub priority: Option<TierPrice>,
}

/// Dollars per million tokens in one service tier.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierPrice {
    pub input: f64,
    pub output: f64,
    /// Cached input tokens (default: the input price).
    pub cached_input: Option<f64>,
}

/// How many times the standard prices a tier costs when its own prices are not known: OpenAI
/// charges exactly half for `flex`; `priority` costs 1.75× to 2× where OpenAI publishes it
/// (the built-in table holds those prices), and 2× is assumed elsewhere.
const FLEX_FACTOR: f64 = 0.5;
const PRIORITY_FACTOR: f64 = 2.0;

/// The processing tier a response was billed at, from its `service_tier` (the tier actually
/// used, which may differ from the one asked for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceTier {
    /// `default`, `auto`, `scale` (prepaid Scale Tier units), a tier respool does not know,
    /// or none: the standard prices.
    #[default]
    Standard,
    /// `flex`: half the standard prices.
    Flex,
    /// `priority`: the priority prices.
    Priority,
}

impl ServiceTier {
    /// The tier a response's `service_tier` value bills at.
    pub fn of(service_tier: Option<&str>) -> Self {
        match service_tier {
            Some("flex") => Self::Flex,
            Some("priority") => Self::Priority,
            _ => Self::Standard,
        }
    }
}

impl ModelPrice {
    /// A price with standard-tier prices only (the other tiers by the default rule).
    pub const fn standard(input: f64, output: f64, cached_input: Option<f64>) -> Self {
        Self {
            input,
            output,
            cached_input,
            flex: None,
            priority: None,
        }
    }

    /// The prices of `tier`: its own when given, else the standard ones times the tier's
    /// factor (half for `flex`, twice for `priority`).
    pub fn at(&self, tier: ServiceTier) -> TierPrice {
        let scaled = |f: f64| TierPrice {
            input: self.input * f,
            output: self.output * f,
            cached_input: self.cached_input.map(|c| c * f),
        };
        match tier {
            ServiceTier::Standard => scaled(1.0),
            ServiceTier::Flex => self.flex.unwrap_or_else(|| scaled(FLEX_FACTOR)),
            ServiceTier::Priority => self.priority.unwrap_or_else(|| scaled(PRIORITY_FACTOR)),
        }
    }
}

impl TierPrice {
    /// Dollars for these tokens (cached input at `cached_input`, else the input price).
    pub fn cost_usd(&self, t: Tokens) -> f64 {
        let uncached = (t.input - t.cached).max(0) as f64;
        (uncached * self.input
            + t.cached as f64 * self.cached_input.unwrap_or(self.input)
            + t.output as f64 * self.output)
            / 1_000_000.0
    }
}

/// The date the built-in prices (tokens, tiers and tools) were read from OpenAI's pricing page.
pub const BUILTIN_AS_OF: &str = "2025-12-01";
/// Where the built-in prices come from.
pub const BUILTIN_SOURCE: &str = "https://platform.openai.com/docs/pricing";
/// Where the built-in `priority` prices come from.
pub const PRIORITY_SOURCE: &str = "https://openai.com/api-priority-processing/";

/// Dollars per million tokens: input, cached input (`None`: the input price), output.
type Rates = (f64, Option<f64>, f64);

/// OpenAI's prices, dollars per million tokens: `(model, standard, priority)`, as of
/// [`BUILTIN_AS_OF`]. A model without a cached-input price (the `-pro` models) has `None`:
/// its cached tokens cost the input price. `priority` is OpenAI's published price where it
/// has one, else `None` (twice the standard prices are assumed). `flex` is never listed: it
/// is half the standard prices for every model OpenAI offers it on.
const BUILTIN: &[(&str, Rates, Option<Rates>)] = &[
    (
        "gpt-5",
        (1.25, Some(0.125), 10.00),
        Some((2.50, Some(0.25), 20.00)),
    ),
    ("gpt-5-chat-latest", (1.25, Some(0.125), 10.00), None),
    (
        "gpt-5-codex",
        (1.25, Some(0.125), 10.00),
        Some((2.50, Some(0.25), 20.00)),
    ),
    (
        "gpt-5-mini",
        (0.25, Some(0.025), 2.00),
        Some((0.45, Some(0.045), 3.60)),
    ),
    ("gpt-5-nano", (0.05, Some(0.005), 0.40), None),
    ("gpt-5-pro", (15.00, None, 120.00), None),
    (
        "gpt-5.1",
        (1.25, Some(0.125), 10.00),
        Some((2.50, Some(0.25), 20.00)),
    ),
    ("gpt-5.1-chat-latest", (1.25, Some(0.125), 10.00), None),
    (
        "gpt-5.1-codex",
        (1.25, Some(0.125), 10.00),
        Some((2.50, Some(0.25), 20.00)),
    ),
    ("gpt-5.1-codex-mini", (0.25, Some(0.025), 2.00), None),
    (
        "gpt-4.1",
        (2.00, Some(0.50), 8.00),
        Some((3.50, Some(0.875), 14.00)),
    ),
    (
        "gpt-4.1-mini",
        (0.40, Some(0.10), 1.60),
        Some((0.70, Some(0.175), 2.80)),
    ),
    (
        "gpt-4.1-nano",
        (0.10, Some(0.025), 0.40),
        Some((0.20, Some(0.05), 0.80)),
    ),
    (
        "gpt-4o",
        (2.50, Some(1.25), 10.00),
        Some((4.25, Some(2.125), 17.00)),
    ),
    (
        "gpt-4o-2024-05-13",
        (5.00, None, 15.00),
        Some((8.75, None, 26.25)),
    ),
    (
        "gpt-4o-mini",
        (0.15, Some(0.075), 0.60),
        Some((0.25, Some(0.125), 1.00)),
    ),
    ("o1", (15.00, Some(7.50), 60.00), None),
    ("o1-pro", (150.00, None, 600.00), None),
    (
        "o3",
        (2.00, Some(0.50), 8.00),
        Some((3.50, Some(0.875), 14.00)),
    ),
    ("o3-pro", (20.00, None, 80.00), None),
    ("o3-mini", (1.10, Some(0.55), 4.40), None),
    (
        "o4-mini",
        (1.10, Some(0.275), 4.40),
        Some((2.00, Some(0.50), 8.00)),
    ),
    ("o3-deep-research", (10.00, Some(2.50), 40.00), None),
    ("o4-mini-deep-research", (2.00, Some(0.50), 8.00), None),
    ("codex-mini-latest", (1.50, Some(0.375), 6.00), None),
    ("computer-use-preview", (3.00, None, 12.00), None),
];

/// The built-in prices by model name.
pub fn builtin() -> &'static BTreeMap<String, ModelPrice> {
    static TABLE: std::sync::LazyLock<BTreeMap<String, ModelPrice>> =
        std::sync::LazyLock::new(|| {
            BUILTIN
                .iter()
                .map(|(model, (input, cached, output), priority)| {
                    let mut price = ModelPrice::standard(*input, *output, *cached);
                    price.priority = priority.map(|(input, cached_input, output)| TierPrice {
                        input,
                        output,
                        cached_input,
                    });
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn price(input: f64, output: f64, cached: Option<f64>) -> ModelPrice {
        ModelPrice::standard(input, output, cached)
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
            // A published priority price is above the standard one, and at most twice it.
            if let Some(pr) = price.priority {
                for (p, s) in [(pr.input, price.input), (pr.output, price.output)] {
                    assert!(s < p && p <= 2.0 * s, "{m}");
                }
                assert_eq!(
                    pr.cached_input.is_some(),
                    price.cached_input.is_some(),
                    "{m}"
                );
            }
        }
    }

    #[test]
    fn the_documented_table_is_the_built_in_one() {
        let doc = include_str!("../../docs/notifications.md");
        let dollars = |cell: &str| -> Option<f64> {
            let cell = cell.trim();
            (cell != "—").then(|| cell.trim_start_matches('$').parse().expect(cell))
        };
        let mut documented = BTreeMap::new();
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            if cells.len() != 7 {
                continue;
            }
            let model = cells[0].trim().trim_matches('`').to_string();
            let mut price = ModelPrice::standard(
                dollars(cells[1]).unwrap(),
                dollars(cells[3]).unwrap(),
                dollars(cells[2]),
            );
            price.priority = dollars(cells[4]).map(|input| TierPrice {
                input,
                cached_input: dollars(cells[5]),
                output: dollars(cells[6]).unwrap(),
            });
            documented.insert(model, price);
        }
        assert_eq!(
            &documented,
            builtin(),
            "docs/notifications.md, \"Cost\", lists other prices"
        );
        assert!(doc.contains(BUILTIN_AS_OF) && doc.contains(BUILTIN_SOURCE));
        assert!(doc.contains(PRIORITY_SOURCE));
        // The tool fees too.
        let t = ToolPrices::BUILTIN;
        let i = t.image_generation;
        for fee in [
            format!("${:.2} per 1,000 calls", t.web_search),
            format!("${:.2} per 1,000 calls", t.web_search_preview_non_reasoning),
            format!("${:.2} per 1,000 calls", t.file_search),
            format!("${:.2} per container", t.code_interpreter),
            format!(
                "| low | ${} | ${} | ${} |",
                i.low.square, i.low.portrait, i.low.landscape
            ),
            format!(
                "| medium | ${} | ${} | ${} |",
                i.medium.square, i.medium.portrait, i.medium.landscape
            ),
            format!(
                "| high | ${} | ${} | ${} |",
                i.high.square, i.high.portrait, i.high.landscape
            ),
        ] {
            assert!(
                doc.contains(&fee),
                "docs/notifications.md does not say {fee}"
            );
        }
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
        let cost = price(2.0, 8.0, Some(0.5))
            .at(ServiceTier::Standard)
            .cost_usd(t);
        assert!((cost - (1.0 + 0.25 + 16.0)).abs() < 1e-9, "{cost}");
        let cost = price(2.0, 8.0, Some(0.5)).at(ServiceTier::Flex).cost_usd(t);
        assert!((cost - (1.0 + 0.25 + 16.0) / 2.0).abs() < 1e-9, "{cost}");
        let cost = price(2.0, 8.0, None).at(ServiceTier::Standard).cost_usd(t);
        assert!((cost - (1.0 + 1.0 + 16.0)).abs() < 1e-9, "{cost}");
        assert_eq!(Tokens::from_usage(&json!({})), Tokens::default());
    }
}
