//! The `jobs` table: the ledger. Claims for submission and polling, and every status write.
//!
//! Writers start with `BEGIN IMMEDIATE` so that a read-then-write transaction takes the write
//! lock up front (under SQLite's single writer a deferred transaction could fail to upgrade).

use super::lending::Conn;
use crate::store::sql;
use serde_json::Value;
use sqlx::{Any, AssertSqlSafe, FromRow, QueryBuilder};

use super::events::{EventKind, add_event};
use super::notifications::OutboxEntry;
use super::write_turns::Writer;
use super::{Store, StoreError};
use crate::job::{JobError, JobId, JobSpec, JobStatus, ResponseId};

const JOB_COLUMNS: &str = "id, name, model, status, spec, idempotency_key, spec_hash, response_id, \
    attempt, submit_state, submissions, created_at, updated_at, submitted_at, finished_at, \
    deadline_at, next_check_at, lease_until, poll_interval_ms, polls, wake_pending, \
    cancel_requested, cancel_reason, output_text, error_code, error_message, usage, retry_of, \
    web_search_calls, web_search_preview_calls, file_search_calls, code_containers, images, \
    image_fee_microusd, service_tier, turn, chain_id";

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
    /// The response asked for function outputs or approvals: they are being answered
    /// (`turns.rs`), then the next turn's create is `ready`.
    Acting,
    /// Not to be sent yet: it waits for the job it runs after, for its conversation's turn, or
    /// for its conversation to be created (`chains.rs`); then it is `ready`.
    Waiting,
}

impl SubmitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Submitting => "submitting",
            Self::Uncertain => "uncertain",
            Self::Done => "done",
            Self::Acting => "acting",
            Self::Waiting => "waiting",
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
            "acting" => Self::Acting,
            "waiting" => Self::Waiting,
            other => return Err(format!("unknown submit state `{other}`")),
        })
    }
}

