//! Tool-call fees: what a response's hosted tools cost on top of its tokens.
//!
//! [`ToolUsage::from_response`] is the one reading of a response for them: the store keeps what
//! it reads as columns of the job (written with the token columns when the job ends), and
//! migration `20261206000020_tool_usage` read older rows by the same rules (a test holds the
//! two to the same answers). [`ToolPrices`] are the fees: built in as of
//! [`super::BUILTIN_AS_OF`], overridden by `tool_pricing:` in the config ([`ToolPricing`]).
//!
//! What counts, from the response's `output` items (an item that is not an object, or whose
//! `type` is not a string, counts nothing; a response without an `output` array has no tool
//! usage; nothing here panics on any JSON):
//!
//! - **web search**: each `web_search_call` item is one call, whatever its action (`search`,
//!   `open_page`, `find_in_page`) or status. Calls are `web_search_preview` calls when every
//!   web search tool the response lists in `tools` is a `web_search_preview…` one (OpenAI
//!   charges those more on a non-reasoning model, [`is_non_reasoning`]); otherwise, or when
//!   the response lists none, they are `web_search` calls.
//! - **file search**: each `file_search_call` item is one call.
//! - **code interpreter**: OpenAI charges per container, so a job counts the distinct
//!   non-empty `container_id` strings of its `code_interpreter_call` items (an item without
//!   one counts nothing). A container an earlier job made and this one reused is counted
//!   again: a job cannot tell.
//! - **image generation**: each `image_generation_call` item whose `status` is not `failed` is
//!   one image, priced by its `quality` and `size` ([`ImagePrices::per_image`]). The fee is
//!   fixed when the job's result is recorded, at the image prices in force then (it is kept in
//!   millionths of a dollar, as the images' sizes and qualities are not).

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

/// The hosted-tool usage of one response (or the sum of several).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolUsage {
    /// `web_search_call` items.
    pub web_search_calls: i64,
    /// Part of `web_search_calls` made through a `web_search_preview` tool.
    pub web_search_preview_calls: i64,
    /// `file_search_call` items.
    pub file_search_calls: i64,
    /// Distinct containers of `code_interpreter_call` items.
    pub code_containers: i64,
    /// Images generated (`image_generation_call` items not `failed`).
    pub images: i64,
    /// What the images cost, in millionths of a dollar.
    pub image_fee_microusd: i64,
}

impl ToolUsage {
    /// Reads the tool usage of an upstream Response object (see the module for the rules),
    /// pricing its images at `images`.
    pub fn from_response(response: &Value, images: &ImagePrices) -> Self {
        let mut usage = Self::default();
        let Some(items) = response.get("output").and_then(Value::as_array) else {
            return usage;
        };
        let mut containers = BTreeSet::new();
        for item in items {
            let text = |key: &str| item.get(key).and_then(Value::as_str);
            match text("type") {
                Some("web_search_call") => usage.web_search_calls += 1,
                Some("file_search_call") => usage.file_search_calls += 1,
                Some("code_interpreter_call") => {
                    if let Some(id) = text("container_id").filter(|id| !id.is_empty()) {
                        containers.insert(id);
                    }
                }
                Some("image_generation_call") if text("status") != Some("failed") => {
                    usage.images += 1;
                    usage.image_fee_microusd = usage
                        .image_fee_microusd
                        .saturating_add(microusd(images.per_image(text("quality"), text("size"))));
                }
                _ => {}
            }
        }
        usage.code_containers = containers.len() as i64;
        if web_search_is_preview(response) {
            usage.web_search_preview_calls = usage.web_search_calls;
        }
        usage
    }

    /// Adds `other` in, each count saturating rather than wrapping.
    pub fn add(&mut self, other: &Self) {
        self.web_search_calls = self.web_search_calls.saturating_add(other.web_search_calls);
        self.web_search_preview_calls = self
            .web_search_preview_calls
            .saturating_add(other.web_search_preview_calls);
        self.file_search_calls = self
            .file_search_calls
            .saturating_add(other.file_search_calls);
        self.code_containers = self.code_containers.saturating_add(other.code_containers);
        self.images = self.images.saturating_add(other.images);
        self.image_fee_microusd = self
            .image_fee_microusd
            .saturating_add(other.image_fee_microusd);
    }

