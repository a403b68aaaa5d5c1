//! Budget queries: recorded usage per model in a period (jobs and the summaries of pruned
//! ones), and the `pending ↔ held` moves of jobs waiting for budget.

use sqlx::{QueryBuilder, Sqlite};

use super::events::{EventKind, add_event};
use super::{Store, StoreError};

/// Tokens used by one model's jobs in a period.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ModelUsage {
    pub model: String,
    pub input_tokens: i64,
    pub cached_tokens: i64,
    pub output_tokens: i64,
}

impl Store {
    /// Usage by model of the jobs that finished at or after `since` (unix ms), of those still
    /// running that already report usage, of pruned jobs' summaries in the period, and of the
    /// paid duplicates found in it (an extra run costs money like any other).
    ///
    /// Reads the token columns, never the usage JSON (see `tokens.rs`); sums are `TOTAL`s
    /// cast back, so a sum past `i64::MAX` saturates rather than fails.
    pub async fn usage_since(&self, since: i64) -> Result<Vec<ModelUsage>, StoreError> {
        Ok(sqlx::query_as::<_, ModelUsage>(
            "SELECT model, \
               CAST(TOTAL(i) AS INTEGER) AS input_tokens, \
               CAST(TOTAL(c) AS INTEGER) AS cached_tokens, \
               CAST(TOTAL(o) AS INTEGER) AS output_tokens \
             FROM (SELECT model, input_tokens AS i, cached_tokens AS c, output_tokens AS o \
                     FROM jobs WHERE input_tokens IS NOT NULL \
                     AND (finished_at >= ? OR finished_at IS NULL) \
                   UNION ALL \
                   SELECT model, input_tokens, cached_tokens, output_tokens \
                     FROM job_summaries WHERE input_tokens IS NOT NULL AND finished_at >= ? \
                   UNION ALL \
                   SELECT j.model, d.input_tokens, d.cached_tokens, d.output_tokens \
                     FROM duplicate_responses d JOIN jobs j ON j.id = d.job_id \
                     WHERE d.input_tokens IS NOT NULL AND d.found_at >= ?) \
             GROUP BY model ORDER BY model",
        )
        .bind(since)
        .bind(since)
        .bind(since)
        .fetch_all(&self.reads)
        .await?)
    }

    /// The distinct models of jobs waiting to be submitted (`pending`, not yet sent).
    pub async fn pending_models(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT model FROM jobs WHERE status = 'pending' AND submit_state = 'ready' \
             AND cancel_requested = 0 ORDER BY model",
        )
        .fetch_all(&self.reads)
        .await?)
    }

    /// Moves the not yet submitted jobs of `models` (not `budget_exempt`) from `pending` to
    /// `held`, each with a `held` event saying why. Returns their ids.
    pub async fn hold_jobs(
        &self,
        models: &[String],
        now: i64,
        reason: &str,
        data: &serde_json::Value,
    ) -> Result<Vec<String>, StoreError> {
        if models.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut q = QueryBuilder::<Sqlite>::new("UPDATE jobs SET status = 'held', updated_at = ");
        q.push_bind(now).push(
            " WHERE status = 'pending' AND submit_state = 'ready' AND cancel_requested = 0 \
             AND budget_exempt = 0 AND model IN (",
        );
        let mut list = q.separated(", ");
        for m in models {
            list.push_bind(m);
        }
        q.push(") RETURNING id");
        let q = q.build_query_scalar::<String>();
        let ids = q.fetch_all(&mut *tx).await?;
        let mut data = data.clone();
        if let Some(o) = data.as_object_mut() {
            o.insert("from".into(), "pending".into());
            o.insert("to".into(), "held".into());
        }
        for id in &ids {
            add_event(&mut tx, id, now, EventKind::Held, reason, Some(&data)).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Moves every `held` job back to `pending`, due now, each with a `released` event.
    /// Returns their ids.
    pub async fn release_held_jobs(
        &self,
        now: i64,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE jobs SET status = 'pending', next_check_at = ?, updated_at = ? \
             WHERE status = 'held' RETURNING id",
        )
        .bind(now)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let data = serde_json::json!({"from": "held", "to": "pending"});
        for id in &ids {
            add_event(&mut tx, id, now, EventKind::Released, reason, Some(&data)).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// How many jobs are `held`.
    pub async fn count_held(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'held'")
                .fetch_one(&self.reads)
                .await?,
        )
    }
}
