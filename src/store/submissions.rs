//! Submission writes: claiming a job for its create call, and recording what the call did
//! (accepted, refused, to retry, uncertain), plus adoption of a response revealed later.

use super::lending::Conn;
use crate::store::sql;
use sqlx::{Any, QueryBuilder};

use super::events::{EventKind, NewEvent, add_event, add_events};
use super::jobs::{SubmitClaim, UncertainJob};
use super::limits::{ClaimLimits, Skip, models_at_limit};
use super::notifications::{OutboxEntry, insert_outbox};
use super::observations::well_formed;
use super::write_turns::Writer;
use super::{Store, StoreError};
use crate::job::{JobError, JobId, JobSpec, JobStatus, ResponseId};

/// What a submit claim found: the claim, if any, and the rows quarantined on the way.
#[derive(Debug)]
pub struct Claimed {
    pub claim: Option<SubmitClaim>,
    /// `(job id, reason)` of each row set aside because it did not decode.
    pub quarantined: Vec<(String, String)>,
}

/// What a submit claim of several found: the claims (fewer than asked when nothing more may
/// go now), and the rows quarantined on the way.
#[derive(Debug)]
pub struct ClaimedMany {
    pub claims: Vec<SubmitClaim>,
    /// `(job id, reason)` of each row set aside because it did not decode.
    pub quarantined: Vec<(String, String)>,
}

enum RawClaims {
    Some(Vec<SubmitClaim>),
    Quarantined(String, String),
}

/// How long an uncertain create waits before its policy applies: `fixed` (unix ms) when the
/// config sets `upstream.uncertain_create_wait`; otherwise until the job's deadline (its
/// `timeout`: a response cannot usefully run longer), or `fallback` for a job without one.
#[derive(Debug, Clone, Copy)]
pub struct UncertainWait {
    pub fixed: Option<i64>,
    pub fallback: i64,
}

impl UncertainWait {
    /// No wait at all (nothing can reveal the response: no webhooks).
    pub fn none(now: i64) -> Self {
        Self {
            fixed: Some(now),
            fallback: now,
        }
    }
}

/// What attaching a response did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    /// The job took it; `reopened_from` is the terminal status it had ended in without one.
    Attached { reopened_from: Option<JobStatus> },
    /// The job already holds it.
    Already,
    /// The job holds another response: this one is a duplicate.
    Duplicate { held: ResponseId },
    /// No such job.
    Missing,
}

/// What goes with a response being attached.
#[derive(Debug, Clone, Copy)]
pub struct AttachContext<'a> {
    pub now: i64,
    pub first_poll_at: i64,
    pub poll_interval_ms: i64,
    /// The timeline event: [`EventKind::Submitted`] (our create's answer) or
    /// [`EventKind::Adopted`] (found later).
    pub kind: EventKind,
    /// How it was found, for the timeline (`create`, `webhook response.completed`, …).
    pub how: &'a str,
    pub request_id: Option<&'a str>,
    /// The job's turn the response belongs to (our create's claim, or the tag of a revealed
    /// response): one of another turn than the job's current one is never taken for it, it is
    /// a paid duplicate of that turn. `None` (a create journal's entry): not checked.
    pub turn: Option<i64>,
}

#[cfg(test)]
impl AttachContext<'static> {
    /// Our create's answer at `now` (first poll then, every second), in tests.
    pub(crate) fn create_answered_at(now: i64) -> Self {
        Self {
            now,
            first_poll_at: now,
            poll_interval_ms: 1_000,
            kind: EventKind::Submitted,
            how: "create",
            request_id: None,
            turn: None,
        }
    }
}

/// One response to attach, owned (for the batch writer): [`AttachContext`] and the ids.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    pub job_id: JobId,
    pub response_id: ResponseId,
    pub now: i64,
    pub first_poll_at: i64,
    pub poll_interval_ms: i64,
    pub kind: EventKind,
    pub how: String,
    pub request_id: Option<String>,
    /// The turn the response belongs to, when known (see [`AttachContext::turn`]).
    pub turn: Option<i64>,
}

impl AttachRequest {
    /// The context [`Store::attach_response`] takes.
    pub fn context(&self) -> AttachContext<'_> {
        AttachContext {
            now: self.now,
            first_poll_at: self.first_poll_at,
            poll_interval_ms: self.poll_interval_ms,
            kind: self.kind,
            how: &self.how,
            request_id: self.request_id.as_deref(),
            turn: self.turn,
        }
    }
}

