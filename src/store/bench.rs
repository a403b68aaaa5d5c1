//! Bulk writes for `examples/history_bench.rs` only: finished jobs written in one
//! transaction per batch, each row inserted already finished.
//!
//! Why not the public path (`insert_job`, `claim_submission`, `attach_response`,
//! `apply_observation`): four fsynced transactions per job would make filling 100,000 jobs
//! take most of an hour. Inserting the finished row directly lets the insert trigger
//! index the output once. The timeline gets the same four events the real path writes, so the
//! database has a realistic size. The benchmark still times the public path on a sample.

use super::events::{EventKind, add_event};
use super::jobs::NewJob;
use super::tokens::BindTokens;
use super::tool_usage::BindToolUsage;
use super::{Store, StoreError};
use crate::job::Observation;
use crate::store::sql;

/// A finished job for [`Store::bench_insert_finished`].
#[doc(hidden)]
pub struct BenchJob {
    /// The job as accepted (`now` is its `created_at`).
    pub job: NewJob,
    /// Its terminal observation: status, output, usage, error and the raw response.
    pub obs: Observation,
    pub submitted_at: i64,
    pub finished_at: i64,
}

impl Store {
    /// Inserts finished jobs (with their timeline) in one transaction. For benchmarks only.
    #[doc(hidden)]
    pub async fn bench_insert_finished(&self, jobs: &[BenchJob]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for b in jobs {
            let (job, obs) = (&b.job, &b.obs);
            let spec_json =
                serde_json::to_string(&job.spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let id = job.id.as_str();
            sql::query(
                "INSERT INTO jobs (id, name, model, status, spec, idempotency_key, spec_hash, \
                 response_id, attempt, submit_state, submissions, created_at, updated_at, \
                 submitted_at, finished_at, deadline_at, poll_interval_ms, polls, output_text, \
                 error_code, error_message, usage, input_tokens, cached_tokens, output_tokens, \
                 reasoning_tokens, total_tokens, web_search_calls, web_search_preview_calls, \
                 file_search_calls, code_containers, images, image_fee_microusd, service_tier, \
                 response, priority, budget_exempt) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 'done', 1, ?, ?, ?, ?, ?, 5000, 3, ?, ?, ?, ?, \
                 ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(&job.spec.name)
            .bind(job.spec.model())
            .bind(obs.status.as_str())
            .bind(spec_json)
            .bind(&job.spec.idempotency_key)
            .bind(&job.spec_hash)
            .bind(obs.response_id.as_str())
            .bind(job.now)
            .bind(b.finished_at)
            .bind(b.submitted_at)
            .bind(b.finished_at)
            .bind(job.deadline_at)
            .bind(&obs.output_text)
            .bind(obs.error.as_ref().map(|e| e.code.clone()))
            .bind(obs.error.as_ref().map(|e| e.message.clone()))
            .bind(obs.usage.as_ref().map(ToString::to_string))
            .bind_tokens(obs.usage.as_ref())
            .bind_tool_usage(
                Some(&obs.raw).filter(|r| !r.is_null()),
                &crate::pricing::ImagePrices::default(),
            )
            .bind(obs.raw.to_string())
            .bind(job.spec.priority)
            .bind(i64::from(job.spec.budget_exempt))
            .execute(&mut *tx)
            .await?;
            let accepted = format!("accepted from {}", job.origin);
            add_event(&mut tx, id, job.now, EventKind::Accepted, &accepted, None).await?;
            add_event(
                &mut tx,
                id,
                b.submitted_at,
                EventKind::Submitting,
                "submitting upstream",
                None,
            )
            .await?;
            let data = serde_json::json!({"response_id": obs.response_id.as_str()});
            let msg = format!("submitted as {}", obs.response_id);
            add_event(
                &mut tx,
                id,
                b.submitted_at,
                EventKind::Submitted,
                &msg,
                Some(&data),
            )
            .await?;
            let data = serde_json::json!({"from": "in_progress", "to": obs.status.as_str(), "source": "poll", "error": obs.error});
            let msg = format!("in_progress → {} (poll)", obs.status);
            add_event(
                &mut tx,
                id,
                b.finished_at,
                EventKind::Status,
                &msg,
                Some(&data),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
