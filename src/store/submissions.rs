//! Submission writes: claiming a job for its create call, and recording what the call did
//! (accepted, refused, to retry, uncertain), plus adoption of a response revealed later.

use sqlx::AssertSqlSafe;

use super::events::add_event;
use super::jobs::{SubmitClaim, UncertainJob};
use super::limits::{ClaimLimits, models_at_limit};
use super::notifications::{OutboxEntry, insert_outbox};
use super::{Store, StoreError};
use crate::job::{JobError, JobStatus, Observation};

impl Store {
    /// One fenced move of a claimed job: `sql` is an UPDATE binding (next check, now, id,
    /// attempt) and conditional on the claim; when it matched, the `(kind, reason)` event joins the
    /// timeline in the same transaction. Returns whether the claim still held.
    async fn fenced_move(
        &self,
        sql: &'static str,
        next_check_at: i64,
        now: i64,
        id: &str,
        attempt: i64,
        (kind, reason): (&str, &str),
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(sql)
            .bind(next_check_at)
            .bind(now)
            .bind(id)
            .bind(attempt)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if done {
            add_event(&mut tx, id, now, kind, reason, None).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Claims the pending job that is due for submission with the highest priority (then the
    /// oldest): bumps its attempt, counts the submission and records it *before* the create call
    /// is sent, so a crash mid-call leaves a trace. The lease says how long the call may take
    /// before the outcome counts as unknown. A scheduled run waiting for its previous run
    /// (`overlap: queue`) is left alone.
    ///
    /// `limits` are checked in the same transaction (which holds the write lock), so claims
    /// never overshoot them: nothing is claimed when `max_in_flight` jobs are in flight, and a
    /// model whose `per_model` limit is reached is skipped while other models go on.
    pub async fn claim_submission(
        &self,
        now: i64,
        lease_ms: i64,
        limits: &ClaimLimits<'_>,
    ) -> Result<Option<SubmitClaim>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(skip) = models_at_limit(&mut tx, now, limits).await? else {
            tx.commit().await?;
            return Ok(None);
        };
        let placeholders = |n: usize| vec!["?"; n].join(", ");
        let mut skip_models = String::new();
        if !skip.models.is_empty() {
            skip_models += &format!("AND model NOT IN ({}) ", placeholders(skip.models.len()));
        }
        if !skip.unless_exempt.is_empty() {
            skip_models += &format!(
                "AND (budget_exempt = 1 OR model NOT IN ({})) ",
                placeholders(skip.unless_exempt.len())
            );
        }
        // Built from fixed fragments and placeholders only; every value is bound.
        let sql = format!(
            "UPDATE jobs SET submit_state = 'submitting', attempt = attempt + 1, \
             submissions = submissions + 1, lease_until = ?, updated_at = ? \
             WHERE id = (SELECT id FROM jobs WHERE status = 'pending' AND submit_state = 'ready' \
                         AND cancel_requested = 0 AND (next_check_at IS NULL OR next_check_at <= ?) \
                         AND NOT EXISTS (SELECT 1 FROM schedule_runs r WHERE r.job_id = jobs.id AND r.waiting = 1) \
                         {skip_models}\
                         ORDER BY priority DESC, created_at, id LIMIT 1) \
             AND submit_state = 'ready' \
             RETURNING id, attempt, submissions, spec"
        );
        let mut q = sqlx::query_as::<_, SubmitClaim>(AssertSqlSafe(sql))
            .bind(now + lease_ms)
            .bind(now)
            .bind(now);
        for model in skip.models.iter().chain(&skip.unless_exempt) {
            q = q.bind(model);
        }
        let claim = q.fetch_optional(&mut *tx).await?;
        if let Some(c) = &claim {
            let msg = if c.submissions > 1 {
                format!("submitting upstream (create call #{})", c.submissions)
            } else {
                "submitting upstream".to_string()
            };
            add_event(&mut tx, &c.id, now, "submitting", &msg, None).await?;
        }
        tx.commit().await?;
        Ok(claim)
    }

    /// Records an accepted create: the response id. Written whatever the claim's attempt, as
    /// long as the job has no response yet: a response that exists must be attached, even if
    /// its worker's lease ran out meanwhile. Returns false when the job already has one (then
    /// ours is a duplicate) or was finished.
    pub async fn record_submitted(
        &self,
        id: &str,
        obs: &Observation,
        now: i64,
        first_poll_at: i64,
        poll_interval_ms: i64,
        request_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE jobs SET submit_state = 'done', response_id = ?, submitted_at = ?, \
             lease_until = NULL, next_check_at = ?, poll_interval_ms = ?, updated_at = ? \
             WHERE id = ? AND response_id IS NULL AND status = 'pending' \
             AND submit_state IN ('submitting', 'uncertain')",
        )
        .bind(obs.response_id.as_str())
        .bind(now)
        .bind(first_poll_at)
        .bind(poll_interval_ms)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            let data = serde_json::json!({"response_id": obs.response_id.as_str(), "request_id": request_id});
            add_event(
                &mut tx,
                id,
                now,
                "submitted",
                &format!("submitted as {}", obs.response_id),
                Some(&data),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Puts a claimed job back to be submitted again at `at` (the create surely did not
    /// reach OpenAI: a rate limit, a refused connection).
    pub async fn reschedule_submission(
        &self,
        id: &str,
        attempt: i64,
        at: i64,
        now: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE jobs SET submit_state = 'ready', submissions = submissions - 1, next_check_at = ?, \
             lease_until = NULL, updated_at = ? WHERE id = ? AND attempt = ? AND submit_state = 'submitting'";
        self.fenced_move(sql, at, now, id, attempt, ("submit_retry", reason))
            .await
    }

    /// Marks a claimed create as uncertain: it may have reached OpenAI. Resolved at
    /// `resolve_at` by adoption (a webhook reveals the response) or by the configured policy.
    pub async fn mark_uncertain(
        &self,
        id: &str,
        attempt: i64,
        resolve_at: i64,
        now: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE jobs SET submit_state = 'uncertain', next_check_at = ?, lease_until = NULL, \
             updated_at = ? WHERE id = ? AND attempt = ? AND submit_state = 'submitting'";
        self.fenced_move(
            sql,
            resolve_at,
            now,
            id,
            attempt,
            ("submit_uncertain", reason),
        )
        .await
    }

    /// Turns submissions whose lease ran out (their worker died mid-call) into uncertain ones.
    /// Returns the ids.
    pub async fn expire_submission_leases(
        &self,
        now: i64,
        resolve_at: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE jobs SET submit_state = 'uncertain', next_check_at = ?, lease_until = NULL, \
             attempt = attempt + 1, updated_at = ? \
             WHERE status = 'pending' AND submit_state = 'submitting' AND lease_until < ? RETURNING id",
        )
        .bind(resolve_at)
        .bind(now)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            add_event(
                &mut tx,
                id,
                now,
                "submit_uncertain",
                "the create call was interrupted (respool stopped mid-call): it may or may not have reached OpenAI",
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Uncertain jobs whose wait is over.
    pub async fn due_uncertain(&self, now: i64) -> Result<Vec<UncertainJob>, StoreError> {
        Ok(sqlx::query_as::<_, UncertainJob>(
            "SELECT id, attempt, cancel_requested FROM jobs WHERE status = 'pending' \
             AND submit_state = 'uncertain' AND next_check_at <= ? ORDER BY next_check_at LIMIT 100",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sends an uncertain job back to be submitted again (the `resubmit` policy).
    pub async fn resubmit_uncertain(
        &self,
        id: &str,
        attempt: i64,
        now: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE jobs SET submit_state = 'ready', next_check_at = ?, updated_at = ? \
             WHERE id = ? AND attempt = ? AND submit_state = 'uncertain' AND status = 'pending'";
        self.fenced_move(sql, now, now, id, attempt, ("resubmit", reason))
            .await
    }

    /// Ends a job that never got a response id (refused create, uncertain create under the
    /// `fail` policy, cancelled before submission): conditional on it still being pending (or
    /// held).
    pub async fn finish_unsubmitted(
        &self,
        id: &str,
        status: JobStatus,
        error: &JobError,
        now: i64,
        outbox: &[OutboxEntry],
    ) -> Result<bool, StoreError> {
        debug_assert!(status.is_terminal());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // `pending` or `held`: both were never submitted.
        let from: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let from = from.unwrap_or_else(|| "pending".into());
        let done = sqlx::query(
            "UPDATE jobs SET status = ?, submit_state = CASE WHEN submit_state = 'submitting' THEN 'done' ELSE submit_state END, \
             finished_at = ?, next_check_at = NULL, lease_until = NULL, error_code = ?, error_message = ?, \
             updated_at = ? WHERE id = ? AND status IN ('pending', 'held') AND response_id IS NULL",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(&error.code)
        .bind(&error.message)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            let data = serde_json::json!({"from": from, "to": status.as_str(), "error": error});
            add_event(
                &mut tx,
                id,
                now,
                "status",
                &format!("{from} → {status}: {}", error.message),
                Some(&data),
            )
            .await?;
            insert_outbox(&mut tx, id, status, outbox, now).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Attaches a response found through its metadata tag to a job whose create outcome was
    /// unknown (or still in flight). Returns true if the job took it.
    pub async fn adopt_response(
        &self,
        id: &str,
        response_id: &str,
        now: i64,
        how: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE jobs SET response_id = ?, submit_state = 'done', submitted_at = COALESCE(submitted_at, ?), \
             attempt = attempt + 1, next_check_at = ?, wake_pending = 1, lease_until = NULL, updated_at = ? \
             WHERE id = ? AND response_id IS NULL AND submit_state IN ('submitting', 'uncertain') \
             AND status = 'pending'",
        )
        .bind(response_id)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            let data = serde_json::json!({"response_id": response_id});
            add_event(
                &mut tx,
                id,
                now,
                "adopted",
                &format!("found response {response_id} ({how})"),
                Some(&data),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }
}
