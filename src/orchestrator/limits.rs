//! What holds submissions back, decided before each claim: in-flight limits (overall and per
//! model, enforced inside the claim's transaction), upstream rate-limit windows (a model whose
//! `x-ratelimit-remaining-*` hit the low-water mark waits for the reset), and budgets
//! (`budget.rs`). The [`Governor`] keeps the little state this needs between passes; the
//! ledger stays the only source of truth for jobs. Rate-limit windows are not kept here but in
//! the store (`rate_limit_windows`), because every daemon on the database must see the newest
//! one, whichever daemon's create brought it.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::Orchestrator;
use super::budget::SpendCache;
use crate::config::Config;
use crate::store::{ClaimLimits, StoreError};
use crate::telemetry::chain;
use crate::upstream::ratelimit::{self, LowWater, RateLimits, RateWindow};

/// State kept between passes by budgets and retention: each a per-process optimisation that
/// may differ between daemons (see `docs/design.md`, "Several daemons on one database").
#[derive(Debug)]
pub(super) struct Governor {
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

/// At most this many rate-limit windows go into one transaction.
const MAX_WINDOW_BATCH: usize = 256;

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

    /// Notes what a create's answer said about `model`'s rate-limit window, in the store.
    ///
    /// Written by a task of its own, off the create's path: the answer (its response id above
    /// all) is recorded without waiting for this hint, whose write may meet a busy database.
    /// Two writes racing are harmless: the store keeps the newer observation.
    pub(super) fn record_rate_limits(&self, model: &str, limits: Option<&RateLimits>) {
        let Some(l) = limits else { return };
        let window = RateWindow::observed(model, l, self.now());
        let store = self.inner.store.clone();
        let writer = self
            .inner
            .windows
            .get_or_init(|| {
                crate::batch::Batcher::start(MAX_WINDOW_BATCH, move |windows: Vec<RateWindow>| {
                    let store = store.clone();
                    async move {
                        let written = store
                            .record_rate_windows(&windows)
                            .await
                            .map_err(|e| chain(&e).to_string());
                        vec![written; windows.len()]
                    }
                })
            })
            .clone();
        self.inner.tracker.spawn(async move {
            let model = window.model.clone();
            match writer.call(window).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(model = %model, %error, "cannot record a rate-limit window");
                }
                Err(_) => {}
            }
        });
    }

    /// Makes the due jobs of every model whose rate-limit window (as the store holds it, from
    /// any daemon's creates) is nearly used up wait for its reset, with a "waiting for rate
    /// limit window" event on each.
    pub(super) async fn defer_rate_limited(&self, config: &Config) -> Result<(), StoreError> {
        let now = self.now();
        let windows = self.inner.store.live_rate_windows(now).await?;
        for (model, wait) in ratelimit::waits(&windows, now, low_water(config)) {
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
