//! The stats query: job counts and token sums since a time, over live jobs and the summaries
//! of pruned ones, grouped finely enough (status, model, name, quarter hour) that callers can
//! fold the rows into any of those groups, or into local days in any time zone, without
//! another round trip.

use super::{Store, StoreError};

/// The width of a row's time bucket: a quarter of an hour, because every time zone's offset
/// from UTC is a whole number of quarter hours, so buckets never straddle a local midnight.
pub const STATS_BUCKET_MS: i64 = 15 * 60 * 1000;

/// Jobs of one status, model and name created in one [`STATS_BUCKET_MS`] bucket, with the
/// sums of their recorded usage (0 where a job has none).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StatsRow {
    pub status: String,
    pub model: String,
    pub name: String,
    /// The bucket's start (unix ms, a multiple of [`STATS_BUCKET_MS`]).
    pub bucket: i64,
    pub jobs: i64,
    /// Paid duplicates of these jobs (extra responses, see `duplicate_responses`); their usage
    /// is in the token sums, but they are not jobs.
    pub duplicates: i64,
    pub input_tokens: i64,
    /// Part of `input_tokens` served from the cache.
    pub cached_tokens: i64,
    pub output_tokens: i64,
    /// Part of `output_tokens` spent on reasoning.
    pub reasoning_tokens: i64,
    pub total_tokens: i64,
}

impl Store {
    /// Counts and usage sums of the jobs created at or after `since` (unix ms), pruned ones
    /// (`job_summaries`) included, by status, model, name and quarter hour. The paid duplicates
    /// of those jobs are counted apart and their usage is added in (money spent is money
    /// spent). One query.
    ///
    /// (`json_extract` is SQLite's; on PostgreSQL this is `usage->>'input_tokens'`.)
    pub async fn stats_since(&self, since: i64) -> Result<Vec<StatsRow>, StoreError> {
        Ok(sqlx::query_as::<_, StatsRow>(
            "SELECT status, model, name, (created_at / ?) * ? AS bucket, \
               CAST(SUM(1 - dup) AS INTEGER) AS jobs, CAST(SUM(dup) AS INTEGER) AS duplicates, \
               CAST(COALESCE(SUM(json_extract(usage, '$.input_tokens')), 0) AS INTEGER) AS input_tokens, \
               CAST(COALESCE(SUM(json_extract(usage, '$.input_tokens_details.cached_tokens')), 0) AS INTEGER) AS cached_tokens, \
               CAST(COALESCE(SUM(json_extract(usage, '$.output_tokens')), 0) AS INTEGER) AS output_tokens, \
               CAST(COALESCE(SUM(json_extract(usage, '$.output_tokens_details.reasoning_tokens')), 0) AS INTEGER) AS reasoning_tokens, \
               CAST(COALESCE(SUM(COALESCE(json_extract(usage, '$.total_tokens'), \
                 COALESCE(json_extract(usage, '$.input_tokens'), 0) \
                 + COALESCE(json_extract(usage, '$.output_tokens'), 0))), 0) AS INTEGER) AS total_tokens \
             FROM (SELECT status, model, name, created_at, usage, 0 AS dup FROM jobs WHERE created_at >= ? \
                   UNION ALL \
                   SELECT status, model, name, created_at, usage, 0 AS dup FROM job_summaries WHERE created_at >= ? \
                   UNION ALL \
                   SELECT j.status, j.model, j.name, j.created_at, d.usage, 1 AS dup \
                     FROM duplicate_responses d JOIN jobs j ON j.id = d.job_id WHERE j.created_at >= ?) \
             GROUP BY status, model, name, bucket \
             ORDER BY bucket, model, name, status",
        )
        .bind(STATS_BUCKET_MS)
        .bind(STATS_BUCKET_MS)
        .bind(since)
        .bind(since)
        .bind(since)
        .fetch_all(&self.reads)
        .await?)
    }
}
