//! Code interpreter containers (`GET /containers/{id}/files`, `…/files/{file_id}/content`):
//! listing the files a response's code left in its container and downloading them before the
//! container expires (20 minutes after its last use).

// Errors are rare and sit next to an HTTP call: their size does not matter.
#![allow(clippy::result_large_err)]

use serde::Deserialize;

use super::{Client, UpstreamError, http_retry, urlencode};

/// How long one download may take.
pub const DOWNLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// At most this many files of one container are listed.
const MAX_LISTED: usize = 1_000;

/// A file in a container, as OpenAI describes it (the fields respool reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerFile {
    pub id: String,
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Its path in the container (`/mnt/data/results.csv`).
    #[serde(default)]
    pub path: String,
    /// `assistant` for what the model's code wrote, `user` for what was put in.
    #[serde(default)]
    pub source: String,
    /// When it was made, Unix seconds (0 when not said).
    #[serde(default)]
    pub created_at: i64,
}

#[derive(Debug, Deserialize)]
struct Page {
    data: Vec<ContainerFile>,
    #[serde(default)]
    has_more: bool,
}

/// Where a download goes, a chunk at a time.
pub trait DownloadSink {
    /// Appends a chunk.
    fn write(
        &mut self,
        data: &[u8],
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
    /// Empties it before the download starts again.
    fn restart(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("it is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("cannot write it: {0}")]
    Write(#[from] std::io::Error),
}

impl Client {
    /// Every file in container `id` (up to 1,000), oldest first. Each also has its
    /// `created_at` (Unix seconds).
    pub async fn container_files(&self, id: &str) -> Result<Vec<ContainerFile>, UpstreamError> {
        let mut out: Vec<ContainerFile> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/containers/{}/files?order=asc&limit=100", urlencode(id));
            if let Some(a) = &after {
                path.push_str(&format!("&after={}", urlencode(a)));
            }
            let raw = self
                .call_json(|| self.request(reqwest::Method::GET, &path), |_| true)
                .await?;
            let page: Page = serde_json::from_value(raw).map_err(|e| {
                UpstreamError::InvalidResponse(format!("unexpected container file list: {e}"))
            })?;
            let last = page.data.last().map(|f| f.id.clone());
            out.extend(page.data);
            match last {
                Some(last) if page.has_more && out.len() < MAX_LISTED => after = Some(last),
                _ => break,
            }
        }
        out.truncate(MAX_LISTED);
        Ok(out)
    }

    /// Downloads file `file_id` of container `container_id` into `sink`, at most `max` bytes;
    /// returns its size. A failure worth retrying (a 5xx, a broken connection) starts it again
    /// from the beginning, under the client's retry policy.
    pub async fn download_container_file(
        &self,
        container_id: &str,
        file_id: &str,
        sink: &mut impl DownloadSink,
        max: u64,
    ) -> Result<u64, DownloadError> {
        let path = format!(
            "/containers/{}/files/{}/content",
            urlencode(container_id),
            urlencode(file_id)
        );
        let mut retries = 0;
        loop {
            let e = match self.download_once(&path, sink, max, retries).await {
                Ok(n) => return Ok(n),
                Err(DownloadError::Upstream(e)) => e,
                Err(other) => return Err(other),
            };
            if retries >= self.max_retries || !e.is_retryable() {
                return Err(e.into());
            }
            let r: f64 = rand::random();
            let Some(delay) =
                http_retry::next_delay(e.retry_after(), self.max_retry_delay, retries, r)
            else {
                return Err(e.into());
            };
            tracing::debug!(error = %e.describe(), retries, "retrying a container file download");
            tokio::time::sleep(delay).await;
            sink.restart().await?;
            retries += 1;
        }
    }

    async fn download_once(
        &self,
        path: &str,
        sink: &mut impl DownloadSink,
        max: u64,
        retries: u32,
    ) -> Result<u64, DownloadError> {
        let mut resp = self
            .request(reqwest::Method::GET, path)
            .header("x-stainless-retry-count", retries.to_string())
            .timeout(DOWNLOAD_TIMEOUT)
            .send()
            .await
            .map_err(super::classify)?;
        let status = resp.status();
        if !status.is_success() {
            let headers = resp.headers().clone();
            let body = resp.bytes().await.unwrap_or_default();
            return Err(super::api_error(status, &headers, &body).into());
        }
        if resp.content_length().is_some_and(|n| n > max) {
            return Err(DownloadError::TooLarge(max));
        }
        let mut n: u64 = 0;
        while let Some(chunk) = resp.chunk().await.map_err(super::classify)? {
            n += chunk.len() as u64;
            if n > max {
                return Err(DownloadError::TooLarge(max));
            }
            sink.write(&chunk).await?;
        }
        Ok(n)
    }
}
