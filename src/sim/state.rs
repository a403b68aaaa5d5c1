//! The response store: every [`Entry`] behind one `std::sync::Mutex` (never held across an
//! `.await`), the deadline heap the clock task works through ([`Shared::advance_due`]), and the
//! store operations (create, cancel, delete, lookups). Every API access advances the response it
//! touches first, so what a client sees never lags the clock; terminal transitions go to the
//! webhook sender through a bounded channel.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use super::chain::{Context, Turn};
use super::conversations::{self, Conversations};
use super::endpoints::Endpoints;
pub(crate) use super::entry::{Entry, Status, WebhookJob};
use super::error::ApiError;
use super::faults::{Faults, Outcome, roll};
use super::files::Storage;
use super::output;
use super::tools::Artifacts;
use super::validate::CreateRequest;
use super::{SimConfig, SimStats, ids, response};
/// Where webhooks go, changeable at runtime.
#[derive(Debug, Clone, Default)]
pub(crate) struct WebhookTarget {
    pub url: Option<String>,
    pub secrets: Vec<String>,
}

/// Everything mutable, behind one lock.
pub(crate) struct Inner {
    pub entries: HashMap<String, Entry>,
    schedule: BinaryHeap<Reverse<(Instant, String)>>,
    pub rng: StdRng,
    pub faults: Faults,
    pub stats: SimStats,
    pub webhook: WebhookTarget,
    /// Registered webhook endpoints (`/v1/webhook_endpoints`).
    pub endpoints: Endpoints,
    /// Every response created, oldest first, as (`metadata.respool_job_id`, response id):
    /// what `/_sim/responses` reports, also after a response is deleted or swept.
    pub created: Vec<(Option<String>, String)>,
    /// The body of every create, as received, by response id (kept after a delete).
    pub requests: HashMap<String, Value>,
    /// Uploaded files and vector stores (`/v1/files`, `/v1/vector_stores`).
    pub storage: Storage,
    /// Conversations (`/v1/conversations`).
    pub conversations: Conversations,
}

/// How many responses back a chain is followed, at most.
const MAX_CHAIN: usize = 1000;

impl Inner {
    /// What the chain ending at `prev` (a stored response) leaves a create.
    fn chain_context(&self, prev: &str) -> Context {
        let mut ids = Vec::new();
        let mut at = Some(prev.to_owned());
        while let Some(id) = at.take() {
            if ids.len() >= MAX_CHAIN || ids.contains(&id) {
                break;
            }
            let Some(entry) = self.entries.get(&id) else {
                break;
            };
            at = entry
                .snapshot
                .get("previous_response_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            ids.push(id);
        }
        let empty = Vec::new();
        let turns: Vec<Turn<'_>> = ids
            .iter()
            .rev()
            .filter_map(|id| self.entries.get(id))
            .map(|e| Turn {
                input: &e.input_items,
                output: e
                    .snapshot
                    .get("output")
                    .and_then(Value::as_array)
                    .unwrap_or(&empty),
            })
            .collect();
        Context::of_chain(&turns)
    }
}

/// State shared by the server, the clock task, streams and webhook senders.
pub(crate) struct Shared {
    pub config: SimConfig,
    inner: Mutex<Inner>,
    /// Wakes the clock task when a new deadline exists.
    pub wake: Notify,
    /// Bumped whenever any response changes; streams wait on it.
    pub changes: watch::Sender<u64>,
    /// Terminal transitions for the webhook sender (bounded; overflow counts as dropped).
    webhook_tx: mpsc::Sender<WebhookJob>,
}

impl Shared {
    /// Builds the state; the receiver feeds the webhook sender.
    pub fn new(config: SimConfig) -> (Self, mpsc::Receiver<WebhookJob>) {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let webhook = WebhookTarget {
            url: config.webhook_url.clone(),
            secrets: config.webhook_secrets.clone(),
        };
        let inner = Inner {
            entries: HashMap::new(),
            schedule: BinaryHeap::new(),
            rng,
            faults: config.faults.clone(),
            stats: SimStats::default(),
            webhook,
            endpoints: Endpoints::default(),
            created: Vec::new(),
            requests: HashMap::new(),
            storage: Storage::default(),
            conversations: Conversations::default(),
        };
        let (webhook_tx, rx) = mpsc::channel(config.webhook_max_pending.max(1));
        let shared = Self {
            config,
            inner: Mutex::new(inner),
            wake: Notify::new(),
            changes: watch::Sender::new(0),
            webhook_tx,
        };
        (shared, rx)
    }

