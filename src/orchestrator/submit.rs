//! The submit worker: claim a pending job, send its create call, record what happened.
//!
//! The claim (with `submissions + 1`) is committed before the call is sent, so the ledger
//! always knows a create may be in flight. Afterwards, one of four things is written:
//! the response id (accepted); a reschedule (surely not received: rate limit, no connection);
//! a failure (refused: a 4xx); or *uncertain* (it may have started a response we never heard
//! of). Uncertain creates are never sent again silently; see `maintenance.rs`.
//!
//! Before claiming, budgets hold or release jobs (`budget.rs`) and models whose rate-limit
//! window is nearly used up are deferred to its reset (`limits.rs`); the claim itself takes the
//! highest priority first and skips models at their `per_model` limit.

use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{Orchestrator, chain, schedule};
use crate::clock::ms;
use crate::job::{JobError, JobStatus};
use crate::notify::routes_for;
use crate::store::{ApplyContext, StoreError, SubmitClaim};
use crate::upstream::{self, UpstreamError};

impl Orchestrator {
    /// Claims and starts as many submissions as the limits allow.
    pub(super) async fn start_submissions(
        &self,
        handles: &mut Vec<JoinHandle<()>>,
    ) -> Result<(), StoreError> {
        let config = self.config();
        let over_budget = self.apply_budget(&config).await?;
        self.defer_rate_limited(&config).await?;
        let limits = Self::claim_limits(&config, over_budget);
        loop {
            if self.inner.store.count_in_flight().await? >= limits.max_in_flight {
                return Ok(());
            }
            let Ok(permit) = self.inner.submit_permits.clone().try_acquire_owned() else {
                return Ok(());
            };
            let now = self.now();
            let Some(claim) = self
                .inner
                .store
                .claim_submission(now, self.submit_lease_ms(), &limits)
                .await?
            else {
                return Ok(());
            };
            let me = self.clone();
            let span = tracing::info_span!("submit", job_id = %claim.id, attempt = claim.attempt);
            handles.push(
                self.inner.tracker.spawn(
                    async move {
                        if let Err(e) = me.submit(claim).await {
                            tracing::error!(error = %chain(&e), "recording a submission failed");
                        }
                        drop(permit);
                    }
                    .instrument(span),
                ),
            );
        }
    }

    /// How long a create call (with its inline retries) may take before the claim counts as
    /// abandoned.
    fn submit_lease_ms(&self) -> i64 {
        let config = self.config();
        let u = &config.upstream;
        let retries = i64::from(u.max_retries);
        ms(u.request_timeout) * (retries + 1) + ms(u.max_retry_delay) * retries + 30_000
    }

