//! The webhook sink: POSTs the event JSON to a URL, signed the Standard Webhooks way (the scheme
//! OpenAI's own webhooks use), so a receiver can verify it with `standardwebhooks` or the
//! official OpenAI SDKs (`client.webhooks.unwrap`).
//!
//! Per delivery: the body is serialized once and those exact bytes are signed and sent;
//! `webhook-id` is stable per (job, event), so it stays the same across retries and receivers
//! can dedupe on it; `webhook-timestamp` and `webhook-signature` are fresh per attempt (a
//! receiver refuses timestamps older than five minutes). The outbox decides when to retry; this
//! file only says whether a failure is worth retrying.

use std::fmt;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use secrecy::ExposeSecret;
use standardwebhooks::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Webhook,
};

use super::context::stable_event_id;
use super::{Notification, SinkError};
use crate::config::sinks::{Secret, WebhookSink as WebhookConfig};

/// The most of an error answer's body kept for the error message.
const MAX_ERROR_BODY: usize = 2048;
/// The longest `Retry-After` honoured; a larger one (or a date far ahead) is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Signs and POSTs events to one URL.
pub struct WebhookSink {
    name: String,
    url: reqwest::Url,
    signer: Webhook,
    timeout: Duration,
    http: reqwest::Client,
}

/// The key and the URL's query (which can carry a token) stay out of logs.
impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("url", &redacted(&self.url))
            .field("signer", &"[REDACTED]")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl WebhookSink {
    /// Reads the secret (inline or from its file) and checks the URL. The shared client does
    /// not follow redirects: every 3xx is a failed attempt (as OpenAI treats them).
    pub fn new(name: &str, cfg: &WebhookConfig, http: reqwest::Client) -> Result<Self, SinkError> {
        let url = reqwest::Url::parse(&cfg.url)
            .map_err(|e| SinkError::Config(format!("`url` is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SinkError::Config("`url` must be http or https".into()));
        }
        let secret = Secret {
            inline: cfg.secret.as_ref(),
            file: cfg.secret_file.as_ref(),
        }
        .resolve()
        .map_err(SinkError::Config)?
        .ok_or_else(|| {
            SinkError::Config(
                "`secret` (or `secret_file`) is required: deliveries are signed".into(),
            )
        })?;
        // The crate's error would only say "invalid base64"; it never echoes the secret.
        let signer = Webhook::new(secret.expose_secret()).map_err(|_| {
            SinkError::Config("`secret` must be `whsec_` followed by base64".into())
        })?;
        Ok(Self {
            name: name.to_string(),
            url,
            signer,
            timeout: cfg.timeout,
            http,
        })
    }

    /// One signed POST. 2xx delivers; 3xx, 408, 429, 5xx, timeouts and connection errors are
    /// worth another try (with the endpoint's `Retry-After`); other 4xx are final.
    pub async fn deliver(&self, n: &Notification<'_>) -> Result<(), SinkError> {
        let body = serde_json::to_vec(&n.event_json())
            .map_err(|e| SinkError::Permanent(format!("cannot serialize the event: {e}")))?;
        let msg_id = message_id(&n.job.id, &super::context::event_key(n.event, n.job.turn));
        // The receiver checks this against its own wall clock (±5 minutes), so it is the
        // system time, not the daemon's adjustable clock.
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self
            .signer
            .sign(&msg_id, timestamp, &body)
            .map_err(|e| SinkError::Permanent(format!("cannot sign the event: {e}")))?;
        let sent = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header(HEADER_WEBHOOK_ID, &msg_id)
            .header(HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string())
            .header(HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Err(self.transport_error(e)),
        };
        let status = response.status();
        if status.is_success() {
            tracing::debug!(sink = %self.name, job_id = %n.job.id, webhook_id = %msg_id, status = status.as_u16(), "webhook delivered");
            return Ok(());
        }
        let retry_after = parse_retry_after(response.headers(), chrono::Utc::now());
        let text = read_bounded(response, MAX_ERROR_BODY).await;
        Err(classify(status.as_u16(), retry_after, &text))
    }

    /// A transport failure, without the URL (its query may hold a token).
    fn transport_error(&self, e: reqwest::Error) -> SinkError {
        let timed_out = e.is_timeout();
        let builder = e.is_builder();
        let e = e.without_url();
        if timed_out {
            return SinkError::temporary(format!(
                "the endpoint did not answer within {:?}",
                self.timeout
            ));
        }
        let message = format!("POST failed: {}", crate::telemetry::chain(&e));
        if builder {
            SinkError::Config(message)
        } else {
            SinkError::temporary(message)
        }
    }
}

/// `msg_` and the hash part of the body's `evt_` id: the same for every attempt of one event.
pub fn message_id(job_id: &str, event: &str) -> String {
    let evt = stable_event_id(job_id, event);
    format!("msg_{}", evt.strip_prefix("evt_").unwrap_or(&evt))
}

/// Maps a non-2xx answer: 3xx is temporary (a redirect is not followed, but the endpoint may
/// be moving back), the rest as [`SinkError::from_http_status`] says.
fn classify(status: u16, retry_after: Option<Duration>, body: &str) -> SinkError {
    if (300..400).contains(&status) || status < 200 {
        let snippet: String = body.chars().take(200).collect();
        return SinkError::Temporary {
            message: format!(
                "the endpoint answered {status} (redirects are not followed): {snippet}"
            ),
            retry_after,
        };
    }
    SinkError::from_http_status(status, retry_after, body)
}

/// `Retry-After` as seconds or an HTTP date, bounded by [`MAX_RETRY_AFTER`].
fn parse_retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// Up to `limit` bytes of the body, lossily decoded; errors end the read quietly (the status
/// already says what went wrong).
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> String {
    let mut buf = Vec::new();
    while buf.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk[..chunk.len().min(limit - buf.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The URL without credentials, query or fragment.
fn redacted(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn cfg(url: &str, secret: Option<&str>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            secret: secret.map(|s| SecretString::from(s.to_string())),
            secret_file: None,
            timeout: Duration::from_secs(5),
            max_concurrent: None,
        }
    }

    #[test]
    fn message_ids_are_stable_and_distinct_from_the_event_id() {
        let a = message_id("job_1", "job.completed");
        assert_eq!(a, message_id("job_1", "job.completed"));
        assert_ne!(a, message_id("job_1", "job.failed"));
        assert!(a.starts_with("msg_"));
        assert_eq!(a[4..], stable_event_id("job_1", "job.completed")[4..]);
    }

    #[test]
    fn statuses_map_to_retryable_or_final() {
        assert!(matches!(
            classify(302, None, ""),
            SinkError::Temporary { .. }
        ));
        assert!(matches!(
            classify(500, None, ""),
            SinkError::Temporary { .. }
        ));
        assert!(matches!(
            classify(408, None, ""),
            SinkError::Temporary { .. }
        ));
        assert!(matches!(
            classify(429, Some(Duration::from_secs(7)), ""),
            SinkError::Temporary { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        assert!(matches!(classify(400, None, ""), SinkError::Permanent(_)));
        assert!(matches!(classify(410, None, ""), SinkError::Permanent(_)));
    }

    #[test]
    fn retry_after_as_seconds_or_date_and_bounded() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(RETRY_AFTER, v.parse().unwrap());
            m
        };
        assert_eq!(
            parse_retry_after(&h("30"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(&h("Thu, 01 Jan 2026 00:01:00 GMT"), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after(&h("Wed, 31 Dec 2025 00:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after(&h("99999999999999"), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after(&h("soon"), now), None);
        assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn the_secret_is_required_valid_and_never_shown() {
        let http = reqwest::Client::new();
        assert!(matches!(
            WebhookSink::new("w", &cfg("https://x.test/h", None), http.clone()),
            Err(SinkError::Config(_))
        ));
        let bad = WebhookSink::new(
            "w",
            &cfg("https://x.test/h", Some("whsec_not base64!")),
            http.clone(),
        );
        assert!(matches!(bad, Err(SinkError::Config(ref m)) if !m.contains("not base64!")));
        assert!(matches!(
            WebhookSink::new("w", &cfg("ftp://x.test/h", Some(SECRET)), http.clone()),
            Err(SinkError::Config(_))
        ));
        let sink = WebhookSink::new(
            "w",
            &cfg("https://user:pw@x.test/h?token=t0k", Some(SECRET)),
            http,
        )
        .unwrap();
        let debug = format!("{sink:?}");
        assert!(
            !debug.contains("C2FVsBQ") && !debug.contains("t0k") && !debug.contains("pw"),
            "{debug}"
        );
        assert!(debug.contains("x.test/h"), "{debug}");
    }
}
