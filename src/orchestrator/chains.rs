//! Chains and conversations, the workers' part (docs/jobs.md, "Chains and conversations"):
//! the ledger worker looks at waiting jobs (released, or cancelled when the job they run after
//! did not complete) and creates the conversations jobs asked for; the submit worker gives a
//! released job's create what its chain holds (`chain_body`). What waits is the store's
//! (`store/chains.rs`).

use serde_json::{Map, Value};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::Orchestrator;
use super::submit::{CreateFailure, classify_create_failure};
use crate::clock::ms;
use crate::job::{JobError, JobId, JobStatus};
use crate::notify::routes_for;
use crate::store::{ConversationClaim, Settled, StoreError, SubmitClaim};
use crate::telemetry::chain;
use crate::upstream::UpstreamError;

/// A job still waiting is looked at again after this at the latest (the safety net under the
/// wake-ups written with each job's end).
const RECHECK_MS: i64 = 5 * 60_000;
/// Waiting jobs looked at per round; rounds per pass (a chain's cancels go one link a round).
const SETTLE_PAGE: i64 = 100;
const SETTLE_ROUNDS: usize = 8;
/// Conversation creates running at once.
const MAX_CONVERSATION_CREATES: usize = 4;

impl Orchestrator {
    /// The ledger's chain stage: waiting jobs asked to be cancelled end; waiting jobs due are
    /// looked at, released (the submit worker is woken) or cancelled because the job they run
    /// after did not complete, which makes their own followers due (transitively, a round
    /// each).
    pub(super) async fn settle_chains(&self) -> Result<(), StoreError> {
        let store = &self.inner.store;
        for (id, reason) in store.waiting_cancels().await? {
            self.finish_cancelled_unsubmitted(&id, reason.as_deref())
                .await?;
        }
        let mut released = false;
        for _ in 0..SETTLE_ROUNDS {
            let now = self.now();
            let due = store.due_waiting(now, SETTLE_PAGE).await?;
            if due.is_empty() {
                break;
            }
            for id in &due {
                let r = self.settle_one(id, &mut released).await;
                self.per_job(id, "chains", r).await?;
            }
        }
        if released {
            self.wake();
        }
        Ok(())
    }

