//! Retry delays as small pure functions.

use std::time::Duration;

/// Exponential backoff with jitter, the formula of the official SDKs:
/// `min(0.5 s · 2^k, 8 s) × (1 − 0.25·r)` for the k-th retry and `r` in [0, 1).
pub fn backoff(retries_done: u32, r: f64) -> Duration {
    let base = (0.5 * 2f64.powi(retries_done.min(16) as i32)).min(8.0);
    Duration::from_secs_f64(base * (1.0 - 0.25 * r.clamp(0.0, 1.0)))
}

/// The delay before the next try: the server's, if it gave one within `max`, else backoff.
/// `None` means the server asked for more than `max`: do not wait inline.
pub fn next_delay(
    server: Option<Duration>,
    max: Duration,
    retries_done: u32,
    r: f64,
) -> Option<Duration> {
    match server {
        Some(d) if d > max => None,
        Some(d) => Some(d),
        None => Some(backoff(retries_done, r)),
    }
}

/// Parses `retry-after-ms` (milliseconds) or `Retry-After` (seconds, possibly fractional, or an
/// HTTP date we do not try to parse).
pub fn parse_retry_after(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
) -> Option<Duration> {
    // Header values come from the network: never panic on huge or odd numbers.
    if let Some(d) = retry_after_ms
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
    {
        return Some(d);
    }
    retry_after
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(10, 0.0), Duration::from_secs(8));
        assert_eq!(backoff(0, 1.0), Duration::from_millis(375));
    }

    #[test]
    fn server_delay_wins_within_max() {
        let max = Duration::from_secs(60);
        assert_eq!(
            next_delay(Some(Duration::from_secs(3)), max, 0, 0.5),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            next_delay(Some(Duration::from_secs(600)), max, 0, 0.5),
            None
        );
        assert_eq!(
            next_delay(None, max, 0, 0.0),
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn parses_both_headers() {
        assert_eq!(
            parse_retry_after(Some("1500"), Some("9")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after(None, Some("2")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_retry_after(None, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
    }
}
