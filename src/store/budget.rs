//! Budget queries: recorded usage per model in a period (jobs and the summaries of pruned
//! ones), and the `pending ↔ held` moves of jobs waiting for budget.

use crate::store::sql;
use sqlx::{Any, QueryBuilder};

use super::events::{EventKind, add_event};
use super::{Store, StoreError};

/// Tokens and tool usage of one model's jobs in one service tier, in a period.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ModelUsage {
    pub model: String,
    /// The `service_tier` the responses reported (NULL: none recorded).
    pub service_tier: Option<String>,
    pub input_tokens: i64,
    pub cached_tokens: i64,
    pub output_tokens: i64,
    pub web_search_calls: i64,
    pub web_search_preview_calls: i64,
    pub file_search_calls: i64,
    pub code_containers: i64,
    pub images: i64,
    pub image_fee_microusd: i64,
}

impl ModelUsage {
    /// The tokens, as [`crate::pricing::cost`] takes them.
    pub fn tokens(&self) -> crate::pricing::Tokens {
        crate::pricing::Tokens {
            input: self.input_tokens,
            cached: self.cached_tokens,
            output: self.output_tokens,
        }
    }

    /// The tool usage, as [`crate::pricing::cost`] takes it.
    pub fn tools(&self) -> crate::pricing::ToolUsage {
        crate::pricing::ToolUsage {
            web_search_calls: self.web_search_calls,
            web_search_preview_calls: self.web_search_preview_calls,
            file_search_calls: self.file_search_calls,
            code_containers: self.code_containers,
            images: self.images,
            image_fee_microusd: self.image_fee_microusd,
        }
    }
}

impl Store {
    /// Usage by model and service tier of the jobs that finished at or after `since` (unix
    /// ms), of those still running that already report usage, of pruned jobs' summaries in
    /// the period, and of the paid duplicates found in it (an extra run costs money like any
    /// other). A job counts when it has usage or recorded tool usage (a cancelled response
    /// may have searched without reporting usage).
    ///
    /// Reads the token and tool columns, never the JSON (see `tokens.rs`, `tool_usage.rs`);
    /// sums are `TOTAL`s cast back, so a sum past `i64::MAX` saturates rather than fails (on
    /// PostgreSQL too: `sql::total_saturated!`).
    pub async fn usage_since(&self, since: i64) -> Result<Vec<ModelUsage>, StoreError> {
        Ok(sql::query_as::<ModelUsage>(concat!(
            "SELECT model, service_tier, ",
            sql::total_saturated!("i"),
            " AS input_tokens, ",
            sql::total_saturated!("c"),
            " AS cached_tokens, ",
            sql::total_saturated!("o"),
            " AS output_tokens, ",
            sql::total_saturated!("ws"),
            " AS web_search_calls, ",
            sql::total_saturated!("wsp"),
            " AS web_search_preview_calls, ",
            sql::total_saturated!("fs"),
            " AS file_search_calls, ",
            sql::total_saturated!("cc"),
            " AS code_containers, ",
            sql::total_saturated!("im"),
            " AS images, ",
            sql::total_saturated!("fee"),
            " AS image_fee_microusd \
             FROM (SELECT model, service_tier, input_tokens AS i, cached_tokens AS c, \
                     output_tokens AS o, web_search_calls AS ws, web_search_preview_calls AS wsp, \
                     file_search_calls AS fs, code_containers AS cc, images AS im, \
                     image_fee_microusd AS fee \
                     FROM jobs WHERE (input_tokens IS NOT NULL OR web_search_calls IS NOT NULL) \
                     AND (finished_at >= ? OR finished_at IS NULL) \
                   UNION ALL \
                   SELECT model, service_tier, input_tokens, cached_tokens, output_tokens, \
                     web_search_calls, web_search_preview_calls, file_search_calls, \
                     code_containers, images, image_fee_microusd \
                     FROM job_summaries \
                     WHERE (input_tokens IS NOT NULL OR web_search_calls IS NOT NULL) \
                     AND finished_at >= ? \
                   UNION ALL \
                   SELECT j.model, d.service_tier, d.input_tokens, d.cached_tokens, \
                     d.output_tokens, d.web_search_calls, d.web_search_preview_calls, \
                     d.file_search_calls, d.code_containers, d.images, d.image_fee_microusd \
                     FROM duplicate_responses d JOIN jobs j ON j.id = d.job_id \
                     WHERE (d.input_tokens IS NOT NULL OR d.web_search_calls IS NOT NULL) \
                     AND d.found_at >= ?) AS u \
             GROUP BY model, service_tier ORDER BY model, service_tier NULLS FIRST",
        ))
        .bind(since)
        .bind(since)
        .bind(since)
        .fetch_all(&self.reads)
        .await?)
    }

    /// The distinct models of jobs waiting to be submitted (`pending`, not yet sent).
    pub async fn pending_models(&self) -> Result<Vec<String>, StoreError> {
        Ok(sql::query_scalar(
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
        let mut tx = self.begin_write().await?;
        let mut q = QueryBuilder::<Any>::new("UPDATE jobs SET status = 'held', updated_at = ");
        q.push_bind(now).push(
            " WHERE status = 'pending' AND submit_state = 'ready' AND cancel_requested = 0 \
             AND budget_exempt = 0 AND model IN (",
        );
        let mut list = q.separated(", ");
        for m in models {
            list.push_bind(m);
        }
        q.push(") RETURNING id");
        let q = sql::built_scalar::<String>(&mut q);
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
        let mut tx = self.begin_write().await?;
        let ids: Vec<String> = sql::query_scalar(
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
            sql::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'held'")
                .fetch_one(&self.reads)
                .await?,
        )
    }
}