/// Attaches a response inside the caller's transaction (see [`Store::attach_response`]).
async fn attach_in(
    tx: &mut Conn,
    id: &JobId,
    response_id: &ResponseId,
    at: &AttachContext<'_>,
) -> Result<Attach, StoreError> {
    let row: Option<(String, Option<ResponseId>, i64)> =
        sql::query_as("SELECT status, response_id, turn FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((status, held, current_turn)) = row else {
        return Ok(Attach::Missing);
    };
    // An earlier turn's response (a late webhook, a journal): the job had it, and moved on.
    let earlier: Option<i64> =
        sql::query_scalar("SELECT turn FROM job_turns WHERE job_id = ? AND response_id = ?")
            .bind(id)
            .bind(response_id)
            .fetch_optional(&mut *tx)
            .await?;
    if earlier.is_some() {
        return Ok(Attach::Already);
    }
    // A response of a turn that already kept one (an earlier turn's create sent twice and
    // revealed late, or the current turn's while its actions are answered): a paid duplicate
    // of the one that turn kept, never taken in its place.
    let turn = at.turn.unwrap_or(current_turn);
    if turn > current_turn {
        // A turn the job never reached: nothing to compare with; left alone.
        return Ok(Attach::Already);
    }
    let kept: Option<ResponseId> =
        sql::query_scalar("SELECT response_id FROM job_turns WHERE job_id = ? AND turn = ?")
            .bind(id)
            .bind(turn)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(kept) = kept {
        return Ok(Attach::Duplicate { held: kept });
    }
    if turn < current_turn {
        return Ok(Attach::Already);
    }
    match held {
        Some(h) if &h == response_id => {
            return Ok(Attach::Already);
        }
        Some(h) => {
            return Ok(Attach::Duplicate { held: h });
        }
        None => {}
    }
    let status = JobStatus::try_from(status).map_err(StoreError::Corrupt)?;
    let reopened = status.is_terminal();
    // A reopened job waits for the response's outcome as `pending` (with its response id,
    // so it is polled at once); its old end (finished_at, error) is cleared.
    sql::query(
            "UPDATE jobs SET response_id = ?, submit_state = 'done', \
             submitted_at = COALESCE(submitted_at, ?), attempt = attempt + 1, lease_until = NULL, lease_owner = NULL, \
             next_check_at = ?, poll_interval_ms = ?, polls_not_found = 0, updated_at = ?, \
             status = CASE WHEN ? OR status = 'held' THEN 'pending' ELSE status END, \
             finished_at = CASE WHEN ? THEN NULL ELSE finished_at END, \
             error_code = CASE WHEN ? THEN NULL ELSE error_code END, \
             error_message = CASE WHEN ? THEN NULL ELSE error_message END \
             WHERE id = ? AND response_id IS NULL",
        )
        .bind(response_id)
        .bind(at.now)
        .bind(at.first_poll_at)
        .bind(at.poll_interval_ms)
        .bind(at.now)
        .bind(reopened)
        .bind(reopened)
        .bind(reopened)
        .bind(reopened)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    // A delivery naming the response that came before this answer, while look-ups were paced,
    // waits for a time booked later: it is due now, and the hand-off gives it to the job.
    sql::query(
        "UPDATE webhook_deliveries SET look_booked = 0, next_look_at = ? \
         WHERE object_id = ? AND handled_at IS NULL AND look_booked = 1 AND next_look_at > ?",
    )
    .bind(at.now)
    .bind(response_id)
    .bind(at.now)
    .execute(&mut *tx)
    .await?;
    let mut data = serde_json::json!({"response_id": response_id, "request_id": at.request_id});
    if reopened {
        if let Some(o) = data.as_object_mut() {
            o.insert("reopened_from".into(), status.as_str().into());
        }
        add_event(
                tx,
                id,
                at.now,
                EventKind::Reopened,
                &format!(
                    "{status} → pending: response {response_id} was revealed ({}) after the job had ended without one; it takes that response's outcome",
                    at.how
                ),
                Some(&data),
            )
            .await?;
    } else {
        add_event(
            tx,
            id,
            at.now,
            at.kind,
            &match (at.kind, at.how) {
                // The ordinary case reads as it always did.
                (EventKind::Submitted, "create") => format!("submitted as {response_id}"),
                (EventKind::Submitted, how) => format!("submitted as {response_id} ({how})"),
                (_, how) => format!("found response {response_id} ({how})"),
            },
            Some(&data),
        )
        .await?;
    }
    Ok(Attach::Attached {
        reopened_from: reopened.then_some(status),
    })
}

