//! Observation writes: claiming polls, applying what upstream showed (forward moves only,
//! with the timeline and outbox rows in the same transaction), webhook hints, cancels and
//! timeouts.

use super::lending::Conn;
use crate::store::sql;

use super::NewArtifact;
use super::artifacts::insert_artifacts;
use super::events::{EventKind, add_event};
use super::jobs::{ApplyContext, ApplyOutcome, JobRow, PollClaim, fetch_job};
use super::notifications::{OutboxEntry, insert_outbox};
use super::tokens::BindTokens;
use super::tool_usage::record_tool_usage;
use super::write_turns::Writer;
use super::{Backend, Store, StoreError};
use crate::job::{JobError, JobId, JobStatus, Observation};

/// The claim of polls a webhook asked for (`wake_pending`): they go before every other due
/// poll, oldest first, from their own small index (see `plans.rs`). A completion a webhook
/// announced is recorded at once, not after the polls that fell due before it.
pub(super) const CLAIM_HINTED_POLLS: &str = "UPDATE jobs SET next_check_at = ?, wake_pending = 0, polls = polls + 1, updated_at = ? \
     WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_poll_hinted \
                  WHERE wake_pending = 1 AND status IN ('pending', 'queued', 'in_progress') AND response_id IS NOT NULL \
                  AND quarantine IS NULL AND next_check_at <= ? \
                  ORDER BY next_check_at LIMIT ?) \
     RETURNING id, response_id, retrieve_include, poll_interval_ms, polls, cancel_requested, \
               cancel_reason, deadline_at";

/// The poll claim's statement: it walks `jobs_poll_due`, oldest due first (see `plans.rs`).
pub(super) const CLAIM_POLLS: &str = "UPDATE jobs SET next_check_at = ?, wake_pending = 0, polls = polls + 1, updated_at = ? \
     WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_poll_due \
                  WHERE status IN ('pending', 'queued', 'in_progress') AND response_id IS NOT NULL AND quarantine IS NULL AND next_check_at <= ? \
                  ORDER BY next_check_at LIMIT ?) \
     RETURNING id, response_id, retrieve_include, poll_interval_ms, polls, cancel_requested, \
               cancel_reason, deadline_at";

/// A claim statement for PostgreSQL: its subquery takes only the rows no other transaction
/// holds (`FOR NO KEY UPDATE SKIP LOCKED`), so the claim runs without the write lock, beside
/// other daemons' claims and writes, and never waits on a row. A row another daemon claimed
/// and committed meanwhile is looked at again as it now is (READ COMMITTED re-checks a locked
/// row's condition), and no longer matches: its due time has moved past the lease.
///
/// The subquery is read into an array (`= ANY(ARRAY(…))`, evaluated once): as `IN (…)` the
/// planner may run it again per row and claim more than its limit. `NO KEY` lets the rows that
/// refer to a job (events, notifications) be written by others meanwhile. The placeholders
/// stay where they were, so the same binds serve both texts.
pub(super) fn skip_locked(claim: &str) -> String {
    let out = claim
        .replacen("WHERE id IN (SELECT", "WHERE id = ANY(ARRAY(SELECT", 1)
        .replacen("LIMIT ?)", "LIMIT ? FOR NO KEY UPDATE SKIP LOCKED))", 1);
    assert!(
        out.contains("= ANY(ARRAY(SELECT") && out.contains("SKIP LOCKED))"),
        "a claim is `… WHERE id IN (SELECT … LIMIT ?) …`"
    );
    out
}

static CLAIM_HINTED_POLLS_POSTGRES: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| skip_locked(CLAIM_HINTED_POLLS));
static CLAIM_POLLS_POSTGRES: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| skip_locked(CLAIM_POLLS));

/// The timeout check's statement: it walks `jobs_deadline_due` (see `plans.rs`), which holds
/// only the unfinished jobs with a deadline, in deadline order.
pub(super) const DUE_TIMEOUTS: &str = "SELECT id FROM jobs INDEXED BY jobs_deadline_due \
     WHERE deadline_at <= ? AND cancel_requested = 0 \
     AND status IN ('pending', 'held', 'queued', 'in_progress') AND quarantine IS NULL \
     ORDER BY deadline_at LIMIT 100";

/// The statement that finds never-sent jobs asked to be cancelled: it walks
/// `jobs_cancel_unsent` (see `plans.rs`), not the whole backlog waiting to be submitted.
pub(super) const CANCELLABLE_UNSUBMITTED: &str = "SELECT id, cancel_reason FROM jobs INDEXED BY jobs_cancel_unsent \
     WHERE status IN ('pending', 'held') AND cancel_requested = 1 \
     AND submit_state = 'ready' AND quarantine IS NULL LIMIT 100";

