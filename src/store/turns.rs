//! Turns of jobs that act (migration `20261206000021_turns.sql`): a response that ends asking
//! for function outputs or MCP approvals is recorded as one turn of its job with the actions
//! it asked for; handlers, policies and people answer them; then the job's next turn is sent
//! like a create (the same claim, fencing and uncertain-create rules).
//!
//! An action moves `new → ready → running → done` (a handler), `new → waiting → done` (a
//! person) or `new → done` (a policy). `running` is written *before* a handler starts, so a
//! crash mid-run is seen afterwards and the handler is not run again unless it is idempotent.

use super::lending::Conn;
use crate::store::sql;
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;

use super::events::{EventKind, add_event};
use super::notifications::OutboxEntry;
use super::{Store, StoreError};
use crate::job::handler::{ActionKind, Answer, Asked};
use crate::job::{JobError, JobId, JobSpec, JobStatus, Observation};

/// One action of a turn, as stored.
#[derive(Debug, Clone, FromRow, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ActionRow {
    /// The turn whose response asked (0 is the first response).
    pub turn: i64,
    /// `call_…` of a function call, `mcpr_…` of an MCP approval request.
    pub item_id: String,
    /// `function` or `approval`.
    pub kind: String,
    /// The function's name, or the MCP tool's.
    pub name: String,
    /// The MCP server's label (approvals).
    pub server_label: Option<String>,
    /// The arguments, a JSON string as the model wrote it.
    pub arguments: String,
    /// `new`, `ready`, `running`, `waiting` (for a person) or `done`.
    pub state: String,
    /// The handler that answers it (a function name of the job's `handlers:` or the config's
    /// `functions:`), if any.
    pub handler: Option<String>,
    /// How many times a handler was started for it.
    pub runs: i64,
    /// A function's output, or an approval's answer as JSON (`{"approve", "reason"}`).
    pub output: Option<String>,
    /// Who answered: `handler`, `person`, `policy` or `respool` (an error output it wrote).
    pub answered_by: Option<String>,
    /// What went wrong with its handler, if anything.
    pub error: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl ActionRow {
    pub fn kind(&self) -> Option<ActionKind> {
        ActionKind::try_from(self.kind.clone()).ok()
    }

    /// Its answer for the next turn's input, once it has one.
    pub fn answer(&self) -> Option<Answer> {
        Some(Answer {
            item_id: self.item_id.clone(),
            kind: self.kind()?,
            output: self.output.clone()?,
        })
    }
}

/// A job whose turn's actions are due to be looked at (see [`Store::claim_acting`]).
#[derive(Debug, Clone, FromRow)]
pub struct ActingClaim {
    pub id: JobId,
    pub attempt: i64,
    pub turn: i64,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    #[sqlx(json)]
    pub spec: JobSpec,
    pub cancel_requested: i64,
    pub cancel_reason: Option<String>,
    pub deadline_at: Option<i64>,
}

/// How the acting worker settles an action it looked at.
#[derive(Debug, Clone)]
pub enum Settle {
    /// A handler will answer it.
    Handler(String),
    /// A person must answer.
    Person,
    /// Answered now (a policy's approval, or respool's own error output).
    Answered {
        output: String,
        by: &'static str,
        error: Option<String>,
    },
}

/// A handler's answer to one action (or respool's error output in its place).
#[derive(Debug, Clone, Copy)]
pub struct HandlerAnswer<'a> {
    pub output: &'a str,
    /// `handler`, or `respool` for an error output.
    pub by: &'a str,
    /// What went wrong, when it did.
    pub error: Option<&'a str>,
}

/// How an acting job ends (see [`Store::finish_acting`]).
#[derive(Debug, Clone, Copy)]
pub struct ActingEnd<'a> {
    pub status: JobStatus,
    pub error: &'a JobError,
    /// The image prices in force, for the tool fees of its turns.
    pub image_prices: crate::pricing::ImagePrices,
}

/// One answer a person gives (`POST /v1/jobs/{id}/respond`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonAnswer {
    pub item_id: String,
    /// What it must answer: a function's output, or an approval.
    pub kind: ActionKind,
    pub output: String,
}

