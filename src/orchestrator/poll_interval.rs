//! The adaptive polling schedule and the webhook health it depends on.
//!
//! While webhooks are healthy (configured, and none seen to go missing lately) they tell us of
//! every end, and a poll is only the safety net: each job is polled every `max_interval`, so a
//! run that ends before then costs its create and one retrieve, and a lost webhook delays a
//! result by at most `max_interval`. Without them (not configured, or one seen to go missing),
//! a job is first polled at `min_interval`, then each quiet poll doubles the interval up to a
//! quarter of `max_interval` (never below `min_interval`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The next interval after `prev` (0 for the first poll), before jitter.
pub fn next_interval(
    prev: Duration,
    min: Duration,
    max: Duration,
    webhooks_healthy: bool,
) -> Duration {
    if webhooks_healthy {
        return max;
    }
    let cap = (max / 4).max(min);
    if prev.is_zero() {
        min
    } else {
        (prev * 2).clamp(min, cap)
    }
}

/// The polls a second, on average over all jobs, that [`spread`] keeps to: with healthy
/// webhooks a poll is only the safety net, spread to `safety_net_per_second` (never more
/// than `max_per_second`); without them, `max_per_second`.
pub fn per_second(webhooks_healthy: bool, max_per_second: u32, safety_net_per_second: u32) -> u32 {
    if webhooks_healthy {
        max_per_second.min(safety_net_per_second)
    } else {
        max_per_second
    }
}

/// Stretches `interval` so that `in_flight` jobs polled that often make at most
/// `per_second` polls a second on average, and returns it with the cap for [`jitter`]:
/// `max_interval`, or the stretched interval when it is longer.
pub fn spread(
    interval: Duration,
    max_interval: Duration,
    in_flight: i64,
    per_second: u32,
) -> (Duration, Duration) {
    let floor = Duration::from_secs_f64(in_flight.max(0) as f64 / f64::from(per_second.max(1)));
    let interval = interval.max(floor);
    (interval, max_interval.max(interval))
}

/// Spreads polls: ±10% of the interval, never past `max`. `r` in [0, 1).
pub fn jitter(interval: Duration, max: Duration, r: f64) -> Duration {
    let factor = 0.9 + 0.2 * r.clamp(0.0, 1.0);
    interval.mul_f64(factor).min(max)
}

/// Whether webhooks can be trusted to arrive. Kept in memory: it only changes how fast we
/// poll, never what is correct.
#[derive(Debug)]
pub struct WebhookHealth {
    /// Whether a signing secret is configured (a reload may change it).
    configured: AtomicBool,
    /// Unix ms until which webhooks count as unhealthy (a miss was seen).
    unhealthy_until: Mutex<i64>,
}

/// How long one missed webhook makes us poll faster.
const MISS_PENALTY_MS: i64 = 15 * 60 * 1000;

impl WebhookHealth {
    pub fn new(configured: bool) -> Self {
        Self {
            configured: AtomicBool::new(configured),
            unhealthy_until: Mutex::new(0),
        }
    }

    pub fn is_healthy(&self, now: i64) -> bool {
        self.configured.load(Ordering::Relaxed)
            && self
                .unhealthy_until
                .lock()
                .map(|u| *u <= now)
                .unwrap_or(true)
    }

    /// A reload added or removed the webhook secrets.
    pub fn set_configured(&self, configured: bool) {
        self.configured.store(configured, Ordering::Relaxed);
    }

    /// A poll found a job finished and no webhook had said so. Returns whether webhooks were
    /// healthy until then (the polls spread for a safety net are then too far apart).
    pub fn record_miss(&self, now: i64) -> bool {
        let was_healthy = self.is_healthy(now);
        if let Ok(mut u) = self.unhealthy_until.lock() {
            *u = now + MISS_PENALTY_MS;
        }
        was_healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_up_to_cap() {
        let (min, max) = (2 * S, 60 * S);
        assert_eq!(next_interval(Duration::ZERO, min, max, false), min);
        assert_eq!(next_interval(2 * S, min, max, false), 4 * S);
        assert_eq!(next_interval(40 * S, min, max, false), 15 * S);
        assert_eq!(next_interval(40 * S, 20 * S, 40 * S, false), 20 * S);
    }

    #[test]
    fn healthy_webhooks_leave_polls_to_the_safety_net() {
        let (min, max) = (2 * S, 60 * S);
        for prev in [Duration::ZERO, 2 * S, 15 * S, max] {
            assert_eq!(next_interval(prev, min, max, true), max);
        }
    }

    #[test]
    fn many_jobs_in_flight_stretch_the_interval_to_the_rate_limit() {
        let max = 60 * S;
        // 64 jobs at 20 a second: 3.2 s apart at least.
        assert_eq!(
            spread(2 * S, max, 64, 20),
            (Duration::from_millis(3200), max)
        );
        assert_eq!(spread(max, max, 64, 20), (max, max));
        // 10,000 jobs: each every 500 s, past max_interval (which then does not cap it).
        assert_eq!(spread(max, max, 10_000, 20), (500 * S, 500 * S));
        assert_eq!(spread(2 * S, max, 0, 20), (2 * S, max));
        assert_eq!(spread(2 * S, max, -1, 0), (2 * S, max));
    }

    /// 10,000 jobs waiting upstream with healthy webhooks: each is polled every 5,000 s (2 a
    /// second); once a webhook went missing, every 500 s (20 a second). A safety-net rate
    /// above `max_per_second` never raises it.
    #[test]
    fn healthy_webhooks_spread_the_safety_net_thinner() {
        let max = 60 * S;
        let healthy = per_second(true, 20, 2);
        assert_eq!(healthy, 2);
        assert_eq!(spread(max, max, 10_000, healthy).0, 5_000 * S);
        let unhealthy = per_second(false, 20, 2);
        assert_eq!(unhealthy, 20);
        assert_eq!(spread(max, max, 10_000, unhealthy).0, 500 * S);
        assert_eq!(per_second(true, 5, 50), 5);
        // A few jobs are polled every max_interval either way.
        assert_eq!(spread(max, max, 100, healthy).0, max);
    }

    #[test]
    fn jitter_never_passes_max() {
        assert_eq!(jitter(60 * S, 60 * S, 0.99), 60 * S);
        assert_eq!(jitter(10 * S, 60 * S, 0.0), 9 * S);
    }

    #[test]
    fn health() {
        let h = WebhookHealth::new(true);
        assert!(h.is_healthy(0));
        assert!(h.record_miss(0));
        assert!(!h.is_healthy(1000));
        // A second miss while unhealthy says so, and extends the penalty from its own time.
        assert!(!h.record_miss(1000));
        assert!(!h.is_healthy(MISS_PENALTY_MS));
        assert!(h.is_healthy(MISS_PENALTY_MS + 1000));
        assert!(!WebhookHealth::new(false).is_healthy(0));
    }
}
