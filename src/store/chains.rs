//! Chains and conversations in the ledger (docs/jobs.md, "Chains and conversations").
//!
//! A job that runs `after` another one, or on a conversation, is taken in `waiting`
//! (`submit_state`): out of the submit claim's index (`jobs_submit_order` holds only `ready`
//! jobs) and not in flight. It is looked at (`settle_waiting`) when it is taken in, when the
//! job it runs after ends, when the job before it on its conversation ends, when its
//! conversation is created, and every few minutes besides (a safety net); it becomes `ready`
//! once the job it runs after has completed, its conversation exists, and it is the first
//! unfinished job on that conversation. The wake-ups are written in the same transaction as the
//! end that causes them (`job_ended_in`, called by every write that ends a job), so a crash
//! never loses one.
//!
//! One job at a time per conversation: the jobs on a conversation are numbered as they are
//! taken in (`conversation_seq`, one more than the last unfinished one's), and only the first
//! unfinished one may leave `waiting`. A job always comes after the job it runs after (that one
//! existed first), so a chain on one conversation cannot wait for itself.

use super::lending::Conn;
use crate::store::sql;
use serde::Serialize;

use super::events::{EventKind, add_event};
use super::jobs::NewJob;
use super::{Store, StoreError};
use crate::job::{JobError, JobId, JobStatus};

/// The first unfinished job on a conversation, by the index of a conversation's jobs
/// (`jobs_conversation_order`, whose status list this must repeat).
pub(super) const CONVERSATION_HEAD: &str = "SELECT id FROM jobs INDEXED BY jobs_conversation_order \
     WHERE conversation_key = ? \
     AND status IN ('pending', 'held', 'queued', 'in_progress', 'requires_action') \
     ORDER BY conversation_seq LIMIT 1";

/// The place of a job taken in on a conversation: after the last unfinished one.
pub(super) const NEXT_SEQ: &str = "SELECT COALESCE(MAX(conversation_seq), 0) + 1 FROM jobs INDEXED BY jobs_conversation_order \
     WHERE conversation_key = ? \
     AND status IN ('pending', 'held', 'queued', 'in_progress', 'requires_action')";

/// What looking at a waiting job found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// It does not wait (any more): nothing to do.
    NotWaiting,
    /// It still waits (for its predecessor, its conversation, or its turn on it).
    Waiting,
    /// It is `ready` now.
    Released,
    /// The job it runs after did not complete: it is to end `cancelled` with this error.
    PredecessorFailed { attempt: i64, error: JobError },
}

/// What a job's create takes from its chain: its conversation, and the job it runs after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainContext {
    /// The conversation the job runs on (`conv_…`), when it did not name it itself.
    pub conversation: Option<String>,
    /// The final response of the job it runs after.
    pub previous_response_id: Option<String>,
    /// That job's output text.
    pub previous_output: Option<String>,
}

/// A conversation respool is to create, claimed for one create call.
#[derive(Debug, Clone)]
pub struct ConversationClaim {
    pub key: String,
    /// The job that asked for it (`conversation: new`).
    pub job_id: JobId,
    /// Create calls sent for it, this one included.
    pub attempts: i64,
}

/// One job of a chain, for the views.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ChainMember {
    pub id: String,
    pub name: String,
    /// Its status (`pending` while it waits for the job it runs after).
    pub status: String,
    /// The job it runs after, if any.
    pub after: Option<String>,
}

