//! A small REST client for the CLI's client commands.

use std::path::Path;

use anyhow::{Context, anyhow};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ServerArgs;
use crate::config::{Config, process_env};

/// Talks to a respool daemon.
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// From `--server`/`RESPOOL_SERVER`, else the config's `listen` address.
    pub fn from_args(config_path: Option<&Path>, args: &ServerArgs) -> anyhow::Result<Self> {
        let base = match &args.server {
            Some(s) => s.trim_end_matches('/').to_string(),
            None => {
                let source = Config::discover(config_path, &process_env);
                let listen = Config::load(&source, &process_env)
                    .map(|c| c.listen)
                    .unwrap_or_else(|_| Config::default().listen);
                let host = if listen.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else {
                    listen.ip().to_string()
                };
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                format!("http://{host}:{}", listen.port())
            }
        };
        Ok(Self::new(&base, args.token.clone()))
    }

    /// The daemon's base URL, e.g. `http://127.0.0.1:8080`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The bearer token the client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn new(base: &str, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    async fn send<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = rb
            .send()
            .await
            .with_context(|| format!("cannot reach the respool daemon at {}", self.base))?;
        self.answer(resp).await
    }

    /// The daemon's answer as `T`, or an error carrying its message.
    async fn answer<T: DeserializeOwned>(&self, resp: reqwest::Response) -> anyhow::Result<T> {
        let status = resp.status();
        let body = resp.bytes().await.context("reading the daemon's answer")?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .context("the daemon's answer is not the expected JSON");
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let msg = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)");
        Err(anyhow!("the daemon answered {status}: {msg}"))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.req(reqwest::Method::GET, path)).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&Value>,
        idem: Option<&str>,
    ) -> anyhow::Result<T> {
        let mut rb = self.req(reqwest::Method::POST, path);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        if let Some(k) = idem {
            rb = rb.header("Idempotency-Key", k);
        }
        self.send(rb).await
    }

    /// `POST` under the idempotency key `key`, sent once more with the same key if the first
    /// try could not connect, lost its connection before the answer, or timed out: the daemon
    /// may have acted on it, and the key makes the second try answer what the first did
    /// instead of acting again. An answer from the daemon, even an error, is never re-sent.
    pub async fn post_idempotent<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&Value>,
        key: &str,
    ) -> anyhow::Result<T> {
        let build = || {
            let rb = self
                .req(reqwest::Method::POST, path)
                .header("Idempotency-Key", key);
            match body {
                Some(b) => rb.json(b),
                None => rb,
            }
        };
        let resp = match build().send().await {
            Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => {
                tracing::debug!(error = %e, "retrying once under the same idempotency key");
                build().send().await
            }
            other => other,
        }
        .with_context(|| format!("cannot reach the respool daemon at {}", self.base))?;
        self.answer(resp).await
    }

    /// Uploads the attachments a jobs file read to the daemon (`POST /v1/attachments`, one
    /// multipart request each; the same bytes under the same name are kept once there), and
    /// checks that the daemon names each as the CLI did.
    pub async fn upload_attachments(
        &self,
        blobs: &std::collections::BTreeMap<String, crate::job::spec::Blob>,
    ) -> anyhow::Result<()> {
        for (id, blob) in blobs {
            let part = reqwest::multipart::Part::bytes(blob.data.as_ref().clone())
                .file_name(blob.meta.filename.clone())
                .mime_str(&blob.meta.media_type)?;
            let form = reqwest::multipart::Form::new().part("file", part);
            let got: crate::job::attachment::AttachmentMeta = self
                .send(
                    self.req(reqwest::Method::POST, "/v1/attachments")
                        .multipart(form)
                        .timeout(std::time::Duration::from_secs(300)),
                )
                .await
                .with_context(|| format!("uploading `{}`", blob.meta.filename))?;
            if &got.id != id {
                anyhow::bail!(
                    "the daemon named `{}` {} where respool named it {id}: are they the same version?",
                    blob.meta.filename,
                    got.id
                );
            }
        }
        Ok(())
    }

    /// `POST` without a body, waiting up to `timeout` for the answer (slow admin work).
    pub async fn post_slow<T: DeserializeOwned>(
        &self,
        path: &str,
        timeout: std::time::Duration,
    ) -> anyhow::Result<T> {
        self.send(self.req(reqwest::Method::POST, path).timeout(timeout))
            .await
    }

    /// Streams a `GET` answer into `out`; returns the bytes written. Errors carry the daemon's
    /// message.
    pub async fn download(
        &self,
        path: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
        timeout: std::time::Duration,
    ) -> anyhow::Result<u64> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let resp = self
            .req(reqwest::Method::GET, path)
            .timeout(timeout)
            .send()
            .await
            .with_context(|| format!("cannot reach the respool daemon at {}", self.base))?;
        let status = resp.status();
        if !status.is_success() {
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            let msg = v
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)");
            return Err(anyhow!("the daemon answered {status}: {msg}"));
        }
        let mut written = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.context("reading the daemon's answer")?;
            out.write_all(&chunk).await?;
            written += chunk.len() as u64;
        }
        out.flush().await?;
        Ok(written)
    }
}