/// A row of the ledger (without the stored response body, which can be large).
#[derive(Debug, Clone, FromRow)]
pub struct JobRow {
    pub id: JobId,
    pub name: String,
    pub model: String,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    #[sqlx(try_from = "crate::store::sql::JsonText<JobSpec>")]
    pub spec: JobSpec,
    pub idempotency_key: Option<String>,
    pub spec_hash: String,
    pub response_id: Option<ResponseId>,
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
    #[sqlx(try_from = "crate::store::sql::NullableJson")]
    pub usage: Option<Value>,
    /// The job this one retries, if it is a retry.
    pub retry_of: Option<JobId>,
    /// What its final response's hosted tools did, and its service tier (`tool_usage.rs`).
    #[sqlx(flatten)]
    pub tools: super::ToolColumns,
    /// The job's current turn, from 0 (each round of function outputs or approvals is one
    /// more, `turns.rs`).
    pub turn: i64,
    /// The chain the job belongs to (its first job's id), if it runs after another job or
    /// another runs after it (`chains.rs`).
    pub chain_id: Option<JobId>,
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

/// What inserting a retry did.
pub enum RetryOutcome {
    /// The new job, linked to the original (boxed: a row is large, the other answers small).
    Created(Box<JobRow>),
    /// No job has the original's id (never was, or pruned meanwhile).
    Missing,
    /// The original is not finished: only a terminal job can be retried.
    NotTerminal(JobStatus),
    /// The retry's idempotency key was seen before for this original: the retry made then.
    Existing(Box<JobRow>),
    /// The retry's idempotency key names a job that is not a retry of this original (a
    /// `POST /v1/jobs` key spelled like a namespaced retry key).
    KeyConflict(Box<JobRow>),
}

/// A claimed submission: the worker holds `attempt` and must write back with it.
#[derive(Debug, Clone, FromRow)]
pub struct SubmitClaim {
    pub id: JobId,
    pub attempt: i64,
    pub submissions: i64,
    #[sqlx(try_from = "crate::store::sql::JsonText<JobSpec>")]
    pub spec: JobSpec,
    /// 0 for the job's first create; more for a later turn's (`turns.rs`).
    pub turn: i64,
}

/// A claimed poll.
#[derive(Debug, Clone, FromRow)]
pub struct PollClaim {
    pub id: JobId,
    pub response_id: ResponseId,
    /// What to ask upstream to include, comma-separated (`JobSpec::retrieve_include`).
    pub retrieve_include: Option<String>,
    pub poll_interval_ms: i64,
    pub polls: i64,
    pub cancel_requested: i64,
    pub cancel_reason: Option<String>,
    pub deadline_at: Option<i64>,
}

/// A job whose create outcome is unknown and whose wait is over.
#[derive(Debug, Clone, FromRow)]
pub struct UncertainJob {
    pub id: JobId,
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
    /// The job had already ended: nothing is ever rewritten once terminal.
    Final(JobStatus),
    /// The response ended asking for function outputs or approvals: the turn is kept and the
    /// job acts on it (`turns.rs`).
    Acting { from: JobStatus },
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
    /// `x-request-id` of the upstream call that showed it, kept in the status event.
    pub request_id: Option<&'a str>,
    /// The artifacts to list if this observation finishes the job (their bytes already on
    /// disk).
    pub artifacts: &'a [super::NewArtifact],
    /// The image prices in force: a final response's images are priced at them when it is
    /// recorded (`tool_usage.rs`).
    pub image_prices: crate::pricing::ImagePrices,
}

/// Filters for listing jobs.
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub name: Option<String>,
    /// Only jobs using this model.
    pub model: Option<String>,
    /// Full-text search over name, input and output text: the user's words, each matched as a
    /// token (all must match); FTS5 syntax in the text is treated as plain words.
    pub search: Option<String>,
    /// Only jobs whose spec metadata has every one of these key = value pairs.
    pub metadata: Vec<(String, String)>,
    /// Only jobs created at or after this time (unix ms).
    pub since: Option<i64>,
    /// Only the jobs of this chain (its first job's id).
    pub chain: Option<String>,
    /// Cursor: only jobs that sort before this one (newest first).
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

/// Turns a user's search text into an FTS5 query that cannot be a syntax error: each
/// whitespace-separated word becomes a quoted string (inner `"` doubled), and the words are
/// ANDed. `None` when there is nothing to search for.
pub fn fts_query(text: &str) -> Option<String> {
    // Control characters go: SQLite would end the query string at a NUL, leaving an open quote.
    let terms: Vec<String> = text
        .split_whitespace()
        .map(|w| w.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

pub(super) async fn fetch_job(conn: &mut Conn, id: &str) -> Result<Option<JobRow>, StoreError> {
    Ok(job_query(id).fetch_optional(conn).await?)
}

/// The statement that reads the job `id`'s row.
fn job_query(id: &str) -> sql::QueryAs<JobRow> {
    static TEXT: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| {
        Box::leak(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?").into_boxed_str())
    });
    sql::query_as::<JobRow>(*TEXT).bind(id)
}

/// Inserts a validated job inside the caller's transaction (honouring its idempotency key)
/// and records `accepted`: [`Store::insert_job`], and the scheduler's runs, which are written
/// with their `schedule_runs` row.
pub(super) async fn insert_job_in(
    conn: &mut Conn,
    job: &NewJob,
) -> Result<InsertOutcome, StoreError> {
    if let Some(key) = &job.spec.idempotency_key {
        let existing: Option<String> =
            sql::query_scalar("SELECT id FROM jobs WHERE idempotency_key = ?")
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(id) = existing {
            let row = fetch_job(conn, &id)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("job {id} vanished")))?;
            return Ok(if row.spec_hash == job.spec_hash {
                InsertOutcome::Existing(row)
            } else {
                InsertOutcome::KeyConflict(row)
            });
        }
    }
    insert_row(&mut *conn, job, None).await?;
    add_event(
        conn,
        job.id.as_str(),
        job.now,
        EventKind::Accepted,
        &format!("accepted from {}", job.origin),
        None,
    )
    .await?;
    super::chains::enter_in(&mut *conn, job).await?;
    add_spec_warnings(conn, job).await?;
    let row = fetch_job(conn, job.id.as_str())
        .await?
        .ok_or_else(|| StoreError::Corrupt("inserted job vanished".into()))?;
    Ok(InsertOutcome::Created(row))
}

/// Records a `spec_warning` for each [`crate::job::SpecWarning`] of a job being taken in, so
/// its timeline says which fields OpenAI's schema does not name (data: `{"field": …}`).
async fn add_spec_warnings(conn: &mut Conn, job: &NewJob) -> Result<(), StoreError> {
    for w in job.spec.warnings() {
        add_event(
            &mut *conn,
            job.id.as_str(),
            job.now,
            EventKind::SpecWarning,
            &w.to_string(),
            Some(&serde_json::json!({ "field": w.field })),
        )
        .await?;
    }
    Ok(())
}

/// Writes a new `pending` job row (no events), `retry_of` naming the job it retries, if any.
async fn insert_row(
    conn: &mut Conn,
    job: &NewJob,
    retry_of: Option<&str>,
) -> Result<(), StoreError> {
    let spec_json =
        serde_json::to_string(&job.spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sql::query(
        "INSERT INTO jobs (id, name, model, status, spec, idempotency_key, spec_hash, created_at, \
         updated_at, deadline_at, next_check_at, priority, budget_exempt, retry_of, \
         retrieve_include) \
         VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .bind(job.spec.priority)
    .bind(i64::from(job.spec.budget_exempt))
    .bind(retry_of)
    .bind({
        let include = job.spec.retrieve_include();
        (!include.is_empty()).then(|| include.join(","))
    })
    .execute(&mut *conn)
    .await?;
    let mut files: Vec<(Option<&str>, &str)> = job
        .spec
        .attachments
        .iter()
        .map(|a| (None, a.as_str()))
        .collect();
    for set in &job.spec.knowledge {
        for f in set.files.iter().flatten() {
            files.push((Some(set.name.as_str()), f.as_str()));
        }
    }
    for (position, (set, attachment)) in files.into_iter().enumerate() {
        sql::query(
            "INSERT INTO job_attachments (job_id, position, attachment_id, knowledge) \
             VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(job.id.as_str())
        .bind(position as i64)
        .bind(attachment)
        .bind(set)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Inserts a validated job (honouring its idempotency key) and records `accepted`.
    pub async fn insert_job(&self, job: NewJob) -> Result<InsertOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let outcome = insert_job_in(&mut tx, &job).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Inserts jobs in one transaction (group commit, see [`crate::batch`]): each in its own
    /// savepoint, so one that fails (its answer is the error) takes nothing of the others
    /// with it. A job whose idempotency key an earlier one of the same batch took is that
    /// job's replay or conflict, as if they had come one after the other. If the transaction
    /// itself fails, every job's answer is the error.
    pub async fn insert_jobs(&self, jobs: &[NewJob]) -> Vec<Result<InsertOutcome, StoreError>> {
        // A client waits for each (its `POST` for its `201`).
        self.each_in_savepoint(Writer::Foreground, jobs, async |conn, job| {
            insert_job_in(conn, job).await
        })
        .await
    }

    /// Runs `write` for each item in a savepoint of its own, all in one `BEGIN IMMEDIATE`
    /// transaction (one commit, one fsync): an item whose write fails answers its error and
    /// leaves nothing behind, the others go on. One answer per item, in order; if the
    /// transaction itself fails, every answer is that error.
    ///
    /// A lone item (most batches when the daemon is not busy) is written in the transaction
    /// itself, rolled back if it fails: the same outcome without a savepoint's two round trips
    /// to the connection's thread and the full-text index flush each savepoint makes. So is a
    /// batch, first: the items' writes are the store's own statements, which fail only on a
    /// fault (their expected outcomes, a key seen before, a stale lease, are answers, not
    /// errors), so all of them usually go through; if one fails, the transaction is rolled
    /// back and the batch written again with a savepoint per item.
    pub(super) async fn each_in_savepoint<T, R>(
        &self,
        writer: Writer,
        items: &[T],
        mut write: impl AsyncFnMut(&mut Conn, &T) -> Result<R, StoreError>,
    ) -> Vec<Result<R, StoreError>> {
        let all = async {
            let mut tx = self.begin_write_as(writer).await?;
            if let [item] = items {
                return match write(&mut tx, item).await {
                    Ok(answer) => {
                        tx.commit().await?;
                        Ok(vec![Ok(answer)])
                    }
                    Err(e) => {
                        tx.rollback().await?;
                        Ok(vec![Err(e)])
                    }
                };
            }
            let mut answers = Vec::with_capacity(items.len());
            for item in items {
                match write(&mut tx, item).await {
                    Ok(answer) => answers.push(Ok(answer)),
                    Err(_) => break,
                }
            }
            if answers.len() == items.len() {
                tx.commit().await?;
                return Ok(answers);
            }
            // An item failed: nothing of this attempt stays (if the rollback itself fails, the
            // connection goes back to the pool, which finishes it).
            let _ = tx.rollback().await;
            answers.clear();
            let mut tx = self.begin_write_as(writer).await?;
            for item in items {
                sql::query("SAVEPOINT item").execute(&mut *tx).await?;
                match write(&mut tx, item).await {
                    Ok(answer) => {
                        sql::query("RELEASE item").execute(&mut *tx).await?;
                        answers.push(Ok(answer));
                    }
                    Err(e) => {
                        sql::query("ROLLBACK TO item").execute(&mut *tx).await?;
                        sql::query("RELEASE item").execute(&mut *tx).await?;
                        answers.push(Err(e));
                    }
                }
            }
            tx.commit().await?;
            Ok::<_, StoreError>(answers)
        };
        match all.await {
            Ok(answers) => answers,
            Err(e) => {
                let msg = crate::telemetry::chain(&e).to_string();
                items
                    .iter()
                    .map(|_| Err(StoreError::BatchFailed(msg.clone())))
                    .collect()
            }
        }
    }

    /// Inserts `job` as a retry of `original`, in one transaction with the timeline on both:
    /// `accepted` on the new job (data `retry_of`) and `retried` on the original (data
    /// `retried_by`). The original must exist and be terminal, checked inside the transaction.
    /// If the retry carries an idempotency key (namespaced by the caller, so it cannot meet a
    /// `POST /v1/jobs` key by accident) and a job already has it, nothing is written and that
    /// job is the answer: the lookup is inside the same `BEGIN IMMEDIATE` transaction as the
    /// insert, so two concurrent retries under one key make one job. The replay is checked
    /// before the original, so it answers even if retention pruned the original meanwhile.
    pub async fn insert_retry(
        &self,
        job: NewJob,
        original: &str,
    ) -> Result<RetryOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(key) = &job.spec.idempotency_key {
            let existing: Option<String> =
                sql::query_scalar("SELECT id FROM jobs WHERE idempotency_key = ?")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(id) = existing {
                let row = fetch_job(&mut tx, &id)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("job {id} vanished")))?;
                return Ok(if row.retry_of.as_deref() == Some(original) {
                    RetryOutcome::Existing(Box::new(row))
                } else {
                    RetryOutcome::KeyConflict(Box::new(row))
                });
            }
        }
        let Some(orig) = fetch_job(&mut tx, original).await? else {
            return Ok(RetryOutcome::Missing);
        };
        if !orig.status.is_terminal() {
            return Ok(RetryOutcome::NotTerminal(orig.status));
        }
        let new_id = job.id.as_str();
        insert_row(&mut tx, &job, Some(original)).await?;
        add_event(
            &mut tx,
            new_id,
            job.now,
            EventKind::Accepted,
            &format!("accepted as a retry of {original}"),
            Some(&serde_json::json!({ "retry_of": original })),
        )
        .await?;
        super::chains::enter_in(&mut tx, &job).await?;
        add_spec_warnings(&mut tx, &job).await?;
        add_event(
            &mut tx,
            original,
            job.now,
            EventKind::Retried,
            &format!("retried as {new_id}"),
            Some(&serde_json::json!({ "retried_by": new_id })),
        )
        .await?;
        let row = fetch_job(&mut tx, new_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("inserted job vanished".into()))?;
        tx.commit().await?;
        Ok(RetryOutcome::Created(Box::new(row)))
    }

    /// Ids of the jobs that retry this one, oldest first.
    pub async fn retried_by(&self, id: &JobId) -> Result<Vec<String>, StoreError> {
        Ok(
            sql::query_scalar("SELECT id FROM jobs WHERE retry_of = ? ORDER BY created_at, id")
                .bind(id)
                .fetch_all(&self.reads)
                .await?,
        )
    }

    /// Returns the job with this id.
    pub async fn get_job(&self, id: &JobId) -> Result<Option<JobRow>, StoreError> {
        Ok(job_query(id).fetch_optional(self.reads.quick()).await?)
    }

    /// Returns the job that owns an upstream response id.
    pub async fn find_job_by_response(
        &self,
        response_id: &ResponseId,
    ) -> Result<Option<JobRow>, StoreError> {
        Ok(sql::query_as::<JobRow>(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE response_id = ?"
        )))
        .bind(response_id)
        .fetch_optional(self.reads.quick())
        .await?)
    }

