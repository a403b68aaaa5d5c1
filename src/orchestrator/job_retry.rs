//! Retrying a finished job: a new job from the same spec, linked to the original
//! (`retry_of` on the new row, a `retried` event on the old one).
//!
//! The retry is an ordinary new job from then on: it starts `pending`, so in-flight limits,
//! budget holds and rate-limit deferrals apply to it at claim time exactly as to any other.
//! It gets a fresh deadline from its timeout and does not inherit the original's idempotency
//! key (that key names the original; a retry under it would be an idempotent replay, not a new
//! job). The caller may give the retry a key of its own, so a re-sent request or a double click
//! lands on the retry made the first time: it is stored namespaced as
//! `retry:{original}:{key}`, so it cannot meet a `POST /v1/jobs` key or another original's.

use super::Orchestrator;
use super::intake::AcceptError;
use crate::job::{JobId, JobStatus};
use crate::store::{JobRow, RetryOutcome, StoreError};

/// Why a job could not be retried.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// The job is still going: cancel it first, or wait.
    #[error(
        "job {id} is {status}; only a finished job (completed, failed, incomplete or cancelled) can be retried: wait for it to end, or cancel it first (`respool jobs cancel {id}`)"
    )]
    NotTerminal { id: String, status: JobStatus },
    /// The spec names a sink the config no longer has (a reload removed it).
    #[error("job `{job}`: field `notify`: no sink named `{sink}` is configured")]
    UnknownSink { job: String, sink: String },
    /// The namespaced key is held by a job that is not a retry of this one (someone sent a
    /// `POST /v1/jobs` key spelled `retry:…`).
    #[error("idempotency key `{key}` is already used by job {job}, which is not a retry of {id}")]
    KeyConflict {
        id: String,
        key: String,
        job: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The idempotency key a retry of `original` under the caller's `key` is stored with.
pub fn retry_key(original: &str, key: &str) -> String {
    format!("retry:{original}:{key}")
}

impl Orchestrator {
    /// Retries a terminal job: inserts a new job with the same spec (minus the original's
    /// idempotency key) and wakes the submit worker. With `key`, a retry of this job made
    /// earlier under the same key is returned instead and nothing is written. Answers the job
    /// and whether it is such a replay; `None` when there is no job with this id.
    pub async fn retry_job(
        &self,
        id: &JobId,
        key: Option<&str>,
    ) -> Result<Option<(JobRow, bool)>, RetryError> {
        let store = &self.inner.store;
        let Some(original) = store.get_job(id).await? else {
            return Ok(None);
        };
        if !original.status.is_terminal() {
            return Err(RetryError::NotTerminal {
                id: original.id.to_string(),
                status: original.status,
            });
        }
        let mut spec = original.spec;
        // A retry of a retry must not inherit the first retry's key either.
        spec.idempotency_key = key.map(|k| retry_key(id, k));
        let job = self.new_job(spec, "retry").map_err(|e| match e {
            AcceptError::UnknownSink { job, sink } => RetryError::UnknownSink { job, sink },
            AcceptError::Store(e) => RetryError::Store(e),
            // `new_job` checks sinks only; a retry's attachments are the original's, which
            // its row keeps stored.
            other => RetryError::Store(crate::store::StoreError::Corrupt(other.to_string())),
        })?;
        // The store checks again inside its transaction: the original may have been pruned
        // meanwhile (a terminal status never changes, but retention can delete the row).
        match store.insert_retry(job, id).await? {
            RetryOutcome::Created(row) => {
                tracing::info!(job_id = %row.id, retry_of = %id, name = %row.name, model = %row.model, "job retried");
                self.wake();
                Ok(Some((*row, false)))
            }
            RetryOutcome::Existing(row) => {
                tracing::info!(job_id = %row.id, retry_of = %id, "retry replayed under its idempotency key");
                Ok(Some((*row, true)))
            }
            RetryOutcome::KeyConflict(row) => Err(RetryError::KeyConflict {
                id: id.to_string(),
                key: key.unwrap_or_default().to_string(),
                job: row.id.to_string(),
            }),
            RetryOutcome::Missing => Ok(None),
            RetryOutcome::NotTerminal(status) => Err(RetryError::NotTerminal {
                id: id.to_string(),
                status,
            }),
        }
    }
}