/// The conversation key of a job's own spec: `conv_…` when it names one, its own id when it
/// asks for a new one.
fn own_conversation_key(job: &NewJob) -> Option<String> {
    if job.spec.new_conversation {
        return Some(job.id.to_string());
    }
    match job.spec.request.get("conversation") {
        Some(serde_json::Value::String(id)) => Some(id.clone()),
        Some(serde_json::Value::Object(o)) => o
            .get("id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// Inside the intake transaction, after the job's row is written: links it to its chain and
/// its conversation, and makes it wait when it has either (`settle_waiting` decides at once,
/// in the ledger's next pass, whether it may go).
pub(super) async fn enter_in(conn: &mut Conn, job: &NewJob) -> Result<(), StoreError> {
    let after = job.spec.after.as_deref();
    let predecessor: Option<(String, Option<String>, Option<String>)> = match after {
        Some(a) => {
            sql::query_as("SELECT name, chain_id, conversation_key FROM jobs WHERE id = ?")
                .bind(a)
                .fetch_optional(&mut *conn)
                .await?
        }
        None => None,
    };
    let mut key = own_conversation_key(job);
    // A follower runs on its predecessor's conversation, unless it names its own or takes the
    // predecessor's output in its input instead (`input_template`: a context of its own).
    if key.is_none()
        && job.spec.request.get("previous_response_id").is_none()
        && job.spec.input_template.is_none()
    {
        key = predecessor.as_ref().and_then(|p| p.2.clone());
    }
    if after.is_none() && key.is_none() {
        return Ok(());
    }
    let chain_id = match (&predecessor, after) {
        (Some((_, Some(chain), _)), _) => Some(chain.clone()),
        (Some((_, None, _)), Some(a)) => {
            // The predecessor starts a chain: it is its first member.
            sql::query("UPDATE jobs SET chain_id = id WHERE id = ? AND chain_id IS NULL")
                .bind(a)
                .execute(&mut *conn)
                .await?;
            Some(a.to_string())
        }
        _ => None,
    };
    if job.spec.new_conversation {
        sql::query(
            "INSERT INTO conversations (key, job_id, next_try_at, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(job.id.as_str())
        .bind(job.id.as_str())
        .bind(job.now)
        .bind(job.now)
        .execute(&mut *conn)
        .await?;
    }
    let seq: Option<i64> = match &key {
        Some(k) => Some(
            sql::query_scalar(NEXT_SEQ)
                .bind(k)
                .fetch_one(&mut *conn)
                .await?,
        ),
        None => None,
    };
    sql::query(
        "UPDATE jobs SET after_job_id = ?, chain_id = ?, conversation_key = ?, conversation_seq = ?, \
         submit_state = 'waiting', next_check_at = ? WHERE id = ?",
    )
    .bind(after)
    .bind(&chain_id)
    .bind(&key)
    .bind(seq)
    .bind(job.now)
    .bind(job.id.as_str())
    .execute(&mut *conn)
    .await?;
    let mut why = Vec::new();
    if let Some(a) = after {
        why.push(match &predecessor {
            Some((name, _, _)) => format!("job {a} ({name}) to complete"),
            None => format!("job {a} to complete"),
        });
    }
    if job.spec.new_conversation {
        why.push("its new conversation to be created".to_string());
    } else if let Some(k) = &key {
        why.push(format!("its turn on conversation {k}"));
    }
    add_event(
        conn,
        job.id.as_str(),
        job.now,
        EventKind::Waiting,
        &format!("waiting for {}", why.join(" and ")),
        Some(&serde_json::json!({"after": after, "conversation": key, "chain_id": chain_id})),
    )
    .await?;
    Ok(())
}

/// Inside the transaction that ends job `id` (completed, failed, cancelled, incomplete): the
/// jobs that run after it, and the next job on its conversation, are due to be looked at.
pub(super) async fn job_ended_in(conn: &mut Conn, id: &str, now: i64) -> Result<(), StoreError> {
    sql::query(
        "UPDATE jobs SET next_check_at = ? WHERE after_job_id = ? AND submit_state = 'waiting'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    let key: Option<String> = sql::query_scalar("SELECT conversation_key FROM jobs WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .flatten();
    if let Some(key) = key {
        wake_conversation_head(conn, &key, now).await?;
    }
    Ok(())
}

/// Makes the first unfinished job on conversation `key` due to be looked at, if it waits.
async fn wake_conversation_head(conn: &mut Conn, key: &str, now: i64) -> Result<(), StoreError> {
    if let Some(head) = conversation_head(conn, key).await? {
        sql::query("UPDATE jobs SET next_check_at = ? WHERE id = ? AND submit_state = 'waiting'")
            .bind(now)
            .bind(head)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The first unfinished job on conversation `key`.
async fn conversation_head(conn: &mut Conn, key: &str) -> Result<Option<String>, StoreError> {
    Ok(sql::query_scalar(CONVERSATION_HEAD)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?)
}

/// The statement listing waiting jobs due to be looked at (`plans.rs` checks it walks
/// `jobs_waiting_due`).
pub(super) const DUE_WAITING: &str = "SELECT id FROM jobs INDEXED BY jobs_waiting_due \
     WHERE submit_state = 'waiting' AND next_check_at <= ? ORDER BY next_check_at LIMIT ?";

/// The statement listing waiting jobs asked to be cancelled.
pub(super) const WAITING_CANCELS: &str = "SELECT id, cancel_reason FROM jobs INDEXED BY jobs_waiting_cancel \
     WHERE submit_state = 'waiting' AND cancel_requested = 1 LIMIT 100";

impl Store {
    /// Waiting jobs due to be looked at (`settle_waiting`), at most `limit`, oldest due first.
    pub async fn due_waiting(&self, now: i64, limit: i64) -> Result<Vec<JobId>, StoreError> {
        let ids: Vec<String> = sql::query_scalar(DUE_WAITING)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.reads)
            .await?;
        Ok(ids.iter().filter_map(|i| JobId::parse(i).ok()).collect())
    }

    /// Waiting jobs asked to be cancelled (by a user, or their timeout), with the reason.
    pub async fn waiting_cancels(&self) -> Result<Vec<(JobId, Option<String>)>, StoreError> {
        let rows: Vec<(String, Option<String>)> = sql::query_as(WAITING_CANCELS)
            .fetch_all(self.reads.quick())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, r)| Some((JobId::parse(&id).ok()?, r)))
            .collect())
    }

    /// Looks at a waiting job: released (`ready`, due now) when the job it runs after has
    /// completed, its conversation exists and it is the first unfinished job on it; to be
    /// cancelled when the job it runs after did not complete (or is gone); else it keeps
    /// waiting, looked at again at `recheck_at` at the latest.
    pub async fn settle_waiting(
        &self,
        id: &JobId,
        now: i64,
        recheck_at: i64,
    ) -> Result<Settled, StoreError> {
        let mut tx = self.begin_write().await?;
        type Row = (String, String, Option<String>, Option<String>, i64, i64);
        let row: Option<Row> =
            sql::query_as(
                "SELECT status, submit_state, after_job_id, conversation_key, attempt, cancel_requested \
                 FROM jobs WHERE id = ?",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((status, state, after, key, attempt, cancel)) = row else {
            return Ok(Settled::NotWaiting);
        };
        if state != "waiting" || !matches!(status.as_str(), "pending" | "held") || cancel == 1 {
            // A cancel of a waiting job is ended by `waiting_cancels`' caller.
            return Ok(Settled::NotWaiting);
        }
        let mut released = Vec::new();
        let wait = async |tx: &mut Conn| -> Result<Settled, StoreError> {
            sql::query(
                "UPDATE jobs SET next_check_at = ? WHERE id = ? AND submit_state = 'waiting'",
            )
            .bind(recheck_at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Ok(Settled::Waiting)
        };
        if let Some(a) = &after {
            let pred: Option<(String, String, Option<String>)> =
                sql::query_as("SELECT name, status, response_id FROM jobs WHERE id = ?")
                    .bind(a)
                    .fetch_optional(&mut *tx)
                    .await?;
            let failed = |message: String| Settled::PredecessorFailed {
                attempt,
                error: JobError {
                    code: "predecessor_failed".into(),
                    message,
                },
            };
            match pred {
                None => {
                    return Ok(failed(format!(
                        "the job it runs after, {a}, does not exist (deleted, or never was)"
                    )));
                }
                Some((name, s, _)) if s != "completed" && is_terminal(&s) => {
                    return Ok(failed(format!(
                        "the job it runs after, {a} ({name}), ended {s}: this job was not sent"
                    )));
                }
                Some((_, s, _)) if s != "completed" => {
                    let w = wait(&mut tx).await?;
                    tx.commit().await?;
                    return Ok(w);
                }
                Some((name, _, rid)) => released.push(format!(
                    "job {a} ({name}) completed{}",
                    rid.map(|r| format!(" as {r}")).unwrap_or_default()
                )),
            }
        }
        if let Some(k) = &key {
            if JobId::parse(k).is_ok() {
                let conv: Option<Option<String>> =
                    sql::query_scalar("SELECT conversation_id FROM conversations WHERE key = ?")
                        .bind(k)
                        .fetch_optional(&mut *tx)
                        .await?;
                match conv.flatten() {
                    Some(c) => released.push(format!("on conversation {c}")),
                    None => {
                        let w = wait(&mut tx).await?;
                        tx.commit().await?;
                        return Ok(w);
                    }
                }
            } else {
                released.push(format!("on conversation {k}"));
            }
            if conversation_head(&mut tx, k).await?.as_deref() != Some(id.as_str()) {
                let w = wait(&mut tx).await?;
                tx.commit().await?;
                return Ok(w);
            }
        }
        let done = sql::query(
            "UPDATE jobs SET submit_state = 'ready', next_check_at = ?, updated_at = ? \
             WHERE id = ? AND submit_state = 'waiting'",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            add_event(
                &mut tx,
                id,
                now,
                EventKind::Released,
                &format!("ready to be sent: {}", released.join(", ")),
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(if done {
            Settled::Released
        } else {
            Settled::NotWaiting
        })
    }

    /// What job `id`'s create takes from its chain (see [`ChainContext`]); `None` for a job
    /// outside any chain or conversation.
    pub async fn chain_context(&self, id: &JobId) -> Result<Option<ChainContext>, StoreError> {
        type Row = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let row: Option<Row> =
            sql::query_as(
                "SELECT j.after_job_id, j.conversation_key, p.response_id, p.output_text, c.conversation_id \
                 FROM jobs j LEFT JOIN jobs p ON p.id = j.after_job_id \
                 LEFT JOIN conversations c ON c.key = j.conversation_key WHERE j.id = ?",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some((after, key, rid, output, conv)) = row else {
            return Ok(None);
        };
        if after.is_none() && key.is_none() {
            return Ok(None);
        }
        let conversation = match key {
            Some(k) if JobId::parse(&k).is_ok() => conv,
            other => other,
        };
        Ok(Some(ChainContext {
            conversation,
            previous_response_id: rid,
            previous_output: output,
        }))
    }

    /// The conversation respool created for the job that asked for one (`conversation: new`),
    /// or on which a job runs: `(key, conversation id once known)`.
    pub async fn job_conversation(
        &self,
        id: &JobId,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let row: Option<(Option<String>, Option<String>)> = sql::query_as(
            "SELECT j.conversation_key, c.conversation_id FROM jobs j \
             LEFT JOIN conversations c ON c.key = j.conversation_key WHERE j.id = ?",
        )
        .bind(id)
        .fetch_optional(&self.reads)
        .await?;
        Ok(match row {
            Some((Some(k), c)) => {
                let id = if JobId::parse(&k).is_ok() {
                    c
                } else {
                    Some(k.clone())
                };
                Some((k, id))
            }
            _ => None,
        })
    }

    /// The jobs of chain `chain_id` (its first job's id), oldest first (at most 1,000).
    pub async fn chain_members(&self, chain_id: &str) -> Result<Vec<ChainMember>, StoreError> {
        Ok(sql::query_as(
            "SELECT id, name, status, after_job_id AS after FROM jobs INDEXED BY jobs_chain \
             WHERE chain_id = ? ORDER BY created_at, id LIMIT 1000",
        )
        .bind(chain_id)
        .fetch_all(&self.reads)
        .await?)
    }

    /// Claims the conversation due to be created that has waited longest: its next try moves
    /// past `lease_ms` (a daemon that dies mid-call leaves it to be tried again then) and its
    /// attempt is counted, both before the call is sent.
    pub async fn claim_conversation(
        &self,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<ConversationClaim>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row: Option<(String, String, i64)> = sql::query_as(
            "UPDATE conversations SET attempts = attempts + 1, next_try_at = ? WHERE key = \
             (SELECT key FROM conversations INDEXED BY conversations_due WHERE next_try_at <= ? \
              AND conversation_id IS NULL ORDER BY next_try_at LIMIT 1) \
             RETURNING key, job_id, attempts",
        )
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((key, job_id, attempts)) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let Ok(job_id) = JobId::parse(&job_id) else {
            tx.commit().await?;
            return Ok(None);
        };
        add_event(
            &mut tx,
            &job_id,
            now,
            EventKind::Conversation,
            &if attempts == 1 {
                "creating its conversation".to_string()
            } else {
                format!("creating its conversation (call #{attempts}; an earlier call's outcome is unknown or it failed)")
            },
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(ConversationClaim {
            key,
            job_id,
            attempts,
        }))
    }

    /// Records the conversation created for `key`, unless one was recorded first (another
    /// daemon's call, after this one's lease ran out): then that one is returned as `Err`, and
    /// this one is never used. The first job waiting on it is due at once.
    pub async fn record_conversation(
        &self,
        claim: &ConversationClaim,
        conversation_id: &str,
        now: i64,
    ) -> Result<Result<(), String>, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sql::query(
            "UPDATE conversations SET conversation_id = ?, next_try_at = NULL, last_error = NULL, \
             recorded_at = ? WHERE key = ? AND conversation_id IS NULL",
        )
        .bind(conversation_id)
        .bind(now)
        .bind(&claim.key)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !done {
            let held: Option<Option<String>> =
                sql::query_scalar("SELECT conversation_id FROM conversations WHERE key = ?")
                    .bind(&claim.key)
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.commit().await?;
            return Ok(Err(held.flatten().unwrap_or_default()));
        }
        add_event(
            &mut tx,
            &claim.job_id,
            now,
            EventKind::Conversation,
            &format!("conversation {conversation_id} created"),
            Some(&serde_json::json!({"conversation": conversation_id})),
        )
        .await?;
        wake_conversation_head(&mut tx, &claim.key, now).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// A conversation create that failed: tried again at `at` (`None`: never; the job that
    /// asked is then ended by the caller). The reason joins that job's timeline.
    pub async fn conversation_failed(
        &self,
        claim: &ConversationClaim,
        at: Option<i64>,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sql::query(
            "UPDATE conversations SET next_try_at = ?, last_error = ? \
             WHERE key = ? AND conversation_id IS NULL",
        )
        .bind(at)
        .bind(reason)
        .bind(&claim.key)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            add_event(&mut tx, &claim.job_id, now, EventKind::Error, reason, None).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// When a conversation is next due to be created (for the ledger worker's sleep).
    pub async fn next_conversation_after(&self, now: i64) -> Result<Option<i64>, StoreError> {
        Ok(sql::query_scalar(
            "SELECT MIN(next_try_at) FROM conversations INDEXED BY conversations_due \
             WHERE next_try_at > ? AND conversation_id IS NULL",
        )
        .bind(now)
        .fetch_one(self.reads.quick())
        .await?)
    }
}

fn is_terminal(status: &str) -> bool {
    JobStatus::try_from(status.to_string()).is_ok_and(JobStatus::is_terminal)
}