    /// Whether no tool was used.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The `service_tier` a response reports (the tier actually used), if it is a short word: the
/// value the store keeps. Anything else (missing, not a string, longer than 32 bytes or with
/// characters other than ASCII letters, digits, `_` and `-`) is `None`, billed as standard.
pub fn service_tier(response: &Value) -> Option<&str> {
    response
        .get("service_tier")
        .and_then(Value::as_str)
        .filter(|t| {
            (1..=32).contains(&t.len())
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// Whether the response's web search calls are `web_search_preview` calls: every web search
/// tool it lists (a `type` starting `web_search`) is a preview one, and it lists at least one.
fn web_search_is_preview(response: &Value) -> bool {
    let Some(tools) = response.get("tools").and_then(Value::as_array) else {
        return false;
    };
    let mut kinds = tools
        .iter()
        .filter_map(|t| t.get("type").and_then(Value::as_str))
        .filter(|t| t.starts_with("web_search"))
        .peekable();
    kinds.peek().is_some() && kinds.all(|t| t.starts_with("web_search_preview"))
}

/// Whether `model` is a non-reasoning model, which OpenAI charges more for
/// `web_search_preview` calls: the GPT-4 families (`gpt-4o`, `gpt-4.1`, …, their snapshots),
/// `chatgpt-…` and the `…-chat…` models (`gpt-5-chat-latest`). Any other model (the GPT-5 and
/// o-series reasoning models, and names respool does not know) counts as a reasoning model.
pub fn is_non_reasoning(model: &str) -> bool {
    model.starts_with("gpt-4") || model.starts_with("chatgpt") || model.contains("-chat")
}

/// Dollars as a whole number of millionths (saturating; a negative or NaN price is 0).
pub fn microusd(usd: f64) -> i64 {
    (usd * 1e6).round().max(0.0) as i64
}

/// The tool fees in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToolPrices {
    /// Dollars per 1,000 web search calls: `web_search`, and `web_search_preview` by a
    /// reasoning model.
    pub web_search: f64,
    /// Dollars per 1,000 `web_search_preview` calls by a non-reasoning model
    /// ([`is_non_reasoning`]).
    pub web_search_preview_non_reasoning: f64,
    /// Dollars per 1,000 file search calls.
    pub file_search: f64,
    /// Dollars per code-interpreter container.
    pub code_interpreter: f64,
    /// Dollars per generated image.
    pub image_generation: ImagePrices,
}

/// Dollars per image by quality and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImagePrices {
    pub low: SizePrices,
    pub medium: SizePrices,
    pub high: SizePrices,
}

/// Dollars per image of one quality, by size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizePrices {
    /// `1024x1024`.
    pub square: f64,
    /// `1024x1536`.
    pub portrait: f64,
    /// `1536x1024`.
    pub landscape: f64,
}

impl ToolPrices {
    /// OpenAI's tool fees as of [`super::BUILTIN_AS_OF`] (images: `gpt-image-1`, the image
    /// generation tool's model).
    pub const BUILTIN: Self = Self {
        web_search: 10.00,
        web_search_preview_non_reasoning: 25.00,
        file_search: 2.50,
        code_interpreter: 0.03,
        image_generation: ImagePrices {
            low: SizePrices {
                square: 0.011,
                portrait: 0.016,
                landscape: 0.016,
            },
            medium: SizePrices {
                square: 0.042,
                portrait: 0.063,
                landscape: 0.063,
            },
            high: SizePrices {
                square: 0.167,
                portrait: 0.25,
                landscape: 0.25,
            },
        },
    };
}

impl Default for ToolPrices {
    fn default() -> Self {
        Self::BUILTIN
    }
}

impl Default for ImagePrices {
    fn default() -> Self {
        ToolPrices::BUILTIN.image_generation
    }
}

impl ImagePrices {
    /// The price of one image of this `quality` (`low`, `medium`, `high`; anything else,
    /// `auto` included, or none: `medium`) and `size` (`1024x1024`, `1024x1536`, `1536x1024`;
    /// anything else, `auto` included, or none: `1024x1024`).
    pub fn per_image(&self, quality: Option<&str>, size: Option<&str>) -> f64 {
        let by_size = match quality {
            Some("low") => &self.low,
            Some("high") => &self.high,
            _ => &self.medium,
        };
        match size {
            Some("1024x1536") => by_size.portrait,
            Some("1536x1024") => by_size.landscape,
            _ => by_size.square,
        }
    }
}

/// `tool_pricing:` in the config: any of the built-in tool fees, overridden. A fee not given
/// keeps its built-in value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolPricing {
    /// Dollars per 1,000 web search calls (`web_search`, and `web_search_preview` by a
    /// reasoning model).
    pub web_search: Option<f64>,
    /// Dollars per 1,000 `web_search_preview` calls by a non-reasoning model.
    pub web_search_preview_non_reasoning: Option<f64>,
    /// Dollars per 1,000 file search calls.
    pub file_search: Option<f64>,
    /// Dollars per code-interpreter container.
    pub code_interpreter: Option<f64>,
    /// Dollars per generated image, by quality and size.
    pub image_generation: ImagePricing,
}

