//! Upstream errors as types: what went wrong, whether a retry may help, and — for create —
//! whether the request may have started a (billed) response anyway.

use std::time::Duration;

/// An error from the OpenAI API or from talking to it.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The API answered with an error status and (usually) the error envelope.
    #[error("upstream answered {status}: {message}")]
    Api {
        status: u16,
        /// `error.type` (e.g. `invalid_request_error`).
        kind: Option<String>,
        /// `error.code` (e.g. `rate_limit_exceeded`, `insufficient_quota`).
        code: Option<String>,
        param: Option<String>,
        message: String,
        request_id: Option<String>,
        /// `retry-after-ms` or `Retry-After`, when the server sent one.
        retry_after: Option<Duration>,
        /// `x-should-retry`, when the server sent one.
        should_retry: Option<bool>,
        /// The answer's `x-ratelimit-*` headers (a 429 says what is left, too).
        rate_limits: Option<super::RateLimits>,
        /// Whether the API itself answered: OpenAI's error envelope (`error.message`) *and* an
        /// `x-request-id`. A proxy or load balancer in front of it (a CDN's 502 page, a gateway
        /// timeout) sends neither. For a create this is the evidence that the request was
        /// handled, and refused, by the API rather than lost on the way.
        from_api: bool,
    },
    /// The connection could not be made: the request never reached the server.
    #[error("cannot connect to upstream")]
    Connect(#[source] reqwest::Error),
    /// The request was sent but no (complete) answer came back in time.
    #[error("upstream did not answer in time")]
    Timeout(#[source] reqwest::Error),
    /// The request failed mid-way (connection reset, broken body).
    #[error("upstream request failed")]
    Transport(#[source] reqwest::Error),
    /// The answer was not what the API promises.
    #[error("upstream sent an unexpected answer: {0}")]
    InvalidResponse(String),
    /// A 2xx answer whose body could not be read as a Response. For a create the request
    /// surely reached the API; when the body still named the response (`"id": "resp_…"`) the
    /// id is kept, so the response is recorded rather than lost.
    #[error("upstream accepted the request but its answer could not be read: {detail}")]
    Unreadable {
        response_id: Option<crate::job::ResponseId>,
        detail: String,
        request_id: Option<String>,
    },
}

impl UpstreamError {
    /// Whether trying the same request again may succeed (408, 409, 429 other than quota,
    /// 5xx, connection problems), honouring `x-should-retry`.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api {
                status,
                code,
                should_retry,
                ..
            } => {
                if let Some(s) = should_retry {
                    return *s;
                }
                if *status == 429 && code.as_deref().is_some_and(is_quota_code) {
                    return false;
                }
                matches!(status, 408 | 409 | 429) || *status >= 500
            }
            Self::Connect(_) | Self::Timeout(_) | Self::Transport(_) => true,
            Self::InvalidResponse(_) | Self::Unreadable { .. } => false,
        }
    }

    /// For a create call: whether the request may have started a response upstream even
    /// though we got no response id. Decided by evidence (the table is in `docs/design.md`,
    /// "How a failed create is classified"):
    ///
    /// - no connection (refused, DNS, TLS handshake, connect timeout): it never left us;
    /// - any answer below 500 (a 4xx refusal, a 429, a 3xx we never follow): the server
    ///   handled the request and did not create anything;
    /// - a 5xx *from the API* (its error envelope and an `x-request-id`): the API handled the
    ///   request and failed it before creating; the SDKs retry it for the same reason;
    /// - a 5xx without them (a proxy or gateway answered: the API may have created the
    ///   response and its answer was lost behind it), a timeout after the request was sent, a
    ///   reset mid-way, a 2xx we cannot read: unknown.
    pub fn create_may_have_happened(&self) -> bool {
        match self {
            Self::Api {
                status, from_api, ..
            } => *status >= 500 && !from_api,
            Self::Connect(_) => false,
            Self::Timeout(_) | Self::Transport(_) => true,
            Self::InvalidResponse(_) | Self::Unreadable { .. } => true,
        }
    }

    /// Whether the request was surely never answered by OpenAI's API but by something that
    /// sends us elsewhere (a 3xx: respool never follows a redirect, so `base_url` is wrong).
    pub fn is_redirect(&self) -> bool {
        matches!(
            self,
            Self::Api {
                status: 300..=399,
                ..
            }
        )
    }

    /// The `x-ratelimit-*` headers of the error answer, if any.
    pub fn rate_limits(&self) -> Option<&super::RateLimits> {
        match self {
            Self::Api { rate_limits, .. } => rate_limits.as_ref(),
            _ => None,
        }
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short code for the timeline and the job's error (`rate_limit_exceeded`, `http_500`,
    /// `timeout`, …).
    pub fn code(&self) -> String {
        match self {
            Self::Api { code: Some(c), .. } => c.clone(),
            Self::Api { status, .. } => format!("http_{status}"),
            Self::Connect(_) => "connect_error".into(),
            Self::Timeout(_) => "timeout".into(),
            Self::Transport(_) => "transport_error".into(),
            Self::InvalidResponse(_) | Self::Unreadable { .. } => "invalid_response".into(),
        }
    }

    /// The upstream status code, if the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A one-line description including the cause chain (no secrets: we never put the key
    /// in a URL, and reqwest's errors carry only the URL).
    pub fn describe(&self) -> String {
        let mut out = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(s) = src {
            out.push_str(": ");
            out.push_str(&s.to_string());
            src = s.source();
        }
        out
    }
}

