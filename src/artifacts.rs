//! Artifacts as HTTP shows them, for the API (`/v1/jobs/{id}/artifacts`) and the pages
//! (`/jobs/{id}/artifacts/NAME`): the listing's view, and a file's response.
//!
//! A file is what a model's code wrote, so it is served as untrusted content: only an image
//! whose bytes are a PNG, JPEG, WebP or GIF is shown inline; everything else is a download
//! (`Content-Disposition: attachment`). Every answer carries `X-Content-Type-Options: nosniff`
//! and a `Content-Security-Policy` that runs nothing, so an HTML or SVG file cannot act on
//! the daemon's origin.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job::JobId;
use crate::job::artifact::image_type;
use crate::store::{ArtifactRow, Store};

/// An artifact as the API lists it. Times are unix seconds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ArtifactView {
    /// Its file name, unique in the job.
    pub name: String,
    /// `image` (generated) or `container_file` (written by code interpreter).
    pub kind: String,
    pub media_type: String,
    /// Its size on disk (0 when it was not kept).
    pub bytes: i64,
    /// SHA-256 of its bytes, hex.
    pub sha256: Option<String>,
    /// Where it came from: the output item id of an image, `container_id/file_id` of a file.
    pub source: String,
    /// Its path in the container, for a container file.
    pub path: Option<String>,
    /// Why it was not kept (the container had expired, it passed a size limit); `null` when
    /// it was.
    pub error: Option<String>,
    pub created_at: i64,
    /// Where its bytes are served (`GET`), `null` when it was not kept.
    pub url: Option<String>,
}

/// What stays as it is in a path segment: RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The URL path segment of `name`, percent-encoded (`Größe (2).csv` →
/// `Gr%C3%B6%C3%9Fe%20%282%29.csv`).
pub fn encode_name(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

impl ArtifactView {
    /// The view of a stored row of job `id`.
    pub fn of(id: &JobId, row: ArtifactRow) -> Self {
        let url = row
            .is_kept()
            .then(|| format!("/v1/jobs/{id}/artifacts/{}", encode_name(&row.name)));
        Self {
            url,
            name: row.name,
            kind: row.kind,
            media_type: row.media_type,
            bytes: row.bytes,
            sha256: row.sha256,
            source: row.source,
            path: row.path,
            error: row.error,
            created_at: row.created_at / 1000,
        }
    }
}

/// Why a file could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Listed, but its bytes were never kept (the reason).
    #[error("artifact `{name}` was not kept: {reason}")]
    NotKept { name: String, reason: String },
    /// Listed and kept, but its file is gone from the artifact directory.
    #[error("artifact `{0}` is listed but its file is missing from the artifact directory")]
    Missing(String),
    #[error("cannot read artifact `{name}`")]
    Read {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// The response serving artifact `row` of job `id` (see the module for the headers);
/// `download` makes even an image a download.
pub async fn file_response(
    store: &Store,
    id: &JobId,
    row: &ArtifactRow,
    download: bool,
) -> Result<Response, ServeError> {
    if let Some(reason) = &row.error {
        return Err(ServeError::NotKept {
            name: row.name.clone(),
            reason: reason.clone(),
        });
    }
    let path = store
        .artifact_path(id, row)
        .ok_or_else(|| ServeError::Missing(row.name.clone()))?;
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ServeError::Missing(row.name.clone()));
        }
        Err(source) => {
            return Err(ServeError::Read {
                name: row.name.clone(),
                source,
            });
        }
    };
    let len = file
        .metadata()
        .await
        .map_err(|source| ServeError::Read {
            name: row.name.clone(),
            source,
        })?
        .len();
    let mut head = [0u8; 16];
    let n = read_up_to(&mut file, &mut head).await;
    {
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|source| ServeError::Read {
                name: row.name.clone(),
                source,
            })?;
    }
    let inline_type = image_type(&head[..n]).map(|(t, _)| t);
    let (content_type, inline) = match inline_type {
        Some(t) if !download => (t.to_string(), true),
        Some(t) => (t.to_string(), false),
        None => (row.media_type.clone(), false),
    };
    let disposition = format!(
        "{}; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        encode_name(&row.name)
    );
    let mut resp = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; img-src 'self' data:; sandbox"),
    );
    if let Some(sha) = &row.sha256
        && let Ok(v) = HeaderValue::from_str(&format!("\"{sha}\""))
    {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400, immutable"),
    );
    Ok(resp)
}

/// Reads up to `buf.len()` bytes (fewer at the end of the file); how many.
async fn read_up_to(file: &mut tokio::fs::File, buf: &mut [u8]) -> usize {
    use tokio::io::AsyncReadExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_encoded_as_one_path_segment() {
        assert_eq!(super::encode_name("image-1.png"), "image-1.png");
        assert_eq!(
            super::encode_name("Größe (2).csv"),
            "Gr%C3%B6%C3%9Fe%20%282%29.csv"
        );
        assert_eq!(super::encode_name("a/b?c#d%"), "a%2Fb%3Fc%23d%25");
    }
}
