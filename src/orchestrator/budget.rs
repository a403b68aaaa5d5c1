//! Budgets: spend per calendar day and month (in `budget.timezone`) from recorded usage, tool
//! calls and service tiers at the prices in force ([`crate::pricing::cost`], the figure every
//! view shows), and the `pending ↔ held` moves that follow from it.
//!
//! Each pass, before claiming submissions: when a limit is reached, jobs waiting to be
//! submitted are `held`, with an event naming the budget and the spend; when no limit is
//! reached any more (a new day or month, or a reload raised the limit), held jobs go back to
//! `pending` and are submitted as usual. A budget stops new creates only: jobs already
//! running finish, and their cost can take the spend past the limit. The tokens of a model with
//! no price cannot be costed: they are not counted (their tool fees are) and its jobs are not
//! held (logged once per model); `budget_exempt: true` jobs are never held (their cost
//! counts).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::Orchestrator;
use crate::config::Config;
use crate::pricing::{ServiceTier, cost, price_for};
use crate::store::StoreError;

/// How long a computed spend is reused when no job finished meanwhile.
const SPEND_TTL_MS: i64 = 1000;

/// Spend in one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeriodSpend {
    /// When the period started (unix seconds).
    pub start: i64,
    /// Dollars spent in the period so far.
    pub spent_usd: f64,
    /// The configured limit, if any.
    pub limit_usd: Option<f64>,
}

impl PeriodSpend {
    fn reached(&self) -> bool {
        self.limit_usd.is_some_and(|l| self.spent_usd >= l)
    }
}

/// Where the budgets stand (`GET /v1/budget`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetStatus {
    /// Always `budget`.
    pub object: String,
    /// The time zone whose midnight starts a day and a month.
    pub timezone: String,
    pub day: PeriodSpend,
    pub month: PeriodSpend,
    /// `daily` or `monthly` when that limit is reached (new jobs are held), else null.
    pub reached: Option<String>,
    /// Jobs held by the budget.
    pub held: i64,
    /// Models with recorded usage or waiting jobs but no price: not counted, never held.
    pub unpriced_models: Vec<String>,
}

/// A spend computed at one time with one config.
#[derive(Debug, Clone)]
pub(super) struct SpendCache {
    generation: u64,
    computed_at: i64,
    config: usize,
    day: PeriodSpend,
    month: PeriodSpend,
    unpriced: Vec<String>,
}

/// The unix ms at which the day and the month containing `now_ms` start in `tz`.
pub fn period_starts(now_ms: i64, tz: Tz) -> (i64, i64) {
    // An instant has one local time (only the reverse can be ambiguous); out of chrono's
    // range, the periods start now.
    let Some(local) = tz.timestamp_millis_opt(now_ms).single() else {
        return (now_ms, now_ms);
    };
    let today = local.date_naive();
    let month = today.with_day(1).unwrap_or(today);
    (start_of(today, tz), start_of(month, tz))
}

/// The first instant of `date` in `tz` (midnight; where a DST change skips midnight, the
/// first hour that exists).
fn start_of(date: NaiveDate, tz: Tz) -> i64 {
    (0..24)
        .find_map(|h| {
            date.and_hms_opt(h, 0, 0)
                .and_then(|t| tz.from_local_datetime(&t).earliest())
        })
        .map_or(0, |t| t.timestamp_millis())
}

impl Orchestrator {
    /// The spend of the current day and month, and the models that could not be costed.
    async fn spend(
        &self,
        config: &Arc<Config>,
        now: i64,
    ) -> Result<(PeriodSpend, PeriodSpend, Vec<String>), StoreError> {
        let gov = &self.inner.governor;
        let generation = gov.spend_generation.load(Ordering::Relaxed);
        let (day_start, month_start) = period_starts(now, config.budget.tz());
        let key = Arc::as_ptr(config) as usize;
        if let Some(c) = gov.spend.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && c.generation == generation
            && c.config == key
            && now - c.computed_at < SPEND_TTL_MS
            && now >= c.computed_at
            && c.day.start == day_start / 1000
            && c.month.start == month_start / 1000
        {
            return Ok((c.day.clone(), c.month.clone(), c.unpriced.clone()));
        }
        let prices = config.pricing();
        let mut unpriced = Vec::new();
        // What is known: tokens of priced models, and every job's tool fees.
        let mut spent = |rows: Vec<crate::store::ModelUsage>| {
            rows.into_iter()
                .map(|u| {
                    let tier = ServiceTier::of(u.service_tier.as_deref());
                    let c = cost(&prices, &u.model, tier, u.tokens(), &u.tools());
                    if c.tokens_usd.is_none() && !unpriced.contains(&u.model) {
                        unpriced.push(u.model);
                    }
                    c.known_usd()
                })
                .sum::<f64>()
        };
        let store = &self.inner.store;
        let day = PeriodSpend {
            start: day_start.div_euclid(1000),
            spent_usd: spent(store.usage_since(day_start).await?),
            limit_usd: config.budget.daily_usd,
        };
        let month = PeriodSpend {
            start: month_start.div_euclid(1000),
            spent_usd: spent(store.usage_since(month_start).await?),
            limit_usd: config.budget.monthly_usd,
        };
        unpriced.sort();
        *gov.spend.lock().unwrap_or_else(|p| p.into_inner()) = Some(SpendCache {
            generation,
            computed_at: now,
            config: key,
            day: day.clone(),
            month: month.clone(),
            unpriced: unpriced.clone(),
        });
        Ok((day, month, unpriced))
    }

