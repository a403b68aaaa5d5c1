//! Retention, hourly: finished jobs older than `retention.jobs` are deleted with their
//! timeline, notifications and webhook deliveries (a summary row of each is kept with
//! `retention.keep_summary`, so spend and counts still include it), and webhook delivery
//! records older than 7 days are deleted whatever the config (OpenAI retries a delivery for
//! at most 3 days, so deduplication never needs them longer).
//!
//! The pass runs on the orchestrator's clock (`Clock::advance` moves it in tests), in batches of
//! short transactions, as a task of its own so a large first prune never stalls the workers.

use std::sync::atomic::Ordering;

use serde::Serialize;
use tokio::task::JoinHandle;

use super::{Orchestrator, chain};
use crate::clock::ms;
use crate::config::budget::{Tokens, price_for};
use crate::store::StoreError;

/// How often retention runs.
pub const RETENTION_EVERY_MS: i64 = 3_600_000;
/// How long webhook delivery records are kept.
pub const DELIVERY_RETENTION_MS: i64 = 7 * 24 * 3_600_000;
/// Jobs pruned per transaction.
const BATCH: i64 = 200;

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Finished jobs deleted.
    pub jobs: u64,
    /// Webhook delivery records deleted (old ones, and those of the deleted jobs are counted
    /// with the jobs).
    pub deliveries: u64,
}

impl Orchestrator {
    /// Starts a retention pass if the last one was an hour ago (or never ran).
    pub(super) fn start_retention(&self, handles: &mut Vec<JoinHandle<()>>) {
        let now = self.now();
        let gov = &self.inner.governor;
        let last = gov.retention_ran_at.load(Ordering::Relaxed);
        if last != i64::MIN && now - last < RETENTION_EVERY_MS {
            return;
        }
        // Claimed before the task starts, so the next pass does not start a second one.
        if gov
            .retention_ran_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let me = self.clone();
        handles.push(self.inner.tracker.spawn(async move {
            match me.prune_now().await {
                Ok(r) if r.jobs > 0 || r.deliveries > 0 => {
                    tracing::info!(
                        jobs = r.jobs,
                        deliveries = r.deliveries,
                        "retention pruned old records"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %chain(&e), "retention failed"),
            }
        }));
    }

    /// Prunes now, per the config in force.
    pub async fn prune_now(&self) -> Result<PruneReport, StoreError> {
        let config = self.config();
        let store = &self.inner.store;
        let now = self.now();
        let mut report = PruneReport {
            deliveries: store.prune_deliveries(now - DELIVERY_RETENTION_MS).await?,
            ..Default::default()
        };
        let Some(keep) = config.retention.jobs else {
            return Ok(report);
        };
        let cutoff = now - ms(keep);
        loop {
            let batch = store.prunable_jobs(cutoff, BATCH).await?;
            let n = batch.len() as i64;
            let with_cost: Vec<_> = batch
                .into_iter()
                .map(|j| {
                    let usage = j
                        .usage
                        .as_deref()
                        .and_then(|u| serde_json::from_str::<serde_json::Value>(u).ok());
                    let cost = usage.and_then(|u| {
                        price_for(config.prices(), &j.model)
                            .map(|p| (p.cost_usd(Tokens::from_usage(&u)) * 1e6).round() as i64)
                    });
                    (j, cost)
                })
                .collect();
            report.jobs += store
                .prune_jobs(&with_cost, config.retention.keep_summary, cutoff, now)
                .await?;
            if n < BATCH {
                break;
            }
        }
        if report.jobs > 0 {
            // Summaries keep the usage, but a prune without them changes the spend.
            self.inner.governor.spend_changed();
        }
        Ok(report)
    }

    /// Writes a consistent copy of the database to `target` (which must not exist).
    pub async fn backup_to(&self, target: &std::path::Path) -> Result<(), StoreError> {
        self.inner.store.backup_into(target).await
    }
}
