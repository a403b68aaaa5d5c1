//! Headers every API reply carries: `x-request-id`, `openai-version`, `openai-processing-ms`
//! and the six `x-ratelimit-*` headers, whose reset values are Go-style durations
//! (`1s`, `6m0s`, `12ms`, `2s81ms`). The counters follow a one-minute window of 10 000
//! requests unless `Faults::ratelimit_requests` / `ratelimit_window` say otherwise.

use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

use super::ids;

const LIMIT_TOKENS: u64 = 30_000_000;
const TOKENS_PER_REQUEST: u64 = 1_000;

/// Formats a duration like OpenAI's rate-limit reset headers: `12ms`, `1s`, `6m0s`, `2s81ms`.
pub(crate) fn go_duration(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".to_owned();
    }
    if total_ms < 1000 {
        return format!("{total_ms}ms");
    }
    let (h, m, s, ms) = (
        total_ms / 3_600_000,
        total_ms / 60_000 % 60,
        total_ms / 1000 % 60,
        total_ms % 1000,
    );
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || ms == 0 {
        out.push_str(&format!("{s}s"));
    }
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

/// The one-minute request window behind the `x-ratelimit-*` values. A window opens at the
/// first request after the last one closed (not when the simulator started), so what a client
/// is told does not depend on how long it took to send its first request.
pub(crate) struct RateWindow {
    state: Mutex<Option<(Instant, u64)>>,
}

impl RateWindow {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(None),
        }
    }

    /// Counts a request and writes every standard header into `headers`, for a request limit
    /// of `limit` per `window`.
    pub fn stamp(
        &self,
        headers: &mut HeaderMap,
        started: Instant,
        (limit, window): (u64, Duration),
    ) {
        let now = Instant::now();
        let (used, left) = {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (opened, used) = match *state {
                Some((opened, used)) if now.duration_since(opened) < window => (opened, used + 1),
                _ => (now, 1),
            };
            *state = Some((opened, used));
            (used, window.saturating_sub(now.duration_since(opened)))
        };
        let remaining_requests = limit.saturating_sub(used);
        let remaining_tokens = LIMIT_TOKENS.saturating_sub(used * TOKENS_PER_REQUEST);
        // Tokens refill proportionally faster than requests: scale the reset accordingly.
        let token_reset = left.mul_f64((used * TOKENS_PER_REQUEST) as f64 / LIMIT_TOKENS as f64);
        let request_reset = left.mul_f64((used as f64 / limit as f64).min(1.0));
        let values = [
            ("x-request-id", ids::request_id()),
            ("openai-version", "2020-10-01".to_owned()),
            (
                "openai-processing-ms",
                now.duration_since(started).as_millis().to_string(),
            ),
            ("x-ratelimit-limit-requests", limit.to_string()),
            ("x-ratelimit-limit-tokens", LIMIT_TOKENS.to_string()),
            (
                "x-ratelimit-remaining-requests",
                remaining_requests.to_string(),
            ),
            ("x-ratelimit-remaining-tokens", remaining_tokens.to_string()),
            ("x-ratelimit-reset-requests", go_duration(request_reset)),
            ("x-ratelimit-reset-tokens", go_duration(token_reset)),
        ];
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_openai() {
        assert_eq!(go_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(go_duration(Duration::from_millis(2081)), "2s81ms");
        assert_eq!(
            go_duration(Duration::from_millis(5 * 3_600_000 + 50 * 60_000 + 30)),
            "5h50m30ms"
        );
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
