//! Taking a job in: check it against the config, give it an id and a deadline, store it.

use sha2::{Digest, Sha256};

use super::Orchestrator;
use crate::clock::ms;
use crate::job::{JobId, JobSpec};
use crate::store::{InsertOutcome, NewJob, StoreError};

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("job `{job}`: field `notify`: no sink named `{sink}` is configured")]
    UnknownSink { job: String, sink: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stable hash of a spec, to tell an idempotent replay from a reused key.
pub fn spec_hash(spec: &JobSpec) -> String {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Orchestrator {
    /// Stores a validated job and wakes the workers. `origin` goes into the timeline.
    pub async fn accept(&self, spec: JobSpec, origin: &str) -> Result<InsertOutcome, AcceptError> {
        let config = &self.inner.config;
        if let Some(sink) = spec.sink_names().find(|s| !config.sinks.contains_key(*s)) {
            return Err(AcceptError::UnknownSink {
                job: spec.name.clone(),
                sink: sink.to_string(),
            });
        }
        let now = self.now();
        let timeout = spec.timeout.or(config.jobs.default_timeout);
        let job = NewJob {
            id: JobId::generate(),
            spec_hash: spec_hash(&spec),
            deadline_at: timeout.map(|t| now + ms(t)),
            spec,
            now,
            origin: origin.to_string(),
        };
        let outcome = self.inner.store.insert_job(job).await?;
        if let InsertOutcome::Created(row) = &outcome {
            tracing::info!(job_id = %row.id, name = %row.name, model = %row.model, origin, "job accepted");
            self.wake();
        }
        Ok(outcome)
    }
}
