//! The `jobs` table: the ledger. Claims for submission and polling, and every status write.
//!
//! Writers start with `BEGIN IMMEDIATE` so that a read-then-write transaction takes the write
//! lock up front (under SQLite's single writer a deferred transaction could fail to upgrade).

use serde_json::Value;
use sqlx::{AssertSqlSafe, FromRow, SqliteConnection};

use super::events::add_event;
use super::notifications::{OutboxEntry, insert_outbox};
use super::{Store, StoreError};
use crate::job::{JobError, JobId, JobSpec, JobStatus, Observation};

const JOB_COLUMNS: &str = "id, name, model, status, spec, idempotency_key, spec_hash, response_id, \
    attempt, submit_state, submissions, created_at, updated_at, submitted_at, finished_at, \
    deadline_at, next_check_at, lease_until, poll_interval_ms, polls, wake_pending, \
    cancel_requested, cancel_reason, output_text, error_code, error_message, usage";

/// Where a job's create call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitState {
    /// Not sent yet (or to be sent again).
    Ready,
    /// A worker is sending it; if the lease runs out, the outcome is unknown.
    Submitting,
    /// The create may or may not have reached OpenAI.
    Uncertain,
    /// Accepted upstream: the job has a response id.
    Done,
}

impl SubmitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Submitting => "submitting",
            Self::Uncertain => "uncertain",
            Self::Done => "done",
        }
    }
}

impl TryFrom<String> for SubmitState {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Ok(match s.as_str() {
            "ready" => Self::Ready,
            "submitting" => Self::Submitting,
            "uncertain" => Self::Uncertain,
            "done" => Self::Done,
            other => return Err(format!("unknown submit state `{other}`")),
        })
    }
}

/// A row of the ledger (without the stored response body, which can be large).
#[derive(Debug, Clone, FromRow)]
pub struct JobRow {
    pub id: String,
    pub name: String,
    pub model: String,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    #[sqlx(json)]
    pub spec: JobSpec,
    pub idempotency_key: Option<String>,
    pub spec_hash: String,
    pub response_id: Option<String>,
    pub attempt: i64,
    #[sqlx(try_from = "String")]
    pub submit_state: SubmitState,
    pub submissions: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub submitted_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub deadline_at: Option<i64>,
    pub next_check_at: Option<i64>,
    pub lease_until: Option<i64>,
    pub poll_interval_ms: i64,
    pub polls: i64,
    pub wake_pending: i64,
    pub cancel_requested: i64,
    pub cancel_reason: Option<String>,
    pub output_text: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    #[sqlx(json(nullable))]
    pub usage: Option<Value>,
}

impl JobRow {
    pub fn error(&self) -> Option<JobError> {
        self.error_code.as_ref().map(|code| JobError {
            code: code.clone(),
            message: self.error_message.clone().unwrap_or_default(),
        })
    }
}

/// A job to insert.
pub struct NewJob {
    pub id: JobId,
    pub spec: JobSpec,
    pub spec_hash: String,
    pub now: i64,
    pub deadline_at: Option<i64>,
    /// How the job came in, for the timeline (`api`, `jobs file`, …).
    pub origin: String,
}

/// What inserting a job did.
pub enum InsertOutcome {
    Created(JobRow),
    /// The idempotency key was seen before with the same spec: the earlier job.
    Existing(JobRow),
    /// The idempotency key was seen before with a different spec.
    KeyConflict(JobRow),
}

/// A claimed submission: the worker holds `attempt` and must write back with it.
#[derive(Debug, Clone, FromRow)]
pub struct SubmitClaim {
    pub id: String,
    pub attempt: i64,
    pub submissions: i64,
    #[sqlx(json)]
    pub spec: JobSpec,
}

/// A claimed poll.
#[derive(Debug, Clone, FromRow)]
pub struct PollClaim {
    pub id: String,
    pub response_id: String,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub poll_interval_ms: i64,
    pub polls: i64,
    pub cancel_requested: i64,
    pub cancel_reason: Option<String>,
    pub deadline_at: Option<i64>,
}

/// A job whose create outcome is unknown and whose wait is over.
#[derive(Debug, Clone, FromRow)]
pub struct UncertainJob {
    pub id: String,
    pub attempt: i64,
    pub cancel_requested: i64,
}

/// What applying an observation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The status moved (or stayed) and the row was updated.
    Applied { from: JobStatus, to: JobStatus },
    /// The observation was older than what we know (a backward move); nothing written.
    Stale {
        current: JobStatus,
        observed: JobStatus,
    },
    /// No such job.
    Missing,
}

