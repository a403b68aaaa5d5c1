//! The one cost function: what a job, or a sum of jobs of one model and service tier, cost.
//! Budgets, stats, retention's summaries, the job's view (API, CLI, web page) and
//! notifications all call [`cost`], so they show the same figure.
//!
//! A cost is two parts: the tokens at the model's price in the tier the response used, and
//! the tool fees. The tokens of a model without a price have no cost (`tokens_usd: None`),
//! while its tool fees are still known: a single job's total is then unknown
//! ([`Cost::total_usd`] is `None`, and the view says why), and sums (stats, budgets) count what
//! is known ([`Cost::known_usd`]) and name the models without a price.

use std::collections::BTreeMap;

use super::tools::{ToolPrices, ToolUsage, is_non_reasoning};
use super::{ModelPrice, ServiceTier, Tokens, price_for};

/// The prices in force: the models' (configured over built-in) and the tools'.
#[derive(Debug, Clone, Copy)]
pub struct Prices<'a> {
    pub models: &'a BTreeMap<String, ModelPrice>,
    pub tools: ToolPrices,
}

impl<'a> Prices<'a> {
    /// Configured model prices (over the built-in ones) and these tool fees.
    pub fn new(models: &'a BTreeMap<String, ModelPrice>, tools: ToolPrices) -> Self {
        Self { models, tools }
    }

    /// The price of `model` ([`price_for`]).
    pub fn model(&self, model: &str) -> Option<&'a ModelPrice> {
        price_for(self.models, model)
    }
}

/// Dollars of each tool's fees.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ToolFees {
    pub web_search: f64,
    pub file_search: f64,
    pub code_interpreter: f64,
    pub image_generation: f64,
}

impl ToolFees {
    /// All of them.
    pub fn total(&self) -> f64 {
        self.web_search + self.file_search + self.code_interpreter + self.image_generation
    }
}

/// What something cost, in dollars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// The tokens at the model's price in the tier used; `None` when the model has no price.
    pub tokens_usd: Option<f64>,
    /// The tool fees, known whatever the model.
    pub tools: ToolFees,
}

impl Cost {
    /// The tool fees together.
    pub fn tools_usd(&self) -> f64 {
        self.tools.total()
    }

    /// The whole cost; `None` when the tokens have no price (the tool fees alone would read as
    /// the whole price).
    pub fn total_usd(&self) -> Option<f64> {
        self.tokens_usd.map(|t| t + self.tools_usd())
    }

    /// What is known of the cost: the tool fees, and the tokens when they have a price. What
    /// sums of many jobs (stats, budgets) add up.
    pub fn known_usd(&self) -> f64 {
        self.tokens_usd.unwrap_or(0.0) + self.tools_usd()
    }
}