    /// Locks the state; a panic elsewhere must not wedge the simulator, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Hands a terminal transition to the webhook sender. Called after the lock is released.
    fn emit(&self, job: Option<WebhookJob>) {
        let Some(job) = job else { return };
        if let Err(err) = self.webhook_tx.try_send(job) {
            tracing::warn!(error = %err, "webhook queue full or closed, event dropped");
            let id = err.into_inner().data_id;
            let mut inner = self.lock();
            inner.stats.webhooks_dropped += 1;
            if let Some(e) = inner.entries.get_mut(&id) {
                e.webhook_dropped = true;
            }
        }
    }

    /// Creates a response from a validated request; returns its id and first snapshot.
    /// `answer_lost` names the fault that will keep the create's answer from the client, if
    /// one will.
    pub fn create(
        &self,
        mut req: CreateRequest,
        answer_lost: Option<&'static str>,
    ) -> Result<(String, Value), ApiError> {
        self.settle_conversations();
        let now = Instant::now();
        let id = ids::new("resp");
        let mut inner = self.lock();
        let context = match &req.previous_response_id {
            _ if req.conversation.is_some() => {
                let conv = req.conversation.as_deref().unwrap_or("");
                let c = inner
                    .conversations
                    .get(conv)
                    .ok_or_else(|| conversations::not_found(conv, Some("conversation")))?;
                if c.busy.is_some() {
                    return Err(conversations::locked());
                }
                Context::of_conversation(&c.items)
            }
            Some(prev) if !inner.entries.get(prev).is_some_and(|e| e.stored) => {
                return Err(ApiError::invalid(
                    format!("Previous response with id '{prev}' not found."),
                    Some("previous_response_id"),
                    Some("previous_response_not_found"),
                ));
            }
            Some(prev) => inner.chain_context(prev),
            None => Context::default(),
        };
        // A follow-up that carries only tool outputs is about the chain's last question.
        if req.input_text.trim().is_empty()
            && let Some(text) = &context.last_user_text
        {
            req.input_text = text.clone();
            // Its markers still count: the model sees the question they came with.
            req.overrides.apply_markers(text).map_err(|e| {
                ApiError::invalid(
                    format!("Invalid 'input': {e}."),
                    Some("input"),
                    Some("invalid_value"),
                )
            })?;
        }
        let grounding =
            inner
                .storage
                .ground(&req.file_parts, req.file_search.as_ref(), &req.input_text)?;
        let o = req.overrides.clone();
        let faults = inner.faults.clone();
        let outcome = match o.outcome.clone() {
            // Searching a store that is still ingesting fails, whatever else was asked for.
            _ if grounding.store_busy => Outcome::Failed {
                code: "vector_store_timeout".into(),
            },
            Some(outcome) => outcome,
            None if roll(&mut inner.rng, faults.fail) => Outcome::Failed {
                code: "server_error".into(),
            },
            None if roll(&mut inner.rng, faults.incomplete) => Outcome::Incomplete {
                reason: "max_output_tokens".into(),
            },
            None => Outcome::Completed,
        };
        let stuck = req.background && (o.stuck || roll(&mut inner.rng, faults.stuck_queued));
        let (queue, run) = if req.background {
            (
                o.queue.unwrap_or(self.config.queue_time),
                o.run.unwrap_or(self.config.run_time),
            )
        } else if req.stream {
            (Duration::ZERO, o.run.unwrap_or(self.config.run_time))
        } else {
            (Duration::ZERO, Duration::ZERO)
        };
        let artifacts = {
            let inner = &mut *inner;
            Artifacts::make(
                &req,
                &id,
                &mut inner.storage,
                &faults,
                &context,
                &mut inner.rng,
            )?
        };
        let generated = output::generate(&req, &grounding, &artifacts, outcome, &mut inner.rng);
        let status = if req.background {
            Status::Queued
        } else {
            Status::InProgress
        };
        let created_unix = chrono::Utc::now().timestamp();
        let mut entry = Entry {
            created: now,
            created_unix,
            background: req.background,
            stored: req.store,
            streamed: req.stream,
            status,
            snapshot: response::initial(&req, &id, created_unix, status.as_str()),
            input_items: req.input_items.clone(),
            events: Vec::new(),
            generated,
            applied: 0,
            queue,
            run,
            stuck,
            webhook: o.webhook,
            webhook_delay: o.webhook_delay,
            terminal_at: None,
            unknown_events: req.stream && roll(&mut inner.rng, faults.stream_unknown_events),
            created_ms: chrono::Utc::now().timestamp_millis(),
            job_id: req
                .metadata
                .get("respool_job_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            answer_lost,
            webhook_dropped: false,
            stream_drop: o.stream_drop,
        };
        entry.push_lifecycle("response.created");
        if status == Status::Queued {
            entry.push_lifecycle("response.queued");
        } else {
            entry.push_lifecycle("response.in_progress");
        }
        let job = entry.advance(&id, now);
        let snapshot = entry.snapshot.clone();
        if let Some(deadline) = entry.next_deadline() {
            inner.schedule.push(Reverse((deadline, id.clone())));
        }
        inner.stats.creates += 1;
        if let Some(job_id) = req.metadata.get("respool_job_id").and_then(Value::as_str) {
            *inner
                .stats
                .creates_by_job_id
                .entry(job_id.to_owned())
                .or_default() += 1;
        }
        inner.created.push((entry.job_id.clone(), id.clone()));
        inner
            .requests
            .insert(id.clone(), Value::Object(req.body.clone()));
        inner.entries.insert(id.clone(), entry);
        if let Some(c) = req
            .conversation
            .as_deref()
            .and_then(|c| inner.conversations.get(c))
        {
            c.busy = Some(id.clone());
        }
        drop(inner);
        self.wake.notify_one();
        self.changed();
        self.emit(job);
        Ok((id, snapshot))
    }

    /// Appends the items of every finished response to its conversation (advancing the
    /// responses conversations wait on to now first).
    pub fn settle_conversations(&self) {
        let now = Instant::now();
        let mut jobs = Vec::new();
        let mut inner = self.lock();
        let busy: Vec<String> = inner
            .conversations
            .list
            .iter()
            .filter_map(|c| c.busy.clone())
            .collect();
        for id in busy {
            if let Some(entry) = inner.entries.get_mut(&id) {
                jobs.extend(entry.advance(&id, now));
            }
        }
        {
            let inner = &mut *inner;
            inner.conversations.settle(&inner.entries);
        }
        drop(inner);
        if !jobs.is_empty() {
            self.changed();
        }
        for job in jobs {
            self.emit(Some(job));
        }
    }

    /// Advances every response whose deadline passed; returns the next deadline.
    pub fn advance_due(&self, now: Instant) -> Option<Instant> {
        let mut jobs = Vec::new();
        let mut inner = self.lock();
        let mut touched = false;
        while let Some(Reverse((at, _))) = inner.schedule.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id))) = inner.schedule.pop() else {
                break;
            };
            let Some(entry) = inner.entries.get_mut(&id) else {
                continue;
            };
            touched = true;
            jobs.extend(entry.advance(&id, now));
            if let Some(next) = entry.next_deadline() {
                inner.schedule.push(Reverse((next, id)));
            }
        }
        let next = inner.schedule.peek().map(|Reverse((at, _))| *at);
        drop(inner);
        if touched {
            self.changed();
        }
        for job in jobs {
            self.emit(Some(job));
        }
        next
    }

    /// Forgets responses past their retention (unstored ones after a minute).
    pub fn sweep(&self, now: Instant) {
        let retention = self.config.retention;
        let mut inner = self.lock();
        inner.entries.retain(|_, e| {
            let keep_for = if e.stored {
                retention
            } else {
                Duration::from_secs(60)
            };
            e.terminal_at
                .is_none_or(|t| now.saturating_duration_since(t) < keep_for)
        });
    }

    /// Runs `f` on a stored response after advancing it to now.
    pub fn with_entry<T>(&self, id: &str, f: impl FnOnce(&mut Entry) -> T) -> Result<T, ApiError> {
        let mut inner = self.lock();
        let entry = inner
            .entries
            .get_mut(id)
            .filter(|e| e.stored)
            .ok_or_else(|| ApiError::response_not_found(id))?;
        let job = entry.advance(id, Instant::now());
        let out = f(entry);
        drop(inner);
        if job.is_some() {
            self.changed();
        }
        self.emit(job);
        Ok(out)
    }

    /// Runs `f` on any response, stored or not, after advancing it to now (for the control
    /// API, which also reports `store: false` responses); `None` once it is gone.
    pub fn with_any_entry<T>(&self, id: &str, f: impl FnOnce(&Entry) -> T) -> Option<T> {
        let mut inner = self.lock();
        let entry = inner.entries.get_mut(id)?;
        let job = entry.advance(id, Instant::now());
        let out = f(entry);
        drop(inner);
        if job.is_some() {
            self.changed();
        }
        self.emit(job);
        Some(out)
    }

    /// `POST /cancel`: the cancel matrix of `docs/upstream-api.md` §7.5.
    pub fn cancel(&self, id: &str) -> Result<Value, ApiError> {
        let clear = self.config.cancel_clears_output;
        let completed_ok = self.config.cancel_completed_ok;
        let now = Instant::now();
        let mut inner = self.lock();
        inner.stats.cancels += 1;
        let entry = inner
            .entries
            .get_mut(id)
            .filter(|e| e.stored)
            .ok_or_else(|| ApiError::response_not_found(id))?;
        // A completion that was due before this cancel wins the race, and its webhook still goes.
        let mut job = entry.advance(id, now);
        let result = match entry.status {
            _ if !entry.background => Err(ApiError::invalid(
                "Cannot cancel a synchronous response.",
                None,
                None,
            )),
            Status::Queued | Status::InProgress => {
                if clear {
                    entry.set("output", json!([]));
                }
                entry.set("usage", Value::Null);
                entry.set_status(Status::Cancelled);
                entry.terminal_at = Some(now);
                // OpenAI's stream behaviour on cancel is unconfirmed; like the Azure contract,
                // end the stream with `response.failed` carrying `status: cancelled`.
                entry.push_lifecycle("response.failed");
                job = entry.webhook_job(id, Status::Cancelled, entry.unix_at(now));
                Ok(entry.snapshot.clone())
            }
            Status::Cancelled => Ok(entry.snapshot.clone()),
            Status::Completed if completed_ok => Ok(entry.snapshot.clone()),
            Status::Completed => Err(ApiError::invalid(
                "Cannot cancel a completed response.",
                None,
                None,
            )),
            Status::Failed => Err(ApiError::invalid(
                "Cannot cancel a failed response.",
                None,
                None,
            )),
            Status::Incomplete => Err(ApiError::invalid(
                "Cannot cancel an incomplete response.",
                None,
                None,
            )),
        };
        drop(inner);
        self.changed();
        self.emit(job);
        result
    }

    /// `DELETE`: forgets a stored response.
    pub fn delete(&self, id: &str) -> Result<(), ApiError> {
        let mut inner = self.lock();
        inner.stats.deletes += 1;
        match inner.entries.get(id) {
            Some(e) if e.stored => {
                inner.entries.remove(id);
                drop(inner);
                self.changed();
                Ok(())
            }
            _ => Err(ApiError::response_not_found(id)),
        }
    }

    /// The current snapshot of a stored response, if any (for `SimHandle::response`).
    pub fn snapshot(&self, id: &str) -> Option<Value> {
        self.with_entry(id, |e| e.snapshot.clone()).ok()
    }
}
