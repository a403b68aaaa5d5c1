//! What holds submissions back, decided before each claim: in-flight limits (overall and per
//! model, enforced inside the claim's transaction), upstream rate-limit windows (a model whose
//! `x-ratelimit-remaining-*` hit the low-water mark waits for the reset), and budgets
//! (`budget.rs`). The [`Governor`] keeps the little state this needs between passes; the
//! ledger stays the only source of truth for jobs.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::Orchestrator;
use super::budget::SpendCache;
use crate::config::Config;
use crate::store::{ClaimLimits, StoreError};
use crate::upstream::ratelimit::{LowWater, RateLimiter, RateLimits};

/// State kept between passes by the submission limits, budgets and retention.
#[derive(Debug)]
pub(super) struct Governor {
    /// The latest rate-limit window per model, from create answers. Lives here, not in the
    /// client, so a reload (which builds a new client) keeps it.
    pub rate_limits: RateLimiter,
    /// The last computed spend, reused for a moment (see `budget.rs`).
    pub spend: Mutex<Option<SpendCache>>,
    /// Bumped whenever a job finishes, so the cached spend is recomputed.
    pub spend_generation: AtomicU64,
    /// Models already logged as having no price (logged once per process).
    pub unpriced_logged: Mutex<HashSet<String>>,
    /// When retention last ran (unix ms on the orchestrator's clock).
    pub retention_ran_at: AtomicI64,
}

impl Governor {
    pub fn new() -> Self {
        Self {
            rate_limits: RateLimiter::new(),
            spend: Mutex::new(None),
            spend_generation: AtomicU64::new(0),
            unpriced_logged: Mutex::new(HashSet::new()),
            retention_ran_at: AtomicI64::new(i64::MIN),
        }
    }

    /// A job finished: its cost is now part of the spend.
    pub fn spend_changed(&self) {
        self.spend_generation.fetch_add(1, Ordering::Relaxed);
    }
}

/// The low-water marks of a config.
pub(super) fn low_water(config: &Config) -> LowWater {
    LowWater {
        requests: config.limits.low_water_requests,
        tokens: config.limits.low_water_tokens,
    }
}

impl Orchestrator {
    /// The limits of the submit claim, from `config`; `over_budget` while a budget is reached.
    pub(super) fn claim_limits(config: &Config, over_budget: bool) -> ClaimLimits<'_> {
        ClaimLimits {
            max_in_flight: config.limits.max_in_flight as i64,
            per_model: &config.limits.per_model,
            over_budget: over_budget.then(|| config.prices()),
        }
    }

    /// Notes what a create's answer said about `model`'s rate-limit window.
    pub(super) fn record_rate_limits(&self, model: &str, limits: Option<&RateLimits>) {
        if let Some(l) = limits {
            self.inner.governor.rate_limits.record(model, l, self.now());
        }
    }

    /// Makes the due jobs of every model whose rate-limit window is nearly used up wait for its
    /// reset, with a "waiting for rate limit window" event on each.
    pub(super) async fn defer_rate_limited(&self, config: &Config) -> Result<(), StoreError> {
        let now = self.now();
        for (model, wait) in self
            .inner
            .governor
            .rate_limits
            .waits(now, low_water(config))
        {
            let ids = self
                .inner
                .store
                .defer_submissions(&model, wait.until, now, &wait.reason)
                .await?;
            if !ids.is_empty() {
                tracing::info!(model = %model, jobs = ids.len(), until = wait.until, "{}", wait.reason);
            }
        }
        Ok(())
    }
}