    async fn submit(&self, claim: SubmitClaim) -> Result<(), StoreError> {
        let id = claim.id.as_str();
        let job_id = crate::job::JobId::parse(id).map_err(StoreError::Corrupt)?;
        let body = claim.spec.create_body(&job_id);
        let result = self.client().create(&body).await;
        self.record_rate_limits(
            claim.spec.model(),
            match &result {
                Ok(f) => f.rate_limits.as_ref(),
                Err(e) => e.rate_limits(),
            },
        );
        let now = self.now();
        let store = &self.inner.store;
        match result {
            Ok(fetched) => {
                crate::telemetry::submission("accepted");
                let obs = &fetched.observation;
                let interval = self.config().polling.min_interval;
                let recorded = store
                    .record_submitted(
                        id,
                        obs,
                        now,
                        now + ms(interval),
                        ms(interval),
                        fetched.request_id.as_deref(),
                    )
                    .await?;
                if recorded {
                    tracing::info!(response_id = %obs.response_id, status = %obs.status, "submitted");
                    let outbox = routes_for(&claim.spec, &self.config());
                    store
                        .apply_observation(
                            id,
                            obs,
                            &ApplyContext {
                                now,
                                next_poll_at: now + ms(interval),
                                poll_interval_ms: ms(interval),
                                cancel_reason: None,
                                outbox: &outbox,
                                source: "create",
                                request_id: fetched.request_id.as_deref(),
                            },
                        )
                        .await?;
                } else {
                    self.handle_lost_claim(id, obs.response_id.as_str()).await?;
                }
            }
            Err(e) if matches!(e.status(), Some(401 | 403)) => {
                // A key or permission problem is the daemon's, not the job's: hold the job
                // until the config is fixed instead of failing every job in the queue.
                crate::telemetry::submission("retried");
                tracing::error!(error = %e.describe(), "upstream refused our credentials; holding submissions");
                let reason = format!(
                    "upstream refused the request ({}): check upstream.api_key; trying again in 1m",
                    e.describe()
                );
                store
                    .reschedule_submission(id, claim.attempt, now + 60_000, now, &reason)
                    .await?;
            }
            Err(e) if !e.create_may_have_happened() && e.is_retryable() => {
                let delay = e.retry_after().unwrap_or_else(|| {
                    upstream::retry::backoff(claim.submissions.clamp(0, 10) as u32, rand::random())
                });
                let reason = format!(
                    "create refused for now ({}); trying again in {}",
                    e.describe(),
                    humantime::format_duration(std::time::Duration::from_millis(ms(delay) as u64))
                );
                crate::telemetry::submission("retried");
                tracing::warn!(error = %e.describe(), "create not accepted; will retry");
                store
                    .reschedule_submission(id, claim.attempt, now + ms(delay), now, &reason)
                    .await?;
            }
            Err(e) if !e.create_may_have_happened() => {
                crate::telemetry::submission("refused");
                tracing::warn!(error = %e.describe(), "create refused");
                let error = refused_error(&e);
                let outbox = routes_for(&claim.spec, &self.config());
                store
                    .finish_unsubmitted(id, JobStatus::Failed, &error, now, &outbox)
                    .await?;
            }
            Err(e) => {
                let wait = self.uncertain_wait_ms();
                let reason = format!(
                    "create outcome unknown ({}): it may have started a response; {}",
                    e.describe(),
                    if wait > 0 {
                        "waiting for a webhook to reveal it before applying the uncertain-create policy"
                    } else {
                        "applying the uncertain-create policy"
                    }
                );
                crate::telemetry::submission("uncertain");
                tracing::warn!(error = %e.describe(), "create outcome uncertain");
                store
                    .mark_uncertain(id, claim.attempt, now + wait, now, &reason)
                    .await?;
            }
        }
        Ok(())
    }

    /// Our create succeeded but the job no longer expected it (it was adopted from a webhook,
    /// resubmitted, or finished meanwhile). If the job holds a different response, ours is a
    /// duplicate run: cancel it so it costs as little as possible.
    async fn handle_lost_claim(&self, id: &str, response_id: &str) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let job = store.get_job(id).await?;
        if job.as_ref().and_then(|j| j.response_id.as_deref()) == Some(response_id) {
            return Ok(());
        }
        let now = self.now();
        let msg =
            format!("a second response {response_id} was started for this job; cancelling it");
        tracing::warn!(
            job_id = id,
            response_id,
            "duplicate response; cancelling it"
        );
        store
            .record_event(
                id,
                now,
                "duplicate",
                &msg,
                Some(&serde_json::json!({"response_id": response_id})),
            )
            .await?;
        if let Err(e) = self.client().cancel(response_id).await {
            let msg = format!(
                "cancelling duplicate {response_id} failed: {}",
                e.describe()
            );
            store
                .record_event(id, self.now(), "error", &msg, None)
                .await?;
        }
        Ok(())
    }
}

/// The job error for a create OpenAI refused.
fn refused_error(e: &UpstreamError) -> JobError {
    match e {
        UpstreamError::Api {
            code,
            kind,
            message,
            param,
            status,
            ..
        } => {
            let code = code
                .clone()
                .or_else(|| kind.clone())
                .unwrap_or_else(|| format!("http_{status}"));
            let message = match param {
                Some(p) => format!("{message} (param: {p})"),
                None => message.clone(),
            };
            JobError { code, message }
        }
        other => JobError {
            code: other.code(),
            message: other.describe(),
        },
    }
}

/// Re-exported for the poll worker.
pub(super) fn interval_ms(prev: i64, orch: &Orchestrator, now: i64) -> i64 {
    let config = orch.config();
    let cfg = &config.polling;
    let prev = std::time::Duration::from_millis(prev.max(0) as u64);
    let healthy = orch.inner.health.is_healthy(now);
    let next = schedule::next_interval(prev, cfg.min_interval, cfg.max_interval, healthy);
    ms(schedule::jitter(next, cfg.max_interval, rand::random()))
}