/// 429 codes that need a human (billing), not a retry.
fn is_quota_code(code: &str) -> bool {
    matches!(
        code,
        "insufficient_quota"
            | "credit_balance_exhausted"
            | "billing_hard_limit_reached"
            | "organization_usage_limit_exceeded"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: Option<&str>, should_retry: Option<bool>) -> UpstreamError {
        api_from(status, code, should_retry, true)
    }

    fn api_from(
        status: u16,
        code: Option<&str>,
        should_retry: Option<bool>,
        from_api: bool,
    ) -> UpstreamError {
        UpstreamError::Api {
            from_api,
            status,
            kind: None,
            code: code.map(str::to_string),
            param: None,
            message: "x".into(),
            request_id: None,
            retry_after: None,
            should_retry,
            rate_limits: None,
        }
    }

    #[test]
    fn retryable_by_type_not_text() {
        assert!(api(429, Some("rate_limit_exceeded"), None).is_retryable());
        assert!(!api(429, Some("insufficient_quota"), None).is_retryable());
        assert!(api(500, None, None).is_retryable());
        assert!(!api(500, None, Some(false)).is_retryable());
        assert!(api(400, None, Some(true)).is_retryable());
        assert!(!api(400, None, None).is_retryable());
        assert!(api(408, None, None).is_retryable());
    }

    #[test]
    fn create_uncertainty_by_evidence() {
        // Answered by the API itself (envelope + x-request-id): nothing was created.
        for status in [400, 404, 409, 429, 500, 502, 503, 504] {
            assert!(
                !api(status, None, None).create_may_have_happened(),
                "{status} from the API"
            );
        }
        // A 5xx from something in front of the API: the create may have happened behind it.
        for status in [500, 502, 503, 504] {
            assert!(
                api_from(status, None, None, false).create_may_have_happened(),
                "{status} from a proxy"
            );
        }
        // Below 500 nobody processed a create, whoever answered.
        for status in [307, 308, 400, 429] {
            assert!(!api_from(status, None, None, false).create_may_have_happened());
        }
        assert!(api_from(307, None, None, false).is_redirect());
        assert!(!api(500, None, None).is_redirect());
        let unreadable = UpstreamError::Unreadable {
            response_id: None,
            detail: "x".into(),
            request_id: None,
        };
        assert!(unreadable.create_may_have_happened());
        assert!(!unreadable.is_retryable());
    }
}
