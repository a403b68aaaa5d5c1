//! Sending a sink's request and reading its answer.

use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use secrecy::{ExposeSecret, SecretString};

use super::SinkError;
use crate::config::sinks::Secret;

/// Enough of an error body to say what went wrong.
const BODY_MAX: usize = 4096;
/// A `Retry-After` longer than this is taken as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// An endpoint's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// From `Retry-After` (seconds or an HTTP date).
    pub retry_after: Option<Duration>,
    /// The start of the body (lossy UTF-8).
    pub body: String,
}

impl Answer {
    /// 2xx is delivered; 408, 429 and 5xx are worth a retry; other answers are refusals.
    pub fn into_result(self) -> Result<(), SinkError> {
        if (200..300).contains(&self.status) {
            Ok(())
        } else {
            Err(SinkError::from_http_status(
                self.status,
                self.retry_after,
                &self.body,
            ))
        }
    }
}

/// Sends `request` with `timeout` for the whole exchange. A failure to get an answer is
/// temporary, and its message never holds the URL.
pub async fn send(
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Answer, SinkError> {
    let mut response = request
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| request_error(e, timeout))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let mut body = Vec::new();
    // The body only explains an error; a failure to read it changes nothing.
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk[..chunk.len().min(BODY_MAX - body.len())]);
        if body.len() >= BODY_MAX {
            break;
        }
    }
    Ok(Answer {
        status,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn request_error(e: reqwest::Error, timeout: Duration) -> SinkError {
    let e = e.without_url();
    if e.is_builder() {
        return SinkError::Config(format!(
            "cannot build the request: {}",
            crate::telemetry::chain(&e)
        ));
    }
    if e.is_timeout() {
        return SinkError::temporary(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        ));
    }
    SinkError::temporary(crate::telemetry::chain(&e))
}

/// `Retry-After`: delay seconds (fractions allowed) or an HTTP date; capped at an hour.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let d = match v.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => {
            Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64()))
        }
        Ok(_) => return None,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// A required secret URL (`url` or `url_file`), checked to be http(s). Errors never echo it.
pub fn secret_url(secret: Secret<'_>) -> Result<SecretString, SinkError> {
    let url = secret
        .resolve()
        .map_err(SinkError::Config)?
        .ok_or_else(|| SinkError::Config("`url` is required (or `url_file`)".into()))?;
    match url::Url::parse(url.expose_secret().trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
            Ok(SecretString::from(u.to_string()))
        }
        _ => Err(SinkError::Config("`url` must be an http(s) URL".into())),
    }
}

/// The parts of a secret URL that must not show: the whole URL, and its path and query
/// (where webhook URLs keep their token).
pub fn url_secrets(url: &SecretString) -> Vec<String> {
    let mut out = vec![url.expose_secret().to_string()];
    if let Ok(u) = url::Url::parse(url.expose_secret()) {
        out.push(u[url::Position::BeforePath..].to_string());
    }
    out
}

/// Replaces every secret in an error's message with `[redacted]`, so nothing an endpoint or
/// a library echoes can leak one into the outbox or the log.
pub fn scrub(e: SinkError, secrets: &[String]) -> SinkError {
    let clean = |mut s: String| {
        for secret in secrets.iter().filter(|s| s.len() >= 8) {
            s = s.replace(secret.as_str(), "[redacted]");
        }
        s
    };
    match e {
        SinkError::Temporary {
            message,
            retry_after,
        } => SinkError::Temporary {
            message: clean(message),
            retry_after,
        },
        SinkError::Permanent(m) => SinkError::Permanent(clean(m)),
        SinkError::Config(m) => SinkError::Config(clean(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 2.5 "),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(parse_retry_after("999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn secrets_are_scrubbed() {
        let url = SecretString::from("https://hooks.slack.com/services/T0/B0/XYZ123456");
        let e = SinkError::Permanent("posting to /services/T0/B0/XYZ123456 failed".into());
        assert_eq!(
            scrub(e, &url_secrets(&url)).to_string(),
            "posting to [redacted] failed"
        );
    }
}
