//! The acting stage of the ledger worker: jobs whose response asked for function outputs or
//! MCP approvals (`store/turns.rs`). For each claimed job it settles what was asked (a handler
//! of the job or the config, an approval policy, else a person), runs the handlers (in
//! parallel, bounded by `actions.max_concurrent`), and when every action of the turn is
//! answered moves the job on to its next turn, which the submit worker sends like a create.
//!
//! Crash safety: an action is marked `running` before its handler starts. A job claimed
//! again after a crash finds it `running` with no handler here: an idempotent handler runs
//! again, any other gives the model an error output saying it was interrupted (or fails the
//! job, `on_error: fail`). A handler is never run twice for one call otherwise.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::Orchestrator;
use super::handlers::{self, Call};
use crate::job::handler::{
    ActionKind, Asked, HandlerSpec, OnError, approval_output, policy_answer,
};
use crate::job::{JobError, JobId, JobStatus};
use crate::notify::routes_for;
use crate::store::{ActingClaim, ActionRow, HandlerAnswer, Settle, StoreError};
use crate::telemetry::chain;

/// How long a claim of an acting job holds before another pass may take it (pushed on by a
/// heartbeat while handlers run).
const ACT_LEASE_MS: i64 = 30_000;
/// How often a job's lease is pushed on while its handlers run.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Jobs claimed per pass.
const CLAIM_BATCH: i64 = 16;

/// What the acting stage keeps in memory: the jobs being worked here, and the permits of the
/// handlers running, all jobs together.
pub(super) struct Acting {
    jobs: Mutex<BTreeSet<JobId>>,
    permits: Arc<Semaphore>,
    http: reqwest::Client,
}

