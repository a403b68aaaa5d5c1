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

    /// `GET /files/{id}/content`: the file's bytes.
    pub async fn file_content(&self, id: &str) -> Result<bytes::Bytes, UpstreamError> {
        let path = format!("/files/{}/content", urlencode(id));
        let resp = self
            .request(reqwest::Method::GET, &path)
            .timeout(UPLOAD_TIMEOUT)
            .send()
            .await
            .map_err(super::classify)?;
        let status = resp.status();
        // 400 and 403: OpenAI does not let this purpose's content be read back.
        if matches!(status.as_u16(), 400 | 403) {
            return Err(UpstreamError::InvalidResponse(format!(
                "reading the content of {id} answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(UpstreamError::Api {
                from_api: false,
                status: status.as_u16(),
                kind: None,
                code: None,
                param: None,
                message: format!("reading the content of {id} answered {status}"),
                request_id: None,
                retry_after: None,
                should_retry: None,
                rate_limits: None,
            });
        }
        resp.bytes().await.map_err(super::classify)
    }

    /// Looks for a file an upload whose answer was lost may have made: `filename` of `bytes`
    /// bytes for `purpose`, created at or after `since` (Unix seconds), whose content has this
    /// SHA-256 (hex; read back to be sure: two files may share a name and a size). Reads
    /// newest first and stops at the first file older than `since`.
    pub async fn find_uploaded(
        &self,
        purpose: &str,
        filename: &str,
        bytes: u64,
        sha256: &str,
        since: i64,
    ) -> Result<Option<FileObject>, UpstreamError> {
        use sha2::{Digest, Sha256};
        let mut after: Option<String> = None;
        // Bounded: a lost upload is recent, and a page holds 100.
        for _ in 0..20 {
            let page = self.list_files(purpose, after.as_deref(), 100).await?;
            for f in &page.data {
                if f.created_at < since {
                    return Ok(None);
                }
                if f.filename == filename && f.bytes == bytes {
                    match self.file_content(&f.id).await {
                        Ok(content) => {
                            let hex: String = Sha256::digest(&content)
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect();
                            if hex == sha256 {
                                return Ok(Some(f.clone()));
                            }
                        }
                        // OpenAI does not let every purpose's content be read back: then
                        // the name and the size are all there is to go on.
                        Err(UpstreamError::InvalidResponse(_)) => return Ok(Some(f.clone())),
                        Err(e) => return Err(e),
                    }
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

/// A vector store as `/vector_stores` describes it (the fields respool reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VectorStore {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `in_progress`, `completed` or `expired` (missing in some answers).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub created_at: i64,
}

/// Why a vector store's file failed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// A file of a vector store (`vector_store.file`; its `id` is the file's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VectorStoreFile {
    pub id: String,
    /// `in_progress`, `completed`, `cancelled` or `failed`.
    pub status: String,
    #[serde(default)]
    pub last_error: Option<FileError>,
}

#[derive(Deserialize)]
struct StorePage {
    data: Vec<VectorStore>,
    #[serde(default)]
    has_more: bool,
}

impl Client {
    /// `POST /vector_stores`, named `name`, expiring `days` after it was last used. Retried
    /// only when it surely did not reach OpenAI.
    pub async fn create_vector_store(
        &self,
        name: &str,
        days: u32,
        metadata: &serde_json::Map<String, Value>,
    ) -> Result<VectorStore, UpstreamError> {
        let body = serde_json::json!({
            "name": name,
            "expires_after": {"anchor": "last_active_at", "days": days},
            "metadata": metadata,
        });
        let raw = self
            .call_json(
                || {
                    self.request(reqwest::Method::POST, "/vector_stores")
                        .json(&body)
                },
                |e| !e.create_may_have_happened(),
            )
            .await?;
        parse(raw)
    }

    /// `GET /vector_stores/{id}`; `None` when OpenAI has no such store.
    pub async fn retrieve_vector_store(
        &self,
        id: &str,
    ) -> Result<Option<VectorStore>, UpstreamError> {
        let path = format!("/vector_stores/{}", urlencode(id));
        match self
            .call_json(|| self.request(reqwest::Method::GET, &path), |_| true)
            .await
        {
            Ok(raw) => parse(raw).map(Some),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Looks for a store a create whose answer was lost may have made: named `name`, created
    /// at or after `since` (Unix seconds), newest first.
    pub async fn find_vector_store(
        &self,
        name: &str,
        since: i64,
    ) -> Result<Option<VectorStore>, UpstreamError> {
        let mut after: Option<String> = None;
        for _ in 0..20 {
            let mut path = "/vector_stores?order=desc&limit=100".to_string();
            if let Some(a) = &after {
                path.push_str(&format!("&after={}", urlencode(a)));
            }
            let raw = self
                .call_json(|| self.request(reqwest::Method::GET, &path), |_| true)
                .await?;
            let page: StorePage = parse(raw)?;
            for s in &page.data {
                if s.created_at < since {
                    return Ok(None);
                }
                if s.name.as_deref() == Some(name) {
                    return Ok(Some(s.clone()));
                }
            }
            match (page.has_more, page.data.last()) {
                (true, Some(last)) => after = Some(last.id.clone()),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// `POST /vector_stores/{vs}/files`: attaches an uploaded file (attaching it again is
    /// harmless, so this is retried like a read).
    pub async fn attach_vector_store_file(
        &self,
        vector_store_id: &str,
        file_id: &str,
    ) -> Result<VectorStoreFile, UpstreamError> {
        let path = format!("/vector_stores/{}/files", urlencode(vector_store_id));
        let body = serde_json::json!({ "file_id": file_id });
        let raw = self
            .call_json(
                || self.request(reqwest::Method::POST, &path).json(&body),
                |_| true,
            )
            .await?;
        parse(raw)
    }

    /// `GET /vector_stores/{vs}/files/{file}`; `None` when the file is not in the store.
    pub async fn retrieve_vector_store_file(
        &self,
        vector_store_id: &str,
        file_id: &str,
    ) -> Result<Option<VectorStoreFile>, UpstreamError> {
        let path = format!(
            "/vector_stores/{}/files/{}",
            urlencode(vector_store_id),
            urlencode(file_id)
        );
        match self
            .call_json(|| self.request(reqwest::Method::GET, &path), |_| true)
            .await
        {
            Ok(raw) => parse(raw).map(Some),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
