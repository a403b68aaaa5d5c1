//! The webhook sender: turns terminal transitions into signed Standard Webhooks deliveries
//! (thin `{object, id, type, created_at, data: {id}}` bodies), with OpenAI's headers, retries on
//! a compressed exponential schedule (same `webhook-id`, fresh timestamp and signature per
//! attempt), and the webhook faults (drop, duplicate, delay, reorder, extra event types).
//!
//! Every delivery runs in a task owned by the simulator's `TaskTracker`; a `Semaphore` bounds
//! how many HTTP attempts run at once and another bounds how many deliveries may be pending.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::faults::{WebhookMode, roll};
use super::ids;
use super::state::{Shared, WebhookJob};

/// The `user-agent` OpenAI sends with webhooks.
pub const USER_AGENT: &str = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)";

/// Unexpected event types sprinkled in by the `webhook_extra_events` fault.
const EXTRA_EVENTS: &[(&str, &str)] = &[
    ("batch.completed", "batch"),
    ("eval.run.succeeded", "evalrun"),
    ("fine_tuning.job.succeeded", "ftjob"),
];

/// One delivery: a body and the `webhook-id` it keeps across attempts.
struct Delivery {
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

impl Sender {
    pub fn new(
        shared: Arc<Shared>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(shared.config.webhook_timeout)
            .user_agent(USER_AGENT)
            .build()?;
        let attempts = Arc::new(Semaphore::new(shared.config.webhook_concurrency.max(1)));
        let pending = Arc::new(Semaphore::new(shared.config.webhook_max_pending.max(1)));
        Ok(Self {
            shared,
            client,
            tracker,
            cancel,
            attempts,
            pending,
        })
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

    /// Applies the webhook faults to one event and spawns its deliveries.
    fn dispatch(&self, job: WebhookJob) {
        let mut deliveries = Vec::new();
        {
            let mut inner = self.shared.lock();
            if inner.webhook.url.is_none() {
                return;
            }
            let faults = inner.faults.clone();
            let dropped =
                job.mode == WebhookMode::Drop || roll(&mut inner.rng, faults.webhook_drop);
            if dropped {
                inner.stats.webhooks_dropped += 1;
                tracing::debug!(response_id = %job.data_id, "webhook dropped by fault");
            } else {
                let duplicate = job.mode == WebhookMode::Duplicate
                    || roll(&mut inner.rng, faults.webhook_duplicate);
                let jitter = random_up_to(&mut inner.rng, faults.webhook_reorder);
                let delay = faults.webhook_delay + job.extra_delay.unwrap_or_default() + jitter;
                deliveries.push(Delivery {
                    webhook_id: ids::new("wh"),
                    body: event_body(&job.event_type, &job.data_id, job.created_at),
                    delay,
                    duplicate,
                });
            }
            if roll(&mut inner.rng, faults.webhook_extra_events) {
                let (kind, prefix) = EXTRA_EVENTS[inner.rng.random_range(0..EXTRA_EVENTS.len())];
                deliveries.push(Delivery {
                    webhook_id: ids::new("wh"),
                    body: event_body(kind, &ids::new(prefix), job.created_at),
                    delay: random_up_to(&mut inner.rng, faults.webhook_reorder),
                    duplicate: false,
                });
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
            (inner.webhook.url.clone(), inner.webhook.secrets.clone())
        };
        let Some(url) = url else { return false };
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signature_header(
            &secrets,
            &delivery.webhook_id,
            timestamp,
            delivery.body.as_bytes(),
        );
        let mut request = self
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.webhook_id)
            .header("webhook-timestamp", timestamp.to_string());
        if !signature.is_empty() {
            request = request.header("webhook-signature", signature);
        }
        let result = tokio::select! {
            () = self.cancel.cancelled() => return false,
            r = request.body(delivery.body.clone()).send() => r,
        };
        match result {
            Ok(resp) if resp.status().is_success() => {
                self.shared.lock().stats.webhooks_delivered += 1;
                true
            }
            Ok(resp) => {
                tracing::debug!(webhook_id = %delivery.webhook_id, status = %resp.status(), "webhook rejected");
                false
            }
            Err(err) => {
                tracing::debug!(webhook_id = %delivery.webhook_id, error = %err, "webhook attempt failed");
                false
            }
        }
    }
}