impl Acting {
    pub(super) fn new(max_concurrent: usize) -> Self {
        Self {
            jobs: Mutex::new(BTreeSet::new()),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            // Handlers' URLs are the operator's own services: no proxy from the environment
            // is assumed to reach them, and redirects are not followed (a POST must not turn
            // into a GET elsewhere).
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }
}

/// Takes a job for this daemon's acting stage; released on drop.
struct Working {
    me: Orchestrator,
    id: JobId,
}

impl Drop for Working {
    fn drop(&mut self) {
        self.me
            .inner
            .acting
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Orchestrator {
    /// Ends the waits that passed their deadline, then claims acting jobs and starts working
    /// on each (one task per job).
    pub(super) async fn start_actions(
        &self,
        handles: &mut Vec<JoinHandle<()>>,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let now = self.now();
        for (id, turn) in store.overdue_waits(now).await? {
            let job = match store.get_job(&id).await {
                Ok(Some(job)) => job,
                Ok(None) => continue,
                Err(e) => {
                    self.per_job(&id, "actions", Err(e)).await?;
                    continue;
                }
            };
            let error = JobError {
                code: "timeout".into(),
                message:
                    "nobody answered what the job asks for (`requires_action`) before its deadline"
                        .into(),
            };
            let outbox = routes_for(&job.spec, &self.config());
            if self
                .end_acting(&id, turn, (JobStatus::Cancelled, &error), now, &outbox)
                .await?
            {
                tracing::info!(job_id = %id, "a wait for a person passed its deadline; cancelled");
            }
        }
        for (id, attempt) in store.cancelled_turns().await? {
            let job = match store.get_job(&id).await {
                Ok(Some(job)) => job,
                Ok(None) => continue,
                Err(e) => {
                    self.per_job(&id, "actions", Err(e)).await?;
                    continue;
                }
            };
            let error = cancel_error(job.cancel_reason.as_deref());
            let outbox = routes_for(&job.spec, &self.config());
            if store
                .finish_unsubmitted(&id, attempt, JobStatus::Cancelled, &error, now, &outbox)
                .await?
            {
                self.wake();
            }
        }
        let journal = self.journal();
        let lease = crate::store::Lease {
            ms: ACT_LEASE_MS,
            owner: journal.as_ref().map(super::journal::Journal::instance),
        };
        let claims = store.claim_acting(now, lease, CLAIM_BATCH).await?;
        for claim in claims {
            let fresh = self
                .inner
                .acting
                .jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(claim.id.clone());
            if !fresh {
                // Its handlers run here already; that task moves it on when they end.
                continue;
            }
            let guard = Working {
                me: self.clone(),
                id: claim.id.clone(),
            };
            let me = self.clone();
            handles.push(self.inner.tracker.spawn(async move {
                let id = claim.id.clone();
                let r = me.act(claim).await;
                drop(guard);
                if let Err(e) = me.per_job(&id, "actions", r).await {
                    tracing::error!(job_id = %id, error = %chain(&e), "answering a job's actions failed");
                }
            }));
        }
        Ok(())
    }

    /// Works on one acting job: settle, run handlers, move on.
    async fn act(&self, claim: ActingClaim) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let config = self.config();
        let outbox = routes_for(&claim.spec, &config);
        if claim.cancel_requested == 1 {
            let error = cancel_error(claim.cancel_reason.as_deref());
            self.end_acting(
                &claim.id,
                claim.turn,
                (JobStatus::Cancelled, &error),
                self.now(),
                &outbox,
            )
            .await?;
            return Ok(());
        }
        let mut actions = store.turn_actions(&claim.id, claim.turn).await?;
        let max_turns = i64::from(claim.spec.max_turns.unwrap_or(config.actions.max_turns));
        if claim.turn + 1 >= max_turns {
            let asked: Vec<&str> = actions.iter().map(|a| a.name.as_str()).collect();
            let error = JobError {
                code: "max_turns".into(),
                message: format!(
                    "after {} turn{} the model still asks for {} (max_turns is {max_turns}); the last response is kept",
                    claim.turn + 1,
                    if claim.turn == 0 { "" } else { "s" },
                    asked.join(", ")
                ),
            };
            self.end_acting(
                &claim.id,
                claim.turn,
                (JobStatus::Incomplete, &error),
                self.now(),
                &outbox,
            )
            .await?;
            return Ok(());
        }
        // What was just asked: who answers it.
        let settled: Vec<(String, Settle)> = actions
            .iter()
            .filter(|a| a.state == "new")
            .map(|a| (a.item_id.clone(), self.settle(&claim, a)))
            .collect();
        if !settled.is_empty() {
            // A wait for a person is bounded by the config's wait (and the job's deadline).
            let wait = i64::try_from(config.actions.wait_timeout.as_millis()).unwrap_or(i64::MAX);
            let now = self.now();
            if !store
                .settle_actions(&claim, &settled, now, now.saturating_add(wait), &outbox)
                .await?
            {
                return Ok(());
            }
            actions = store.turn_actions(&claim.id, claim.turn).await?;
            if actions.iter().any(|a| a.state == "waiting") {
                // Its sinks are told.
                self.wake();
            }
        }
        // Handlers interrupted by a crash: run again only when idempotent.
        for a in actions.iter().filter(|a| a.state == "running") {
            let handler = self.handler_of(&claim, a);
            match handler {
                Some(h) if h.idempotent => {
                    store
                        .rerun_action(&claim.id, claim.turn, &a.item_id)
                        .await?;
                }
                _ => {
                    let message = "respool stopped while its handler ran, and the handler is not marked `idempotent: true`, so it was not run again";
                    if !self
                        .handler_failed(&claim, a, handler.as_ref(), message, &outbox)
                        .await?
                    {
                        return Ok(());
                    }
                }
            }
        }
        let actions = store.turn_actions(&claim.id, claim.turn).await?;
        let ready: Vec<ActionRow> = actions.into_iter().filter(|a| a.state == "ready").collect();
        if !ready.is_empty() {
            let id = claim.id.clone();
            let work = futures::future::join_all(ready.iter().map(|a| self.run_one(&claim, a)));
            let results = Self::beating(HEARTBEAT, work, || {
                let id = id.clone();
                async move {
                    let until = self.now() + ACT_LEASE_MS;
                    if let Err(e) = self.inner.store.hold_acting(&id, until).await {
                        tracing::warn!(job_id = %id, error = %chain(&e), "cannot extend an acting job's lease");
                    }
                }
            })
            .await;
            // Every result is written, each with retries, before anything else: a result lost
            // here would be taken for a crash mid-run on the next claim.
            let mut failed_job = false;
            let mut first_error = None;
            for (a, result) in ready.iter().zip(results) {
                let written = match result {
                    None => Ok(true),
                    Some(Ok(output)) => {
                        self.with_retries(|| {
                            store.finish_action(
                                &claim.id,
                                (claim.turn, &a.item_id),
                                HandlerAnswer {
                                    output: &output,
                                    by: "handler",
                                    error: None,
                                },
                                self.now(),
                            )
                        })
                        .await
                    }
                    Some(Err(message)) => {
                        let handler = self.handler_of(&claim, a);
                        self.handler_failed(&claim, a, handler.as_ref(), &message, &outbox)
                            .await
                    }
                };
                match written {
                    Ok(true) => {}
                    Ok(false) => failed_job = true,
                    Err(e) => {
                        tracing::error!(job_id = %claim.id, call_id = %a.item_id, error = %chain(&e), "cannot record a handler's result");
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            if failed_job {
                return Ok(());
            }
        }
        if store.start_next_turn(&claim, self.now()).await? {
            tracing::info!(job_id = %claim.id, turn = claim.turn + 1, "actions answered; next turn ready");
            self.wake();
            return Ok(());
        }
        // Not moved on: something still waits, or a cancel came in meanwhile.
        if let Some(job) = store.get_job(&claim.id).await?
            && job.cancel_requested == 1
            && job.turn == claim.turn
        {
            let error = cancel_error(job.cancel_reason.as_deref());
            self.end_acting(
                &claim.id,
                claim.turn,
                (JobStatus::Cancelled, &error),
                self.now(),
                &outbox,
            )
            .await?;
        }
        Ok(())
    }

    /// Who answers action `a`: the job's handler, the config's, an approval policy, or a
    /// person.
    fn settle(&self, claim: &ActingClaim, a: &ActionRow) -> Settle {
        let config = self.config();
        match a.kind() {
            Some(ActionKind::Function) => {
                if claim.spec.handlers.contains_key(&a.name)
                    || config.functions.contains_key(&a.name)
                {
                    Settle::Handler(a.name.clone())
                } else {
                    Settle::Person
                }
            }
            Some(ActionKind::Approval) => {
                let asked = Asked {
                    item_id: a.item_id.clone(),
                    kind: ActionKind::Approval,
                    name: a.name.clone(),
                    server_label: a.server_label.clone(),
                    arguments: a.arguments.clone(),
                };
                match policy_answer(&config.actions.approvals, &asked) {
                    Some(p) => Settle::Answered {
                        output: approval_output(
                            p.approve,
                            Some(&format!(
                                "{} by respool's policy for MCP server {}",
                                if p.approve { "approved" } else { "denied" },
                                p.server
                            )),
                        ),
                        by: "policy",
                        error: None,
                    },
                    None => Settle::Person,
                }
            }
            None => Settle::Person,
        }
    }

    /// The handler of an action: the job's own, else the config's.
    fn handler_of(&self, claim: &ActingClaim, a: &ActionRow) -> Option<HandlerSpec> {
        let name = a.handler.as_deref().unwrap_or(&a.name);
        claim
            .spec
            .handlers
            .get(name)
            .cloned()
            .or_else(|| self.config().functions.get(name).cloned())
    }

    /// Runs one ready action's handler: `None` when it was not ready any more (taken
    /// elsewhere), else its output or the reason it has none.
    async fn run_one(&self, claim: &ActingClaim, a: &ActionRow) -> Option<Result<String, String>> {
        let Some(handler) = self.handler_of(claim, a) else {
            return Some(Err(format!(
                "no handler named {} is configured any more",
                a.name
            )));
        };
        let permit = self
            .inner
            .acting
            .permits
            .clone()
            .acquire_owned()
            .await
            .ok()?;
        match self
            .inner
            .store
            .start_action(&claim.id, claim.turn, &a.item_id, self.now())
            .await
        {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::error!(job_id = %claim.id, error = %chain(&e), "cannot mark a handler running");
                return None;
            }
        }
        tracing::info!(job_id = %claim.id, function = %a.name, call_id = %a.item_id, handler = %handler.describe(), "running a function handler");
        let call = Call {
            job_id: claim.id.as_str(),
            call_id: &a.item_id,
            name: &a.name,
            arguments: &a.arguments,
        };
        let out = handlers::run(&handler, &call, &self.inner.acting.http).await;
        drop(permit);
        if let Err(e) = &out {
            tracing::warn!(job_id = %claim.id, function = %a.name, call_id = %a.item_id, error = %e, "a function handler failed");
        }
        Some(out)
    }

    /// A handler failed (or was interrupted): the model is told (`on_error: output`), or the
    /// job fails (`on_error: fail`). Returns whether the job goes on.
    async fn handler_failed(
        &self,
        claim: &ActingClaim,
        a: &ActionRow,
        handler: Option<&HandlerSpec>,
        message: &str,
        outbox: &[crate::store::OutboxEntry],
    ) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        let now = self.now();
        let output = handlers::error_output(&a.name, message);
        self.with_retries(|| {
            store.finish_action(
                &claim.id,
                (claim.turn, &a.item_id),
                HandlerAnswer {
                    output: &output,
                    by: "respool",
                    error: Some(message),
                },
                now,
            )
        })
        .await?;
        if handler.is_some_and(|h| h.on_error == OnError::Fail) {
            let error = JobError {
                code: "handler_failed".into(),
                message: format!(
                    "the handler of {} ({}) failed: {message}",
                    a.name, a.item_id
                ),
            };
            self.end_acting(
                &claim.id,
                claim.turn,
                (JobStatus::Failed, &error),
                now,
                outbox,
            )
            .await?;
            return Ok(false);
        }
        Ok(true)
    }
}

impl Orchestrator {
    /// A person's answers to a job waiting in `requires_action` (`POST /v1/jobs/{id}/respond`,
    /// `respool jobs respond`, the job page's form). When nothing waits any more the job goes
    /// on: its next turn is sent.
    pub async fn respond(
        &self,
        id: &JobId,
        answers: &[crate::store::PersonAnswer],
    ) -> Result<crate::store::Responded, StoreError> {
        let r = self.inner.store.respond(id, answers, self.now()).await?;
        if let crate::store::Responded::Taken { remaining } = &r {
            tracing::info!(job_id = %id, answers = answers.len(), remaining, "a person answered a job");
            self.wake();
        }
        Ok(r)
    }

    /// Makes `body` (the job's create body) the create of turn `claim.turn`: its input the
    /// answers to the turn before, chained to that turn's response. Returns false, with the job
    /// ended `failed`, when the turn before is not on record (a row edited by hand).
    pub(super) async fn continue_turn(
        &self,
        claim: &crate::store::SubmitClaim,
        body: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        let before = claim.turn - 1;
        let previous = store.turn_response_id(&claim.id, before).await?;
        let actions = store.turn_actions(&claim.id, before).await?;
        let answers: Option<Vec<_>> = actions.iter().map(ActionRow::answer).collect();
        match (previous, answers) {
            (Some(previous), Some(answers)) if !answers.is_empty() => {
                let tag = crate::job::turn_tag(&claim.id, claim.turn);
                crate::job::handler::next_turn_body(body, &previous, &answers, &tag);
                Ok(true)
            }
            _ => {
                let error = JobError {
                    code: "turn_missing".into(),
                    message: format!(
                        "turn {} of the job is not on record with every answer; its next turn cannot be sent",
                        claim.turn
                    ),
                };
                let outbox = routes_for(&claim.spec, &self.config());
                store
                    .finish_unsubmitted(
                        &claim.id,
                        claim.attempt,
                        JobStatus::Failed,
                        &error,
                        self.now(),
                        &outbox,
                    )
                    .await?;
                Ok(false)
            }
        }
    }
}

impl Orchestrator {
    /// Ends an acting (or waiting) job without another turn (see [`Store::finish_acting`]),
    /// its turns' tool fees priced at the prices in force, and wakes the workers when it did.
    ///
    /// [`Store::finish_acting`]: crate::store::Store::finish_acting
    pub(super) async fn end_acting(
        &self,
        id: &JobId,
        turn: i64,
        (status, error): (JobStatus, &JobError),
        now: i64,
        outbox: &[crate::store::OutboxEntry],
    ) -> Result<bool, StoreError> {
        let end = crate::store::ActingEnd {
            status,
            error,
            image_prices: self.config().pricing().tools.image_generation,
        };
        let done = self
            .inner
            .store
            .finish_acting(id, turn, end, now, outbox)
            .await?;
        if done {
            self.wake();
        }
        Ok(done)
    }

    /// A store write, tried again a few times while the database refuses (busy, locked).
    async fn with_retries<T, F, Fut>(&self, mut write: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut delay = Duration::from_millis(50);
        for _ in 0..6 {
            match write().await {
                Ok(v) => return Ok(v),
                Err(StoreError::Db(e)) => {
                    tracing::warn!(error = %e, "a write failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
        write().await
    }
}

/// The error of a job cancelled between turns.
pub(super) fn cancel_error(reason: Option<&str>) -> JobError {
    match reason {
        Some("timeout") => JobError {
            code: "timeout".into(),
            message: "the job ran past its timeout and was cancelled".into(),
        },
        _ => JobError {
            code: "cancelled".into(),
            message: "cancelled between turns: no further response was created".into(),
        },
    }
}