/// `tool_pricing.image_generation`: dollars per image by quality, then size.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagePricing {
    pub low: SizePricing,
    pub medium: SizePricing,
    pub high: SizePricing,
}

/// Dollars per image of one quality, by size.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SizePricing {
    #[serde(rename = "1024x1024")]
    pub square: Option<f64>,
    #[serde(rename = "1024x1536")]
    pub portrait: Option<f64>,
    #[serde(rename = "1536x1024")]
    pub landscape: Option<f64>,
}

impl ToolPricing {
    /// The fees in force: these over the built-in ones.
    pub fn prices(&self) -> ToolPrices {
        let b = ToolPrices::BUILTIN;
        let sizes = |c: &SizePricing, b: SizePrices| SizePrices {
            square: c.square.unwrap_or(b.square),
            portrait: c.portrait.unwrap_or(b.portrait),
            landscape: c.landscape.unwrap_or(b.landscape),
        };
        let i = &self.image_generation;
        ToolPrices {
            web_search: self.web_search.unwrap_or(b.web_search),
            web_search_preview_non_reasoning: self
                .web_search_preview_non_reasoning
                .unwrap_or(b.web_search_preview_non_reasoning),
            file_search: self.file_search.unwrap_or(b.file_search),
            code_interpreter: self.code_interpreter.unwrap_or(b.code_interpreter),
            image_generation: ImagePrices {
                low: sizes(&i.low, b.image_generation.low),
                medium: sizes(&i.medium, b.image_generation.medium),
                high: sizes(&i.high, b.image_generation.high),
            },
        }
    }

    /// Fees that are not a non-negative number of dollars, as (key path under
    /// `tool_pricing`, message).
    pub fn problems(&self) -> Vec<(Vec<String>, String)> {
        let mut values: Vec<(Vec<&str>, Option<f64>)> = vec![
            (vec!["web_search"], self.web_search),
            (
                vec!["web_search_preview_non_reasoning"],
                self.web_search_preview_non_reasoning,
            ),
            (vec!["file_search"], self.file_search),
            (vec!["code_interpreter"], self.code_interpreter),
        ];
        let i = &self.image_generation;
        for (quality, s) in [("low", &i.low), ("medium", &i.medium), ("high", &i.high)] {
            for (size, v) in [
                ("1024x1024", s.square),
                ("1024x1536", s.portrait),
                ("1536x1024", s.landscape),
            ] {
                values.push((vec!["image_generation", quality, size], v));
            }
        }
        values
            .into_iter()
            .filter(|(_, v)| v.is_some_and(|v| !v.is_finite() || v < 0.0))
            .map(|(path, _)| {
                (
                    path.into_iter().map(String::from).collect(),
                    "must be a non-negative number of dollars".to_string(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
