//! OpenAI's Files API (`upstream-api.md` §5.1): upload, retrieve, list and delete the files
//! respool sends with jobs (`attachments:`).
//!
//! An upload is like a create: one that may have reached OpenAI (a timeout, a dropped
//! connection, a proxy's 5xx) is never sent again here; the caller looks for it upstream
//! first (`GET /files`, same name and size) before uploading again.

// Errors are rare and sit next to an HTTP call: their size does not matter.
#![allow(clippy::result_large_err)]

use serde::Deserialize;
use serde_json::Value;

use super::{Client, UpstreamError, urlencode};

/// How long one upload may take.
pub const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// A file as the Files API describes it (the fields respool reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileObject {
    pub id: String,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub filename: String,
    #[serde(default)]
    pub purpose: String,
}

/// One page of `GET /files`.
#[derive(Debug, Clone, Deserialize)]
pub struct FilePage {
    pub data: Vec<FileObject>,
    #[serde(default)]
    pub has_more: bool,
}

fn parse<T: serde::de::DeserializeOwned>(raw: Value) -> Result<T, UpstreamError> {
    serde_json::from_value(raw)
        .map_err(|e| UpstreamError::InvalidResponse(format!("unexpected file object: {e}")))
}

impl Client {
    /// `POST /files`: uploads `data` as `filename` for `purpose`. Retried only when it surely
    /// did not reach OpenAI.
    pub async fn upload_file(
        &self,
        filename: &str,
        media_type: &str,
        data: bytes::Bytes,
        purpose: &str,
    ) -> Result<FileObject, UpstreamError> {
        let len = data.len() as u64;
        let raw = self
            .call_json(
                || {
                    let part = reqwest::multipart::Part::stream_with_length(
                        reqwest::Body::from(data.clone()),
                        len,
                    )
                    .file_name(filename.to_string());
                    // A media type we cannot name is left to OpenAI to sniff.
                    let part = match part.mime_str(media_type) {
                        Ok(p) => p,
                        Err(_) => reqwest::multipart::Part::stream_with_length(
                            reqwest::Body::from(data.clone()),
                            len,
                        )
                        .file_name(filename.to_string()),
                    };
                    let form = reqwest::multipart::Form::new()
                        .text("purpose", purpose.to_string())
                        .part("file", part);
                    self.request(reqwest::Method::POST, "/files")
                        .multipart(form)
                        // A large file over a slow link takes longer than a create.
                        .timeout(UPLOAD_TIMEOUT)
                },
                |e| !e.create_may_have_happened(),
            )
            .await?;
        parse(raw)
    }

    /// `GET /files/{id}`; `None` when OpenAI has no such file (deleted or expired).
    pub async fn retrieve_file(&self, id: &str) -> Result<Option<FileObject>, UpstreamError> {
        let path = format!("/files/{}", urlencode(id));
        match self
            .call_json(|| self.request(reqwest::Method::GET, &path), |_| true)
            .await
        {
            Ok(raw) => parse(raw).map(Some),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /files?purpose=…`: one page, newest first.
    pub async fn list_files(
        &self,
        purpose: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<FilePage, UpstreamError> {
        let mut path = format!(
            "/files?purpose={}&order=desc&limit={limit}",
            urlencode(purpose)
        );
        if let Some(after) = after {
            path.push_str(&format!("&after={}", urlencode(after)));
        }
        let raw = self
            .call_json(|| self.request(reqwest::Method::GET, &path), |_| true)
            .await?;
        parse(raw)
    }

    /// Looks for a file an upload whose answer was lost may have made: `filename` of `bytes`
    /// bytes for `purpose`, created at or after `since` (Unix seconds). Reads newest first
    /// and stops at the first file older than `since`.
    pub async fn find_uploaded(
        &self,
        purpose: &str,
        filename: &str,
        bytes: u64,
        since: i64,
    ) -> Result<Option<FileObject>, UpstreamError> {
        let mut after: Option<String> = None;
        // Bounded: a lost upload is recent, and a page holds 100.
        for _ in 0..20 {
            let page = self.list_files(purpose, after.as_deref(), 100).await?;
            for f in &page.data {
                if f.created_at < since {
                    return Ok(None);
                }
                if f.filename == filename && f.bytes == bytes {
                    return Ok(Some(f.clone()));
                }
            }
            match (page.has_more, page.data.last()) {
                (true, Some(last)) => after = Some(last.id.clone()),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// `DELETE /files/{id}`; `false` when it was already gone.
    pub async fn delete_file(&self, id: &str) -> Result<bool, UpstreamError> {
        let path = format!("/files/{}", urlencode(id));
        match self
            .call_json(|| self.request(reqwest::Method::DELETE, &path), |_| true)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
