//! Retention, hourly. Every table has a rule:
//!
//! - `jobs`, with their `job_events`, `notifications` and `webhook_deliveries`: finished jobs
//!   older than `retention.jobs` (unset: kept), once none of their notifications is still to
//!   be delivered; a summary row of each is kept with `retention.keep_summary`, so spend and
//!   counts still include it. The search index follows by trigger.
//! - `job_summaries`: older than `retention.summaries` (default 400 days).
//! - `schedule_runs`: ticks older than `retention.schedule_runs` (default 7 days), except
//!   the newest `retention.schedule_runs_kept` (default 100) per schedule and the rows the overlap and
//!   "never twice" rules need (see [`Store::prune_schedule_runs`]).
//! - `webhook_deliveries`: older than 7 days whatever the config (OpenAI retries a delivery for
//!   at most 3 days, so deduplication never needs them longer).
//! - `webhook_secrets`: 30 days after they stopped being accepted.
//! - `uploads`: files respool uploaded to OpenAI for attachments are deleted there (and
//!   forgotten) once no unfinished job sends them and none was sent for `retention.uploads`
//!   (default 7 days).
//! - `attachments`: a file no job names (uploaded over REST and never used, or left by pruned
//!   jobs) a day after it was stored.
//! - `schedules` (one row per schedule ever defined) and `health` (one row) do not grow.
//!
//! The pass runs on the orchestrator's clock (`Clock::advance` moves it in tests), in batches of
//! short transactions, as a task of its own so a large first prune never stalls the workers.
//!
//! [`Store::prune_schedule_runs`]: crate::store::Store::prune_schedule_runs

use std::sync::atomic::Ordering;

use serde::Serialize;
use tokio::task::JoinHandle;

use super::Orchestrator;
use crate::clock::ms;
use crate::pricing::tools::microusd;
use crate::pricing::{Tokens, cost};
use crate::store::StoreError;
use crate::telemetry::chain;

/// How often retention runs.
pub const RETENTION_EVERY_MS: i64 = 3_600_000;
/// How long webhook delivery records are kept.
pub const DELIVERY_RETENTION_MS: i64 = 7 * 24 * 3_600_000;
/// How long a webhook secret is kept once it stopped being accepted.
pub const RETIRED_SECRET_RETENTION_MS: i64 = 30 * 24 * 3_600_000;
/// How long an attachment no job names is kept (a client uploads first, then submits).
pub const UNUSED_ATTACHMENT_MS: i64 = 24 * 3_600_000;
/// Uploaded files deleted upstream per pass, at most (each is an HTTP call).
const UPLOAD_BATCH: i64 = 500;
/// Jobs pruned per transaction.
const BATCH: i64 = 200;
/// Schedule runs and summaries deleted per transaction.
const ROW_BATCH: i64 = 1_000;

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Finished jobs deleted.
    pub jobs: u64,
    /// Webhook delivery records deleted (old ones, and those of the deleted jobs are counted
    /// with the jobs).
    pub deliveries: u64,
    /// Summaries of pruned jobs deleted.
    pub summaries: u64,
    /// Schedule runs deleted.
    pub schedule_runs: u64,
    /// Retired webhook secrets deleted.
    pub webhook_secrets: u64,
    /// Files respool uploaded, deleted upstream.
    pub uploads: u64,
    /// Attachments no job names, deleted.
    pub attachments: u64,
    /// Artifact folders of jobs that no longer exist, removed.
    pub artifact_dirs: u64,
}

