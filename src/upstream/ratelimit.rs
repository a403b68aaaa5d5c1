//! OpenAI's `x-ratelimit-*` headers, the window they describe, and the pure decision whether
//! creates of a model wait for that window to reset, so that they slow down *before* OpenAI
//! answers 429. The windows themselves live in the store (`rate_limit_windows`), shared by every
//! daemon on the database; see `orchestrator/limits.rs`.
//!
//! `x-ratelimit-remaining-{requests,tokens}` count what is left in the current window;
//! `x-ratelimit-reset-{requests,tokens}` say, as Go-style durations (`1s`, `6m0s`, `12ms`,
//! `2s81ms`), how long until the limit is back to full. Limits are per organization and model,
//! so windows are keyed by the model a create named. The numbers are a hint, never a
//! correctness rule: a create that still meets a 429 is rescheduled as before.

use std::time::Duration;

use reqwest::header::HeaderMap;

/// The longest wait a reset header may ask for; anything longer is taken as this (a header
/// from a confused proxy must not park jobs for a year).
const MAX_RESET: Duration = Duration::from_secs(24 * 3600);
/// The wait assumed when a remaining count is low but no reset came with it.
const DEFAULT_RESET: Duration = Duration::from_secs(1);

/// Parses a Go `time.Duration` string: a sequence of decimal numbers, each with an optional
/// fraction and a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), such as `1s`, `6m0s`, `12ms`,
/// `2s81ms`, `1.5h` or `5h50m30ms`; `0` alone is zero. Negative or malformed values are `None`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        // Longest unit first: `ms` before `m`, `µs` before `s`.
        let (unit_ns, unit_len): (u128, usize) = [
            ("ns", 1),
            ("us", 1_000),
            ("µs", 1_000),
            ("μs", 1_000),
            ("ms", 1_000_000),
            ("s", 1_000_000_000),
            ("m", 60_000_000_000),
            ("h", 3_600_000_000_000),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))
        .map(|(u, ns)| (ns, u.len()))?;
        rest = &rest[unit_len..];
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let mut value = int.checked_mul(unit_ns)?;
        if !frac_part.is_empty() {
            // Only the digits that can matter at nanosecond precision.
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = digits.parse().ok()?;
            value = value.checked_add(frac * unit_ns / 10u128.pow(digits.len() as u32))?;
        }
        total = total.checked_add(value)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// What one answer's rate-limit headers said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub remaining_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    /// Time until the request limit is back to full.
    pub reset_requests: Option<Duration>,
    /// Time until the token limit is back to full.
    pub reset_tokens: Option<Duration>,
}

impl RateLimits {
    /// Reads the headers; `None` when the answer carried no remaining count at all.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let count = |name: &str| get(name).and_then(|v| v.trim().parse::<u64>().ok());
        let limits = Self {
            remaining_requests: count("x-ratelimit-remaining-requests"),
            remaining_tokens: count("x-ratelimit-remaining-tokens"),
            reset_requests: get("x-ratelimit-reset-requests").and_then(parse_go_duration),
            reset_tokens: get("x-ratelimit-reset-tokens").and_then(parse_go_duration),
        };
        (limits.remaining_requests.is_some() || limits.remaining_tokens.is_some()).then_some(limits)
    }
}

/// The latest window seen for one model, in absolute (unix ms) times: what the store keeps
/// (table `rate_limit_windows`, one row per model), so that every daemon on a database
/// decides from the same, newest observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateWindow {
    pub model: String,
    pub remaining_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub requests_reset_at: i64,
    pub tokens_reset_at: i64,
    /// When the answer that said this arrived (unix ms): a newer observation replaces an
    /// older one, never the other way round.
    pub observed_at: i64,
}

impl RateWindow {
    /// What an answer to a request for `model`, received at `now` (unix ms), says of its
    /// window. A missing reset counts as [`DEFAULT_RESET`], a huge one as [`MAX_RESET`].
    pub fn observed(model: &str, limits: &RateLimits, now: i64) -> Self {
        let at =
            |d: Option<Duration>| now + crate::clock::ms(d.unwrap_or(DEFAULT_RESET).min(MAX_RESET));
        Self {
            model: model.to_string(),
            remaining_requests: limits.remaining_requests,
            remaining_tokens: limits.remaining_tokens,
            requests_reset_at: at(limits.reset_requests),
            tokens_reset_at: at(limits.reset_tokens),
            observed_at: now,
        }
    }

    /// Whether the window says nothing any more at `now` (both limits are back to full).
    pub fn is_over(&self, now: i64) -> bool {
        self.requests_reset_at.max(self.tokens_reset_at) <= now
    }

    /// Whether creates of this model should wait at `now`, and until when.
    pub fn wait(&self, now: i64, low: LowWater) -> Option<RateWait> {
        let mut until = None::<i64>;
        let mut why = Vec::new();
        if let Some(left) = self.remaining_requests
            && left <= low.requests
            && self.requests_reset_at > now
        {
            until = Some(until.unwrap_or(0).max(self.requests_reset_at));
            why.push(format!("{left} requests left"));
        }
        if let Some(left) = self.remaining_tokens
            && left <= low.tokens
            && self.tokens_reset_at > now
        {
            until = Some(until.unwrap_or(0).max(self.tokens_reset_at));
            why.push(format!("{left} tokens left"));
        }
        let until = until?;
        let wait = Duration::from_millis(u64::try_from(until - now).unwrap_or(0));
        Some(RateWait {
            until,
            reason: format!(
                "waiting for rate limit window: {} for {}; resets in {}",
                why.join(", "),
                self.model,
                humantime::format_duration(wait)
            ),
        })
    }
}

