//! Webhook endpoints upstream (`/webhook_endpoints`, `docs/upstream-api.md` §4.1): create,
//! list, retrieve, update, delete, rotate the signing secret, send a test event. They need an
//! API key allowed to manage the project's webhooks.
//!
//! A signing secret comes back only from create and rotate; it is returned as a
//! [`SecretString`] next to the endpoint, never inside a type that can be printed or
//! serialized. Calls that change something upstream (create, rotate) are retried only while
//! the request surely did not reach OpenAI, like a response create: a retried create could
//! register a second endpoint, a retried rotate could throw away the secret just made.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Client, UpstreamError, http_retry, urlencode};

/// A webhook endpoint as the API shows it (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    /// `we_…`.
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub url: String,
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<i64>,
    /// What the API shows of the current secret.
    #[serde(default)]
    pub signing_secret_hint: Option<String>,
}

/// An endpoint and its new signing secret (the answer of create and rotate).
#[derive(Debug)]
pub struct EndpointWithSecret {
    pub endpoint: WebhookEndpoint,
    pub signing_secret: SecretString,
}

/// One page of `GET /webhook_endpoints`.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointPage {
    pub data: Vec<WebhookEndpoint>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub last_id: Option<String>,
}

/// Changes to an endpoint; `None` leaves a field as it is. `event_types` is the whole new set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
}

/// The answer of `POST /webhook_endpoints/{id}/test`: what the endpoint answered the test
/// delivery (`status_code` is `None` when it could not be reached).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointTest {
    pub webhook_endpoint_id: String,
    pub event_type: String,
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub success: bool,
}

fn parse<T: serde::de::DeserializeOwned>(raw: Value) -> Result<T, UpstreamError> {
    serde_json::from_value(raw)
        .map_err(|e| UpstreamError::InvalidResponse(format!("unexpected webhook endpoint: {e}")))
}

/// Splits `signing_secret` off an endpoint answer.
fn with_secret(mut raw: Value) -> Result<EndpointWithSecret, UpstreamError> {
    let secret = raw
        .as_object_mut()
        .and_then(|o| o.remove("signing_secret"))
        .and_then(|v| v.as_str().map(SecretString::from))
        .ok_or_else(|| {
            UpstreamError::InvalidResponse("the answer carries no `signing_secret`".into())
        })?;
    Ok(EndpointWithSecret {
        endpoint: parse(raw)?,
        signing_secret: secret,
    })
}

impl Client {
    /// `POST /webhook_endpoints`: registers `url` for `event_types`.
    pub async fn create_webhook_endpoint(
        &self,
        name: &str,
        url: &str,
        event_types: &[String],
    ) -> Result<EndpointWithSecret, UpstreamError> {
        let body = json!({"name": name, "url": url, "event_types": event_types});
        let raw = self
            .call_json(
                || {
                    self.request(reqwest::Method::POST, "/webhook_endpoints")
                        .json(&body)
                },
                |e| !e.create_may_have_happened(),
            )
            .await?;
        with_secret(raw)
    }

    /// `GET /webhook_endpoints`: one page, newest first.
    pub async fn list_webhook_endpoints(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<EndpointPage, UpstreamError> {
        let mut path = format!("/webhook_endpoints?limit={limit}");
        if let Some(after) = after {
            path.push_str(&format!("&after={}", urlencode(after)));
        }
        let raw = self
            .call_json(|| self.request(reqwest::Method::GET, &path), |_| true)
            .await?;
        parse(raw)
    }

    /// `GET /webhook_endpoints/{id}`.
    pub async fn retrieve_webhook_endpoint(
        &self,
        id: &str,
    ) -> Result<WebhookEndpoint, UpstreamError> {
        let path = format!("/webhook_endpoints/{}", urlencode(id));
        let raw = self
            .call_json(|| self.request(reqwest::Method::GET, &path), |_| true)
            .await?;
        parse(raw)
    }

    /// `POST /webhook_endpoints/{id}`.
    pub async fn update_webhook_endpoint(
        &self,
        id: &str,
        update: &EndpointUpdate,
    ) -> Result<WebhookEndpoint, UpstreamError> {
        let path = format!("/webhook_endpoints/{}", urlencode(id));
        let raw = self
            .call_json(
                || self.request(reqwest::Method::POST, &path).json(update),
                |_| true,
            )
            .await?;
        parse(raw)
    }

    /// `DELETE /webhook_endpoints/{id}`.
    pub async fn delete_webhook_endpoint(&self, id: &str) -> Result<(), UpstreamError> {
        let path = format!("/webhook_endpoints/{}", urlencode(id));
        self.call_json(|| self.request(reqwest::Method::DELETE, &path), |_| true)
            .await?;
        Ok(())
    }

    /// `POST /webhook_endpoints/{id}/rotate_secret`; with `keep_old`, OpenAI keeps signing with
    /// the old secret too for 24 hours.
    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
        keep_old: bool,
    ) -> Result<EndpointWithSecret, UpstreamError> {
        let path = format!("/webhook_endpoints/{}/rotate_secret", urlencode(id));
        let body = json!({"keep_old_secret_active_for_24_hours": keep_old});
        let raw = self
            .call_json(
                || self.request(reqwest::Method::POST, &path).json(&body),
                |e| !e.create_may_have_happened(),
            )
            .await?;
        with_secret(raw)
    }

    /// `POST /webhook_endpoints/{id}/test`: OpenAI sends a test event of `event_type` to the
    /// endpoint now and reports its answer.
    pub async fn test_webhook_endpoint(
        &self,
        id: &str,
        event_type: &str,
    ) -> Result<EndpointTest, UpstreamError> {
        let path = format!("/webhook_endpoints/{}/test", urlencode(id));
        let body = json!({"event_type": event_type});
        let raw = self
            .call_json(
                || self.request(reqwest::Method::POST, &path).json(&body),
                |e| !e.create_may_have_happened(),
            )
            .await?;
        parse(raw)
    }

    /// Sends a request until it answers or the retry policy gives up (`may_retry` narrows
    /// which retryable errors are retried); returns the answer's JSON.
    pub(super) async fn call_json(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        may_retry: impl Fn(&UpstreamError) -> bool,
    ) -> Result<Value, UpstreamError> {
        let mut retries = 0;
        loop {
            let rb = build().header("x-stainless-retry-count", retries.to_string());
            let e = match self.send_json(rb).await {
                Ok((raw, _)) => return Ok(raw),
                Err(e) => e,
            };
            if retries >= self.max_retries || !e.is_retryable() || !may_retry(&e) {
                return Err(e);
            }
            let r: f64 = rand::random();
            let Some(delay) =
                http_retry::next_delay(e.retry_after(), self.max_retry_delay, retries, r)
            else {
                return Err(e);
            };
            tracing::debug!(error = %e.describe(), delay_ms = delay.as_millis() as u64, retries, "retrying webhook endpoint request");
            tokio::time::sleep(delay).await;
            retries += 1;
        }
    }
}
