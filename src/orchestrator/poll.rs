//! The poll worker: the safety net that runs for every non-terminal job, webhooks or not.
//! It also carries out cancels (a user's or a timeout's) for jobs that have a response.

use tokio::task::JoinHandle;
use tracing::Instrument;

use super::submit::interval_ms;
use super::{Orchestrator, Worker};
use crate::batch::Batcher;
use crate::job::{JobError, JobId, JobStatus, Observation, ResponseId};
use crate::notify::routes_for;
use crate::store::{ApplyOutcome, EventKind, ObservationWrite, PollClaim, StoreError};
use crate::telemetry::chain;
use crate::upstream::{CancelOutcome, UpstreamError};

/// Poll results written per transaction, at most.
const MAX_APPLY_BATCH: usize = 256;
/// Polls in a row that must answer 404 before a job fails with `response_not_found`.
const NOT_FOUND_CONFIRMATIONS: i64 = 3;
/// The wait before asking again after a 404.
const NOT_FOUND_RETRY_MS: i64 = 5_000;

impl Orchestrator {
    /// Claims and starts the polls that are due, as many as there are free poll permits.
    pub(super) async fn start_polls(
        &self,
        handles: &mut Vec<JoinHandle<()>>,
    ) -> Result<(), StoreError> {
        let free = self.inner.poll_permits.available_permits();
        if free == 0 {
            return Ok(());
        }
        let now = self.now();
        // The lease: if this poll's worker dies, the job is polled again after it.
        let lease = crate::clock::ms(self.config().upstream.request_timeout) + 30_000;
        let claims = self
            .inner
            .store
            .claim_polls(now, lease, free as i64)
            .await?;
        for claim in claims {
            let Ok(permit) = self.inner.poll_permits.clone().try_acquire_owned() else {
                // Another pass took the permit; the claim's lease makes it due again later.
                self.inner
                    .store
                    .reschedule_poll(&claim.id, now, now, None)
                    .await?;
                continue;
            };
            let me = self.clone();
            let span =
                tracing::info_span!("poll", job_id = %claim.id, response_id = %claim.response_id);
            handles.push(
                self.inner.tracker.spawn(
                    async move {
                        let id = claim.id.clone();
                        let r = me.poll(claim).await;
                        if let Err(e) = me.per_job(&id, "poll", r).await {
                            tracing::error!(error = %chain(&e), "recording a poll failed");
                        }
                        drop(permit);
                        me.wake_after(Worker::Ledger);
                    }
                    .instrument(span),
                ),
            );
        }
        Ok(())
    }

    async fn poll(&self, claim: PollClaim) -> Result<(), StoreError> {
        let (result, source) = if claim.cancel_requested == 1 {
            (
                self.cancel_upstream(&claim.id, &claim.response_id).await,
                "cancel",
            )
        } else {
            (
                self.client()
                    .retrieve_including(
                        &claim.response_id,
                        &claim
                            .retrieve_include
                            .as_deref()
                            .map(|s| s.split(',').filter(|v| !v.is_empty()).collect::<Vec<_>>())
                            .unwrap_or_default(),
                    )
                    .await
                    .map(|f| (f.observation, f.request_id)),
                "poll",
            )
        };
        let now = self.now();
        match result {
            Ok((obs, request_id)) => {
                let outcome = self
                    .apply_traced(
                        &claim.id,
                        &obs,
                        claim.poll_interval_ms,
                        claim.cancel_reason.as_deref(),
                        source,
                        request_id.as_deref(),
                    )
                    .await?;
                crate::telemetry::poll(match outcome {
                    ApplyOutcome::Applied { from, to } if from != to => "changed",
                    _ => "unchanged",
                });
            }
            Err(UpstreamError::Api { status: 404, .. }) => {
                crate::telemetry::poll("not_found");
                self.not_found(&claim, source, now).await?;
            }
            Err(e) => {
                crate::telemetry::poll("error");
                // A server's Retry-After is honoured up to `polling.max_interval`: a lost
                // webhook must never delay a result by more than that.
                let max = crate::clock::ms(self.config().polling.max_interval);
                let delay = e
                    .retry_after()
                    .map(crate::clock::ms)
                    .map(|d| d.min(max))
                    .unwrap_or_else(|| interval_ms(claim.poll_interval_ms, self, now));
                tracing::warn!(error = %e.describe(), "poll failed; will retry");
                let msg = format!("{source} failed: {}", e.describe());
                self.inner
                    .store
                    .reschedule_poll(&claim.id, now + delay, now, Some(&msg))
                    .await?;
            }
        }
        Ok(())
    }

