//! The webhook sender: turns terminal transitions into signed Standard Webhooks deliveries
//! (thin `{object, id, type, created_at, data: {id}}` bodies), with OpenAI's headers, retries on
//! a compressed exponential schedule (same `webhook-id`, fresh timestamp and signature per
//! attempt), and the webhook faults (drop, duplicate, delay, reorder, extra event types).
//!
//! Each event goes to the configured target (`--webhook-url`, every event type) and to every
//! registered webhook endpoint subscribed to its type (`endpoints.rs`), each with its own
//! `webhook-id` and signed with that target's live secrets, read afresh at every attempt.
//!
//! Every delivery runs in a task owned by the simulator's `TaskTracker`; a `Semaphore` bounds
//! how many HTTP attempts run at once and another bounds how many deliveries may be pending.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::faults::{WebhookMode, roll};
use super::state::{Inner, Shared, WebhookJob};
use super::{SimConfig, ids};

/// The `user-agent` OpenAI sends with webhooks.
pub const USER_AGENT: &str = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)";

/// Unexpected event types sprinkled in by the `webhook_extra_events` fault.
const EXTRA_EVENTS: &[(&str, &str)] = &[
    ("batch.completed", "batch"),
    ("eval.run.succeeded", "evalrun"),
    ("fine_tuning.job.succeeded", "ftjob"),
];

/// Where one delivery goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// The configured target (`set_webhook_target`, `--webhook-url`).
    Configured,
    /// A registered webhook endpoint, by id.
    Endpoint(String),
}

/// One delivery: a target, a body and the `webhook-id` it keeps across attempts.
struct Delivery {
    target: Target,
    webhook_id: String,
    body: String,
    delay: Duration,
    duplicate: bool,
}

/// Owns the webhook dispatch loop and its delivery tasks.
pub(crate) struct Sender {
    shared: Arc<Shared>,
    client: reqwest::Client,
    tracker: TaskTracker,
    cancel: CancellationToken,
    attempts: Arc<Semaphore>,
    pending: Arc<Semaphore>,
}

/// The HTTP client every delivery uses: no redirects (OpenAI follows none), no proxy, the
/// configured attempt timeout and OpenAI's user agent.
pub(crate) fn client(config: &SimConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(config.webhook_timeout)
        .user_agent(USER_AGENT)
        .build()
}

impl Sender {
    pub fn new(
        shared: Arc<Shared>,
        client: reqwest::Client,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let attempts = Arc::new(Semaphore::new(shared.config.webhook_concurrency.max(1)));
        let pending = Arc::new(Semaphore::new(shared.config.webhook_max_pending.max(1)));
        Self {
            shared,
            client,
            tracker,
            cancel,
            attempts,
            pending,
        }
    }

    /// Receives terminal transitions until cancelled.
    pub async fn run(self, mut rx: mpsc::Receiver<WebhookJob>) {
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                job = rx.recv() => match job {
                    Some(job) => self.dispatch(job),
                    None => break,
                },
            }
        }
    }

    /// Applies the webhook faults to one event and spawns its deliveries, one per target.
    fn dispatch(&self, job: WebhookJob) {
        let mut deliveries = Vec::new();
        {
            let mut inner = self.shared.lock();
            let main_targets = targets(&inner, &job.event_type);
            if main_targets.is_empty() {
                return;
            }
            let faults = inner.faults.clone();
            let spared = job.answer_lost && faults.webhook_drop_spares_lost_answers;
            let dropped = job.mode == WebhookMode::Drop
                || (!spared && roll(&mut inner.rng, faults.webhook_drop));
            if dropped {
                inner.stats.webhooks_dropped += 1;
                if let Some(e) = inner.entries.get_mut(&job.data_id) {
                    e.webhook_dropped = true;
                }
                tracing::debug!(response_id = %job.data_id, "webhook dropped by fault");
            } else {
                let duplicate = job.mode == WebhookMode::Duplicate
                    || roll(&mut inner.rng, faults.webhook_duplicate);
                let jitter = random_up_to(&mut inner.rng, faults.webhook_reorder);
                let delay = faults.webhook_delay + job.extra_delay.unwrap_or_default() + jitter;
                let body = event_body(&job.event_type, &job.data_id, job.created_at);
                for target in main_targets {
                    deliveries.push(Delivery {
                        target,
                        webhook_id: ids::new("wh"),
                        body: body.clone(),
                        delay,
                        duplicate,
                    });
                }
            }
            if roll(&mut inner.rng, faults.webhook_extra_events) {
                let (kind, prefix) = EXTRA_EVENTS[inner.rng.random_range(0..EXTRA_EVENTS.len())];
                let body = event_body(kind, &ids::new(prefix), job.created_at);
                let delay = random_up_to(&mut inner.rng, faults.webhook_reorder);
                for target in targets(&inner, kind) {
                    deliveries.push(Delivery {
                        target,
                        webhook_id: ids::new("wh"),
                        body: body.clone(),
                        delay,
                        duplicate: false,
                    });
                }
            }
        }
        for delivery in deliveries {
            let Ok(permit) = Arc::clone(&self.pending).try_acquire_owned() else {
                tracing::warn!("too many pending webhooks, delivery dropped");
                self.shared.lock().stats.webhooks_dropped += 1;
                continue;
            };
            let task = DeliveryTask {
                shared: Arc::clone(&self.shared),
                client: self.client.clone(),
                cancel: self.cancel.clone(),
                attempts: Arc::clone(&self.attempts),
            };
            self.tracker.spawn(async move {
                task.deliver(delivery).await;
                drop(permit);
            });
        }
    }
}