/// What `tokens` and `tools` of `model`, run in `tier`, cost at `prices`: the tokens at the
/// model's prices in that tier ([`ModelPrice::at`]), each tool call at its fee (web search
/// calls made through `web_search_preview` by a non-reasoning model at
/// [`ToolPrices::web_search_preview_non_reasoning`]), and the image fee recorded with them.
/// Counts below 0 (a hand-edited row) count 0.
pub fn cost(
    prices: &Prices<'_>,
    model: &str,
    tier: ServiceTier,
    tokens: Tokens,
    tools: &ToolUsage,
) -> Cost {
    let fees = &prices.tools;
    let n = |v: i64| v.max(0) as f64;
    let preview = if is_non_reasoning(model) {
        tools
            .web_search_preview_calls
            .clamp(0, tools.web_search_calls.max(0))
    } else {
        0
    };
    Cost {
        tokens_usd: prices.model(model).map(|p| p.at(tier).cost_usd(tokens)),
        tools: ToolFees {
            web_search: (n(tools.web_search_calls - preview) * fees.web_search
                + n(preview) * fees.web_search_preview_non_reasoning)
                / 1000.0,
            file_search: n(tools.file_search_calls) * fees.file_search / 1000.0,
            code_interpreter: n(tools.code_containers) * fees.code_interpreter,
            image_generation: n(tools.image_fee_microusd) / 1e6,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::builtin;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    const M: i64 = 1_000_000;

    #[test]
    fn tokens_and_tools_add_up() {
        let none = BTreeMap::new();
        let prices = Prices::new(&none, ToolPrices::BUILTIN);
        let tokens = Tokens {
            input: M,
            cached: 0,
            output: M,
        };
        let tools = ToolUsage {
            web_search_calls: 3,
            web_search_preview_calls: 0,
            file_search_calls: 2,
            code_containers: 2,
            images: 1,
            image_fee_microusd: 167_000,
        };
        let c = cost(&prices, "gpt-5", ServiceTier::Standard, tokens, &tools);
        assert!(close(c.tokens_usd.unwrap(), 1.25 + 10.0), "{c:?}");
        assert!(close(c.tools.web_search, 0.03), "{c:?}");
        assert!(close(c.tools.file_search, 0.005), "{c:?}");
        assert!(close(c.tools.code_interpreter, 0.06), "{c:?}");
        assert!(close(c.tools.image_generation, 0.167), "{c:?}");
        assert!(close(c.total_usd().unwrap(), 11.25 + 0.262), "{c:?}");
        assert_eq!(c.total_usd(), Some(c.known_usd()));
    }

    #[test]
    fn tiers_change_the_token_price_not_the_tool_fees() {
        let none = BTreeMap::new();
        let prices = Prices::new(&none, ToolPrices::BUILTIN);
        let tokens = Tokens {
            input: 2 * M,
            cached: M,
            output: M,
        };
        let tools = ToolUsage {
            file_search_calls: 1000,
            ..ToolUsage::default()
        };
        let usd = |model: &str, tier| cost(&prices, model, tier, tokens, &tools);
        // gpt-5: 1M uncached at 1.25, 1M cached at 0.125, 1M out at 10.
        let standard = 1.25 + 0.125 + 10.0;
        assert!(close(
            usd("gpt-5", ServiceTier::Standard).tokens_usd.unwrap(),
            standard
        ));
        assert!(close(
            usd("gpt-5", ServiceTier::Flex).tokens_usd.unwrap(),
            standard / 2.0
        ));
        // OpenAI's published priority price: 2.50 / 0.25 / 20.
        assert!(close(
            usd("gpt-5", ServiceTier::Priority).tokens_usd.unwrap(),
            2.5 + 0.25 + 20.0
        ));
        // o3's priority is 1.75 times: 3.50 / 0.875 / 14.
        assert!(close(
            usd("o3-2025-04-16", ServiceTier::Priority)
                .tokens_usd
                .unwrap(),
            3.5 + 0.875 + 14.0
        ));
        // No published priority price: twice the standard one.
        assert!(close(
            usd("gpt-5-nano", ServiceTier::Priority).tokens_usd.unwrap(),
            2.0 * (0.05 + 0.005 + 0.40)
        ));
        for tier in [
            ServiceTier::Standard,
            ServiceTier::Flex,
            ServiceTier::Priority,
        ] {
            assert!(close(usd("gpt-5", tier).tools_usd(), 2.5));
        }
    }

    #[test]
    fn an_unpriced_model_has_known_tool_fees_and_no_total() {
        let none = BTreeMap::new();
        let prices = Prices::new(&none, ToolPrices::BUILTIN);
        let tools = ToolUsage {
            code_containers: 1,
            ..ToolUsage::default()
        };
        let c = cost(
            &prices,
            "acme-finetune",
            ServiceTier::Standard,
            Tokens::default(),
            &tools,
        );
        assert_eq!(c.tokens_usd, None);
        assert_eq!(c.total_usd(), None);
        assert!(close(c.known_usd(), 0.03));
    }

    #[test]
    fn web_search_preview_costs_more_on_a_non_reasoning_model() {
        let none = BTreeMap::new();
        let prices = Prices::new(&none, ToolPrices::BUILTIN);
        let preview = ToolUsage {
            web_search_calls: 4,
            web_search_preview_calls: 4,
            ..ToolUsage::default()
        };
        let fee = |model: &str, t: &ToolUsage| {
            cost(&prices, model, ServiceTier::Standard, Tokens::default(), t)
                .tools
                .web_search
        };
        assert!(close(fee("gpt-4o", &preview), 0.1));
        assert!(close(fee("gpt-4.1-mini-2025-04-14", &preview), 0.1));
        assert!(close(fee("gpt-5-chat-latest", &preview), 0.1));
        assert!(close(fee("o3-deep-research", &preview), 0.04));
        assert!(close(fee("gpt-5", &preview), 0.04));
        let plain = ToolUsage {
            web_search_preview_calls: 0,
            ..preview
        };
        assert!(close(fee("gpt-4o", &plain), 0.04));
        // A row edited into nonsense counts nothing below 0 and no more previews than calls.
        let odd = ToolUsage {
            web_search_calls: 2,
            web_search_preview_calls: 9,
            file_search_calls: -5,
            code_containers: -1,
            images: -1,
            image_fee_microusd: -7,
        };
        let c = cost(
            &prices,
            "gpt-4o",
            ServiceTier::Standard,
            Tokens::default(),
            &odd,
        );
        assert!(close(c.tools_usd(), 0.05), "{c:?}");
    }

    #[test]
    fn configured_tier_prices_win() {
        let mut models = BTreeMap::new();
        let mut p = ModelPrice::standard(1.0, 2.0, None);
        models.insert("acme".to_string(), p);
        let prices = Prices::new(&models, ToolPrices::BUILTIN);
        let tokens = Tokens {
            input: M,
            cached: 0,
            output: M,
        };
        let usd = |prices: &Prices<'_>, tier| {
            cost(prices, "acme", tier, tokens, &ToolUsage::default())
                .tokens_usd
                .unwrap()
        };
        assert!(close(usd(&prices, ServiceTier::Flex), 1.5));
        assert!(close(usd(&prices, ServiceTier::Priority), 6.0));
        p.flex = Some(crate::pricing::TierPrice {
            input: 0.1,
            output: 0.2,
            cached_input: None,
        });
        p.priority = Some(crate::pricing::TierPrice {
            input: 5.0,
            output: 5.0,
            cached_input: None,
        });
        models.insert("acme".to_string(), p);
        let prices = Prices::new(&models, ToolPrices::BUILTIN);
        assert!(close(usd(&prices, ServiceTier::Flex), 0.3));
        assert!(close(usd(&prices, ServiceTier::Priority), 10.0));
        assert!(close(usd(&prices, ServiceTier::Standard), 3.0));
    }

    /// Every model of the built-in table is priced in every tier, and a tier never costs less
    /// than flex or more than priority.
    #[test]
    fn every_built_in_model_has_a_cost_in_every_tier() {
        let none = BTreeMap::new();
        let prices = Prices::new(&none, ToolPrices::BUILTIN);
        let tokens = Tokens {
            input: 1000,
            cached: 100,
            output: 1000,
        };
        for model in builtin().keys() {
            let usd = |tier| {
                cost(&prices, model, tier, tokens, &ToolUsage::default())
                    .total_usd()
                    .unwrap_or_else(|| panic!("{model} {tier:?} has no cost"))
            };
            let (flex, standard, priority) = (
                usd(ServiceTier::Flex),
                usd(ServiceTier::Standard),
                usd(ServiceTier::Priority),
            );
            assert!(
                0.0 < flex && flex < standard && standard < priority,
                "{model}"
            );
        }
    }
}