    /// Upstream answered 404 for the job's response. One answer is not proof (a GET can lag
    /// a create, a proxy can misroute): the job is polled again a few times, and only then
    /// fails with `response_not_found`, after a cancel in case the response still runs
    /// somewhere and bills.
    async fn not_found(&self, claim: &PollClaim, source: &str, now: i64) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let n = store
            .record_poll_not_found(&claim.id, now + NOT_FOUND_RETRY_MS, now)
            .await?;
        if n < NOT_FOUND_CONFIRMATIONS {
            let msg = format!(
                "{source}: upstream answered 404 for {} ({n} of {NOT_FOUND_CONFIRMATIONS} before the job fails); asking again",
                claim.response_id
            );
            tracing::warn!(response_id = %claim.response_id, n, "poll answered 404; confirming");
            store
                .record_event(&claim.id, now, EventKind::PollNotFound, &msg, None)
                .await?;
            return Ok(());
        }
        let cancel = match self.client().cancel(&claim.response_id).await {
            Ok(_) => "a cancel was accepted",
            Err(UpstreamError::Api { status: 404, .. }) => "a cancel found nothing either",
            Err(_) => "a cancel could not be sent",
        };
        let error = JobError {
            code: "response_not_found".into(),
            message: format!(
                "upstream answered 404 for response {} to {n} polls in a row ({cancel}): it was deleted or expired upstream",
                claim.response_id
            ),
        };
        let obs = Observation {
            response_id: claim.response_id.clone(),
            status: JobStatus::Failed,
            output_text: None,
            usage: None,
            error: Some(error),
            raw: serde_json::Value::Null,
        };
        self.apply(&claim.id, &obs, claim.poll_interval_ms, None, source)
            .await?;
        Ok(())
    }

    /// Cancels a response upstream and returns its state after (fetching it if the cancel
    /// came too late), with the `x-request-id` of the call that showed it. A cancel accepted
    /// before the response is final is noted in the job's timeline with its request id.
    pub(super) async fn cancel_upstream(
        &self,
        job_id: &JobId,
        response_id: &ResponseId,
    ) -> Result<(Observation, Option<String>), UpstreamError> {
        match self.client().cancel(response_id).await? {
            CancelOutcome::Cancelled(f) if f.observation.status.is_terminal() => {
                Ok((f.observation, f.request_id))
            }
            // Accepted but not yet final, or already finished otherwise: the GET tells.
            other => {
                if let CancelOutcome::Cancelled(f) = &other {
                    let data =
                        serde_json::json!({"response_id": response_id, "request_id": f.request_id});
                    let msg = format!("cancel accepted upstream ({})", f.observation.status);
                    if let Err(e) = self
                        .inner
                        .store
                        .record_event(job_id, self.now(), EventKind::CancelSent, &msg, Some(&data))
                        .await
                    {
                        tracing::error!(error = %chain(&e), "cannot record a cancel");
                    }
                }
                // With what the job's tools found: a cancel that came too late finds the
                // response finished, and this GET is what the job keeps.
                let include = self.include_of(job_id).await;
                let include: Vec<&str> = include.iter().map(String::as_str).collect();
                let f = self
                    .client()
                    .retrieve_including(response_id, &include)
                    .await?;
                Ok((f.observation, f.request_id))
            }
        }
    }

    /// What a job's retrieves ask to include (`JobSpec::retrieve_include`); nothing when the
    /// job cannot be read (the GET then still answers, only without the extras).
    pub(super) async fn include_of(&self, job_id: &JobId) -> Vec<String> {
        match self.inner.store.get_job(job_id).await {
            Ok(Some(job)) => job.spec.retrieve_include(),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %chain(&e), job_id = %job_id, "cannot read a job's include list");
                Vec::new()
            }
        }
    }

    /// Writes an observation with the next poll time, and notices missed webhooks.
    pub(super) async fn apply(
        &self,
        id: &JobId,
        obs: &Observation,
        prev_interval_ms: i64,
        cancel_reason: Option<&str>,
        source: &str,
    ) -> Result<ApplyOutcome, StoreError> {
        self.apply_traced(id, obs, prev_interval_ms, cancel_reason, source, None)
            .await
    }

    /// Applies an observation through the group-committed writer (started on first use, on
    /// the caller's runtime): the results of polls that end together share one transaction
    /// and its fsync, each in a savepoint of its own.
    async fn apply_batched(&self, write: ObservationWrite) -> Result<ApplyOutcome, StoreError> {
        let store = self.inner.store.clone();
        self.inner
            .applier
            .get_or_init(|| {
                Batcher::start(MAX_APPLY_BATCH, move |writes: Vec<ObservationWrite>| {
                    let store = store.clone();
                    async move { store.apply_observations(&writes).await }
                })
            })
            .call(write)
            .await
            .map_err(|_| StoreError::BatchFailed("the daemon is stopping".into()))?
    }

    /// [`Self::apply`], keeping the upstream `x-request-id` that showed the observation in
    /// the status event.
    pub(super) async fn apply_traced(
        &self,
        id: &JobId,
        obs: &Observation,
        prev_interval_ms: i64,
        cancel_reason: Option<&str>,
        source: &str,
        request_id: Option<&str>,
    ) -> Result<ApplyOutcome, StoreError> {
        let store = &self.inner.store;
        // Only an end is notified: the job's spec (its `notify`) is read for that alone. The
        // end of a job not yet finished keeps what its response made first (`artifacts.rs`).
        let mut kept = None;
        let mut _fetching = None;
        let outbox = if obs.status.is_terminal() {
            let Some(job) = store.get_job(id).await? else {
                return Ok(ApplyOutcome::Missing);
            };
            // A turn that asks for actions is not the end: its artifacts are not kept (the
            // turn's response keeps them as they came).
            if !job.status.is_terminal()
                && Self::has_artifacts(obs)
                && crate::job::handler::asked_of(&obs.raw).is_empty()
            {
                // One fetch per job: an end seen again meanwhile is recorded by the first, or
                // by the poll after it if that one fails.
                let Some(guard) = self.start_fetching(id) else {
                    return Ok(ApplyOutcome::Stale {
                        current: job.status,
                        observed: obs.status,
                    });
                };
                _fetching = Some(guard);
                kept = self.keep_artifacts(id, obs).await;
            }
            routes_for(&job.spec, &self.config())
        } else {
            Vec::new()
        };
        let (obs, artifacts) = match kept {
            Some((obs, artifacts)) => (std::borrow::Cow::Owned(obs), artifacts),
            None => (std::borrow::Cow::Borrowed(obs), Vec::new()),
        };
        let now = self.now();
        let interval = interval_ms(prev_interval_ms, self, now);
        let outcome = self
            .apply_batched(ObservationWrite {
                id: id.clone(),
                obs: obs.clone().into_owned(),
                now,
                next_poll_at: now + interval,
                poll_interval_ms: interval,
                cancel_reason: cancel_reason.map(str::to_owned),
                outbox,
                source: source.to_owned(),
                request_id: request_id.map(str::to_owned),
                artifacts,
                image_prices: self.config().pricing().tools.image_generation,
            })
            .await?;
        if let ApplyOutcome::Acting { from } = outcome {
            tracing::info!(job_id = %id, %from, source, "the response asks for function outputs or approvals");
            // The ledger worker's acting stage takes it.
            self.wake();
        }
        if let ApplyOutcome::Applied { from, to } = outcome
            && from != to
        {
            tracing::info!(job_id = %id, %from, %to, source, "status changed");
            if to.is_terminal() {
                self.inner.governor.spend_changed();
                self.wake();
                if source == "poll"
                    && self.webhooks_configured()
                    && !store.has_delivery_for(obs.response_id.as_str()).await?
                {
                    tracing::info!(
                        job_id = %id,
                        "finished job found by polling; no webhook had arrived"
                    );
                    if self.inner.health.record_miss(now) {
                        self.pull_in_safety_net(now).await;
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// Webhooks just turned unhealthy: the polls spread for a safety net (up to
    /// `in flight / safety_net_per_second` away) are brought within the spread of
    /// `max_per_second` (at least a quarter of `max_interval`), so a webhook outage does not
    /// leave results waiting for the thin safety net.
    async fn pull_in_safety_net(&self, now: i64) {
        let config = self.config();
        let cfg = &config.polling;
        let in_flight = self
            .inner
            .in_flight
            .load(std::sync::atomic::Ordering::Relaxed);
        let (spread, _) = super::poll_interval::spread(
            cfg.max_interval / 4,
            cfg.max_interval,
            in_flight,
            cfg.max_per_second,
        );
        match self
            .inner
            .store
            .pull_in_polls(now, crate::clock::ms(spread))
            .await
        {
            Ok(n) if n > 0 => {
                tracing::info!(jobs = n, "webhooks went missing: polls brought forward");
                self.wake();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %chain(&e), "cannot bring polls forward"),
        }
    }

    /// Cancels a job now, for the API: a pending job ends at once; a submitted one is cancelled
    /// upstream (falling back to the poll worker if that fails). Returns the job after.
    pub async fn cancel_job(&self, id: &JobId) -> Result<Option<crate::store::JobRow>, StoreError> {
        let store = &self.inner.store;
        let now = self.now();
        let Some(job) = store.request_cancel(id, "user", now).await? else {
            return Ok(None);
        };
        if job.status.is_terminal() {
            return Ok(Some(job));
        }
        match (&job.response_id, job.status) {
            // Not sent yet, or waiting for the job it runs after (`chains.rs`).
            (None, JobStatus::Pending | JobStatus::Held)
                if matches!(
                    job.submit_state,
                    crate::store::SubmitState::Ready | crate::store::SubmitState::Waiting
                ) =>
            {
                self.finish_cancelled_unsubmitted(id, job.cancel_reason.as_deref())
                    .await?;
            }
            // Between turns: nothing runs upstream, it ends now.
            (None, JobStatus::InProgress | JobStatus::RequiresAction)
                if job.submit_state == crate::store::SubmitState::Acting =>
            {
                let error = super::turns::cancel_error(job.cancel_reason.as_deref());
                let outbox = routes_for(&job.spec, &self.config());
                self.end_acting(id, job.turn, (JobStatus::Cancelled, &error), now, &outbox)
                    .await?;
            }
            // Submitting or uncertain: resolved when the create's outcome is known.
            (Some(rid), _) => match self.cancel_upstream(id, rid).await {
                // Finished already, with artifacts to fetch: not in this request. The poll
                // worker records the end (asking again: the job is marked to cancel).
                Ok((obs, _)) if obs.status.is_terminal() && Self::has_artifacts(&obs) => {
                    store.wake_poll(id, self.now()).await?;
                    self.wake();
                }
                Ok((obs, request_id)) => {
                    self.apply_traced(
                        id,
                        &obs,
                        job.poll_interval_ms,
                        job.cancel_reason.as_deref(),
                        "cancel",
                        request_id.as_deref(),
                    )
                    .await?;
                }
                Err(e) => {
                    let msg = format!(
                        "cancel failed: {}; the poll worker will try again",
                        e.describe()
                    );
                    store
                        .record_event(id, self.now(), EventKind::Error, &msg, None)
                        .await?;
                    self.wake();
                }
            },
            _ => {}
        }
        store.get_job(id).await
    }

    /// Ends a never-submitted job that was asked to cancel.
    pub(super) async fn finish_cancelled_unsubmitted(
        &self,
        id: &JobId,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let Some(job) = store.get_job(id).await? else {
            return Ok(());
        };
        let error = if reason == Some("timeout") {
            JobError {
                code: "timeout".into(),
                message: "the job ran past its timeout before it was submitted".into(),
            }
        } else {
            JobError {
                code: "cancelled".into(),
                message: "cancelled before it was submitted".into(),
            }
        };
        let outbox = routes_for(&job.spec, &self.config());
        store
            .finish_unsubmitted(
                id,
                job.attempt,
                JobStatus::Cancelled,
                &error,
                self.now(),
                &outbox,
            )
            .await?;
        self.inner.wakes.outbox.notify_one();
        Ok(())
    }
}
