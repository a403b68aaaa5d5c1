//! The ledger worker's housekeeping (at most every 250 ms): timeouts, cancels of unsubmitted
//! jobs, expired leases and uncertain creates; and, every pass, the hand-off of webhook
//! deliveries to their jobs (adopting responses a job never heard of).

use tokio::task::JoinHandle;

use super::Orchestrator;
use crate::config::UncertainCreatePolicy;
use crate::job::{JobError, JobId, JobStatus};
use crate::notify::routes_for;
use crate::store::{DeliveryRow, StoreError, named_response};
use crate::telemetry::chain;
use crate::upstream::tagged_job_id;

/// Deliveries handed off per query; a full page makes the ledger worker look again at once.
const HAND_OFF_PAGE: i64 = 128;

impl Orchestrator {
    pub(super) async fn maintain(
        &self,
        handles: &mut Vec<JoinHandle<()>>,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let now = self.now();
        for id in store.due_timeouts(now).await? {
            tracing::info!(job_id = %id, "timeout reached; cancelling");
            store.request_cancel(&id, "timeout", now).await?;
        }
        for (id, reason) in store.cancellable_unsubmitted().await? {
            self.finish_cancelled_unsubmitted(&id, reason.as_deref())
                .await?;
        }
        let expired = store
            .expire_submission_leases(now, self.uncertain_wait(now))
            .await?;
        if !expired.is_empty() {
            tracing::warn!(
                count = expired.len(),
                "submissions lost their worker; outcome uncertain"
            );
        }
        for job in store.due_uncertain(now).await? {
            let r = self
                .resolve_uncertain(&job.id, job.attempt, job.cancel_requested == 1)
                .await;
            self.per_job(&job.id, "uncertain", r).await?;
        }
        self.hand_off_deliveries(handles).await
    }

    /// The result of work on one job: a row that does not decode quarantines that job (an
    /// event, a metric, a log line) and the pass goes on; any other error stops the pass.
    pub(super) async fn per_job(
        &self,
        id: &JobId,
        worker: &'static str,
        r: Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match r {
            Err(e) if e.is_decode() => {
                let reason = format!("its row does not decode: {}", chain(&e));
                tracing::error!(job_id = %id, worker, %reason, "job quarantined");
                crate::telemetry::quarantined(worker);
                self.inner
                    .store
                    .quarantine_job(id, &reason, self.now())
                    .await?;
                Ok(())
            }
            other => other,
        }
    }

    /// The wait for an uncertain create is over and no webhook revealed a response.
    async fn resolve_uncertain(
        &self,
        id: &JobId,
        attempt: i64,
        cancel_requested: bool,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let now = self.now();
        let Some(job) = store.get_job(id).await? else {
            return Ok(());
        };
        let outbox = routes_for(&job.spec, &self.config());
        if cancel_requested {
            let error = JobError {
                code: if job.cancel_reason.as_deref() == Some("timeout") {
                    "timeout"
                } else {
                    "cancelled"
                }
                .into(),
                message: "cancelled while its create outcome was unknown".into(),
            };
            store
                .finish_unsubmitted(id, attempt, JobStatus::Cancelled, &error, now, &outbox)
                .await?;
            self.inner.wakes.outbox.notify_one();
            self.inner.wakes.submit.notify_one();
            return Ok(());
        }
        match self.config().upstream.uncertain_create {
            UncertainCreatePolicy::Fail => {
                let error = JobError {
                    code: "submit_uncertain".into(),
                    message: "the create call may have reached OpenAI but no response id came back, and no webhook \
                              revealed one in time; not resubmitted to avoid paying twice (policy `fail`). If the \
                              response shows up later, this job takes its outcome. Retry the job if it did not run."
                        .into(),
                };
                tracing::warn!(
                    job_id = %id,
                    "uncertain create: failing the job (policy fail)"
                );
                store
                    .finish_unsubmitted(id, attempt, JobStatus::Failed, &error, now, &outbox)
                    .await?;
                self.inner.wakes.outbox.notify_one();
                self.inner.wakes.submit.notify_one();
            }
            UncertainCreatePolicy::Resubmit => {
                tracing::warn!(
                    job_id = %id,
                    "uncertain create: resubmitting (policy resubmit)"
                );
                store
                    .resubmit_uncertain(
                        id,
                        attempt,
                        now,
                        "no response was revealed for the uncertain create; submitting again (policy `resubmit`)",
                    )
                    .await?;
                self.wake();
            }
        }
        Ok(())
    }