/// Why creates of a model wait, and until when (unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateWait {
    pub until: i64,
    pub reason: String,
}

/// The low-water marks: at or below them, creates wait for the window to reset.
#[derive(Debug, Clone, Copy)]
pub struct LowWater {
    pub requests: u64,
    pub tokens: u64,
}

/// Every model whose creates should wait at `now`, by model name, given the latest window of
/// each model (as the store holds them: one per model).
pub fn waits(windows: &[RateWindow], now: i64, low: LowWater) -> Vec<(String, RateWait)> {
    let mut out: Vec<(String, RateWait)> = windows
        .iter()
        .filter_map(|w| w.wait(now, low).map(|r| (w.model.clone(), r)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn parses_go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("1s"), Some(ms(1000)));
        assert_eq!(parse_go_duration("6m0s"), Some(ms(360_000)));
        assert_eq!(parse_go_duration("12ms"), Some(ms(12)));
        assert_eq!(parse_go_duration("2s81ms"), Some(ms(2081)));
        assert_eq!(
            parse_go_duration("5h50m30ms"),
            Some(ms(5 * 3_600_000 + 50 * 60_000 + 30))
        );
        assert_eq!(parse_go_duration("1.5h"), Some(ms(5_400_000)));
        assert_eq!(parse_go_duration("0.5s"), Some(ms(500)));
        assert_eq!(parse_go_duration(".25s"), Some(ms(250)));
        assert_eq!(parse_go_duration("300us"), Some(Duration::from_micros(300)));
        assert_eq!(parse_go_duration("300µs"), Some(Duration::from_micros(300)));
        assert_eq!(parse_go_duration("7ns"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration(" 1m "), Some(ms(60_000)));
        for bad in ["", "s", "1", "1x", "-1s", "1s2", "abc", "1..5s", "."] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_go_duration("99999999999999999999999h"), None);
    }

    #[test]
    fn reads_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(RateLimits::from_headers(&h), None);
        h.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("3"),
        );
        h.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_static("29000"),
        );
        h.insert(
            "x-ratelimit-reset-requests",
            HeaderValue::from_static("2s81ms"),
        );
        h.insert(
            "x-ratelimit-reset-tokens",
            HeaderValue::from_static("nonsense"),
        );
        assert_eq!(
            RateLimits::from_headers(&h),
            Some(RateLimits {
                remaining_requests: Some(3),
                remaining_tokens: Some(29000),
                reset_requests: Some(Duration::from_millis(2081)),
                reset_tokens: None,
            })
        );
    }

    const LOW: LowWater = LowWater {
        requests: 1,
        tokens: 1000,
    };

    fn limits(requests: u64, tokens: u64, reset_ms: u64) -> RateLimits {
        RateLimits {
            remaining_requests: Some(requests),
            remaining_tokens: Some(tokens),
            reset_requests: Some(Duration::from_millis(reset_ms)),
            reset_tokens: Some(Duration::from_millis(reset_ms * 2)),
        }
    }

    fn window(requests: u64, tokens: u64, reset_ms: u64, now: i64) -> RateWindow {
        RateWindow::observed("o3", &limits(requests, tokens, reset_ms), now)
    }

    #[test]
    fn waits_at_the_low_water_mark_until_the_reset() {
        assert_eq!(window(5, 50_000, 1000, 10_000).wait(10_000, LOW), None);

        let w = window(1, 50_000, 1500, 10_000);
        assert_eq!(w.observed_at, 10_000);
        let wait = w.wait(10_100, LOW).unwrap();
        assert_eq!(wait.until, 11_500);
        assert!(
            wait.reason
                .starts_with("waiting for rate limit window: 1 requests left for o3"),
            "{}",
            wait.reason
        );
        // Past the reset, the numbers are stale: no wait.
        assert_eq!(w.wait(11_500, LOW), None);

        // Tokens low: the token reset counts.
        assert_eq!(
            window(100, 10, 1000, 20_000)
                .wait(20_000, LOW)
                .unwrap()
                .until,
            22_000
        );
        // Both low: the later reset.
        let both = window(0, 0, 1000, 30_000);
        let wait = both.wait(30_000, LOW).unwrap();
        assert_eq!(wait.until, 32_000);
        assert!(
            wait.reason.contains("0 requests left, 0 tokens left"),
            "{}",
            wait.reason
        );
        assert!(!both.is_over(31_999));
        assert!(both.is_over(32_000));

        // Every model is decided on its own window; others go on.
        let gpt = RateWindow::observed("gpt-5", &limits(50, 50_000, 1000), 30_000);
        let got = waits(&[gpt.clone(), both.clone()], 30_000, LOW);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "o3");
        assert!(waits(&[gpt], 30_000, LOW).is_empty());
        assert!(waits(&[], 30_000, LOW).is_empty());
    }

    #[test]
    fn missing_or_huge_resets_are_bounded() {
        let no_reset = RateLimits {
            remaining_requests: Some(0),
            ..Default::default()
        };
        let w = RateWindow::observed("m", &no_reset, 0);
        assert_eq!(w.wait(0, LOW).unwrap().until, 1000);
        let huge = RateLimits {
            remaining_requests: Some(0),
            reset_requests: Some(Duration::from_secs(10 * 24 * 3600)),
            ..Default::default()
        };
        let w = RateWindow::observed("m", &huge, 0);
        assert_eq!(w.wait(0, LOW).unwrap().until, 24 * 3600 * 1000);
    }
}