    async fn settle_one(&self, id: &JobId, released: &mut bool) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let now = self.now();
        match store.settle_waiting(id, now, now + RECHECK_MS).await? {
            Settled::Released => {
                tracing::info!(job_id = %id, "job released: what it waited for is done");
                *released = true;
            }
            Settled::PredecessorFailed { attempt, error } => {
                tracing::info!(job_id = %id, reason = %error.message, "job not sent: the job it runs after did not complete");
                let Some(job) = store.get_job(id).await? else {
                    return Ok(());
                };
                let outbox = routes_for(&job.spec, &self.config());
                store
                    .finish_unsubmitted(id, attempt, JobStatus::Cancelled, &error, now, &outbox)
                    .await?;
            }
            Settled::Waiting | Settled::NotWaiting => {}
        }
        Ok(())
    }

    /// Starts a create call for each conversation due to be created (a few at a time).
    pub(super) async fn start_conversations(
        &self,
        handles: &mut Vec<JoinHandle<()>>,
    ) -> Result<(), StoreError> {
        let lease = self.conversation_lease_ms();
        for _ in 0..MAX_CONVERSATION_CREATES {
            let Some(claim) = self
                .inner
                .store
                .claim_conversation(self.now(), lease)
                .await?
            else {
                break;
            };
            let me = self.clone();
            let span = tracing::info_span!("conversation", job_id = %claim.job_id, attempt = claim.attempts);
            handles.push(
                self.inner.tracker.spawn(
                    async move {
                        if let Err(e) = me.create_conversation(claim).await {
                            tracing::error!(error = %chain(&e), "recording a conversation failed");
                        }
                    }
                    .instrument(span),
                ),
            );
        }
        Ok(())
    }

    /// How long a conversation create (with its inline retries) may take before it is tried
    /// again: then its first call's outcome is unknown, and an empty conversation may be left.
    fn conversation_lease_ms(&self) -> i64 {
        let u = &self.config().upstream;
        let retries = i64::from(u.max_retries);
        ms(u.request_timeout) * (retries + 1) + ms(u.max_retry_delay) * retries + 30_000
    }

    /// Creates the conversation of `claim` and records it; a failure is tried again later, or
    /// (refused for good) fails the job that asked for it.
    async fn create_conversation(&self, claim: ConversationClaim) -> Result<(), StoreError> {
        let mut metadata = Map::new();
        metadata.insert(
            crate::job::METADATA_JOB_KEY.into(),
            Value::String(claim.job_id.to_string()),
        );
        let result = self.client().create_conversation(&metadata).await;
        let now = self.now();
        let store = &self.inner.store;
        let e = match result {
            Ok(conv) => {
                match store.record_conversation(&claim, &conv, now).await? {
                    Ok(()) => {
                        tracing::info!(conversation = %conv, "conversation created");
                        self.wake();
                    }
                    Err(held) => {
                        // Another call's conversation was recorded first: this one is never
                        // used, so it goes.
                        tracing::warn!(conversation = %conv, %held, "an extra conversation was created; deleting it");
                        if let Err(e) = self.client().delete_conversation(&conv).await {
                            tracing::warn!(error = %e.describe(), conversation = %conv, "deleting an extra conversation failed; it stays empty and unused");
                        }
                    }
                }
                return Ok(());
            }
            Err(e) => e,
        };
        match conversation_retry(&e, claim.attempts) {
            Some(delay) => {
                let reason = format!(
                    "creating its conversation failed ({}){}; trying again in {}",
                    e.describe(),
                    if e.create_may_have_happened() {
                        ": it may have been created (an empty conversation is then left unused)"
                    } else {
                        ""
                    },
                    humantime::format_duration(std::time::Duration::from_millis(delay as u64))
                );
                tracing::warn!(error = %e.describe(), "conversation create failed; will retry");
                store
                    .conversation_failed(&claim, Some(now + delay), &reason, now)
                    .await
            }
            None => {
                let reason = format!(
                    "OpenAI refused to create its conversation: {}",
                    e.describe()
                );
                tracing::warn!(error = %e.describe(), "conversation create refused; the job fails");
                store
                    .conversation_failed(&claim, None, &reason, now)
                    .await?;
                let Some(job) = store.get_job(&claim.job_id).await? else {
                    return Ok(());
                };
                let outbox = routes_for(&job.spec, &self.config());
                let error = JobError {
                    code: "conversation_failed".into(),
                    message: reason,
                };
                store
                    .finish_unsubmitted(
                        &claim.job_id,
                        job.attempt,
                        JobStatus::Failed,
                        &error,
                        now,
                        &outbox,
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// Completes a released job's create body from its chain: its conversation (a created one,
    /// or its predecessor's), else `previous_response_id` = the final response of the job it
    /// runs after, or that job's output in its `input_template`. Returns false when the job
    /// was given back instead (its conversation is not recorded: cannot happen once released).
    pub(super) async fn chain_body(
        &self,
        claim: &SubmitClaim,
        body: &mut Map<String, Value>,
    ) -> Result<bool, StoreError> {
        if claim.spec.after.is_none()
            && !claim.spec.new_conversation
            && body.get("conversation").is_none_or(Value::is_null)
        {
            return Ok(true);
        }
        let store = &self.inner.store;
        let Some(ctx) = store.chain_context(&claim.id).await? else {
            return Ok(true);
        };
        if claim.spec.new_conversation && ctx.conversation.is_none() {
            let now = self.now();
            store
                .reschedule_submission(
                    &claim.id,
                    claim.attempt,
                    now + 5_000,
                    now,
                    "its conversation is not recorded yet; nothing was sent, trying again in 5s",
                )
                .await?;
            return Ok(false);
        }
        apply_chain(body, &claim.spec, &ctx);
        Ok(true)
    }
}

/// Puts what a job's chain holds into its create body (see [`Orchestrator::chain_body`]).
fn apply_chain(
    body: &mut Map<String, Value>,
    spec: &crate::job::JobSpec,
    ctx: &crate::store::ChainContext,
) {
    if body.get("conversation").is_none_or(Value::is_null)
        && let Some(c) = &ctx.conversation
    {
        body.insert("conversation".into(), Value::String(c.clone()));
    }
    let on_conversation = body.get("conversation").is_some_and(|c| !c.is_null());
    if let Some(t) = &spec.input_template {
        let output = ctx.previous_output.as_deref().unwrap_or_default();
        body.insert(
            "input".into(),
            Value::String(crate::job::chain::render_template(t, output)),
        );
    } else if spec.after.is_some()
        && !on_conversation
        && let Some(r) = &ctx.previous_response_id
    {
        body.insert("previous_response_id".into(), Value::String(r.clone()));
    }
    if on_conversation {
        // OpenAI takes one or the other.
        body.remove("previous_response_id");
    }
}

/// When to try a failed conversation create again (ms), or `None` when it was refused for
/// good. A create that may have happened is tried again too: OpenAI lists no conversations,
/// so nothing can find the one it may have made, and an empty conversation costs nothing.
fn conversation_retry(e: &UpstreamError, attempts: i64) -> Option<i64> {
    let backoff = || {
        ms(crate::upstream::http_retry::backoff(
            attempts.clamp(0, 10) as u32,
            rand::random(),
        ))
        .min(300_000)
    };
    match classify_create_failure(e) {
        CreateFailure::Refused => None,
        CreateFailure::Hold => Some(60_000),
        CreateFailure::Retry => Some(e.retry_after().map_or_else(backoff, ms)),
        CreateFailure::Uncertain => Some(backoff()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::job::JobSpec;
    use crate::store::ChainContext;

    fn spec(v: Value) -> JobSpec {
        JobSpec::from_value(v, "#1").unwrap()
    }

    fn body(s: &JobSpec) -> Map<String, Value> {
        s.create_body(&JobId::generate())
    }

    #[test]
    fn a_follower_chains_to_its_predecessors_response() {
        let s =
            spec(json!({"model": "m", "input": "next", "after": "job_01K00000000000000000000000"}));
        let mut b = body(&s);
        let ctx = ChainContext {
            conversation: None,
            previous_response_id: Some("resp_1".into()),
            previous_output: Some("out".into()),
        };
        apply_chain(&mut b, &s, &ctx);
        assert_eq!(b["previous_response_id"], "resp_1");
        assert_eq!(b["input"], "next");
        assert!(b.get("conversation").is_none());
    }

    #[test]
    fn a_template_takes_the_output_instead() {
        let s = spec(json!({"model": "m", "after": "a",
            "input_template": "Check this: {{after.output_text}}"}));
        let mut b = body(&s);
        let ctx = ChainContext {
            conversation: None,
            previous_response_id: Some("resp_1".into()),
            previous_output: Some("the draft".into()),
        };
        apply_chain(&mut b, &s, &ctx);
        assert_eq!(b["input"], "Check this: the draft");
        assert!(b.get("previous_response_id").is_none());
    }

    #[test]
    fn on_a_conversation_there_is_no_previous_response() {
        let s = spec(json!({"model": "m", "input": "next", "after": "a"}));
        let mut b = body(&s);
        let ctx = ChainContext {
            conversation: Some("conv_1".into()),
            previous_response_id: Some("resp_1".into()),
            previous_output: None,
        };
        apply_chain(&mut b, &s, &ctx);
        assert_eq!(b["conversation"], "conv_1");
        assert!(b.get("previous_response_id").is_none());
        // The job's own conversation wins over its chain's.
        let s =
            spec(json!({"model": "m", "input": "x", "after": "a", "conversation": "conv_mine"}));
        let mut b = body(&s);
        apply_chain(&mut b, &s, &ctx);
        assert_eq!(b["conversation"], "conv_mine");
    }

    fn api_error(status: u16, code: &str) -> UpstreamError {
        UpstreamError::Api {
            status,
            kind: Some("invalid_request_error".into()),
            code: Some(code.into()),
            param: Some("conversation".into()),
            message: "Another process is currently operating on this conversation.".into(),
            request_id: Some("req_1".into()),
            retry_after: None,
            should_retry: None,
            rate_limits: None,
            from_api: true,
        }
    }

    #[test]
    fn a_locked_conversation_is_a_retry_later_not_a_failure() {
        assert_eq!(
            classify_create_failure(&api_error(400, "conversation_locked")),
            CreateFailure::Retry
        );
        assert_eq!(
            classify_create_failure(&api_error(400, "invalid_value")),
            CreateFailure::Refused
        );
    }

    #[test]
    fn a_conversation_create_is_retried_unless_refused() {
        assert_eq!(
            conversation_retry(&api_error(400, "invalid_value"), 1),
            None
        );
        assert_eq!(
            conversation_retry(&api_error(401, "invalid_api_key"), 1),
            Some(60_000)
        );
        assert!(conversation_retry(&api_error(502, "x"), 1).is_some());
    }
}