    /// Hands recorded deliveries to their jobs: a hint to poll now for known responses, an
    /// adoption lookup for unknown ones, nothing for event types we do not use.
    pub(super) async fn hand_off_deliveries(
        &self,
        handles: &mut Vec<JoinHandle<()>>,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        // One pass at a time (the receiver records meanwhile).
        let _turn = self.inner.hand_offs.lock().await;
        // Look-ups go at the configured pace: the pacer books later times for those over it.
        // Set before the page is read, so that the page does not hold bookings let go.
        let per_second = self.config().webhook.lookups_per_second;
        if let Some(unbooked) = store.pace_looks(per_second, self.now()).await?
            && unbooked > 0
        {
            tracing::info!(
                unbooked,
                per_second,
                "webhook look-ups booked again at the pace"
            );
        }
        // Those whose look-up still waits for its turn are left alone (not counted again).
        let busy: Vec<String> = self
            .inner
            .looking_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let deliveries = store
            .unhandled_deliveries(self.now(), HAND_OFF_PAGE, &busy)
            .await?;
        if deliveries.len() as i64 == HAND_OFF_PAGE {
            // More are due: look again as soon as this pass ends.
            self.inner.wakes.ledger.notify_one();
        }
        // A look-up that began since the page was read is not started twice.
        let deliveries: Vec<DeliveryRow> = {
            let busy = self
                .inner
                .looking_up
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            deliveries
                .into_iter()
                .filter(|d| !busy.contains(&d.webhook_id))
                .collect()
        };
        // A `response.*` event names a response id; anything else (or an id that cannot be one)
        // needs no hand-off. Known responses are handed to their jobs in one transaction.
        let named = deliveries
            .into_iter()
            .map(|d| {
                let id = named_response(&d.event_type, d.object_id.as_deref());
                (d, id)
            })
            .collect();
        let handed = store.hand_off_deliveries(named, self.now()).await?;
        crate::telemetry::webhook_lookups(
            handed.look_up.len(),
            handed.booked,
            handed.given_up.len(),
        );
        for (d, response_id) in handed.given_up {
            tracing::info!(webhook_id = %d.webhook_id, response_id = %response_id, looks = d.looks, "webhook names a response of no job; ignoring it");
        }
        // Unknown responses: our create may still be in flight, or it was lost. Look each up
        // (the store made it due again after a growing pause, a bounded number of times).
        // At most ADOPT_LOOKUPS at once, and at most `webhook.lookups_per_second` (the store
        // returned only those the pacer let start now; it booked the others later times).
        for (d, _) in handed.look_up {
            let me = self.clone();
            let permits = self.inner.adopt_permits.clone();
            self.inner
                .looking_up
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(d.webhook_id.clone());
            handles.push(self.inner.tracker.spawn(async move {
                let webhook_id = d.webhook_id.clone();
                if let Ok(_permit) = permits.acquire_owned().await
                    && let Err(e) = me.try_adopt(d).await
                {
                    tracing::error!(error = %chain(&e), "adopting a response failed");
                }
                me.inner
                    .looking_up
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&webhook_id);
            }));
        }
        Ok(())
    }

    /// Fetches a response no job knows and, if its metadata names one of our jobs, hands it
    /// to that job whatever the job's state (see [`Store::attach_response`]): the job takes
    /// it, or it is a duplicate to cancel and record.
    ///
    /// [`Store::attach_response`]: crate::store::Store::attach_response
    async fn try_adopt(&self, d: DeliveryRow) -> Result<(), StoreError> {
        let Some(response_id) = d.object_id.as_deref() else {
            return Ok(());
        };
        let store = &self.inner.store;
        let fetched = match self.client().retrieve(response_id).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e.describe(), response_id, "cannot fetch the response a webhook named");
                return Ok(());
            }
        };
        let obs = fetched.observation;
        // Ours only if its metadata names a job id (a malformed one names none of ours).
        let Some((job_id, turn)) = tagged_job_id(&obs.raw) else {
            store
                .mark_delivery_handled(&d.webhook_id, None, self.now())
                .await?;
            return Ok(());
        };
        let Some(job) = store.get_job(&job_id).await? else {
            store
                .mark_delivery_handled(&d.webhook_id, None, self.now())
                .await?;
            return Ok(());
        };
        // A finished response is kept as it is fetched: fetch it again with what the job's
        // tools found (a failed second fetch keeps the first).
        let include = job.spec.retrieve_include();
        let (obs, request_id) = match obs.status.is_terminal() && !include.is_empty() {
            true => {
                let include: Vec<&str> = include.iter().map(String::as_str).collect();
                match self
                    .client()
                    .retrieve_including(response_id, &include)
                    .await
                {
                    Ok(f) if f.observation.response_id == obs.response_id => {
                        (f.observation, f.request_id)
                    }
                    _ => (obs, fetched.request_id),
                }
            }
            false => (obs, fetched.request_id),
        };
        let how = format!("revealed by webhook {}", d.event_type);
        let rid = obs.response_id.clone();
        self.record_response_of_turn(
            &job_id,
            &rid,
            Some(turn),
            Some(&obs),
            request_id.as_deref(),
            &how,
        )
        .await?;
        store
            .mark_delivery_handled(&d.webhook_id, Some(&job_id), self.now())
            .await?;
        self.wake();
        Ok(())
    }
}