/// What a person's answers did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Responded {
    /// Taken; `remaining` actions of the turn still wait for a person.
    Taken { remaining: usize },
    /// The job does not wait for a person (its status is given).
    NotWaiting(JobStatus),
    /// An answer names nothing that waits (`(index, reason)`).
    Unknown(usize, String),
    /// No such job.
    Missing,
}

/// Records, inside [`super::observations`]' transaction, that the job's current turn ended
/// asking for `asked`: the turn's response and usage are kept, the actions stored `new`, and
/// the job moves to `acting` without a response (the next turn's create will bring one).
/// `usage` is the job's usage so far, every turn together.
pub(super) async fn record_turn_in(
    tx: &mut Conn,
    row: &super::JobRow,
    obs: &Observation,
    asked: &[Asked],
    usage: Option<&Value>,
    now: i64,
) -> Result<(), StoreError> {
    let (id, turn, from) = (&row.id, row.turn, row.status);
    let turn_usage = obs.usage.as_ref().map(ToString::to_string);
    let tokens = obs
        .usage
        .as_ref()
        .map(super::tokens::TokenCounts::from_usage);
    sql::query(
        "INSERT INTO job_turns (job_id, turn, response_id, response, usage, input_tokens, cached_tokens, \
         output_tokens, reasoning_tokens, total_tokens, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(turn)
    .bind(&obs.response_id)
    .bind(obs.raw.to_string())
    .bind(turn_usage)
    .bind(tokens.map(|t| t.input))
    .bind(tokens.map(|t| t.cached))
    .bind(tokens.map(|t| t.output))
    .bind(tokens.map(|t| t.reasoning))
    .bind(tokens.map(|t| t.total))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for a in asked {
        sql::query(
            "INSERT INTO job_actions (job_id, turn, item_id, kind, name, server_label, arguments, state) \
             VALUES (?, ?, ?, ?, ?, ?, ?, 'new') ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(turn)
        .bind(&a.item_id)
        .bind(a.kind.as_str())
        .bind(&a.name)
        .bind(&a.server_label)
        .bind(&a.arguments)
        .execute(&mut *tx)
        .await?;
    }
    let usage_text = usage.map(ToString::to_string);
    sql::query(
        "UPDATE jobs SET status = 'in_progress', response_id = NULL, submit_state = 'acting', \
         response = ?, output_text = NULL, usage = COALESCE(?, usage), \
         input_tokens = COALESCE(?, input_tokens), cached_tokens = COALESCE(?, cached_tokens), \
         output_tokens = COALESCE(?, output_tokens), reasoning_tokens = COALESCE(?, reasoning_tokens), \
         total_tokens = COALESCE(?, total_tokens), \
         next_check_at = ?, lease_until = NULL, lease_owner = NULL, wake_pending = 0, \
         polls_not_found = 0, poll_errors = 0, updated_at = ? WHERE id = ? AND turn = ? AND response_id = ?",
    )
    .bind(obs.raw.to_string())
    .bind(usage_text)
    .bind_total(usage)
    .bind(now)
    .bind(now)
    .bind(id)
    .bind(turn)
    .bind(&obs.response_id)
    .execute(&mut *tx)
    .await?;
    let functions: Vec<String> = asked
        .iter()
        .filter(|a| a.kind == ActionKind::Function)
        .map(|a| format!("{} ({})", a.name, a.item_id))
        .collect();
    let approvals: Vec<String> = asked
        .iter()
        .filter(|a| a.kind == ActionKind::Approval)
        .map(|a| {
            format!(
                "{}.{} ({})",
                a.server_label.as_deref().unwrap_or("?"),
                a.name,
                a.item_id
            )
        })
        .collect();
    let mut parts = Vec::new();
    if !functions.is_empty() {
        parts.push(format!(
            "{} function call{}: {}",
            functions.len(),
            if functions.len() == 1 { "" } else { "s" },
            functions.join(", ")
        ));
    }
    if !approvals.is_empty() {
        parts.push(format!(
            "{} MCP approval{}: {}",
            approvals.len(),
            if approvals.len() == 1 { "" } else { "s" },
            approvals.join(", ")
        ));
    }
    let msg = format!(
        "turn {} ({}) asks for {}",
        turn + 1,
        obs.response_id,
        parts.join("; ")
    );
    let data = serde_json::json!({
        "turn": turn, "response_id": obs.response_id, "from": from.as_str(),
        "actions": asked,
    });
    add_event(&mut *tx, id, now, EventKind::Actions, &msg, Some(&data)).await?;
    Ok(())
}

/// Binds the five token columns of a usage (NULLs without one).
trait BindTotal {
    fn bind_total(self, usage: Option<&Value>) -> Self;
}

impl BindTotal for crate::store::sql::Query {
    fn bind_total(self, usage: Option<&Value>) -> Self {
        let t = usage.map(super::tokens::TokenCounts::from_usage);
        self.bind(t.map(|t| t.input))
            .bind(t.map(|t| t.cached))
            .bind(t.map(|t| t.output))
            .bind(t.map(|t| t.reasoning))
            .bind(t.map(|t| t.total))
    }
}

/// Every turn's response of a job as one for pricing its hosted tools: the outputs of the
/// earlier turns, then `last`'s (the final response, if there is one), under `last`'s (or the
/// last turn's) other fields. `None` when there is nothing.
pub(super) async fn merged_turns(
    conn: &mut Conn,
    id: &JobId,
    last: Option<&Value>,
) -> Result<Option<Value>, StoreError> {
    let rows: Vec<String> =
        sql::query_scalar("SELECT response FROM job_turns WHERE job_id = ? ORDER BY turn")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    let mut responses: Vec<Value> = rows
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect();
    if let Some(l) = last {
        responses.push(l.clone());
    }
    let Some(mut merged) = responses.last().cloned() else {
        return Ok(None);
    };
    let output: Vec<Value> = responses
        .iter()
        .filter_map(|r| r.get("output").and_then(Value::as_array))
        .flatten()
        .cloned()
        .collect();
    if let Some(o) = merged.as_object_mut() {
        o.insert("output".into(), Value::Array(output));
    }
    Ok(Some(merged))
}

/// The usage of every earlier turn of a job, summed (`None` when it has none).
pub(super) async fn earlier_usage(
    conn: &mut Conn,
    id: &JobId,
) -> Result<Option<Value>, StoreError> {
    let rows: Vec<Option<String>> =
        sql::query_scalar("SELECT usage FROM job_turns WHERE job_id = ? ORDER BY turn")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    let mut total: Option<Value> = None;
    for u in rows.into_iter().flatten() {
        if let Ok(v) = serde_json::from_str::<Value>(&u) {
            total = Some(match total {
                None => v,
                Some(t) => crate::job::handler::sum_usage(&t, &v),
            });
        }
    }
    Ok(total)
}

const ACTION_COLUMNS: &str = "turn, item_id, kind, name, server_label, arguments, state, handler, runs, \
     output, answered_by, error, started_at, finished_at";

impl Store {
    /// Claims up to `limit` jobs whose turn's actions are due to be looked at (just asked, a
    /// person answered, a handler's lease ran out): their `next_check_at` moves `lease_ms` on,
    /// so no other pass takes them meanwhile.
    pub async fn claim_acting(
        &self,
        now: i64,
        lease: super::Lease<'_>,
        limit: i64,
    ) -> Result<Vec<ActingClaim>, StoreError> {
        let mut tx = self.begin_write().await?;
        type Raw = (
            String,
            i64,
            i64,
            String,
            String,
            i64,
            Option<String>,
            Option<i64>,
        );
        let rows: Vec<Raw> = sql::query_as(
            "UPDATE jobs SET next_check_at = ?, lease_owner = ?, updated_at = ? WHERE id IN \
             (SELECT id FROM jobs INDEXED BY jobs_acting WHERE submit_state = 'acting' \
              AND quarantine IS NULL AND next_check_at <= ? ORDER BY next_check_at LIMIT ?) \
             RETURNING id, attempt, turn, status, spec, cancel_requested, cancel_reason, deadline_at",
        )
        .bind(now.saturating_add(lease.ms))
        .bind(lease.owner)
        .bind(now)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        // A row that does not decode is set aside; the others go on.
        let mut out = Vec::with_capacity(rows.len());
        for (id, attempt, turn, status, spec, cancel_requested, cancel_reason, deadline_at) in rows
        {
            let decoded = JobId::parse(&id)
                .map_err(|e| e.to_string())
                .and_then(|id| Ok((id, JobStatus::try_from(status)?)))
                .and_then(|(id, status)| {
                    let spec = serde_json::from_str::<JobSpec>(&spec)
                        .map_err(|e| format!("its stored spec does not decode: {e}"))?;
                    Ok((id, status, spec))
                });
            match decoded {
                Ok((id, status, spec)) => out.push(ActingClaim {
                    id,
                    attempt,
                    turn,
                    status,
                    spec,
                    cancel_requested,
                    cancel_reason,
                    deadline_at,
                }),
                Err(reason) => {
                    tracing::error!(job_id = %id, %reason, "an acting job does not decode; setting it aside");
                    self.quarantine_job(&id, &reason, now).await?;
                }
            }
        }
        Ok(out)
    }

    /// Pushes an acting job's lease on while its handlers run.
    pub async fn hold_acting(&self, id: &JobId, until: i64) -> Result<(), StoreError> {
        sql::query(
            "UPDATE jobs SET next_check_at = MAX(COALESCE(next_check_at, 0), ?) \
             WHERE id = ? AND submit_state = 'acting' AND status IN ('in_progress', 'requires_action')",
        )
        .bind(until)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The actions of one turn of a job, in the order they were asked.
    pub async fn turn_actions(&self, id: &JobId, turn: i64) -> Result<Vec<ActionRow>, StoreError> {
        Ok(sql::query_as::<ActionRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLUMNS} FROM job_actions WHERE job_id = ? AND turn = ? ORDER BY rowid"
        )))
        .bind(id)
        .bind(turn)
        .fetch_all(&self.reads)
        .await?)
    }

    /// Every action of a job, turn by turn.
    pub async fn job_actions(&self, id: &JobId) -> Result<Vec<ActionRow>, StoreError> {
        Ok(sql::query_as::<ActionRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLUMNS} FROM job_actions WHERE job_id = ? ORDER BY turn, rowid"
        )))
        .bind(id)
        .fetch_all(&self.reads)
        .await?)
    }

    /// The response of an earlier turn of a job, if that turn was recorded.
    pub async fn turn_response_id(
        &self,
        id: &JobId,
        turn: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(
            sql::query_scalar("SELECT response_id FROM job_turns WHERE job_id = ? AND turn = ?")
                .bind(id)
                .bind(turn)
                .fetch_optional(&self.reads)
                .await?,
        )
    }

    /// The responses of a job's earlier turns, oldest first: `(turn, response id, response)`.
    pub async fn turn_responses(
        &self,
        id: &JobId,
    ) -> Result<Vec<(i64, String, Value)>, StoreError> {
        let rows: Vec<(i64, String, String)> = sql::query_as(
            "SELECT turn, response_id, response FROM job_turns WHERE job_id = ? ORDER BY turn",
        )
        .bind(id)
        .fetch_all(&self.reads)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(t, r, body)| {
                let mut v = serde_json::from_str(&body).unwrap_or(Value::Null);
                crate::job::redact::redact_response(&mut v);
                (t, r, v)
            })
            .collect())
    }

    /// Settles the `new` actions of an acting job's turn (handler, person or answered now).
    /// When one waits for a person, the job moves to `requires_action` (an event, and the
    /// outbox rows for sinks that hear of it) and is not looked at again until someone
    /// answers or its deadline passes. Conditional on the claim: `attempt` and `turn`.
    pub async fn settle_actions(
        &self,
        claim: &ActingClaim,
        settled: &[(String, Settle)],
        now: i64,
        wait_until: i64,
        outbox: &[OutboxEntry],
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let still: Option<i64> = sql::query_scalar(
            "SELECT 1 FROM jobs WHERE id = ? AND attempt = ? AND turn = ? AND submit_state = 'acting' \
             AND status IN ('in_progress', 'requires_action')",
        )
        .bind(&claim.id)
        .bind(claim.attempt)
        .bind(claim.turn)
        .fetch_optional(&mut *tx)
        .await?;
        if still.is_none() {
            tx.rollback().await?;
            return Ok(false);
        }
        for (item_id, s) in settled {
            let (state, handler, output, by, error, finished) = match s {
                Settle::Handler(h) => ("ready", Some(h.as_str()), None, None, None, None),
                Settle::Person => ("waiting", None, None, None, None, None),
                Settle::Answered { output, by, error } => (
                    "done",
                    None,
                    Some(output.as_str()),
                    Some(*by),
                    error.as_deref(),
                    Some(now),
                ),
            };
            sql::query(
                "UPDATE job_actions SET state = ?, handler = ?, output = ?, answered_by = ?, error = ?, \
                 finished_at = ? WHERE job_id = ? AND item_id = ? AND turn = ? AND state = 'new'",
            )
            .bind(state)
            .bind(handler)
            .bind(output)
            .bind(by)
            .bind(error)
            .bind(finished)
            .bind(&claim.id)
            .bind(item_id)
            .bind(claim.turn)
            .execute(&mut *tx)
            .await?;
        }
        let waiting: Vec<(String, String, Option<String>)> = sql::query_as(
            "SELECT kind, name, server_label FROM job_actions WHERE job_id = ? AND turn = ? AND state = 'waiting' ORDER BY rowid",
        )
        .bind(&claim.id)
        .bind(claim.turn)
        .fetch_all(&mut *tx)
        .await?;
        if !waiting.is_empty() && claim.status == JobStatus::InProgress {
            // Handlers still to run keep the claim's lease (`next_check_at`); a wait alone is
            // looked at again when someone answers, or when it runs out (`wait_until`, bounded
            // by the job's own deadline).
            let handlers_left: i64 = sql::query_scalar(
                "SELECT COUNT(*) FROM job_actions WHERE job_id = ? AND turn = ? AND state IN ('ready', 'running')",
            )
            .bind(&claim.id)
            .bind(claim.turn)
            .fetch_one(&mut *tx)
            .await?;
            sql::query(
                "UPDATE jobs SET status = 'requires_action', \
                 next_check_at = CASE WHEN ? > 0 THEN next_check_at ELSE NULL END, \
                 wait_until = MIN(?, COALESCE(deadline_at, ?)), updated_at = ? \
                 WHERE id = ? AND status = 'in_progress'",
            )
            .bind(handlers_left)
            .bind(wait_until)
            .bind(wait_until)
            .bind(now)
            .bind(&claim.id)
            .execute(&mut *tx)
            .await?;
            let what: Vec<String> = waiting
                .iter()
                .map(|(kind, name, server)| match (kind.as_str(), server) {
                    ("approval", Some(s)) => format!("an approval of {s}.{name}"),
                    _ => format!("the output of {name}"),
                })
                .collect();
            let msg = format!(
                "in_progress → requires_action: waiting for a person to give {}",
                what.join(", ")
            );
            let data = serde_json::json!({"from": "in_progress", "to": "requires_action", "turn": claim.turn});
            add_event(
                &mut tx,
                &claim.id,
                now,
                EventKind::Status,
                &msg,
                Some(&data),
            )
            .await?;
            rearm_requires_action(&mut tx, &claim.id, outbox, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Marks a `ready` action `running` (before its handler starts, so a crash is seen).
    /// Returns whether it was `ready`.
    pub async fn start_action(
        &self,
        id: &JobId,
        turn: i64,
        item_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        // Only while the job still acts on this turn: a cancel, a timeout or a failed sibling
        // handler stops the handlers not started yet. Under the write lock: the job's row is
        // only read here, so on PostgreSQL a cancel another daemon commits meanwhile would not
        // be seen and the handler would start for a cancelled job.
        let statement = sql::query(
            "UPDATE job_actions SET state = 'running', runs = runs + 1, started_at = ? \
             WHERE job_id = ? AND turn = ? AND item_id = ? AND state = 'ready' \
             AND EXISTS (SELECT 1 FROM jobs WHERE jobs.id = job_actions.job_id AND jobs.turn = job_actions.turn \
                         AND jobs.submit_state = 'acting' AND jobs.cancel_requested = 0 \
                         AND jobs.status IN ('in_progress', 'requires_action'))",
        )
        .bind(now)
        .bind(id)
        .bind(turn)
        .bind(item_id);
        Ok(self.execute_locked(statement).await? == 1)
    }

    /// Sends an interrupted `running` action back to `ready` (its handler is idempotent).
    pub async fn rerun_action(
        &self,
        id: &JobId,
        turn: i64,
        item_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(sql::query(
            "UPDATE job_actions SET state = 'ready' WHERE job_id = ? AND turn = ? AND item_id = ? AND state = 'running'",
        )
        .bind(id)
        .bind(turn)
        .bind(item_id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Records an action's answer (a handler's output, or respool's error output) with a
    /// timeline event. Returns whether it was still unanswered.
    pub async fn finish_action(
        &self,
        id: &JobId,
        (turn, item_id): (i64, &str),
        answer: HandlerAnswer<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let HandlerAnswer { output, by, error } = answer;
        let mut tx = self.begin_write().await?;
        let row: Option<(String, i64)> = sql::query_as(
            "UPDATE job_actions SET state = 'done', output = ?, answered_by = ?, error = ?, finished_at = ? \
             WHERE job_id = ? AND turn = ? AND item_id = ? AND state IN ('ready', 'running') RETURNING name, runs",
        )
        .bind(output)
        .bind(by)
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(turn)
        .bind(item_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((name, _)) = &row {
            let msg = match error {
                None => format!(
                    "{name} ({item_id}) answered by its handler: {} of output",
                    bytes(output.len())
                ),
                Some(e) => format!("{name} ({item_id}) failed: {e}"),
            };
            let data = serde_json::json!({"item_id": item_id, "name": name, "by": by, "error": error, "output_bytes": output.len()});
            add_event(&mut tx, id, now, EventKind::Action, &msg, Some(&data)).await?;
        }
        tx.commit().await?;
        Ok(row.is_some())
    }

    /// A person's answers to a job waiting in `requires_action`. Every answer must name an
    /// action of the current turn that waits for a person, of the right kind; then all are
    /// taken in one transaction (or none). When nothing waits any more the job goes back to
    /// `in_progress` and is due for its next turn.
    pub async fn respond(
        &self,
        id: &JobId,
        answers: &[PersonAnswer],
        now: i64,
    ) -> Result<Responded, StoreError> {
        let mut tx = self.begin_write().await?;
        let job: Option<(String, i64)> =
            sql::query_as("SELECT status, turn FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((status, turn)) = job else {
            return Ok(Responded::Missing);
        };
        let status = JobStatus::try_from(status).map_err(StoreError::Corrupt)?;
        if status != JobStatus::RequiresAction {
            return Ok(Responded::NotWaiting(status));
        }
        let waiting: Vec<(String, String, String)> = sql::query_as(
            "SELECT item_id, kind, name FROM job_actions WHERE job_id = ? AND turn = ? AND state = 'waiting'",
        )
        .bind(id)
        .bind(turn)
        .fetch_all(&mut *tx)
        .await?;
        for (i, a) in answers.iter().enumerate() {
            if answers[..i].iter().any(|b| b.item_id == a.item_id) {
                return Ok(Responded::Unknown(
                    i,
                    format!("{} is answered twice", a.item_id),
                ));
            }
            match waiting.iter().find(|(item, _, _)| *item == a.item_id) {
                None => {
                    let names: Vec<&str> = waiting.iter().map(|(i, _, _)| i.as_str()).collect();
                    return Ok(Responded::Unknown(
                        i,
                        format!(
                            "nothing of this job waits for an answer to {}; waiting: {}",
                            a.item_id,
                            names.join(", ")
                        ),
                    ));
                }
                Some((_, kind, name)) if kind != a.kind.as_str() => {
                    let wanted = match kind.as_str() {
                        "approval" => "`approve` (true or false)",
                        _ => "`output`",
                    };
                    return Ok(Responded::Unknown(
                        i,
                        format!("{} ({name}) is answered with {wanted}", a.item_id),
                    ));
                }
                Some(_) => {}
            }
        }
        for a in answers {
            sql::query(
                "UPDATE job_actions SET state = 'done', output = ?, answered_by = 'person', finished_at = ? \
                 WHERE job_id = ? AND turn = ? AND item_id = ? AND state = 'waiting'",
            )
            .bind(&a.output)
            .bind(now)
            .bind(id)
            .bind(turn)
            .bind(&a.item_id)
            .execute(&mut *tx)
            .await?;
            let name = waiting
                .iter()
                .find(|(item, _, _)| *item == a.item_id)
                .map_or("", |(_, _, n)| n.as_str());
            let msg = match a.kind {
                ActionKind::Approval => {
                    let v: Value = serde_json::from_str(&a.output).unwrap_or(Value::Null);
                    let yes = v.get("approve").and_then(Value::as_bool) == Some(true);
                    format!(
                        "{name} ({}) {} by a person",
                        a.item_id,
                        if yes { "approved" } else { "denied" }
                    )
                }
                ActionKind::Function => format!(
                    "{name} ({}) answered by a person: {} of output",
                    a.item_id,
                    bytes(a.output.len())
                ),
            };
            let data = serde_json::json!({"item_id": a.item_id, "name": name, "by": "person"});
            add_event(&mut tx, id, now, EventKind::Action, &msg, Some(&data)).await?;
        }
        let remaining = waiting.len() - answers.len();
        if remaining == 0 {
            sql::query(
                "UPDATE jobs SET status = 'in_progress', wait_until = NULL, \
                 next_check_at = MAX(COALESCE(next_check_at, 0), ?), updated_at = ? \
                 WHERE id = ? AND status = 'requires_action'",
            )
            .bind(now)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let data = serde_json::json!({"from": "requires_action", "to": "in_progress", "source": "respond"});
            add_event(
                &mut tx,
                id,
                now,
                EventKind::Status,
                "requires_action → in_progress (answered)",
                Some(&data),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Responded::Taken { remaining })
    }

    /// Moves an acting job whose turn is fully answered on to its next turn: `ready` to be
    /// submitted like a create (the claim bumps its attempt). Conditional on the claim.
    pub async fn start_next_turn(&self, claim: &ActingClaim, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let open: i64 = sql::query_scalar(
            "SELECT COUNT(*) FROM job_actions WHERE job_id = ? AND turn = ? AND state <> 'done'",
        )
        .bind(&claim.id)
        .bind(claim.turn)
        .fetch_one(&mut *tx)
        .await?;
        if open > 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let moved = sql::query(
            "UPDATE jobs SET turn = turn + 1, submit_state = 'ready', next_check_at = ?, \
             updated_at = ? WHERE id = ? AND attempt = ? AND turn = ? AND submit_state = 'acting' \
             AND status = 'in_progress' AND cancel_requested = 0",
        )
        .bind(now)
        .bind(now)
        .bind(&claim.id)
        .bind(claim.attempt)
        .bind(claim.turn)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if moved {
            add_event(
                &mut tx,
                &claim.id,
                now,
                EventKind::Turn,
                &format!(
                    "every action of turn {} is answered: turn {} is ready to be sent",
                    claim.turn + 1,
                    claim.turn + 2
                ),
                Some(&serde_json::json!({"turn": claim.turn + 1})),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Ends an acting (or waiting) job without a new response: a handler failed under
    /// `on_error: fail`, the turns ran out, it was cancelled or its wait passed its deadline.
    /// Conditional on the job still acting on `turn`.
    pub async fn finish_acting(
        &self,
        id: &JobId,
        turn: i64,
        end: ActingEnd<'_>,
        now: i64,
        outbox: &[OutboxEntry],
    ) -> Result<bool, StoreError> {
        let ActingEnd {
            status,
            error,
            image_prices,
        } = end;
        debug_assert!(status.is_terminal());
        let mut tx = self.begin_write().await?;
        let from: Option<String> = sql::query_scalar(
            "SELECT status FROM jobs WHERE id = ? AND turn = ? AND submit_state = 'acting' \
             AND status IN ('in_progress', 'requires_action')",
        )
        .bind(id)
        .bind(turn)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(from) = from else {
            tx.rollback().await?;
            return Ok(false);
        };
        let done = sql::query(
            "UPDATE jobs SET status = ?, submit_state = 'done', finished_at = ?, next_check_at = NULL, \
             lease_until = NULL, lease_owner = NULL, error_code = ?, error_message = ?, updated_at = ? \
             WHERE id = ? AND turn = ? AND submit_state = 'acting' AND status = ?",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(&error.code)
        .bind(&error.message)
        .bind(now)
        .bind(id)
        .bind(turn)
        .bind(&from)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            // What the turns' hosted tools did is priced like a finished response's.
            if let Some(all) = merged_turns(&mut tx, id, None).await? {
                super::tool_usage::record_tool_usage(&mut tx, id, &all, &image_prices).await?;
            }
            let data = serde_json::json!({"from": from, "to": status.as_str(), "error": error, "turn": turn});
            super::submissions::ended_without_response_in(
                &mut tx,
                id,
                (&from, status, error),
                &data,
                outbox,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Jobs between turns (their next create not sent yet) whose cancel was asked for:
    /// `(id, attempt)`.
    pub async fn cancelled_turns(&self) -> Result<Vec<(JobId, i64)>, StoreError> {
        Ok(sql::query_as(
            "SELECT id, attempt FROM jobs INDEXED BY jobs_turn_order WHERE status = 'in_progress' \
             AND submit_state = 'ready' AND cancel_requested = 1 AND quarantine IS NULL LIMIT 100",
        )
        .fetch_all(&self.reads)
        .await?)
    }

    /// Jobs waiting for a person past their deadline.
    pub async fn overdue_waits(&self, now: i64) -> Result<Vec<(JobId, i64)>, StoreError> {
        Ok(sql::query_as(
            "SELECT id, turn FROM jobs INDEXED BY jobs_waiting WHERE status = 'requires_action' \
             AND wait_until <= ? AND quarantine IS NULL LIMIT 100",
        )
        .bind(now)
        .fetch_all(&self.reads)
        .await?)
    }
}

/// Queues the `requires_action` notification of each sink that hears of it; a job that waits
/// again (a later turn) re-arms its row, with a new claim so a delivery still in flight for the
/// earlier wait cannot close it.
async fn rearm_requires_action(
    conn: &mut Conn,
    id: &JobId,
    outbox: &[OutboxEntry],
    now: i64,
) -> Result<(), StoreError> {
    let event = format!("job.{}", JobStatus::RequiresAction);
    for e in outbox
        .iter()
        .filter(|e| e.on.contains(&JobStatus::RequiresAction))
    {
        sql::query(
            "INSERT INTO notifications (job_id, sink, event, state, next_attempt_at, created_at) \
             VALUES (?, ?, ?, 'pending', ?, ?) ON CONFLICT (job_id, sink, event) DO UPDATE SET \
             state = 'pending', attempts = 0, claim = notifications.claim + 1, next_attempt_at = excluded.next_attempt_at, \
             created_at = excluded.created_at, delivered_at = NULL, last_error = NULL",
        )
        .bind(id)
        .bind(&e.sink)
        .bind(&event)
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// `n` bytes as the timeline says it.
fn bytes(n: usize) -> String {
    match n {
        1 => "1 byte".into(),
        n if n < 10_000 => format!("{n} bytes"),
        n if n < 10_000_000 => format!("{} KB", n / 1000),
        n => format!("{} MB", n / 1_000_000),
    }
}