/// Who gets an event of type `kind`: the configured target (every type), then each endpoint
/// subscribed to it.
fn targets(inner: &Inner, kind: &str) -> Vec<Target> {
    let configured = inner.webhook.url.is_some().then_some(Target::Configured);
    let endpoints = inner.endpoints.subscribed(kind).into_iter();
    configured
        .into_iter()
        .chain(endpoints.map(Target::Endpoint))
        .collect()
}

fn random_up_to(rng: &mut impl Rng, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(0..=millis))
}

/// The thin event body OpenAI sends.
pub(crate) fn event_body(kind: &str, data_id: &str, created_at: i64) -> String {
    json!({
        "object": "event",
        "id": ids::new("evt"),
        "type": kind,
        "created_at": created_at,
        "data": {"id": data_id},
    })
    .to_string()
}

/// The `webhook-signature` value: one `v1,<b64>` entry per valid secret, space-separated.
pub(crate) fn signature_header(
    secrets: &[String],
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .filter_map(|secret| {
            let signer = standardwebhooks::Webhook::new(secret).ok()?;
            signer.sign(webhook_id, timestamp, body).ok()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What one delivery task needs.
struct DeliveryTask {
    shared: Arc<Shared>,
    client: reqwest::Client,
    cancel: CancellationToken,
    attempts: Arc<Semaphore>,
}

impl DeliveryTask {
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }

    async fn deliver(self, delivery: Delivery) {
        if !self.sleep(delivery.delay).await {
            return;
        }
        let schedule = self.shared.config.webhook_retry_schedule.clone();
        let mut sends = if delivery.duplicate { 2 } else { 1 };
        let mut attempt = 0;
        while sends > 0 {
            if self.attempt(&delivery).await {
                sends -= 1;
                attempt = 0;
                continue;
            }
            let Some(wait) = schedule.get(attempt) else {
                tracing::warn!(webhook_id = %delivery.webhook_id, "webhook retries exhausted");
                self.shared.lock().stats.webhooks_failed += 1;
                return;
            };
            attempt += 1;
            if !self.sleep(*wait).await {
                return;
            }
        }
    }

    /// One HTTP attempt; true on a 2xx.
    async fn attempt(&self, delivery: &Delivery) -> bool {
        let Ok(_permit) = self.attempts.acquire().await else {
            return false;
        };
        let (url, secrets) = {
            let mut inner = self.shared.lock();
            inner.stats.webhooks_attempted += 1;
            match &delivery.target {
                Target::Configured => (inner.webhook.url.clone(), inner.webhook.secrets.clone()),
                // A deleted endpoint has no URL: the attempt fails, and so do the retries.
                Target::Endpoint(id) => inner.endpoints.get(id).map_or((None, Vec::new()), |e| {
                    (Some(e.url.clone()), e.live_secrets(Instant::now()))
                }),
            }
        };
        let Some(url) = url else { return false };
        let result = tokio::select! {
            () = self.cancel.cancelled() => return false,
            r = send_signed(&self.client, &url, &delivery.webhook_id, &delivery.body, &secrets) => r,
        };
        match result {
            Ok(status) if status.is_success() => {
                self.shared.lock().stats.webhooks_delivered += 1;
                true
            }
            Ok(status) => {
                tracing::debug!(webhook_id = %delivery.webhook_id, %status, "webhook rejected");
                false
            }
            Err(err) => {
                tracing::debug!(webhook_id = %delivery.webhook_id, error = %err, "webhook attempt failed");
                false
            }
        }
    }
}

/// POSTs `body` to `url` once, with OpenAI's headers and a `webhook-signature` made now with
/// each of `secrets` (none: no signature header); returns the answer's status.
pub(crate) async fn send_signed(
    client: &reqwest::Client,
    url: &str,
    webhook_id: &str,
    body: &str,
    secrets: &[String],
) -> Result<reqwest::StatusCode, reqwest::Error> {
    let timestamp = chrono::Utc::now().timestamp();
    let signature = signature_header(secrets, webhook_id, timestamp, body.as_bytes());
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", webhook_id)
        .header("webhook-timestamp", timestamp.to_string());
    if !signature.is_empty() {
        request = request.header("webhook-signature", signature);
    }
    Ok(request.body(body.to_owned()).send().await?.status())
}
