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

use super::journal::{Entry, Journal};
use super::{Orchestrator, Worker, poll_interval};
use crate::clock::ms;
use crate::job::{JobError, JobId, JobStatus, Observation, ResponseId};
use crate::notify::routes_for;
use crate::store::{
    Attach, AttachRequest, EventKind, Lease, NewDuplicate, StoreError, SubmitClaim,
};
use crate::telemetry::chain;
use crate::upstream::{self, UpstreamError};

/// At most this many response ids go into one transaction.
const MAX_ATTACH_BATCH: usize = 256;

/// At most this many submissions are claimed in one transaction.
const MAX_CLAIM_BATCH: usize = 64;

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
        let journal = self.journal();
        loop {
            // A place for each create that may start now, claimed together in one
            // transaction; fewer claimed than places means nothing more is due.
            let mut permits = Vec::new();
            while permits.len() < MAX_CLAIM_BATCH
                && let Ok(p) = self.inner.submit_permits.clone().try_acquire_owned()
            {
                permits.push(p);
            }
            if permits.is_empty() {
                return Ok(());
            }
            let in_flight = self.inner.store.count_in_flight().await?;
            self.inner
                .in_flight
                .store(in_flight, std::sync::atomic::Ordering::Relaxed);
            // Full: only a running job's next turn can go (it holds its place already).
            if in_flight >= limits.max_in_flight
                && !self.inner.store.next_turn_due(self.now()).await?
            {
                return Ok(());
            }
            let now = self.now();
            let asked = permits.len();
            let claimed = self
                .inner
                .store
                .claim_submissions(
                    now,
                    Lease {
                        ms: self.submit_lease_ms(),
                        owner: journal.as_ref().map(Journal::instance),
                    },
                    &limits,
                    asked,
                )
                .await?;
            for (job_id, reason) in &claimed.quarantined {
                crate::telemetry::quarantined("submit");
                tracing::error!(job_id = %job_id, %reason, "job quarantined: its row does not decode");
            }
            let got = claimed.claims.len();
            for (claim, permit) in claimed.claims.into_iter().zip(permits.drain(..)) {
                let me = self.clone();
                let span =
                    tracing::info_span!("submit", job_id = %claim.id, attempt = claim.attempt);
                handles.push(
                    self.inner.tracker.spawn(
                        async move {
                            if let Err(e) = me.submit(claim).await {
                                tracing::error!(error = %chain(&e), "recording a submission failed");
                            }
                            drop(permit);
                            me.wake_after(Worker::Submit);
                        }
                        .instrument(span),
                    ),
                );
            }
            if got < asked {
                return Ok(());
            }
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
        let id = &claim.id;
        let prepared = if claim.spec.attachments.is_empty() && claim.spec.knowledge.is_empty() {
            super::attachments::Prepared {
                parts: Vec::new(),
                vector_store_ids: Vec::new(),
            }
        } else {
            match self.attachment_parts(&claim).await {
                Ok(Some(p)) => p,
                // Given back to upload first (or ended): no create now.
                Ok(None) => return Ok(()),
                // Nothing was sent: give the claim back, or its lease would end as an
                // uncertain create.
                Err(e) => {
                    let now = self.now();
                    let reason = format!(
                        "preparing the job's files failed ({}); no create was sent, trying again in 5s",
                        chain(&e)
                    );
                    self.inner
                        .store
                        .reschedule_submission(id, claim.attempt, now + 5_000, now, &reason)
                        .await?;
                    return Err(e);
                }
            }
        };
        // A later turn's input is the answers to the last one: the files went with the first.
        let parts = if claim.turn == 0 {
            prepared.parts
        } else {
            Vec::new()
        };
        let mut body = claim
            .spec
            .create_body_with(id, parts, &prepared.vector_store_ids);
        // A job of a chain or on a conversation (`chains.rs`), before a later turn's input.
        if !self.chain_body(&claim, &mut body).await? {
            return Ok(());
        }
        if claim.turn > 0 && !self.continue_turn(&claim, &mut body).await? {
            return Ok(());
        }
        // A `progress: stream` job's create opens the response's stream (`progress.rs`); its
        // answer is recorded exactly as a JSON create's is, and the open stream is handed on.
        let (result, opened) = self.create_for(&claim, &body).await?;
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
                let rid = fetched.observation.response_id.clone();
                let recorded = self
                    .record_response_of_turn(
                        id,
                        &rid,
                        Some(claim.turn),
                        Some(&fetched.observation),
                        fetched.request_id.as_deref(),
                        "create",
                    )
                    .await;
                // Handed on whatever the ledger said: dropping a stream while its response is
                // queued can leave it stuck there (`progress.rs`).
                if let Some(stream) = opened {
                    self.follow_created((id, claim.turn), &rid, stream);
                }
                recorded?;
            }
            // The create surely reached OpenAI and its answer named the response, but the rest
            // of it could not be read: the id is what matters, a poll reads the rest.
            Err(UpstreamError::Unreadable {
                response_id: Some(rid),
                detail,
                request_id,
            }) => {
                crate::telemetry::submission("accepted");
                tracing::warn!(response_id = %rid, %detail, "create accepted with an unreadable answer; keeping its id");
                self.record_response_of_turn(
                    id,
                    &rid,
                    Some(claim.turn),
                    None,
                    request_id.as_deref(),
                    "create (answer unreadable)",
                )
                .await?;
            }
            Err(e) => match classify_create_failure(&e) {
                CreateFailure::Hold => {
                    // A key, permission or address problem is the daemon's, not the job's: hold
                    // the job until the config is fixed instead of failing every job in the queue.
                    crate::telemetry::submission("retried");
                    tracing::error!(error = %e.describe(), "upstream refused or redirected our request; holding submissions");
                    let reason = if e.is_redirect() {
                        format!(
                            "upstream answered with a redirect ({}), which respool never follows for a create: check upstream.base_url; trying again in 1m",
                            e.describe()
                        )
                    } else {
                        format!(
                            "upstream refused the request ({}): check upstream.api_key; trying again in 1m",
                            e.describe()
                        )
                    };
                    store
                        .reschedule_submission(id, claim.attempt, now + 60_000, now, &reason)
                        .await?;
                }
                CreateFailure::Retry => {
                    let delay = e.retry_after().unwrap_or_else(|| {
                        upstream::http_retry::backoff(
                            claim.submissions.clamp(0, 10) as u32,
                            rand::random(),
                        )
                    });
                    let reason = format!(
                        "create refused for now ({}); nothing was created, trying again in {}",
                        e.describe(),
                        humantime::format_duration(std::time::Duration::from_millis(
                            ms(delay) as u64
                        ))
                    );
                    crate::telemetry::submission("retried");
                    tracing::warn!(error = %e.describe(), "create not accepted; will retry");
                    store
                        .reschedule_submission(id, claim.attempt, now + ms(delay), now, &reason)
                        .await?;
                }
                CreateFailure::Refused => {
                    crate::telemetry::submission("refused");
                    tracing::warn!(error = %e.describe(), "create refused");
                    let error = refused_error(&e);
                    let outbox = routes_for(&claim.spec, &self.config());
                    store
                        .finish_unsubmitted(
                            id,
                            claim.attempt,
                            JobStatus::Failed,
                            &error,
                            now,
                            &outbox,
                        )
                        .await?;
                }
                CreateFailure::Uncertain => {
                    let wait = self.uncertain_wait(now);
                    let reason = format!(
                        "create outcome unknown ({}): it may have started a response; {}",
                        e.describe(),
                        if wait.fixed == Some(now) {
                            "no webhook can reveal it, applying the uncertain-create policy"
                        } else {
                            "waiting for a webhook to reveal it before applying the uncertain-create policy"
                        }
                    );
                    crate::telemetry::submission("uncertain");
                    tracing::warn!(error = %e.describe(), "create outcome uncertain");
                    store
                        .mark_uncertain(id, claim.attempt, wait, now, &reason)
                        .await?;
                }
            },
        }
        Ok(())
    }

    /// A response exists upstream for job `id` (our create's answer, or one revealed later):
    /// write its id to the journal, then to the ledger (with retries: a database that is busy
    /// for a while must not lose it), then act on what the ledger says: the job took it, had
    /// it already, or holds another one (then this one is a paid duplicate to cancel).
    pub(super) async fn record_response(
        &self,
        id: &JobId,
        response_id: &ResponseId,
        obs: Option<&Observation>,
        request_id: Option<&str>,
        how: &str,
    ) -> Result<(), StoreError> {
        self.record_response_of_turn(id, response_id, None, obs, request_id, how)
            .await
    }

    /// [`Self::record_response`] of a response known to belong to the job's `turn` (our
    /// create's answer, a revealed response's tag): one of another turn is a paid duplicate.
    pub(super) async fn record_response_of_turn(
        &self,
        id: &JobId,
        response_id: &ResponseId,
        turn: Option<i64>,
        obs: Option<&Observation>,
        request_id: Option<&str>,
        how: &str,
    ) -> Result<(), StoreError> {
        let entry = Entry {
            job_id: id.clone(),
            response_id: response_id.clone(),
            at: self.now(),
        };
        self.journal_append(&entry).await;
        let attach = match self
            .attach_with_retries(&entry, turn, request_id, how)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(
                    error = %chain(&e), job_id = %id, response_id = %response_id,
                    "cannot record a response id in the ledger; kept in the journal and retried every pass"
                );
                self.inner
                    .unrecorded
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((entry, how.to_string()));
                return Err(e);
            }
        };
        self.after_attach(id, response_id, obs, request_id, how, attach)
            .await
    }

    /// Acts on what attaching a response did.
    pub(super) async fn after_attach(
        &self,
        id: &JobId,
        response_id: &ResponseId,
        obs: Option<&Observation>,
        request_id: Option<&str>,
        how: &str,
        attach: Attach,
    ) -> Result<(), StoreError> {
        match attach {
            Attach::Attached { reopened_from } => {
                self.journal_confirm(id).await;
                if let Some(from) = reopened_from {
                    tracing::warn!(job_id = %id, response_id = %response_id, %from, "a response was revealed for a job that had ended without one; the job takes its outcome");
                } else {
                    tracing::info!(job_id = %id, response_id = %response_id, how, "response recorded");
                }
                match obs {
                    Some(obs) => {
                        self.apply_traced(id, obs, 0, None, source_of(how), request_id)
                            .await?;
                    }
                    None => self.wake(),
                }
            }
            Attach::Already => self.journal_confirm(id).await,
            Attach::Duplicate { held } => {
                self.journal_confirm(id).await;
                tracing::warn!(job_id = %id, response_id = %response_id, held = %held, "duplicate response; cancelling it");
                self.handle_duplicate(id, response_id, obs, source_of(how))
                    .await?;
            }
            Attach::Missing => {
                self.journal_confirm(id).await;
                // No job owns it (deleted meanwhile): stop it billing.
                tracing::warn!(job_id = %id, response_id = %response_id, "a response exists for a job that is gone; cancelling it");
                if let Err(e) = self.client().cancel(response_id.as_str()).await {
                    tracing::warn!(error = %e.describe(), "cancelling an orphan response failed");
                }
            }
        }
        Ok(())
    }

    /// Writes a response id to the ledger, retrying for about two minutes while the database
    /// refuses (busy, locked, pool exhausted). A row that does not decode is not retried.
    async fn attach_with_retries(
        &self,
        entry: &Entry,
        turn: Option<i64>,
        request_id: Option<&str>,
        how: &str,
    ) -> Result<Attach, StoreError> {
        let interval = ms(self.config().polling.min_interval);
        let mut tries = 0u32;
        loop {
            let now = self.now();
            let request = AttachRequest {
                job_id: entry.job_id.clone(),
                response_id: entry.response_id.clone(),
                now,
                first_poll_at: now + interval,
                poll_interval_ms: interval,
                kind: if how.starts_with("create") {
                    EventKind::Submitted
                } else {
                    EventKind::Adopted
                },
                how: how.to_owned(),
                request_id: request_id.map(str::to_owned),
                turn,
            };
            // After a failed batch, alone: an item at fault in it must not hold this one back.
            let attached = if tries == 0 {
                self.attach_batched(request).await
            } else {
                self.inner
                    .store
                    .attach_response(&request.job_id, &request.response_id, &request.context())
                    .await
            };
            match attached {
                Ok(a) => return Ok(a),
                Err(e) if e.is_decode() || tries >= ATTACH_TRIES => return Err(e),
                Err(e) => {
                    tries += 1;
                    tracing::warn!(error = %chain(&e), tries, "recording a response id failed; trying again");
                    let delay = upstream::http_retry::backoff(tries, rand::random());
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Attaches a response through the group-committed writer (see
    /// [`crate::store::Store::attach_responses`]).
    async fn attach_batched(&self, request: AttachRequest) -> Result<Attach, StoreError> {
        let store = self.inner.store.clone();
        self.inner
            .attacher
            .get_or_init(|| {
                crate::batch::Batcher::start(MAX_ATTACH_BATCH, move |items: Vec<AttachRequest>| {
                    let store = store.clone();
                    async move { store.attach_responses(&items).await }
                })
            })
            .call(request)
            .await
            .map_err(|_| StoreError::BatchFailed("the batch writer did not answer".into()))?
    }

    /// Retries the response ids whose ledger write failed earlier in this process.
    pub(super) async fn retry_unrecorded(&self) {
        let pending: Vec<(Entry, String)> = std::mem::take(
            &mut *self
                .inner
                .unrecorded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (entry, how) in pending {
            if let Err(e) = self
                .record_response(&entry.job_id, &entry.response_id, None, None, &how)
                .await
            {
                tracing::warn!(error = %chain(&e), job_id = %entry.job_id, "a response id is still not recorded");
            }
        }
    }

    async fn journal_append(&self, entry: &Entry) {
        let Some(journal) = self.journal() else {
            return;
        };
        let entry = entry.clone();
        match tokio::task::spawn_blocking(move || journal.append(&entry)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write the create journal"),
            Err(e) => tracing::error!(error = %e, "the create journal task failed"),
        }
    }

    async fn journal_confirm(&self, job_id: &JobId) {
        let Some(journal) = self.journal() else {
            return;
        };
        let job_id = job_id.to_string();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || journal.confirm(&job_id)).await {
            tracing::error!(error = %e, "cannot compact the create journal");
        }
    }

    /// A second response exists for a job that holds another one: cancel it if it may still
    /// run, and record it (status, usage) as a paid duplicate. What cannot be learnt now (the
    /// cancel failed, the final usage is not known yet) is looked at again by
    /// [`Self::check_duplicates`].
    pub(super) async fn handle_duplicate(
        &self,
        job_id: &JobId,
        response_id: &ResponseId,
        seen: Option<&Observation>,
        found_by: &str,
    ) -> Result<(), StoreError> {
        let looked = match seen {
            Some(o) if o.status.is_terminal() => Ok(o.clone()),
            _ => self
                .cancel_upstream(job_id, response_id)
                .await
                .map(|(o, _)| o),
        };
        let now = self.now();
        let (status, obs) = match &looked {
            // What upstream said: a refused duplicate completed there, and was paid as such.
            Ok(o) => (o.upstream_status(), Some(o)),
            Err(e) => {
                tracing::warn!(error = %e.describe(), response_id = %response_id, "cancelling a duplicate response failed; trying again later");
                (seen.map_or("unknown", |o| o.upstream_status()), seen)
            }
        };
        let done = obs.is_some_and(|o| o.status.is_terminal());
        self.inner
            .store
            .record_duplicate(&NewDuplicate {
                job_id,
                response_id,
                status,
                usage: obs.and_then(|o| o.usage.as_ref()),
                raw: obs.map(|o| &o.raw).filter(|r| !r.is_null()),
                found_by,
                now,
                next_check_at: (!done).then_some(now + DUPLICATE_RECHECK_MS),
                image_prices: self.config().pricing().tools.image_generation,
            })
            .await?;
        crate::telemetry::duplicate(found_by);
        Ok(())
    }

    /// Looks again at duplicates that were still running or whose cancel failed.
    pub(super) async fn check_duplicates(&self) -> Result<(), StoreError> {
        let now = self.now();
        for d in self.inner.store.due_duplicates(now, 32).await? {
            let seen = if d.checks >= DUPLICATE_MAX_CHECKS {
                // Stop trying; what is known stays recorded.
                self.inner
                    .store
                    .record_duplicate(&NewDuplicate {
                        job_id: &d.job_id,
                        response_id: &d.response_id,
                        status: &d.status,
                        usage: None,
                        raw: None,
                        found_by: &d.found_by,
                        now,
                        next_check_at: None,
                        image_prices: self.config().pricing().tools.image_generation,
                    })
                    .await?;
                continue;
            } else {
                None
            };
            self.handle_duplicate(&d.job_id, &d.response_id, seen, &d.found_by)
                .await?;
        }
        Ok(())
    }
}

/// What a failed create call (one with no response id to keep) leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreateFailure {
    /// The daemon's problem, not the job's (a 401/403 key or permission refusal, a redirect:
    /// `base_url` is wrong): nothing was created; the job waits and is sent again later.
    Hold,
    /// Surely not created and worth sending again (a rate limit, no connection, an API 5xx).
    Retry,
    /// Surely not created and refused for good (a 4xx, a quota 429): the job fails.
    Refused,
    /// It may have started a (billed) response: never sent again silently.
    Uncertain,
}

/// Decides what a failed create leads to, by evidence (see
/// [`UpstreamError::create_may_have_happened`]). The one rule every branch keeps: a create
/// that may have happened is [`CreateFailure::Uncertain`], whatever else the error says, so
/// it is never sent again without the uncertain-create rules.
pub(crate) fn classify_create_failure(e: &UpstreamError) -> CreateFailure {
    if e.create_may_have_happened() {
        CreateFailure::Uncertain
    } else if matches!(e.status(), Some(401 | 403)) || e.is_redirect() {
        CreateFailure::Hold
    } else if e.is_retryable() || conversation_locked(e) {
        CreateFailure::Retry
    } else {
        CreateFailure::Refused
    }
}

/// A 400 `conversation_locked`: another response (another client's) runs on the job's
/// conversation; nothing was created, and the create may go once it is done.
fn conversation_locked(e: &UpstreamError) -> bool {
    matches!(e, UpstreamError::Api { code: Some(c), .. } if c == "conversation_locked")
}

/// Tries to write a response id to the ledger before giving up to the journal.
const ATTACH_TRIES: u32 = 8;
/// A duplicate that still runs (or could not be cancelled) is looked at again after this.
const DUPLICATE_RECHECK_MS: i64 = 30_000;
/// Looks at a duplicate before its record is left as it is.
const DUPLICATE_MAX_CHECKS: i64 = 20;

/// The timeline source of a response found `how`.
fn source_of(how: &str) -> &'static str {
    if how.starts_with("create") {
        "create"
    } else if how.starts_with("journal") {
        "journal"
    } else {
        "webhook"
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
    let next = poll_interval::next_interval(prev, cfg.min_interval, cfg.max_interval, healthy);
    let in_flight = orch
        .inner
        .in_flight
        .load(std::sync::atomic::Ordering::Relaxed);
    let per_second =
        poll_interval::per_second(healthy, cfg.max_per_second, cfg.safety_net_per_second);
    let (next, cap) = poll_interval::spread(next, cfg.max_interval, in_flight, per_second);
    ms(poll_interval::jitter(next, cap, rand::random()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Properties of the uncertain-create rules over generated errors: whatever the status,
    //! headers and kind, a create that may have happened is never sent again by the submit
    //! worker or by the client's inline retries.

    use super::*;
    use proptest::prelude::*;

    /// An upstream error, described so proptest can generate and show it (the error itself
    /// holds a `reqwest::Error` and is not `Clone`).
    #[derive(Debug, Clone)]
    enum Kind {
        Api {
            status: u16,
            from_api: bool,
            should_retry: Option<bool>,
            code: Option<&'static str>,
        },
        Connect,
        Timeout,
        Transport,
        Unreadable {
            with_id: bool,
        },
        Invalid,
    }

    /// Any `reqwest::Error`: the variant wrapping it is what the rules look at.
    fn reqwest_error() -> reqwest::Error {
        reqwest::Client::new().get("not a url").build().unwrap_err()
    }

    fn build(k: &Kind) -> UpstreamError {
        match k {
            Kind::Api {
                status,
                from_api,
                should_retry,
                code,
            } => UpstreamError::Api {
                status: *status,
                kind: None,
                code: code.map(str::to_string),
                param: None,
                message: "x".into(),
                request_id: from_api.then(|| "req_1".to_string()),
                retry_after: None,
                should_retry: *should_retry,
                rate_limits: None,
                from_api: *from_api,
            },
            Kind::Connect => UpstreamError::Connect(reqwest_error()),
            Kind::Timeout => UpstreamError::Timeout(reqwest_error()),
            Kind::Transport => UpstreamError::Transport(reqwest_error()),
            Kind::Unreadable { with_id } => UpstreamError::Unreadable {
                response_id: with_id.then(|| ResponseId::parse("resp_1").unwrap()),
                detail: "x".into(),
                request_id: None,
            },
            Kind::Invalid => UpstreamError::InvalidResponse("x".into()),
        }
    }

    fn code() -> impl Strategy<Value = Option<&'static str>> {
        proptest::option::of(proptest::sample::select(vec![
            "rate_limit_exceeded",
            "insufficient_quota",
            "billing_hard_limit_reached",
            "server_error",
            "invalid_request_error",
        ]))
    }

    fn api() -> impl Strategy<Value = Kind> {
        (100u16..600, any::<bool>(), any::<Option<bool>>(), code()).prop_map(
            |(status, from_api, should_retry, code)| Kind::Api {
                status,
                from_api,
                should_retry,
                code,
            },
        )
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            6 => api(),
            1 => Just(Kind::Connect),
            1 => Just(Kind::Timeout),
            1 => Just(Kind::Transport),
            1 => any::<bool>().prop_map(|with_id| Kind::Unreadable { with_id }),
            1 => Just(Kind::Invalid),
        ]
    }

    /// What the client's inline retry loop does with a failed create (`Client::create`
    /// passes `!create_may_have_happened` as its extra condition to `send_with_retries`).
    fn client_resends(e: &UpstreamError) -> bool {
        e.is_retryable() && !e.create_may_have_happened()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A create that may have happened is never sent again: not inline by the client, not
        /// later by the submit worker (rescheduled or held); it is uncertain, always.
        #[test]
        fn a_create_that_may_have_happened_is_never_sent_again(k in kind()) {
            let e = build(&k);
            let class = classify_create_failure(&e);
            if e.create_may_have_happened() {
                prop_assert_eq!(class, CreateFailure::Uncertain);
                prop_assert!(!client_resends(&e));
            }
            if matches!(class, CreateFailure::Retry | CreateFailure::Hold | CreateFailure::Refused) {
                prop_assert!(!e.create_may_have_happened(), "{:?} → {:?}", k, class);
            }
        }

        /// An answer below 500 means a server handled the request and created nothing,
        /// whoever answered and whatever it said.
        #[test]
        fn no_status_below_500_is_uncertain(k in api()) {
            let e = build(&k);
            if e.status().is_some_and(|s| s < 500) {
                prop_assert!(!e.create_may_have_happened());
                prop_assert_ne!(classify_create_failure(&e), CreateFailure::Uncertain);
            }
        }

        /// A 5xx without the API's envelope and request id came from something in front of
        /// it: the API may have created the response behind it, whatever `x-should-retry`
        /// says. A 5xx from the API itself created nothing.
        #[test]
        fn a_proxy_5xx_is_always_uncertain_an_api_5xx_never(k in api()) {
            let Kind::Api { status, from_api, should_retry, .. } = k.clone() else {
                unreachable!()
            };
            let e = build(&k);
            if status >= 500 {
                prop_assert_eq!(e.create_may_have_happened(), !from_api);
                let expected = match (from_api, should_retry) {
                    (false, _) => CreateFailure::Uncertain,
                    (true, Some(false)) => CreateFailure::Refused,
                    (true, _) => CreateFailure::Retry,
                };
                prop_assert_eq!(classify_create_failure(&e), expected);
            }
        }

        /// `x-should-retry` wins over the status; without it a quota 429 is not retried and
        /// a rate-limit 429 is.
        #[test]
        fn retryable_follows_the_servers_word(k in api()) {
            let Kind::Api { status, should_retry, code, .. } = k.clone() else {
                unreachable!()
            };
            let e = build(&k);
            match should_retry {
                Some(s) => prop_assert_eq!(e.is_retryable(), s),
                None if status == 429 => prop_assert_eq!(
                    e.is_retryable(),
                    !matches!(code, Some("insufficient_quota" | "billing_hard_limit_reached"))
                ),
                None => prop_assert_eq!(
                    e.is_retryable(),
                    matches!(status, 408 | 409) || status >= 500
                ),
            }
        }

        /// A 401/403 or a redirect holds the job (the daemon's config is at fault); a 4xx
        /// otherwise fails it unless the server says to retry.
        #[test]
        fn refusals_below_500_hold_retry_or_fail(k in api()) {
            let Kind::Api { status, should_retry, .. } = k.clone() else { unreachable!() };
            let e = build(&k);
            let class = classify_create_failure(&e);
            if matches!(status, 401 | 403 | 300..=399) {
                prop_assert_eq!(class, CreateFailure::Hold);
            } else if status < 500 && !e.is_retryable() {
                prop_assert_eq!(class, CreateFailure::Refused);
            } else if status < 500 {
                prop_assert_eq!(class, CreateFailure::Retry);
                prop_assert!(should_retry == Some(true) || matches!(status, 408 | 409 | 429));
            }
        }
    }

    #[test]
    fn transport_kinds_by_evidence() {
        // No connection: it never left us, so it is retried.
        let connect = build(&Kind::Connect);
        assert!(!connect.create_may_have_happened());
        assert_eq!(classify_create_failure(&connect), CreateFailure::Retry);
        assert!(client_resends(&connect));
        // Sent, then no (readable) answer: unknown.
        for k in [
            Kind::Timeout,
            Kind::Transport,
            Kind::Unreadable { with_id: false },
            Kind::Unreadable { with_id: true },
            Kind::Invalid,
        ] {
            let e = build(&k);
            assert_eq!(
                classify_create_failure(&e),
                CreateFailure::Uncertain,
                "{k:?}"
            );
            assert!(!client_resends(&e), "{k:?}");
        }
    }
}