/// Sets a job aside inside the caller's transaction (see [`Store::quarantine_job`]).
async fn quarantine_in(
    conn: &mut Conn,
    id: &str,
    reason: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let done = sql::query(
        "UPDATE jobs SET quarantine = ?, next_check_at = NULL, lease_until = NULL, lease_owner = NULL, \
         submit_state = CASE WHEN submit_state = 'submitting' AND response_id IS NULL THEN 'uncertain' \
                             ELSE submit_state END, updated_at = ? \
         WHERE id = ? AND quarantine IS NULL",
    )
    .bind(reason)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if done {
        add_event(
            conn,
            id,
            now,
            EventKind::Quarantined,
            &format!(
                "set aside: {reason}; respool no longer works on this job: fix its row and set its `quarantine` column to NULL, or delete the job"
            ),
            None,
        )
        .await?;
    }
    Ok(done)
}

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
        (kind, reason): (EventKind, &str),
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sql::query(sql)
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
    ///
    /// A claimed row whose spec no longer decodes is quarantined in the same transaction (an
    /// event on the job; it is never claimed again) and the next one is tried; its id and the
    /// reason come back in [`Claimed::quarantined`] so the caller can log and count it.
    pub async fn claim_submission(
        &self,
        now: i64,
        lease: Lease<'_>,
        limits: &ClaimLimits<'_>,
    ) -> Result<Claimed, StoreError> {
        let many = self.claim_submissions(now, lease, limits, 1).await?;
        Ok(Claimed {
            claim: many.claims.into_iter().next(),
            quarantined: many.quarantined,
        })
    }

    /// Claims up to `max` submissions in one transaction, as many calls of
    /// [`Store::claim_submission`] in a row would, in the same order and within the same
    /// limits: fewer than `max` means nothing more may go now.
    pub async fn claim_submissions(
        &self,
        now: i64,
        lease: Lease<'_>,
        limits: &ClaimLimits<'_>,
        max: usize,
    ) -> Result<ClaimedMany, StoreError> {
        let mut quarantined = Vec::new();
        loop {
            match self.claim_some_submissions(now, lease, limits, max).await? {
                RawClaims::Some(claims) => {
                    return Ok(ClaimedMany {
                        claims,
                        quarantined,
                    });
                }
                RawClaims::Quarantined(id, reason) => quarantined.push((id, reason)),
            }
        }
    }

    async fn claim_some_submissions(
        &self,
        now: i64,
        lease: Lease<'_>,
        limits: &ClaimLimits<'_>,
        max: usize,
    ) -> Result<RawClaims, StoreError> {
        type Row = (String, i64, i64, String, i64);
        let mut tx = self.begin_write().await?;
        let mut rows: Vec<Row> = Vec::new();
        // A later turn of a job already running goes first (its earlier turns are paid for,
        // and its owner is waiting), whatever the limits: the job holds its place in flight
        // all along (it is `in_progress`), so sending its next turn adds nothing to them.
        while rows.len() < max {
            let mut q =
                submit_claim_query_for(ClaimPhase::NextTurn, "", now, lease, &Skip::default());
            match sql::built_as::<Row>(&mut q)
                .fetch_optional(&mut *tx)
                .await?
            {
                Some(row) => rows.push(row),
                None => break,
            }
        }
        if rows.len() < max
            && let Some((mut skip, mut room)) = models_at_limit(&mut tx, now, limits).await?
        {
            // With only the overall limit, each claim takes one place of the room counted;
            // with per-model limits or a budget, the skips are counted again after each.
            let counted_once = limits.per_model.is_empty() && limits.over_budget.is_none();
            while rows.len() < max && room > 0 {
                let mut q = submit_claim_query_for(ClaimPhase::First, "", now, lease, &skip);
                let Some(row) = sql::built_as::<Row>(&mut q)
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    break;
                };
                rows.push(row);
                room -= 1;
                if !counted_once && rows.len() < max {
                    let Some(next) = models_at_limit(&mut tx, now, limits).await? else {
                        break;
                    };
                    (skip, room) = next;
                }
            }
        }
        let mut claims = Vec::with_capacity(rows.len());
        for (id, attempt, submissions, spec, turn) in rows {
            let decoded = serde_json::from_str::<JobSpec>(&spec)
                .map_err(|e| format!("its stored spec does not decode: {e}"))
                .and_then(|spec| Ok((JobId::parse(&id).map_err(|e| e.to_string())?, spec)));
            match decoded {
                Ok((id, spec)) => claims.push(SubmitClaim {
                    id,
                    attempt,
                    submissions,
                    spec,
                    turn,
                }),
                Err(reason) => {
                    // Nothing was sent: undo the claims, then set the row aside (the others
                    // are claimed again by the next try).
                    tx.rollback().await?;
                    self.quarantine_job(&id, &reason, now).await?;
                    return Ok(RawClaims::Quarantined(id, reason));
                }
            }
        }
        let messages: Vec<String> = claims
            .iter()
            .map(|c| match (c.turn, c.submissions) {
                (0, 0..=1) => "submitting upstream".to_string(),
                (0, n) => format!("submitting upstream (create call #{n})"),
                (t, n) => format!("submitting turn {} upstream (create call #{n})", t + 1),
            })
            .collect();
        let events: Vec<NewEvent<'_>> = claims
            .iter()
            .zip(&messages)
            .map(|(c, message)| NewEvent {
                job_id: c.id.as_str(),
                at: now,
                kind: EventKind::Submitting,
                message,
                data: None,
            })
            .collect();
        add_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(RawClaims::Some(claims))
    }

    /// Whether a running job's next turn is due to be sent (it is claimed whatever the limits).
    pub async fn next_turn_due(&self, now: i64) -> Result<bool, StoreError> {
        Ok(sql::query_scalar::<i64>(
            "SELECT 1 FROM jobs INDEXED BY jobs_turn_order WHERE status = 'in_progress' \
             AND submit_state = 'ready' AND cancel_requested = 0 AND quarantine IS NULL \
             AND (next_check_at IS NULL OR next_check_at <= ?) LIMIT 1",
        )
        .bind(now)
        .fetch_optional(self.reads.quick())
        .await?
        .is_some())
    }

    /// Sets a job aside whose row cannot be decoded: never claimed again (submit, poll,
    /// uncertain), an event on its timeline says why. Returns whether it was not already.
    pub async fn quarantine_job(
        &self,
        // Raw: the row at fault may not even hold a well-formed id.
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = quarantine_in(&mut tx, id, reason, now).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Attaches a response that exists upstream for this job (our create's answer, a webhook
    /// that revealed it, the create journal after a crash). Whatever the job's state:
    ///
    /// - it has no response: it takes this one. A job still waiting to be (re)submitted, being
    ///   submitted or uncertain stops there (nothing is sent again); a job the uncertain-create
    ///   policy, a cancel or a timeout already ended *without* a response is reopened (the one
    ///   exception to "statuses only move forward": a paid result is never thrown away) and
    ///   takes the response's outcome when it is observed;
    /// - it has this one already: nothing to do;
    /// - it has another one: this one is a duplicate ([`Attach::Duplicate`]).
    ///
    /// The claim's attempt is bumped, so a worker still holding the old one changes nothing.
    pub async fn attach_response(
        &self,
        id: &JobId,
        response_id: &ResponseId,
        at: &AttachContext<'_>,
    ) -> Result<Attach, StoreError> {
        let mut tx = self.begin_write().await?;
        let attach = attach_in(&mut tx, id, response_id, at).await?;
        tx.commit().await?;
        Ok(attach)
    }

    /// [`Store::attach_response`] for several responses in one transaction (group commit,
    /// see [`crate::batch`]), each in a savepoint of its own: one answer per item, in order,
    /// as if they had been attached one after the other.
    pub async fn attach_responses(
        &self,
        items: &[AttachRequest],
    ) -> Vec<Result<Attach, StoreError>> {
        self.each_in_savepoint(Writer::Background, items, async |conn, r| {
            attach_in(conn, &r.job_id, &r.response_id, &r.context()).await
        })
        .await
    }

    /// Puts a claimed job back to be submitted again at `at` (the create surely did not
    /// reach OpenAI: a rate limit, a refused connection).
    pub async fn reschedule_submission(
        &self,
        id: &JobId,
        attempt: i64,
        at: i64,
        now: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE jobs SET submit_state = 'ready', submissions = submissions - 1, next_check_at = ?, \
             lease_until = NULL, lease_owner = NULL, updated_at = ? WHERE id = ? AND attempt = ? AND submit_state = 'submitting'";
        self.fenced_move(sql, at, now, id, attempt, (EventKind::SubmitRetry, reason))
            .await
    }

    /// Sets when a job waiting to be submitted (`ready`, claim `attempt`) is next due: after
    /// its attachments were uploaded (now), or when an upload may be tried again. Returns
    /// whether the job was still waiting under that claim.
    pub async fn wake_submission(
        &self,
        id: &JobId,
        attempt: i64,
        at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(sql::query(
            "UPDATE jobs SET next_check_at = ?, updated_at = ? WHERE id = ? AND attempt = ? \
             AND status IN ('pending', 'in_progress') AND submit_state = 'ready'",
        )
        .bind(at)
        .bind(now)
        .bind(id)
        .bind(attempt)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Marks a claimed create as uncertain: it may have reached OpenAI. Resolved when the
    /// wait is over (by adoption, if a webhook reveals the response, else by the configured
    /// policy).
    pub async fn mark_uncertain(
        &self,
        id: &JobId,
        attempt: i64,
        wait: UncertainWait,
        now: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sql::query(
            "UPDATE jobs SET submit_state = 'uncertain', lease_until = NULL, lease_owner = NULL, \
             next_check_at = CASE WHEN ? IS NOT NULL THEN ? \
                                  WHEN deadline_at IS NOT NULL THEN MAX(deadline_at, ?) ELSE ? END, \
             updated_at = ? WHERE id = ? AND attempt = ? AND submit_state = 'submitting'",
        )
        .bind(wait.fixed)
        .bind(wait.fixed)
        .bind(now)
        .bind(wait.fallback)
        .bind(now)
        .bind(id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            add_event(&mut tx, id, now, EventKind::SubmitUncertain, reason, None).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Turns submissions whose lease ran out (their worker died mid-call, in this process or
    /// another one) into uncertain ones; a lease still running is left alone, whoever holds
    /// it. Returns the ids.
    pub async fn expire_submission_leases(
        &self,
        now: i64,
        wait: UncertainWait,
    ) -> Result<Vec<JobId>, StoreError> {
        self.expire_leases(now, wait, LeaseEnd::RanOut).await
    }

    /// Turns the submissions held by a daemon known to be gone (its create journal was found
    /// orphaned) into uncertain ones at once, whatever time their leases have left: nobody is
    /// making those calls any more. Returns the ids.
    pub async fn expire_leases_of(
        &self,
        owner: &str,
        now: i64,
        wait: UncertainWait,
    ) -> Result<Vec<JobId>, StoreError> {
        self.expire_leases(now, wait, LeaseEnd::OwnerGone(owner))
            .await
    }

    async fn expire_leases(
        &self,
        now: i64,
        wait: UncertainWait,
        end: LeaseEnd<'_>,
    ) -> Result<Vec<JobId>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut q = QueryBuilder::<Any>::new(
            "UPDATE jobs SET submit_state = 'uncertain', lease_until = NULL, lease_owner = NULL, \
             next_check_at = CASE WHEN ",
        );
        q.push_bind(wait.fixed)
            .push(" IS NOT NULL THEN ")
            .push_bind(wait.fixed)
            .push(" WHEN deadline_at IS NOT NULL THEN MAX(deadline_at, ")
            .push_bind(now)
            .push(") ELSE ")
            .push_bind(wait.fallback)
            .push(" END, attempt = attempt + 1, updated_at = ")
            .push_bind(now)
            .push(
                " WHERE status IN ('pending', 'in_progress') AND submit_state = 'submitting' AND ",
            );
        match end {
            LeaseEnd::RanOut => q.push("lease_until < ").push_bind(now),
            LeaseEnd::OwnerGone(owner) => q.push("lease_owner = ").push_bind(owner.to_owned()),
        };
        q.push(" RETURNING id");
        let ids: Vec<String> = sql::built_scalar(&mut q).fetch_all(&mut *tx).await?;
        // The acting jobs it held (handlers it ran) are due again at once: their handlers died
        // with it, which the next claim sees (`turns.rs`).
        if let LeaseEnd::OwnerGone(owner) = end {
            sql::query(
                "UPDATE jobs SET next_check_at = ?, lease_owner = NULL WHERE submit_state = 'acting' \
                 AND lease_owner = ? AND next_check_at IS NOT NULL",
            )
            .bind(now)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        }
        let reason = match end {
            LeaseEnd::RanOut => {
                "the create call was interrupted (respool stopped mid-call): it may or may not have reached OpenAI"
            }
            LeaseEnd::OwnerGone(_) => {
                "the create call was interrupted (the daemon making it is gone): it may or may not have reached OpenAI"
            }
        };
        for id in &ids {
            add_event(&mut tx, id, now, EventKind::SubmitUncertain, reason, None).await?;
        }
        tx.commit().await?;
        Ok(ids.iter().filter_map(|id| well_formed(id)).collect())
    }

    /// Uncertain jobs whose wait is over.
    pub async fn due_uncertain(&self, now: i64) -> Result<Vec<UncertainJob>, StoreError> {
        Ok(sql::query_as::<UncertainJob>(
            "SELECT id, attempt, cancel_requested FROM jobs WHERE status IN ('pending', 'in_progress') \
             AND submit_state = 'uncertain' AND quarantine IS NULL AND next_check_at <= ? \
             ORDER BY next_check_at LIMIT 100",
        )
        .bind(now)
        .fetch_all(&self.reads)
        .await?)
    }

    /// Sends an uncertain job back to be submitted again (the `resubmit` policy).
    pub async fn resubmit_uncertain(
        &self,
        id: &JobId,
        attempt: i64,
        now: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE jobs SET submit_state = 'ready', next_check_at = ?, updated_at = ? \
             WHERE id = ? AND attempt = ? AND submit_state = 'uncertain' AND status IN ('pending', 'in_progress')";
        self.fenced_move(sql, now, now, id, attempt, (EventKind::Resubmit, reason))
            .await
    }

    /// Ends a job that never got a response id (refused create, uncertain create under the
    /// `fail` policy, cancelled before submission): conditional on it still being pending (or
    /// held), without a response, and on `attempt` (the claim this write closes), so a stale
    /// worker cannot end a job whose newer attempt is in flight.
    pub async fn finish_unsubmitted(
        &self,
        id: &JobId,
        attempt: i64,
        status: JobStatus,
        error: &JobError,
        now: i64,
        outbox: &[OutboxEntry],
    ) -> Result<bool, StoreError> {
        debug_assert!(status.is_terminal());
        let mut tx = self.begin_write().await?;
        // `pending` or `held`: both were never submitted.
        let from: Option<String> = sql::query_scalar("SELECT status FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let from = from.unwrap_or_else(|| "pending".into());
        let done = sql::query(
            "UPDATE jobs SET status = ?, submit_state = CASE WHEN submit_state IN ('submitting', 'waiting') THEN 'done' ELSE submit_state END, \
             finished_at = ?, next_check_at = NULL, lease_until = NULL, lease_owner = NULL, error_code = ?, error_message = ?, \
             updated_at = ? WHERE id = ? AND attempt = ? AND status IN ('pending', 'held', 'in_progress') \
             AND submit_state <> 'done' AND response_id IS NULL",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(&error.code)
        .bind(&error.message)
        .bind(now)
        .bind(id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            let data = serde_json::json!({"from": from, "to": status.as_str(), "error": error});
            ended_without_response_in(&mut tx, id, (&from, status, error), &data, outbox, now)
                .await?;
        }
        tx.commit().await?;
        Ok(done)
    }
}

/// What follows, in the same transaction, a job's end written without a new response (a
/// refused or abandoned create, a cancel before submission, an end between turns): the status
/// event (`data` its details), the outbox rows of its sinks, and its chain's followers woken.
pub(super) async fn ended_without_response_in(
    tx: &mut Conn,
    id: &JobId,
    (from, status, error): (&str, JobStatus, &JobError),
    data: &serde_json::Value,
    outbox: &[OutboxEntry],
    now: i64,
) -> Result<(), StoreError> {
    add_event(
        &mut *tx,
        id,
        now,
        EventKind::Status,
        &format!("{from} → {status}: {}", error.message),
        Some(data),
    )
    .await?;
    insert_outbox(&mut *tx, id, status, outbox, now).await?;
    super::chains::job_ended_in(&mut *tx, id, now).await
}

/// How long a submission claim holds, and who holds it.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    /// How long the create call (with its inline retries) may take before its outcome counts
    /// as unknown.
    pub ms: i64,
    /// The claiming daemon's instance id (its create journal), if it has one.
    pub owner: Option<&'a str>,
}

impl Lease<'static> {
    /// A lease with no owner: it ends only when its time runs out.
    pub fn unowned(ms: i64) -> Self {
        Self { ms, owner: None }
    }
}

/// Why submission leases end: their time ran out, or the daemon holding them is gone.
#[derive(Debug, Clone, Copy)]
enum LeaseEnd<'a> {
    RanOut,
    OwnerGone(&'a str),
}

/// The submit claim's statement, after `prefix` (`EXPLAIN QUERY PLAN ` in the test that keeps
/// it index-ordered). It walks `jobs_submit_order` (priority descending, then oldest first) and
/// stops at the first job it may take: no sort of the backlog. (`INDEXED BY`: with no table
/// statistics SQLite prefers an index that matches more equalities and then sorts.)
/// Which jobs a submit claim takes: new ones, or running ones whose next turn is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClaimPhase {
    /// `pending` jobs, by `jobs_submit_order`.
    First,
    /// `in_progress` jobs whose function outputs or approvals are answered, by
    /// `jobs_turn_order`. Budgets do not hold them: the job was let in, and stopping it between
    /// turns would throw away what its earlier turns cost.
    NextTurn,
}

/// The first-create claim (see [`submit_claim_query_for`]).
#[cfg(test)]
pub(super) fn submit_claim_query(
    prefix: &str,
    now: i64,
    lease: Lease<'_>,
    skip: &Skip,
) -> QueryBuilder<Any> {
    submit_claim_query_for(ClaimPhase::First, prefix, now, lease, skip)
}

pub(super) fn submit_claim_query_for(
    phase: ClaimPhase,
    prefix: &str,
    now: i64,
    lease: Lease<'_>,
    skip: &Skip,
) -> QueryBuilder<Any> {
    let (index, status) = match phase {
        ClaimPhase::First => ("jobs_submit_order", "pending"),
        ClaimPhase::NextTurn => ("jobs_turn_order", "in_progress"),
    };
    // Each model is bound where its placeholder is pushed (`push_bind`).
    let mut q = QueryBuilder::<Any>::new(format!(
        "{prefix}UPDATE jobs SET submit_state = 'submitting', attempt = attempt + 1, \
         submissions = submissions + 1, lease_until = "
    ));
    q.push_bind(now + lease.ms)
        .push(", lease_owner = ")
        .push_bind(lease.owner.map(str::to_owned))
        .push(", updated_at = ")
        .push_bind(now)
        .push(
            format!(" WHERE id = (SELECT id FROM jobs INDEXED BY {index} \
             WHERE status = '{status}' AND submit_state = 'ready' \
             AND cancel_requested = 0 AND quarantine IS NULL AND (next_check_at IS NULL OR next_check_at <= "),
        )
        .push_bind(now)
        .push(
            ") AND NOT EXISTS (SELECT 1 FROM schedule_runs r WHERE r.job_id = jobs.id AND r.waiting = 1) ",
        );
    if !skip.models.is_empty() {
        q.push("AND model NOT IN (");
        let mut list = q.separated(", ");
        for model in &skip.models {
            list.push_bind(model);
        }
        q.push(") ");
    }
    if !skip.unless_exempt.is_empty() && phase == ClaimPhase::First {
        q.push("AND (budget_exempt = 1 OR model NOT IN (");
        let mut list = q.separated(", ");
        for model in &skip.unless_exempt {
            list.push_bind(model);
        }
        q.push(")) ");
    }
    q.push(
        "ORDER BY priority DESC, created_at, id LIMIT 1) \
         AND submit_state = 'ready' \
         RETURNING id, attempt, submissions, spec, turn",
    );
    q
}
