//! Taking a job in: check it against the config, give it an id and a deadline, store it.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Orchestrator;
use crate::batch::Batcher;
use crate::clock::ms;
use crate::job::{JobId, JobSpec};
use crate::store::{InsertOutcome, NewJob, StoreError};

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("job `{job}`: field `notify`: no sink named `{sink}` is configured")]
    UnknownSink { job: String, sink: String },
    #[error(
        "job `{job}`: field `attachments.{index}`: no attachment {id} is stored; upload the file with `POST /v1/attachments` first"
    )]
    UnknownAttachment {
        job: String,
        index: usize,
        id: String,
    },
    #[error("job `{job}`: field `attachments`: {message}")]
    Attachments { job: String, message: String },
    #[error(
        "job `{job}`: field `knowledge.{index}`: no knowledge set named `{name}` is configured (`knowledge.sets`)"
    )]
    UnknownKnowledge {
        job: String,
        index: usize,
        name: String,
    },
    #[error("job `{job}`: knowledge `{name}`: {message}")]
    KnowledgeUnreadable {
        job: String,
        name: String,
        message: String,
    },
    #[error(
        "job `{job}`: field `handlers.{function}`: this daemon does not take a job's own handlers (they run commands on its host); define the handler in the config's `functions:`, or allow jobs' handlers with `actions.job_handlers: true`"
    )]
    JobHandlers { job: String, function: String },
    #[error(
        "job `{job}`: field `after`: no job `{after}` (give the id of a job taken in earlier, `job_…`; a name is resolved only among the jobs of one jobs file)"
    )]
    UnknownPredecessor { job: String, after: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stable hash of a spec, to tell an idempotent replay from a reused key. JSON objects are
/// unordered, so the keys are sorted first: the same job sent with its keys in another order
/// (another client, another serializer) is a replay, not a conflict.
pub fn spec_hash(spec: &JobSpec) -> String {
    let json = serde_json::to_value(spec)
        .map(canonical)
        .and_then(|v| serde_json::to_vec(&v))
        .unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `v` with every object's keys in sorted order (arrays keep theirs: it is meaningful).
fn canonical(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> =
                m.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

impl Orchestrator {
    /// Stores a validated job and wakes the workers. `origin` goes into the timeline.
    pub async fn accept(
        &self,
        mut spec: JobSpec,
        origin: &str,
    ) -> Result<InsertOutcome, AcceptError> {
        // The spec as given is what an idempotency key replays: a config set read afresh
        // (its files changed on disk) does not make a replay a conflict.
        let hash = spec_hash(&spec);
        self.resolve_knowledge(&mut spec).await?;
        self.check_attachments(&spec).await?;
        self.check_predecessor(&spec).await?;
        let warnings = spec.warnings();
        let mut job = self.new_job(spec, origin)?;
        job.spec_hash = hash;
        let outcome = self
            .intake()
            .call(job)
            .await
            .map_err(|_| StoreError::BatchFailed("the daemon is stopping".into()))??;
        if let InsertOutcome::Created(row) = &outcome {
            tracing::info!(job_id = %row.id, name = %row.name, model = %row.model, origin, "job accepted");
            for w in &warnings {
                tracing::warn!(job_id = %row.id, name = %row.name, field = %w.field, "{}", w.message);
            }
            self.wake();
        }
        Ok(outcome)
    }
}

impl Orchestrator {
    /// The job a job runs after (`after`) must be one the ledger has: its id, taken in before
    /// it (so a chain cannot loop).
    async fn check_predecessor(&self, spec: &JobSpec) -> Result<(), AcceptError> {
        let Some(after) = &spec.after else {
            return Ok(());
        };
        let known = match JobId::parse(after) {
            Ok(id) => self.inner.store.job_exists(&id).await?,
            Err(_) => false,
        };
        if known {
            Ok(())
        } else {
            Err(AcceptError::UnknownPredecessor {
                job: spec.name.clone(),
                after: after.clone(),
            })
        }
    }

    /// Gives each knowledge set a job names by name alone the files of the config's set of
    /// that name, as they are now (read from the daemon's disk, relative to the config file,
    /// each checked and stored like an attachment).
    pub async fn resolve_knowledge(&self, spec: &mut JobSpec) -> Result<(), AcceptError> {
        if spec.knowledge.iter().all(|k| k.files.is_some()) {
            return Ok(());
        }
        let config = self.config();
        for (index, set) in spec.knowledge.iter_mut().enumerate() {
            if set.files.is_some() {
                continue;
            }
            let Some(configured) = config.knowledge.sets.get(&set.name) else {
                return Err(AcceptError::UnknownKnowledge {
                    job: spec.name.clone(),
                    index,
                    name: set.name.clone(),
                });
            };
            let base = config
                .file
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from("respool.yaml"));
            let patterns: Vec<Value> = configured
                .paths
                .iter()
                .map(|p| Value::String(p.clone()))
                .collect();
            let read = tokio::task::spawn_blocking(move || {
                let read = crate::job::spec::read_paths(&patterns, &crate::job::files::beside(&base))?;
                let total: u64 = read.iter().map(|b| b.meta.bytes).sum();
                if read.len() > crate::job::spec::MAX_KNOWLEDGE_FILES
                    || total > MAX_KNOWLEDGE_SET_BYTES
                {
                    return Err((
                        0,
                        format!(
                            "the set has {} files, {total} bytes; a set may have at most {} files and {MAX_KNOWLEDGE_SET_BYTES} bytes",
                            read.len(),
                            crate::job::spec::MAX_KNOWLEDGE_FILES
                        ),
                    ));
                }
                Ok(read)
            })
            .await
            .map_err(|e| AcceptError::KnowledgeUnreadable {
                job: spec.name.clone(),
                name: set.name.clone(),
                message: e.to_string(),
            })?
            .map_err(|(i, m)| AcceptError::KnowledgeUnreadable {
                job: spec.name.clone(),
                name: set.name.clone(),
                message: format!("`knowledge.sets.{}.paths.{i}`: {m}", set.name),
            })?;
            let now = self.now();
            let mut ids = Vec::with_capacity(read.len());
            for blob in read {
                self.inner
                    .store
                    .put_attachment(&blob.meta, &blob.data, now)
                    .await?;
                ids.push(blob.meta.id.clone());
            }
            set.files = Some(ids);
        }
        Ok(())
    }

    /// Every attachment a job names must be stored, and together within one job's limit.
    async fn check_attachments(&self, spec: &JobSpec) -> Result<(), AcceptError> {
        if spec.attachments.is_empty() && spec.knowledge.is_empty() {
            return Ok(());
        }
        let found = self.inner.store.attachments(&spec.attachments).await?;
        let mut total: u64 = 0;
        for (index, (id, meta)) in spec.attachments.iter().zip(found).enumerate() {
            let Some(meta) = meta else {
                return Err(AcceptError::UnknownAttachment {
                    job: spec.name.clone(),
                    index,
                    id: id.clone(),
                });
            };
            total += meta.bytes;
        }
        for set in &spec.knowledge {
            let ids = set.files.clone().unwrap_or_default();
            let found = self.inner.store.attachments(&ids).await?;
            if let Some(pos) = found.iter().position(Option::is_none) {
                return Err(AcceptError::UnknownAttachment {
                    job: spec.name.clone(),
                    index: pos,
                    id: ids[pos].clone(),
                });
            }
        }
        let max = crate::job::attachment::MAX_JOB_ATTACHMENT_BYTES;
        if total > max {
            return Err(AcceptError::Attachments {
                job: spec.name.clone(),
                message: format!("the files come to {total} bytes; one job may send at most {max}"),
            });
        }
        Ok(())
    }
}

/// The most bytes a config knowledge set may have (it is read into memory at intake).
pub const MAX_KNOWLEDGE_SET_BYTES: u64 = 256 * 1024 * 1024;

/// Jobs taken in per transaction, at most.
const MAX_INTAKE_BATCH: usize = 256;

impl Orchestrator {
    /// The writer that takes jobs in, group-committed (started on first use, on the caller's
    /// runtime): a burst of submissions shares its transactions and their fsyncs.
    fn intake(&self) -> &Batcher<NewJob, Result<InsertOutcome, StoreError>> {
        self.inner.intake.get_or_init(|| {
            let store = self.inner.store.clone();
            Batcher::start(MAX_INTAKE_BATCH, move |jobs: Vec<NewJob>| {
                let store = store.clone();
                async move { store.insert_jobs(&jobs).await }
            })
        })
    }

    /// A new job row for `spec` under the current config: every sink it names must exist (a
    /// retried spec is checked again: a reload may have removed one), and its deadline runs
    /// from now.
    pub(super) fn new_job(&self, spec: JobSpec, origin: &str) -> Result<NewJob, AcceptError> {
        let config = self.config();
        if let Some(sink) = spec.sink_names().find(|s| !config.sinks.contains_key(*s)) {
            return Err(AcceptError::UnknownSink {
                job: spec.name.clone(),
                sink: sink.to_string(),
            });
        }
        if let Some(name) = spec.handlers.keys().next()
            && !config.actions.job_handlers
        {
            return Err(AcceptError::JobHandlers {
                job: spec.name.clone(),
                function: name.clone(),
            });
        }
        let now = self.now();
        let timeout = spec.timeout.or(config.jobs.default_timeout);
        Ok(NewJob {
            id: JobId::generate(),
            spec_hash: spec_hash(&spec),
            deadline_at: timeout.map(|t| now + ms(t)),
            spec,
            now,
            origin: origin.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn spec_hash_ignores_key_order_but_not_values() {
        let spec = |v: Value| JobSpec::from_value(v, "#1").unwrap();
        let a = spec(json!({"model": "m", "input": "i", "metadata": {"a": "1", "b": "2"}}));
        let b = spec(json!({"metadata": {"b": "2", "a": "1"}, "input": "i", "model": "m"}));
        let c = spec(json!({"model": "m", "input": "j", "metadata": {"a": "1", "b": "2"}}));
        assert_eq!(spec_hash(&a), spec_hash(&b));
        assert_ne!(spec_hash(&a), spec_hash(&c));
    }
}