impl PruneReport {
    /// Whether the pass deleted anything.
    pub fn any(&self) -> bool {
        *self != Self::default()
    }
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
                Ok(r) if r.any() => {
                    tracing::info!(
                        jobs = r.jobs,
                        deliveries = r.deliveries,
                        summaries = r.summaries,
                        schedule_runs = r.schedule_runs,
                        webhook_secrets = r.webhook_secrets,
                        uploads = r.uploads,
                        attachments = r.attachments,
                        artifact_dirs = r.artifact_dirs,
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
            webhook_secrets: store
                .prune_retired_webhook_secrets(now - RETIRED_SECRET_RETENTION_MS)
                .await?,
            ..Default::default()
        };
        if let Some(keep) = config.retention.schedule_runs {
            let before = now - ms(keep);
            loop {
                let n = store
                    .prune_schedule_runs(
                        before,
                        i64::from(config.retention.schedule_runs_kept),
                        ROW_BATCH,
                    )
                    .await?;
                report.schedule_runs += n;
                if n < ROW_BATCH as u64 {
                    break;
                }
            }
        }
        if let Some(keep) = config.retention.jobs {
            report.jobs = self.prune_jobs(now - ms(keep), now).await?;
        }
        if let Some(keep) = config.retention.summaries {
            let before = now - ms(keep);
            loop {
                let n = store.prune_summaries(before, ROW_BATCH).await?;
                report.summaries += n;
                if n < ROW_BATCH as u64 {
                    break;
                }
            }
        }
        if let Some(keep) = config.retention.uploads {
            report.uploads = self.delete_stale_uploads(now - ms(keep)).await?;
        }
        // After the jobs: a pruned job's attachments are then named by no job.
        report.attachments = store.prune_attachments(now - UNUSED_ATTACHMENT_MS).await?;
        // Folders a crash left behind: of jobs deleted before their folder went, and writes
        // cut short (an hour is longer than any download).
        report.artifact_dirs = store.sweep_artifact_dirs(3_600_000).await?;
        if report.jobs > 0 || report.summaries > 0 {
            // Summaries keep the usage, but a prune without them (or of them) changes the spend.
            self.inner.governor.spend_changed();
        }
        Ok(report)
    }

    /// Deletes upstream the files respool uploaded that nothing needs since `before`; returns
    /// how many. Each is forgotten first, checking in the same write that it is still stale
    /// ([`Store::take_stale_upload`]): a job (of this daemon or another) that is given the file
    /// meanwhile uploads it again rather than naming a deleted file. A file already gone counts
    /// as deleted; one whose delete fails now stays upstream, named in a warning.
    ///
    /// [`Store::take_stale_upload`]: crate::store::Store::take_stale_upload
    async fn delete_stale_uploads(&self, before: i64) -> Result<u64, StoreError> {
        let store = &self.inner.store;
        let client = self.client();
        let mut deleted = 0;
        for u in store.stale_uploads(before, UPLOAD_BATCH).await? {
            if !store.take_stale_upload(&u, before).await? {
                continue;
            }
            match client.delete_file(&u.file_id).await {
                Ok(_) => deleted += 1,
                Err(e) => {
                    tracing::warn!(file_id = %u.file_id, error = %e.describe(), "cannot delete an uploaded file nothing needs any more; it stays upstream (delete it by hand)");
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Prunes the finished jobs that ended before `cutoff`, in batches; returns how many.
    async fn prune_jobs(&self, cutoff: i64, now: i64) -> Result<u64, StoreError> {
        let config = self.config();
        let prices = config.pricing();
        let store = &self.inner.store;
        let mut pruned = 0;
        loop {
            let batch = store.prunable_jobs(cutoff, BATCH).await?;
            let n = batch.len() as i64;
            let with_cost: Vec<_> = batch
                .into_iter()
                .map(|j| {
                    // What the job cost by the one cost function, in millionths of a dollar;
                    // NULL when it is not known (no usage, or a model without a price).
                    let usage = j
                        .usage
                        .as_deref()
                        .and_then(|u| serde_json::from_str::<serde_json::Value>(u).ok());
                    let microusd = usage.and_then(|u| {
                        let tools = j.tools.usage().unwrap_or_default();
                        cost(
                            &prices,
                            &j.model,
                            j.tools.tier(),
                            Tokens::from_usage(&u),
                            &tools,
                        )
                        .total_usd()
                        .map(microusd)
                    });
                    (j, microusd)
                })
                .collect();
            pruned += store
                .prune_jobs(&with_cost, config.retention.keep_summary, cutoff, now)
                .await?;
            if n < BATCH {
                break;
            }
        }
        Ok(pruned)
    }

    /// Writes a consistent copy of the database to `target` (which must not exist).
    pub async fn backup_to(&self, target: &std::path::Path) -> Result<(), StoreError> {
        self.inner.store.backup_into(target).await
    }
}