    /// Returns the stored upstream Response JSON of a job, whole but for the credentials of
    /// the tools it echoes ([`crate::job::redact::redact_response`]): every reader serves it
    /// onwards (the API, the web pages, notification payloads), and none needs them.
    pub async fn get_response(&self, id: &JobId) -> Result<Option<Value>, StoreError> {
        let raw: Option<Option<String>> =
            sql::query_scalar("SELECT response FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.reads)
                .await?;
        let mut response = raw
            .flatten()
            .map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()?;
        if let Some(r) = response.as_mut() {
            crate::job::redact::redact_response(r);
        }
        Ok(response)
    }

    /// Lists jobs newest first, filtered, one page at a time.
    pub async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<JobRow>, StoreError> {
        // The page's ids first, then their rows: the filters and the sort read only what they
        // need, so a search matching most jobs does not load and sort every matching row. Each
        // value is bound where its fragment is pushed, so fragments and binds cannot drift.
        let mut q = QueryBuilder::<Any>::new(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id IN (SELECT id FROM jobs WHERE 1 = 1"
        ));
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(n) = &f.name {
            q.push(" AND name = ").push_bind(n);
        }
        if let Some(m) = &f.model {
            q.push(" AND model = ").push_bind(m);
        }
        if let Some(s) = f.search.as_deref().and_then(fts_query) {
            match self.backend() {
                super::Backend::Sqlite => q.push(
                    " AND id IN (SELECT job_id FROM jobs_fts_keys WHERE fts_id IN \
                     (SELECT rowid FROM jobs_fts WHERE jobs_fts MATCH ",
                ),
                // The same words, matched the same way (migrations/postgres: `jobs_search`).
                super::Backend::Postgres => q.push(
                    " AND id IN (SELECT job_id FROM jobs_search WHERE doc @@ \
                     jobs_search_query(",
                ),
            }
            .push_bind(s)
            .push("))");
        }
        for (k, v) in &f.metadata {
            match self.backend() {
                super::Backend::Sqlite => q
                    .push(
                        " AND EXISTS (SELECT 1 FROM json_each(spec, '$.request.metadata') \
                         WHERE key = ",
                    )
                    .push_bind(k)
                    .push(" AND value = ")
                    .push_bind(v)
                    .push(")"),
                super::Backend::Postgres => q
                    // `json`, not `jsonb`: a spec may hold a `\u0000` escape, which only jsonb
                    // refuses (and only the metadata value is decoded here).
                    .push(" AND (CAST(spec AS json) -> 'request' -> 'metadata' ->> ")
                    .push_bind(k)
                    .push(") = ")
                    .push_bind(v),
            };
        }
        if let Some(c) = &f.chain {
            q.push(" AND chain_id = ").push_bind(c);
        }
        if let Some(s) = f.since {
            q.push(" AND created_at >= ").push_bind(s);
        }
        if let Some((at, id)) = &f.before {
            q.push(" AND (created_at < ")
                .push_bind(at)
                .push(" OR (created_at = ")
                .push_bind(at)
                .push(" AND id < ")
                .push_bind(id)
                .push("))");
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(f.limit)
            .push(") ORDER BY created_at DESC, id DESC");
        let rows = sql::built(&mut q).fetch_all(&self.reads).await?;
        // A row that does not decode (a quarantined job) is left out of the list rather than
        // failing it: one bad row must not hide every other job from the API, the pages and
        // the CLI. Its own timeline (`list_events`) still says why it was set aside. (A page
        // that holds one is a row short, and if that row was the one past the limit, a
        // caller counting rows for `has_more` stops a page early.)
        Ok(rows
            .iter()
            .filter_map(|row| match JobRow::from_row(row) {
                Ok(job) => Some(job),
                Err(e) => {
                    let id: Option<String> = sqlx::Row::try_get(row, "id").ok();
                    tracing::warn!(job_id = ?id, error = %e, "a job row does not decode; left out of the list");
                    None
                }
            })
            .collect())
    }

    /// Whether a job with this id exists, without decoding its row (a quarantined job's
    /// timeline must stay readable).
    pub async fn job_exists(&self, id: &JobId) -> Result<bool, StoreError> {
        Ok(sql::query_scalar::<i64>("SELECT 1 FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(self.reads.quick())
            .await?
            .is_some())
    }

    /// Jobs submitted upstream and not finished, plus those being submitted.
    pub async fn count_in_flight(&self) -> Result<i64, StoreError> {
        Ok(
            sql::query_scalar("SELECT CAST(COALESCE(SUM(n), 0) AS INTEGER) FROM in_flight_counts")
                .fetch_one(self.reads.quick())
                .await?,
        )
    }

    /// Counts of jobs by status (for metrics and the demo).
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sql::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status")
                .fetch_all(&self.reads)
                .await?,
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::fts_query;
    use super::{InsertOutcome, NewJob};
    use crate::job::{JobId, JobSpec};
    use crate::store::Store;
    use crate::store::sql;

    /// A store on a fresh file (kept as long as the directory).
    pub(crate) async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("j.db").display());
        (dir, Store::connect(&url).await.unwrap())
    }

    /// A database from before `retrieve_include` (every earlier migration applied) gets the
    /// column filled for its unfinished jobs by the rules of `JobSpec::retrieve_include`, and
    /// left NULL for finished ones and jobs without tools (a spec is always JSON: the table
    /// checks it); a new job
    /// gets it when it is inserted.
    #[tokio::test]
    async fn retrieve_include_is_backfilled_and_written_by_the_same_rules() {
        use sqlx::migrate::Migrator;
        const MIGRATION: &str = "20261205000016_retrieve_include.sql";
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("migrations");
        std::fs::create_dir(&old).unwrap();
        let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for entry in std::fs::read_dir(all).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if name.as_str() < MIGRATION {
                std::fs::copy(&path, old.join(&name)).unwrap();
            }
        }
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
        crate::store::install_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        Migrator::new(old.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        let tooled = JobSpec::from_value(
            serde_json::json!({"model": "o3-deep-research", "input": "x",
                "tools": [{"type": "web_search_preview"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
                          {"type": "code_interpreter", "container": {"type": "auto"}},
                          {"type": "function", "name": "f", "parameters": {}}],
                "include": ["message.output_text.logprobs", "web_search_call.action.sources"]}),
            "#1",
        )
        .unwrap();
        let plain =
            JobSpec::from_value(serde_json::json!({"model": "m", "input": "x"}), "#1").unwrap();
        let tooled_json = serde_json::to_string(&tooled).unwrap();
        let rows = [
            ("pending", tooled_json.clone()),
            ("in_progress", tooled_json.clone()),
            ("completed", tooled_json),
            ("pending", serde_json::to_string(&plain).unwrap()),
            // A tools list with a bare string in it (no intake makes one; the backfill must
            // not stop on it).
            (
                "queued",
                r#"{"name": "n", "request": {"tools": ["web_search", {"type": "file_search"}]}}"#
                    .to_string(),
            ),
        ];
        let mut ids = Vec::new();
        for (status, spec) in &rows {
            let id = JobId::generate();
            sql::query(
                "INSERT INTO jobs (id, name, model, status, spec, spec_hash, created_at, updated_at) \
                 VALUES (?, 'n', 'm', ?, ?, 'h', 1, 1)",
            )
            .bind(&id)
            .bind(*status)
            .bind(spec)
            .execute(&pool)
            .await
            .unwrap();
            ids.push(id);
        }
        pool.close().await;
        let store = Store::connect(&url).await.unwrap();
        let want = tooled.retrieve_include().join(",");
        assert_eq!(
            want,
            "code_interpreter_call.outputs,file_search_call.results,message.output_text.logprobs,web_search_call.action.sources"
        );
        let got = async |id: &JobId| -> Option<String> {
            sql::query_scalar("SELECT retrieve_include FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_one(&store.reads)
                .await
                .unwrap()
        };
        assert_eq!(got(&ids[0]).await.as_deref(), Some(want.as_str()));
        assert_eq!(got(&ids[1]).await.as_deref(), Some(want.as_str()));
        for id in &ids[2..4] {
            assert_eq!(got(id).await, None);
        }
        assert_eq!(
            got(&ids[4]).await.as_deref(),
            Some("file_search_call.results")
        );
        // A job taken in now gets the same list.
        let id = JobId::generate();
        store
            .insert_job(NewJob {
                id: id.clone(),
                spec: tooled.clone(),
                spec_hash: "h2".into(),
                now: 2,
                deadline_at: None,
                origin: "test".into(),
            })
            .await
            .unwrap();
        assert_eq!(got(&id).await.as_deref(), Some(want.as_str()));
    }

    pub(crate) fn job(name: &str, key: Option<&str>, input: &str) -> NewJob {
        let mut v = serde_json::json!({"name": name, "model": "gpt-5", "input": input});
        if let Some(k) = key {
            v["idempotency_key"] = k.into();
        }
        let spec = JobSpec::from_value(v, "#1").unwrap();
        NewJob {
            id: JobId::generate(),
            spec_hash: crate::orchestrator::spec_hash(&spec),
            spec,
            now: 1_000,
            deadline_at: None,
            origin: "test".into(),
        }
    }

    /// One batch, every kind of answer: a new job, a replay and a conflict of a key taken
    /// earlier in the same batch, and a job that cannot be inserted (its id is taken), which
    /// takes nothing of the others with it.
    #[tokio::test]
    async fn a_batch_of_jobs_answers_each_as_if_alone() {
        let (_dir, store) = store().await;
        let first = job("a", Some("k1"), "Größe ✅");
        let mut clash = job("clash", None, "x");
        clash.id = first.id.clone();
        let batch = vec![
            first,
            job("a", Some("k1"), "Größe ✅"),
            job("b", Some("k1"), "something else"),
            clash,
            job("c", None, &"long ".repeat(10_000)),
        ];
        let out = store.insert_jobs(&batch).await;
        assert_eq!(out.len(), 5);
        assert!(matches!(out[0], Ok(InsertOutcome::Created(_))));
        match &out[1] {
            Ok(InsertOutcome::Existing(row)) => assert_eq!(row.id, batch[0].id.as_str()),
            _ => panic!("the replay is not the first job"),
        }
        assert!(matches!(out[2], Ok(InsertOutcome::KeyConflict(_))));
        assert!(out[3].is_err(), "a taken id is refused");
        assert!(matches!(out[4], Ok(InsertOutcome::Created(_))));
        let names: Vec<String> = sql::query_scalar("SELECT name FROM jobs ORDER BY name")
            .fetch_all(&store.pool_for_tests())
            .await
            .unwrap();
        assert_eq!(names, ["a", "c"]);
        let accepted: i64 =
            sql::query_scalar("SELECT COUNT(*) FROM job_events WHERE kind = 'accepted'")
                .fetch_one(&store.pool_for_tests())
                .await
                .unwrap();
        assert_eq!(accepted, 2, "the refused job left no event behind");
        store.close().await;
    }

    /// A batch of one is written without a savepoint: one that fails answers its error,
    /// leaves nothing behind (its transaction is rolled back, not left open on the pooled
    /// connection), and the next batch of one goes in.
    #[tokio::test]
    async fn a_lone_job_that_fails_leaves_nothing_and_the_next_goes_in() {
        let (_dir, store) = store().await;
        let first = job("first", None, "ascii");
        let mut clash = job("clash", Some("k2"), "Größe ✅");
        clash.id = first.id.clone();
        assert!(matches!(
            store.insert_jobs(std::slice::from_ref(&first)).await[..],
            [Ok(InsertOutcome::Created(_))]
        ));
        let out = store.insert_jobs(std::slice::from_ref(&clash)).await;
        assert!(matches!(out[..], [Err(_)]), "a taken id is refused");
        assert!(
            !matches!(out[0], Err(crate::store::StoreError::BatchFailed(_))),
            "the item's own error, not a failed batch"
        );
        let then = job("then", Some("k2"), "x");
        assert!(matches!(
            store.insert_jobs(std::slice::from_ref(&then)).await[..],
            [Ok(InsertOutcome::Created(_))]
        ));
        let rows: Vec<(String, i64)> = sql::query_as(
            "SELECT name, (SELECT COUNT(*) FROM job_events e WHERE e.job_id = jobs.id) \
             FROM jobs ORDER BY name",
        )
        .fetch_all(&store.pool_for_tests())
        .await
        .unwrap();
        assert_eq!(rows, [("first".to_owned(), 1), ("then".to_owned(), 1)]);
        let found = store
            .list_jobs(&crate::store::JobFilter {
                search: Some("Größe".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(found.is_empty(), "the refused job was not indexed");
        store.close().await;
    }

    /// A lone item whose write fails after writing something leaves none of it behind: its
    /// transaction is rolled back, as a savepoint of a larger batch would be.
    #[tokio::test]
    async fn a_lone_item_that_fails_midway_is_rolled_back() {
        let (_dir, store) = store().await;
        let lone = job("midway", None, "written, then refused");
        let out = store
            .each_in_savepoint(
                super::Writer::Background,
                std::slice::from_ref(&lone),
                async |conn, j| {
                    super::insert_job_in(conn, j).await?;
                    Err::<(), _>(crate::store::StoreError::Corrupt(
                        "refused after a write".into(),
                    ))
                },
            )
            .await;
        assert!(
            matches!(&out[..], [Err(crate::store::StoreError::Corrupt(_))]),
            "{out:?}"
        );
        let (jobs, events): (i64, i64) =
            sql::query_as("SELECT (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM job_events)")
                .fetch_one(&store.pool_for_tests())
                .await
                .unwrap();
        assert_eq!(
            (jobs, events),
            (0, 0),
            "the lone item's writes were rolled back"
        );
        store.close().await;
    }

    #[test]
    fn search_text_is_quoted_word_by_word() {
        assert_eq!(
            fts_query("foo OR -bar:").as_deref(),
            Some(r#""foo" "OR" "-bar:""#)
        );
        assert_eq!(fts_query(r#"say "hi"#).as_deref(), Some(r#""say" """hi""#));
        assert_eq!(fts_query("a\0b").as_deref(), Some(r#""ab""#));
        assert_eq!(fts_query("  \0 "), None);
    }
}
