//! What holds submissions back, in SQL: the in-flight limits checked inside the submit claim,
//! and the deferral of a model's creates until its rate-limit window resets.

use std::collections::{BTreeMap, HashMap};

use sqlx::SqliteConnection;

use super::events::{EventKind, add_event};
use super::{Store, StoreError};
use crate::pricing::ModelPrice;
use crate::pricing::{longest_prefix, price_for};

/// The limits a submit claim respects.
#[derive(Debug, Clone, Copy)]
pub struct ClaimLimits<'a> {
    /// Jobs in flight at most: submitted and unfinished, or being submitted.
    pub max_in_flight: i64,
    /// Jobs in flight per model: a model counts towards its own entry or its longest
    /// configured prefix, and all models of one entry share its limit.
    pub per_model: &'a BTreeMap<String, usize>,
    /// Set while a budget is reached: jobs of the models priced here are not claimed (unless
    /// `budget_exempt`); they are about to be held.
    pub over_budget: Option<&'a BTreeMap<String, ModelPrice>>,
}

/// Models a claim skips: all their jobs, or only those not `budget_exempt`.
#[derive(Debug, Default)]
pub(super) struct Skip {
    pub models: Vec<String>,
    pub unless_exempt: Vec<String>,
}

/// The jobs "in flight": running upstream, or past `ready` in their create (submitting,
/// uncertain), read from their own small index (`INDEXED BY`: SQLite would rather take a
/// status index and read the table).
pub(super) const IN_FLIGHT: &str = "jobs INDEXED BY jobs_in_flight WHERE \
     status IN ('queued', 'in_progress') OR (status = 'pending' AND submit_state <> 'ready')";

/// Inside a claim's transaction: `None` when nothing may be claimed (`max_in_flight` reached),
/// else the models of due jobs to skip: those at their per-model limit, and (while a budget is
/// reached) the priced ones unless exempt.
pub(super) async fn models_at_limit(
    conn: &mut SqliteConnection,
    now: i64,
    limits: &ClaimLimits<'_>,
) -> Result<Option<Skip>, StoreError> {
    let in_flight: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT model, COUNT(*) FROM {IN_FLIGHT} GROUP BY model"
    )))
    .fetch_all(&mut *conn)
    .await?;
    if in_flight.iter().map(|(_, n)| n).sum::<i64>() >= limits.max_in_flight {
        return Ok(None);
    }
    if limits.per_model.is_empty() && limits.over_budget.is_none() {
        return Ok(Some(Skip::default()));
    }
    let mut by_key: HashMap<&str, i64> = HashMap::new();
    for (model, n) in &in_flight {
        if let Some((key, _)) = longest_prefix(limits.per_model, model) {
            *by_key.entry(key).or_default() += n;
        }
    }
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT model FROM jobs WHERE status = 'pending' AND submit_state = 'ready' \
         AND cancel_requested = 0 AND (next_check_at IS NULL OR next_check_at <= ?)",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let mut skip = Skip::default();
    for m in due {
        let at_limit = longest_prefix(limits.per_model, &m)
            .is_some_and(|(key, limit)| by_key.get(key).copied().unwrap_or(0) >= *limit as i64);
        if at_limit {
            skip.models.push(m);
        } else if limits
            .over_budget
            .is_some_and(|prices| price_for(prices, &m).is_some())
        {
            skip.unless_exempt.push(m);
        }
    }
    Ok(Some(skip))
}

impl Store {
    /// Jobs in flight by model (for `respool budget`-style views and tests).
    pub async fn count_in_flight_by_model(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT model, COUNT(*) FROM {IN_FLIGHT} GROUP BY model ORDER BY model"
        )))
        .fetch_all(&self.reads)
        .await?)
    }

    /// Makes the due, not yet submitted jobs of `model` wait until `until`: its rate-limit
    /// window is nearly used up. Each job's timeline says so once per wait (a job whose latest
    /// event already is such a wait is not told again). Returns the ids deferred.
    pub async fn defer_submissions(
        &self,
        model: &str,
        until: i64,
        now: i64,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE jobs SET next_check_at = ?, updated_at = ? \
             WHERE status = 'pending' AND submit_state = 'ready' AND cancel_requested = 0 \
             AND model = ? AND (next_check_at IS NULL OR next_check_at <= ?) RETURNING id",
        )
        .bind(until)
        .bind(now)
        .bind(model)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let data = serde_json::json!({"model": model, "until": until});
        for id in &ids {
            let last: Option<String> = sqlx::query_scalar(
                "SELECT kind FROM job_events WHERE job_id = ? ORDER BY id DESC LIMIT 1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if last.as_deref() != Some(EventKind::RateLimitWait.as_str()) {
                add_event(
                    &mut tx,
                    id,
                    now,
                    EventKind::RateLimitWait,
                    reason,
                    Some(&data),
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(ids)
    }
}