/// What goes with an observation being applied.
#[derive(Debug, Clone, Copy)]
pub struct ApplyContext<'a> {
    pub now: i64,
    /// When to poll next if the job is not finished.
    pub next_poll_at: i64,
    pub poll_interval_ms: i64,
    /// Why we asked for a cancel, if we did (`timeout` turns a cancel into error `timeout`).
    pub cancel_reason: Option<&'a str>,
    /// Sinks to notify if this observation finishes the job.
    pub outbox: &'a [OutboxEntry],
    /// What produced the observation (`create`, `poll`, `cancel`, `webhook`), for the timeline.
    pub source: &'a str,
}

/// Filters for listing jobs.
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub name: Option<String>,
    /// Only jobs created at or after this time (unix ms).
    pub since: Option<i64>,
    /// Cursor: only jobs that sort before this one (newest first).
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

async fn fetch_job(conn: &mut SqliteConnection, id: &str) -> Result<Option<JobRow>, StoreError> {
    Ok(sqlx::query_as::<_, JobRow>(AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

impl Store {
    /// Inserts a validated job (honouring its idempotency key) and records `accepted`.
    pub async fn insert_job(&self, job: NewJob) -> Result<InsertOutcome, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(key) = &job.spec.idempotency_key {
            let existing: Option<String> =
                sqlx::query_scalar("SELECT id FROM jobs WHERE idempotency_key = ?")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(id) = existing {
                let row = fetch_job(&mut tx, &id)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("job {id} vanished")))?;
                tx.commit().await?;
                return Ok(if row.spec_hash == job.spec_hash {
                    InsertOutcome::Existing(row)
                } else {
                    InsertOutcome::KeyConflict(row)
                });
            }
        }
        let spec_json =
            serde_json::to_string(&job.spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO jobs (id, name, model, status, spec, idempotency_key, spec_hash, created_at, \
             updated_at, deadline_at, next_check_at) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(job.id.as_str())
        .bind(&job.spec.name)
        .bind(job.spec.model())
        .bind(spec_json)
        .bind(&job.spec.idempotency_key)
        .bind(&job.spec_hash)
        .bind(job.now)
        .bind(job.now)
        .bind(job.deadline_at)
        .bind(job.now)
        .execute(&mut *tx)
        .await?;
        add_event(
            &mut tx,
            job.id.as_str(),
            job.now,
            "accepted",
            &format!("accepted from {}", job.origin),
            None,
        )
        .await?;
        let row = fetch_job(&mut tx, job.id.as_str())
            .await?
            .ok_or_else(|| StoreError::Corrupt("inserted job vanished".into()))?;
        tx.commit().await?;
        Ok(InsertOutcome::Created(row))
    }

    /// Returns the job with this id.
    pub async fn get_job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        fetch_job(&mut conn, id).await
    }

    /// Returns the job that owns an upstream response id.
    pub async fn find_job_by_response(
        &self,
        response_id: &str,
    ) -> Result<Option<JobRow>, StoreError> {
        Ok(sqlx::query_as::<_, JobRow>(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE response_id = ?"
        )))
        .bind(response_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Returns the stored upstream Response JSON of a job, whole.
    pub async fn get_response(&self, id: &str) -> Result<Option<Value>, StoreError> {
        let raw: Option<Option<String>> =
            sqlx::query_scalar("SELECT response FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        raw.flatten()
            .map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Lists jobs newest first, filtered, one page at a time.
    pub async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<JobRow>, StoreError> {
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1");
        if f.status.is_some() {
            sql.push_str(" AND status = ?");
        }
        if f.name.is_some() {
            sql.push_str(" AND name = ?");
        }
        if f.since.is_some() {
            sql.push_str(" AND created_at >= ?");
        }
        if f.before.is_some() {
            sql.push_str(" AND (created_at < ? OR (created_at = ? AND id < ?))");
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
        // Built only from the fixed fragments above; every value is bound.
        let mut q = sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql));
        if let Some(s) = f.status {
            q = q.bind(s.as_str());
        }
        if let Some(n) = &f.name {
            q = q.bind(n);
        }
        if let Some(s) = f.since {
            q = q.bind(s);
        }
        if let Some((at, id)) = &f.before {
            q = q.bind(at).bind(at).bind(id);
        }
        Ok(q.bind(f.limit).fetch_all(&self.pool).await?)
    }

    /// Jobs submitted upstream and not finished, plus those being submitted.
    pub async fn count_in_flight(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'in_progress') \
             OR (status = 'pending' AND submit_state <> 'ready')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Claims the oldest pending job that is due for submission: bumps its attempt, counts the
    /// submission and records it *before* the create call is sent, so a crash mid-call leaves a
    /// trace. The lease says how long the call may take before the outcome counts as unknown.
    pub async fn claim_submission(
        &self,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<SubmitClaim>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let claim = sqlx::query_as::<_, SubmitClaim>(
            "UPDATE jobs SET submit_state = 'submitting', attempt = attempt + 1, \
             submissions = submissions + 1, lease_until = ?, updated_at = ? \
             WHERE id = (SELECT id FROM jobs WHERE status = 'pending' AND submit_state = 'ready' \
                         AND cancel_requested = 0 AND (next_check_at IS NULL OR next_check_at <= ?) \
                         ORDER BY created_at, id LIMIT 1) \
             AND submit_state = 'ready' \
             RETURNING id, attempt, submissions, spec",
        )
        .bind(now + lease_ms)
        .bind(now)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE jobs SET submit_state = 'ready', submissions = submissions - 1, next_check_at = ?, \
             lease_until = NULL, updated_at = ? WHERE id = ? AND attempt = ? AND submit_state = 'submitting'",
        )
        .bind(at)
        .bind(now)
        .bind(id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            add_event(&mut tx, id, now, "submit_retry", reason, None).await?;
        }
        tx.commit().await?;
        Ok(done)
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE jobs SET submit_state = 'uncertain', next_check_at = ?, lease_until = NULL, \
             updated_at = ? WHERE id = ? AND attempt = ? AND submit_state = 'submitting'",
        )
        .bind(resolve_at)
        .bind(now)
        .bind(id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            add_event(&mut tx, id, now, "submit_uncertain", reason, None).await?;
        }
        tx.commit().await?;
        Ok(done)
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE jobs SET submit_state = 'ready', next_check_at = ?, updated_at = ? \
             WHERE id = ? AND attempt = ? AND submit_state = 'uncertain' AND status = 'pending'",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            add_event(&mut tx, id, now, "resubmit", reason, None).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Ends a job that never got a response id (refused create, uncertain create under the
    /// `fail` policy, cancelled before submission): conditional on it still being pending.
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
        let done = sqlx::query(
            "UPDATE jobs SET status = ?, submit_state = CASE WHEN submit_state = 'submitting' THEN 'done' ELSE submit_state END, \
             finished_at = ?, next_check_at = NULL, lease_until = NULL, error_code = ?, error_message = ?, \
             updated_at = ? WHERE id = ? AND status = 'pending' AND response_id IS NULL",
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
            let data =
                serde_json::json!({"from": "pending", "to": status.as_str(), "error": error});
            add_event(
                &mut tx,
                id,
                now,
                "status",
                &format!("pending → {status}: {}", error.message),
                Some(&data),
            )
            .await?;
            insert_outbox(&mut tx, id, status, outbox, now).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Claims up to `limit` jobs due for a poll, moving their next check past a lease so no
    /// other worker takes them meanwhile, and clears `wake_pending`. Any unfinished job with a
    /// response id is polled, `pending` included: that covers a crash between recording the
    /// id and recording its first status.
    pub async fn claim_polls(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<PollClaim>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let claims = sqlx::query_as::<_, PollClaim>(
            "UPDATE jobs SET next_check_at = ?, wake_pending = 0, polls = polls + 1, updated_at = ? \
             WHERE id IN (SELECT id FROM jobs WHERE status IN ('pending', 'queued', 'in_progress') \
                          AND response_id IS NOT NULL AND next_check_at <= ? \
                          ORDER BY next_check_at LIMIT ?) \
             RETURNING id, response_id, status, poll_interval_ms, polls, cancel_requested, \
                       cancel_reason, deadline_at",
        )
        .bind(now + lease_ms)
        .bind(now)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(claims)
    }

    /// Applies what a GET (or create, or cancel) of the upstream response showed. The status
    /// only moves forward; a terminal move records the result, writes the timeline and the
    /// outbox rows in the same transaction. A non-terminal job gets its next poll at
    /// `next_poll_at`, or at once if a webhook hint arrived meanwhile.
    pub async fn apply_observation(
        &self,
        id: &str,
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
        } = *ctx;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(row) = fetch_job(&mut tx, id).await? else {
            return Ok(ApplyOutcome::Missing);
        };
        if !row.status.can_move_to(obs.status) {
            tx.commit().await?;
            return Ok(ApplyOutcome::Stale {
                current: row.status,
                observed: obs.status,
            });
        }
        let terminal = obs.status.is_terminal();
        // A cancel we asked for because of a timeout ends with code `timeout`.
        let error = match (obs.status, cancel_reason, &obs.error) {
            (JobStatus::Cancelled, Some("timeout"), _) => Some(JobError {
                code: "timeout".into(),
                message: "the job ran past its timeout and was cancelled".into(),
            }),
            (_, _, e) => e.clone(),
        };
        let raw = obs.raw.to_string();
        sqlx::query(
            "UPDATE jobs SET status = ?, response = ?, output_text = ?, usage = ?, error_code = ?, \
             error_message = ?, finished_at = ?, \
             next_check_at = CASE WHEN ? THEN NULL WHEN wake_pending = 1 THEN ? ELSE ? END, \
             poll_interval_ms = ?, updated_at = ? WHERE id = ? AND status = ?",
        )
        .bind(obs.status.as_str())
        .bind(raw)
        .bind(&obs.output_text)
        .bind(obs.usage.as_ref().map(ToString::to_string))
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
        if row.status != obs.status {
            let data = serde_json::json!({"from": row.status.as_str(), "to": obs.status.as_str(), "source": source, "error": error});
            let mut msg = format!("{} → {} ({source})", row.status, obs.status);
            if let Some(e) = &error {
                msg.push_str(&format!(": {}: {}", e.code, e.message));
            }
            add_event(&mut tx, id, now, "status", &msg, Some(&data)).await?;
            if terminal {
                insert_outbox(&mut tx, id, obs.status, outbox, now).await?;
            }
        }
        tx.commit().await?;
        Ok(ApplyOutcome::Applied {
            from: row.status,
            to: obs.status,
        })
    }

    /// Reschedules a claimed poll that failed (upstream error) without changing the status.
    pub async fn reschedule_poll(&self, id: &str, at: i64, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET next_check_at = CASE WHEN wake_pending = 1 THEN ? ELSE ? END, updated_at = ? \
             WHERE id = ? AND status IN ('pending', 'queued', 'in_progress') \
             AND response_id IS NOT NULL",
        )
        .bind(now)
        .bind(at)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A webhook said something happened to this response: make its job due for a poll at
    /// once. Returns the job id, or `None` if no job has this response id (yet).
    pub async fn hint_response(
        &self,
        response_id: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE jobs SET next_check_at = ?, wake_pending = 1, updated_at = ? \
             WHERE response_id = ? AND status IN ('pending', 'queued', 'in_progress') RETURNING id",
        )
        .bind(now)
        .bind(now)
        .bind(response_id)
        .fetch_optional(&self.pool)
        .await?)
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

    /// Asks for a job to be cancelled (`reason`: `user` or `timeout`). Returns the row after.
    pub async fn request_cancel(
        &self,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Option<JobRow>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let changed = sqlx::query(
            "UPDATE jobs SET cancel_requested = 1, cancel_reason = COALESCE(cancel_reason, ?), \
             next_check_at = CASE WHEN status IN ('queued', 'in_progress') THEN ? ELSE next_check_at END, \
             wake_pending = 1, updated_at = ? \
             WHERE id = ? AND cancel_requested = 0 AND status IN ('pending', 'queued', 'in_progress')",
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
            add_event(&mut tx, id, now, "cancel_requested", msg, None).await?;
        }
        let row = fetch_job(&mut tx, id).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Jobs past their deadline that are not finished and not yet being cancelled.
    pub async fn due_timeouts(&self, now: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM jobs WHERE deadline_at <= ? AND cancel_requested = 0 \
             AND status IN ('pending', 'queued', 'in_progress') LIMIT 100",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Pending jobs asked to be cancelled that were never sent (or whose create was refused).
    pub async fn cancellable_unsubmitted(
        &self,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, cancel_reason FROM jobs WHERE status = 'pending' AND cancel_requested = 1 \
             AND submit_state = 'ready' LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The earliest time any job needs a worker, so workers can sleep until then.
    pub async fn next_check_at(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_check_at) FROM jobs WHERE status IN ('pending', 'queued', 'in_progress')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Counts of jobs by status (for metrics and the demo).
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
