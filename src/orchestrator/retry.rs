//! Retrying a finished job: a new job from the same spec, linked to the original
//! (`retry_of` on the new row, a `retried` event on the old one).
//!
//! The retry is an ordinary new job from then on: it starts `pending`, so in-flight limits,
//! budget holds and rate-limit deferrals apply to it at claim time exactly as to any other.
//! It gets a fresh deadline from its timeout and no idempotency key (the original's key names
//! the original; a retry under it would be an idempotent replay, not a new job).

use super::Orchestrator;
use super::intake::AcceptError;
use crate::job::JobStatus;
use crate::store::{JobRow, RetryOutcome, StoreError};

/// Why a job could not be retried.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// The job is still going: cancel it first, or wait.
    #[error(
        "job {id} is {status}; only a finished job (completed, failed, incomplete or cancelled) can be retried"
    )]
    NotTerminal { id: String, status: JobStatus },
    /// The spec names a sink the config no longer has (a reload removed it).
    #[error("job `{job}`: field `notify`: no sink named `{sink}` is configured")]
    UnknownSink { job: String, sink: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Orchestrator {
    /// Retries a terminal job: inserts a new job with the same spec (minus the idempotency
    /// key) and wakes the submit worker. `None` when there is no job with this id.
    pub async fn retry_job(&self, id: &str) -> Result<Option<JobRow>, RetryError> {
        let store = &self.inner.store;
        let Some(original) = store.get_job(id).await? else {
            return Ok(None);
        };
        if !original.status.is_terminal() {
            return Err(RetryError::NotTerminal {
                id: original.id,
                status: original.status,
            });
        }
        let mut spec = original.spec;
        spec.idempotency_key = None;
        let job = self.new_job(spec, "retry").map_err(|e| match e {
            AcceptError::UnknownSink { job, sink } => RetryError::UnknownSink { job, sink },
            AcceptError::Store(e) => RetryError::Store(e),
        })?;
        // The store checks again inside its transaction: the original may have been pruned
        // meanwhile (a terminal status never changes, but retention can delete the row).
        match store.insert_retry(job, id).await? {
            RetryOutcome::Created(row) => {
                tracing::info!(job_id = %row.id, retry_of = %id, name = %row.name, model = %row.model, "job retried");
                self.wake();
                Ok(Some(*row))
            }
            RetryOutcome::Missing => Ok(None),
            RetryOutcome::NotTerminal(status) => Err(RetryError::NotTerminal {
                id: id.to_string(),
                status,
            }),
        }
    }
}