impl Store {
    /// Claims up to `limit` jobs due for a poll, moving their next check past a lease so no
    /// other worker takes them meanwhile, and clears `wake_pending`: first those a webhook
    /// asked for, then the others, oldest due first. Any unfinished job with a response id is
    /// polled, `pending` included: that covers a crash between recording the id and recording
    /// its first status.
    pub async fn claim_polls(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<PollClaim>, StoreError> {
        // SQLite: under the write lock, as every write. PostgreSQL: without it, each row
        // taken with `FOR UPDATE SKIP LOCKED` (see [`skip_locked`]), so several daemons'
        // ledger workers claim polls side by side.
        let (mut tx, statements): (_, [&'static str; 2]) = match self.backend() {
            Backend::Sqlite => (self.begin_write().await?, [CLAIM_HINTED_POLLS, CLAIM_POLLS]),
            Backend::Postgres => (
                self.begin_unlocked().await?,
                [
                    CLAIM_HINTED_POLLS_POSTGRES.as_str(),
                    CLAIM_POLLS_POSTGRES.as_str(),
                ],
            ),
        };
        let mut claims = Vec::new();
        for sql in statements {
            let left = limit - claims.len() as i64;
            if left <= 0 {
                break;
            }
            claims.extend(
                sql::query_as::<PollClaim>(sql)
                    .bind(now + lease_ms)
                    .bind(now)
                    .bind(now)
                    .bind(left)
                    .fetch_all(&mut *tx)
                    .await?,
            );
        }
        tx.commit().await?;
        Ok(claims)
    }

    /// Applies what a GET (or create, or cancel) of the upstream response showed. The status
    /// only moves forward; a terminal move records the result, writes the timeline and the
    /// outbox rows in the same transaction. A non-terminal job gets its next poll at
    /// `next_poll_at`, or at once if a webhook hint arrived meanwhile.
    pub async fn apply_observation(
        &self,
        id: &JobId,
        obs: &Observation,
        ctx: &ApplyContext<'_>,
    ) -> Result<ApplyOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let outcome = apply_in(&mut tx, id, obs, ctx).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Applies many observations in one transaction (one fsync), each in a savepoint of its
    /// own as [`Store::apply_observation`] would: one that fails takes nothing of the others
    /// with it. One answer per observation, in order.
    pub async fn apply_observations(
        &self,
        writes: &[ObservationWrite],
    ) -> Vec<Result<ApplyOutcome, StoreError>> {
        self.each_in_savepoint(Writer::Background, writes, async |conn, w| {
            apply_in(conn, &w.id, &w.obs, &w.ctx()).await
        })
        .await
    }

    /// Pushes a claimed poll's lease to `until` while its worker is still at it (fetching a
    /// finished job's artifacts), unless a webhook asked for a poll meanwhile.
    pub async fn hold_poll(&self, id: &JobId, until: i64, now: i64) -> Result<(), StoreError> {
        sql::query(
            "UPDATE jobs SET next_check_at = MAX(COALESCE(next_check_at, 0), ?), updated_at = ? \
             WHERE id = ? AND status IN ('pending', 'queued', 'in_progress') \
             AND response_id IS NOT NULL AND wake_pending = 0",
        )
        .bind(until)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes an unfinished job's poll due now, first in line (as a webhook's hint does).
    pub async fn wake_poll(&self, id: &JobId, now: i64) -> Result<(), StoreError> {
        sql::query(
            "UPDATE jobs SET next_check_at = ?, wake_pending = 1, updated_at = ? \
             WHERE id = ? AND status IN ('pending', 'queued', 'in_progress') \
             AND response_id IS NOT NULL",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reschedules a claimed poll that failed (upstream error) without changing the status,
    /// counting the failures in a row. The timeline gets `message` as an `error` event on the
    /// 1st, 10th, 100th… failure in a row only, so an outage does not grow it without bound.
    /// Returns the count.
    pub async fn reschedule_poll(
        &self,
        id: &JobId,
        at: i64,
        now: i64,
        message: Option<&str>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let n: Option<i64> = sql::query_scalar(
            "UPDATE jobs SET next_check_at = CASE WHEN wake_pending = 1 THEN ? ELSE ? END, updated_at = ?, \
             poll_errors = poll_errors + CASE WHEN ? THEN 1 ELSE 0 END \
             WHERE id = ? AND status IN ('pending', 'queued', 'in_progress') \
             AND response_id IS NOT NULL RETURNING poll_errors",
        )
        .bind(now)
        .bind(at)
        .bind(now)
        .bind(message.is_some())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let n = n.unwrap_or(0);
        if let Some(msg) = message
            && is_power_of_ten(n)
        {
            let text = if n > 1 {
                format!("{msg} ({n} failures in a row)")
            } else {
                msg.to_string()
            };
            add_event(&mut tx, id, now, EventKind::Error, &text, None).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Counts a poll that found no response upstream (404) and makes the job due again at
    /// `at`. Returns how many polls in a row have answered 404 (a successful observation
    /// resets the count).
    pub async fn record_poll_not_found(
        &self,
        id: &JobId,
        at: i64,
        now: i64,
    ) -> Result<i64, StoreError> {
        let n: Option<i64> = sql::query_scalar(
            "UPDATE jobs SET polls_not_found = polls_not_found + 1, next_check_at = ?, updated_at = ? \
             WHERE id = ? AND status IN ('pending', 'queued', 'in_progress') RETURNING polls_not_found",
        )
        .bind(at)
        .bind(now)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(n.unwrap_or(0))
    }

    /// Asks for a job to be cancelled (`reason`: `user` or `timeout`). Returns the row after.
    pub async fn request_cancel(
        &self,
        id: &JobId,
        reason: &str,
        now: i64,
    ) -> Result<Option<JobRow>, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sql::query(
            "UPDATE jobs SET cancel_requested = 1, cancel_reason = COALESCE(cancel_reason, ?), \
             next_check_at = CASE WHEN status IN ('queued', 'in_progress', 'requires_action') THEN ? ELSE next_check_at END, \
             wake_pending = 1, updated_at = ? \
             WHERE id = ? AND cancel_requested = 0 AND status IN ('pending', 'held', 'queued', 'in_progress', 'requires_action')",
        )
        .bind(reason)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if changed {
            let msg = if reason == "timeout" {
                "timeout reached: cancelling"
            } else {
                "cancel requested"
            };
            add_event(&mut tx, id, now, EventKind::CancelRequested, msg, None).await?;
        }
        let row = fetch_job(&mut tx, id).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Jobs past their deadline that are not finished and not yet being cancelled.
    pub async fn due_timeouts(&self, now: i64) -> Result<Vec<JobId>, StoreError> {
        let ids: Vec<String> = sql::query_scalar(DUE_TIMEOUTS)
            .bind(now)
            .fetch_all(self.reads.quick())
            .await?;
        Ok(ids.iter().filter_map(|id| well_formed(id)).collect())
    }

    /// Pending jobs asked to be cancelled that were never sent (or whose create was refused).
    pub async fn cancellable_unsubmitted(
        &self,
    ) -> Result<Vec<(JobId, Option<String>)>, StoreError> {
        let rows: Vec<(String, Option<String>)> = sql::query_as(CANCELLABLE_UNSUBMITTED)
            .fetch_all(self.reads.quick())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, reason)| Some((well_formed(&id)?, reason)))
            .collect())
    }

    /// The earliest time after `now` at which a job has ledger work due (a poll, the end of an
    /// uncertain wait): when the ledger worker must look again. Work due at or before `now` is
    /// not counted: the pass just made took what it could, and what it could not take waits for
    /// a free slot, which wakes the worker.
    pub async fn next_ledger_check_after(&self, now: i64) -> Result<Option<i64>, StoreError> {
        Ok(sql::query_scalar(
            "SELECT MIN(next_check_at) FROM jobs INDEXED BY jobs_ledger_due WHERE next_check_at > ? \
             AND (status IN ('queued', 'in_progress') OR (status = 'pending' AND submit_state <> 'ready'))",
        )
        .bind(now)
        .fetch_one(self.reads.quick())
        .await?)
    }

    /// The earliest time after `now` at which a job waiting to be submitted becomes due (a
    /// rate-limit wait, a retry's backoff): when the submit worker must look again. Jobs due
    /// already and not claimed wait for a free slot, which wakes the worker.
    pub async fn next_submit_after(&self, now: i64) -> Result<Option<i64>, StoreError> {
        Ok(sql::query_scalar(
            "SELECT MIN(next_check_at) FROM jobs WHERE next_check_at > ? \
             AND status IN ('pending', 'in_progress') AND submit_state = 'ready'",
        )
        .bind(now)
        .fetch_one(self.reads.quick())
        .await?)
    }
}

/// 1, 10, 100, …
fn is_power_of_ten(mut n: i64) -> bool {
    if n < 1 {
        return false;
    }
    while n % 10 == 0 {
        n /= 10;
    }
    n == 1
}

/// A job id read back as text, if it is one. A row edited by hand into a malformed id is
/// logged and left alone rather than stopping the pass that listed it.
pub(super) fn well_formed(id: &str) -> Option<JobId> {
    JobId::parse(id)
        .map_err(|e| tracing::error!(error = %e, "a row of the jobs table has a malformed id; skipping it"))
        .ok()
}

/// An observation to apply with its context, owned: what the batched writer
/// ([`Store::apply_observations`]) takes.
#[derive(Debug, Clone)]
pub struct ObservationWrite {
    pub id: JobId,
    pub obs: Observation,
    pub now: i64,
    pub next_poll_at: i64,
    pub poll_interval_ms: i64,
    pub cancel_reason: Option<String>,
    pub outbox: Vec<OutboxEntry>,
    pub source: String,
    pub request_id: Option<String>,
    /// The artifacts to list if this finishes the job.
    pub artifacts: Vec<NewArtifact>,
    pub image_prices: crate::pricing::ImagePrices,
}

impl ObservationWrite {
    /// The context [`Store::apply_observation`] takes.
    pub fn ctx(&self) -> ApplyContext<'_> {
        ApplyContext {
            now: self.now,
            next_poll_at: self.next_poll_at,
            poll_interval_ms: self.poll_interval_ms,
            cancel_reason: self.cancel_reason.as_deref(),
            outbox: &self.outbox,
            source: &self.source,
            request_id: self.request_id.as_deref(),
            artifacts: &self.artifacts,
            image_prices: self.image_prices,
        }
    }
}

/// [`Store::apply_observation`] inside the caller's transaction.
async fn apply_in(
    tx: &mut Conn,
    id: &JobId,
    obs: &Observation,
    ctx: &ApplyContext<'_>,
) -> Result<ApplyOutcome, StoreError> {
    let ApplyContext {
        now,
        next_poll_at,
        poll_interval_ms,
        cancel_reason,
        outbox,
        source,
        request_id,
        artifacts,
        image_prices,
    } = *ctx;
    let Some(row) = fetch_job(&mut *tx, id).await? else {
        return Ok(ApplyOutcome::Missing);
    };
    // A terminal job is final: seeing its status again rewrites nothing (not the result,
    // not `finished_at`, which budgets and retention count from).
    if row.status.is_terminal() {
        return Ok(ApplyOutcome::Final(row.status));
    }
    // Only the response the job holds moves it: a late sighting of another one (an earlier
    // turn's, seen twice by a poll and its webhook's) changes nothing.
    if row.response_id.as_ref() != Some(&obs.response_id) {
        return Ok(ApplyOutcome::Stale {
            current: row.status,
            observed: obs.status,
        });
    }
    // A later turn's response starts `queued` while its job has been running all along: that
    // is still running, not a move back (and its poll goes on at its pace).
    let owned;
    let obs =
        if row.turn > 0 && obs.status == JobStatus::Queued && row.status == JobStatus::InProgress {
            owned = Observation {
                status: JobStatus::InProgress,
                ..obs.clone()
            };
            &owned
        } else {
            obs
        };
    if !row.status.can_move_to(obs.status) {
        return Ok(ApplyOutcome::Stale {
            current: row.status,
            observed: obs.status,
        });
    }
    // A turn that ends asking for function outputs or approvals is not the job's end: it is
    // kept, and the job acts (`turns.rs`). A cancel asked meanwhile is seen by the acting
    // worker, which ends the job without another turn.
    if obs.status == JobStatus::Completed {
        let asked = crate::job::handler::asked_of(&obs.raw);
        if !asked.is_empty() {
            let usage = with_earlier_turns(&mut *tx, &row, obs.usage.as_ref()).await?;
            super::turns::record_turn_in(&mut *tx, &row, obs, &asked, usage.as_ref(), now).await?;
            return Ok(ApplyOutcome::Acting { from: row.status });
        }
    }
    let usage = with_earlier_turns(&mut *tx, &row, obs.usage.as_ref()).await?;
    let terminal = obs.status.is_terminal();
    // A cancel we asked for because of a timeout ends with code `timeout`.
    let error = match (obs.status, cancel_reason, &obs.error) {
        (JobStatus::Cancelled, Some("timeout"), _) => Some(JobError {
            code: "timeout".into(),
            message: "the job ran past its timeout and was cancelled".into(),
        }),
        (_, _, e) => e.clone(),
    };
    // An observation without a body (a 404 confirmed) keeps what was last seen.
    let raw = (!obs.raw.is_null()).then(|| obs.raw.to_string());
    sql::query(
        "UPDATE jobs SET status = ?, response = COALESCE(?, response), \
         output_text = COALESCE(?, output_text), usage = COALESCE(?, usage), \
         input_tokens = COALESCE(?, input_tokens), cached_tokens = COALESCE(?, cached_tokens), \
         output_tokens = COALESCE(?, output_tokens), \
         reasoning_tokens = COALESCE(?, reasoning_tokens), \
         total_tokens = COALESCE(?, total_tokens), error_code = ?, \
         error_message = ?, finished_at = ?, \
         next_check_at = CASE WHEN ? THEN NULL WHEN wake_pending = 1 THEN ? ELSE ? END, \
         poll_interval_ms = ?, polls_not_found = 0, poll_errors = 0, updated_at = ? WHERE id = ? AND status = ?",
    )
    .bind(obs.status.as_str())
    .bind(raw)
    .bind(&obs.output_text)
    .bind(usage.as_ref().map(ToString::to_string))
    .bind_tokens(usage.as_ref())
    .bind(error.as_ref().map(|e| e.code.clone()))
    .bind(error.as_ref().map(|e| e.message.clone()))
    .bind(if terminal { Some(now) } else { None })
    .bind(terminal)
    .bind(now)
    .bind(next_poll_at)
    .bind(poll_interval_ms)
    .bind(now)
    .bind(id)
    .bind(row.status.as_str())
    .execute(&mut *tx)
    .await?;
    if terminal && !obs.raw.is_null() {
        // Every turn's hosted tools, not only the last one's.
        let all = match row.turn {
            0 => None,
            _ => super::turns::merged_turns(&mut *tx, id, Some(&obs.raw)).await?,
        };
        record_tool_usage(
            &mut *tx,
            id,
            all.as_ref().unwrap_or(&obs.raw),
            &image_prices,
        )
        .await?;
    }
    if row.status != obs.status {
        let mut data = serde_json::json!({"from": row.status.as_str(), "to": obs.status.as_str(), "source": source, "error": error});
        if let (Some(r), Some(o)) = (request_id, data.as_object_mut()) {
            o.insert("request_id".into(), r.into());
        }
        let mut msg = format!("{} → {} ({source})", row.status, obs.status);
        if let Some(e) = &error {
            msg.push_str(&format!(": {}: {}", e.code, e.message));
        }
        add_event(&mut *tx, id, now, EventKind::Status, &msg, Some(&data)).await?;
        if terminal {
            insert_outbox(&mut *tx, id, obs.status, outbox, now).await?;
            super::chains::job_ended_in(&mut *tx, id, now).await?;
            if !artifacts.is_empty() {
                insert_artifacts(&mut *tx, id, artifacts, now).await?;
                let kept = artifacts.iter().filter(|a| a.error.is_none()).count();
                let mut msg = format!("{kept} artifact{} kept", if kept == 1 { "" } else { "s" });
                for a in artifacts.iter().filter(|a| a.error.is_some()) {
                    msg.push_str(&format!(
                        "; {} not kept: {}",
                        a.name,
                        a.error.as_deref().unwrap_or_default()
                    ));
                }
                let data = serde_json::json!({
                    "artifacts": artifacts.iter().map(|a| serde_json::json!({
                        "name": a.name, "kind": a.kind, "bytes": a.bytes, "error": a.error,
                    })).collect::<Vec<_>>(),
                });
                add_event(&mut *tx, id, now, EventKind::Artifacts, &msg, Some(&data)).await?;
            }
        }
    }
    Ok(ApplyOutcome::Applied {
        from: row.status,
        to: obs.status,
    })
}

/// A response's usage with that of the job's earlier turns added (a job's usage is every
/// turn's: what it cost).
async fn with_earlier_turns(
    tx: &mut Conn,
    row: &super::JobRow,
    usage: Option<&serde_json::Value>,
) -> Result<Option<serde_json::Value>, StoreError> {
    if row.turn == 0 {
        return Ok(usage.cloned());
    }
    let earlier = super::turns::earlier_usage(tx, &row.id).await?;
    Ok(match (earlier, usage) {
        (Some(e), Some(u)) => Some(crate::job::handler::sum_usage(&e, u)),
        (Some(e), None) => Some(e),
        (None, u) => u.cloned(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn powers_of_ten() {
        let hits: Vec<i64> = (0..=1000).filter(|n| super::is_power_of_ten(*n)).collect();
        assert_eq!(hits, vec![1, 10, 100, 1000]);
    }
}