    /// Where the budgets stand now.
    pub async fn budget_status(&self) -> Result<BudgetStatus, StoreError> {
        let config = self.config();
        let now = self.now();
        let (day, month, mut unpriced) = self.spend(&config, now).await?;
        if config.budget.is_set() {
            for m in self.inner.store.pending_models().await? {
                if price_for(config.prices(), &m).is_none() && !unpriced.contains(&m) {
                    unpriced.push(m);
                }
            }
            unpriced.sort();
        }
        let reached = if day.reached() {
            Some("daily".to_string())
        } else if month.reached() {
            Some("monthly".to_string())
        } else {
            None
        };
        Ok(BudgetStatus {
            object: "budget".into(),
            timezone: config.budget.timezone.clone(),
            day,
            month,
            reached,
            held: self.inner.store.count_held().await?,
            unpriced_models: unpriced,
        })
    }

    /// Holds the jobs waiting to be submitted while a budget is reached; releases the held
    /// ones when none is. Runs before each round of claims; returns whether a budget is
    /// reached (then the claims skip priced, non-exempt jobs that arrived meanwhile).
    pub(super) async fn apply_budget(&self, config: &Arc<Config>) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        let now = self.now();
        if !config.budget.is_set() {
            if store.count_held().await? > 0 {
                let ids = store
                    .release_held_jobs(now, "no budget is configured any more: back to pending")
                    .await?;
                tracing::info!(jobs = ids.len(), "budget removed; held jobs released");
            }
            return Ok(false);
        }
        let (day, month, unpriced) = self.spend(config, now).await?;
        // Models that ran without a price: their cost is not counted.
        self.log_unpriced(&unpriced);
        let tz = &config.budget.timezone;
        let reached = [("daily", "today", &day), ("monthly", "this month", &month)]
            .into_iter()
            .find(|(_, _, p)| p.reached());
        match reached {
            Some((which, when, p)) => {
                let models = store.pending_models().await?;
                let (priced, unpriced): (Vec<String>, Vec<String>) = models
                    .into_iter()
                    .partition(|m| price_for(config.prices(), m).is_some());
                self.log_unpriced(&unpriced);
                if priced.is_empty() {
                    return Ok(true);
                }
                let limit = p.limit_usd.unwrap_or(0.0);
                let reason = format!(
                    "held: {which} budget reached (${:.2} spent {when} of ${limit:.2}, {tz}); \
                     submitted when the budget allows",
                    p.spent_usd
                );
                let data = serde_json::json!({
                    "budget": which, "spent_usd": p.spent_usd, "limit_usd": limit,
                    "period_start": p.start, "timezone": tz,
                });
                let ids = store.hold_jobs(&priced, now, &reason, &data).await?;
                if !ids.is_empty() {
                    tracing::warn!(
                        budget = which,
                        spent_usd = p.spent_usd,
                        limit_usd = limit,
                        jobs = ids.len(),
                        "budget reached; holding jobs"
                    );
                }
                Ok(true)
            }
            None => {
                if store.count_held().await? > 0 {
                    let reason = format!(
                        "budget available again (${:.2} spent today, ${:.2} this month, {tz}): back to pending",
                        day.spent_usd, month.spent_usd
                    );
                    let ids = store.release_held_jobs(now, &reason).await?;
                    tracing::info!(jobs = ids.len(), "budget available; held jobs released");
                    self.wake();
                }
                Ok(false)
            }
        }
    }

    /// Logs, once per model and process, that jobs of a model without a price are not held.
    fn log_unpriced(&self, models: &[String]) {
        let mut logged = self
            .inner
            .governor
            .unpriced_logged
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for m in models {
            if logged.insert(m.clone()) {
                tracing::warn!(
                    model = %m,
                    "model has no price (built in or under `pricing`): its jobs cannot be costed, are not counted in the budget and are not held"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(y: i32, mo: u32, d: u32, h: u32, mi: u32, tz: Tz) -> i64 {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn periods_in_utc() {
        let utc = chrono_tz::UTC;
        let now = ms(2026, 11, 25, 13, 30, utc);
        assert_eq!(
            period_starts(now, utc),
            (ms(2026, 11, 25, 0, 0, utc), ms(2026, 11, 1, 0, 0, utc))
        );
        // The first instant of a day belongs to it.
        let midnight = ms(2026, 12, 1, 0, 0, utc);
        assert_eq!(period_starts(midnight, utc), (midnight, midnight));
        assert_eq!(
            period_starts(midnight - 1, utc),
            (ms(2026, 11, 30, 0, 0, utc), ms(2026, 11, 1, 0, 0, utc))
        );
    }

    #[test]
    fn periods_follow_the_time_zone() {
        let paris = chrono_tz::Europe::Paris;
        // 23:30 UTC on Nov 30 is already Dec 1 in Paris.
        let now = ms(2026, 11, 30, 23, 30, chrono_tz::UTC);
        let (day, month) = period_starts(now, paris);
        assert_eq!(day, ms(2026, 12, 1, 0, 0, paris));
        assert_eq!(month, day);
        // A DST day is 23 hours long but still starts at local midnight.
        let dst = ms(2026, 3, 29, 12, 0, paris);
        assert_eq!(period_starts(dst, paris).0, ms(2026, 3, 29, 0, 0, paris));
    }

    #[test]
    fn midnight_skipped_by_dst_starts_at_the_first_hour() {
        // America/Santiago moved its clocks at midnight (00:00 → 01:00) on 2022-09-11.
        let tz = chrono_tz::America::Santiago;
        let date = NaiveDate::from_ymd_opt(2022, 9, 11).unwrap();
        let start = start_of(date, tz);
        assert_eq!(start, ms(2022, 9, 11, 1, 0, tz));
    }
}
