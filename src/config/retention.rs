//! How long finished jobs, and the records that grow with time, are kept (`retention`).

use std::time::Duration;

use serde::Deserialize;

use super::de_opt_duration;

/// How long finished jobs, and the records that grow with time, are kept. Every table has a
/// rule (`docs/operations.md`, "Retention", lists them); the ones worth tuning are here, the
/// others are fixed (webhook delivery records: 7 days; retired webhook secrets: 30 days after
/// they stopped being accepted).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Finished jobs older than this (by their end) are deleted with their timeline and
    /// notifications (unset: kept until deleted by hand). Webhook delivery records are always
    /// pruned after 7 days.
    #[serde(deserialize_with = "de_opt_duration")]
    pub jobs: Option<Duration>,
    /// Keep a summary row of each pruned job (name, model, status, times, usage, cost, error
    /// code), so spend and counts still include it.
    pub keep_summary: bool,
    /// Summaries of pruned jobs that ended longer ago than this are deleted (`null`: kept
    /// forever). At least `32d`, so the current month's spend never loses a job.
    #[serde(deserialize_with = "de_opt_duration")]
    pub summaries: Option<Duration>,
    /// The record of a schedule's tick (`respool schedules runs`) is deleted once the tick is
    /// older than this (`null`: kept forever), except the newest `schedule_runs_kept` runs of
    /// each schedule, a run whose job is still unfinished or waits for its turn, and ticks the
    /// schedule has not moved past yet. A schedule's count of runs still includes the deleted
    /// ones.
    #[serde(deserialize_with = "de_opt_duration")]
    pub schedule_runs: Option<Duration>,
    /// The newest runs of each schedule kept whatever their age.
    pub schedule_runs_kept: u32,
    /// Files respool uploaded to OpenAI for jobs' `attachments` are deleted there once no
    /// unfinished job sends them and none has been sent for this long (`null`: kept).
    #[serde(deserialize_with = "de_opt_duration")]
    pub uploads: Option<Duration>,
}

/// The default of `retention.summaries`: a year and a month, so a year-on-year comparison
/// still has the whole month.
pub const DEFAULT_SUMMARY_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);
/// The default of `retention.uploads`: a week, so reruns and retries reuse their files.
pub const DEFAULT_UPLOAD_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The default of `retention.schedule_runs`.
pub const DEFAULT_SCHEDULE_RUN_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest `retention.summaries`: longer than any month.
const MIN_SUMMARY_RETENTION: Duration = Duration::from_secs(32 * 24 * 3600);

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            jobs: None,
            keep_summary: true,
            summaries: Some(DEFAULT_SUMMARY_RETENTION),
            schedule_runs: Some(DEFAULT_SCHEDULE_RUN_RETENTION),
            schedule_runs_kept: 100,
            uploads: Some(DEFAULT_UPLOAD_RETENTION),
        }
    }
}

/// Problems with retention, as (key path, message).
pub(super) fn validate(retention: &RetentionConfig) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    if retention
        .jobs
        .is_some_and(|d| d < Duration::from_secs(3600))
    {
        out.push((
            vec!["retention".into(), "jobs".into()],
            "must be at least `1h` (finished jobs are pruned by the hour)".into(),
        ));
    }
    if retention
        .summaries
        .is_some_and(|d| d < MIN_SUMMARY_RETENTION)
    {
        out.push((
            vec!["retention".into(), "summaries".into()],
            "must be at least `32d` (the current month's spend counts the summaries)".into(),
        ));
    }
    if retention
        .schedule_runs
        .is_some_and(|d| d < Duration::from_secs(3600))
    {
        out.push((
            vec!["retention".into(), "schedule_runs".into()],
            "must be at least `1h` (schedule runs are pruned by the hour)".into(),
        ));
    }
    if retention
        .uploads
        .is_some_and(|d| d < Duration::from_secs(3600))
    {
        out.push((
            vec!["retention".into(), "uploads".into()],
            "must be at least `1h` (uploaded files are deleted by the hour)".into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let retention = RetentionConfig {
            jobs: Some(Duration::from_secs(60)),
            keep_summary: true,
            summaries: Some(Duration::from_secs(86_400)),
            schedule_runs: Some(Duration::from_secs(60)),
            schedule_runs_kept: 100,
            uploads: Some(Duration::from_secs(60)),
        };
        let keys: Vec<String> = validate(&retention)
            .iter()
            .map(|(k, _)| k.join("."))
            .collect();
        assert_eq!(
            keys,
            [
                "retention.jobs",
                "retention.summaries",
                "retention.schedule_runs",
                "retention.uploads"
            ]
        );
        assert!(validate(&RetentionConfig::default()).is_empty());
    }
}
