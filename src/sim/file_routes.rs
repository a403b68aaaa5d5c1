//! `/v1/files` (`docs/upstream-api.md` §5.1): multipart upload, list, retrieve, content and
//! delete, with OpenAI's 400s naming `param` and the upload faults (`Faults::upload_delay`,
//! `Faults::upload_drop_before`, `Faults::upload_then_drop`). These routes alone accept bodies
//! up to [`MAX_FILE_BYTES`] (axum's default limit is 2 MiB).

use axum::Router;
use axum::body::Bytes;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::broken::dropped_connection;
use super::error::ApiError;
use super::faults::roll;
use super::files::{EXPIRY_SECONDS, PURPOSES, Upload, file_not_found};
use super::list::ListQuery;
use super::server::App;
use super::validate::quoted;

/// The largest file OpenAI accepts (512 MB).
pub(crate) const MAX_FILE_BYTES: usize = 512 * 1024 * 1024;

/// The routes, merged into the simulator's `/v1` router (behind its auth and fault gate).
pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/files", post(upload).get(list))
        .route("/files/{id}", get(retrieve).delete(delete))
        .route("/files/{id}/content", get(content))
        // Room for the largest file plus the multipart framing and the other fields.
        .layer(DefaultBodyLimit::max(MAX_FILE_BYTES + 64 * 1024))
}

fn missing(param: &str) -> ApiError {
    ApiError::invalid(
        format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

/// A body that is not `multipart/form-data`, or one that breaks off or is too large.
fn unreadable(status: StatusCode, detail: &str) -> ApiError {
    ApiError {
        status,
        ..ApiError::invalid(
            format!("Could not read the multipart/form-data body: {detail}"),
            None,
            None,
        )
    }
}

fn multipart_error(err: MultipartError) -> ApiError {
    unreadable(err.status(), &err.body_text())
}

/// `filename*=UTF-8''…` (RFC 5987), for clients that send only the extended form.
fn extended_filename(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_DISPOSITION)?.to_str().ok()?;
    let start = value.find("filename*=")? + "filename*=".len();
    let raw = value[start..].split(';').next()?.trim().trim_matches('"');
    let (_charset, encoded) = raw.split_once("''")?;
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    let bytes = encoded.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = encoded.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn text(field: Field<'_>) -> Result<String, ApiError> {
    field.text().await.map_err(multipart_error)
}

/// Reads and checks the form: `file`, `purpose`, `expires_after[anchor]`,
/// `expires_after[seconds]`; other fields are ignored.
async fn read_upload(mut form: Multipart) -> Result<Upload, ApiError> {
    let mut file: Option<(Option<String>, Bytes)> = None;
    let mut purpose: Option<String> = None;
    let mut anchor: Option<String> = None;
    let mut seconds: Option<String> = None;
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or("") {
            "file" => {
                let filename = field
                    .file_name()
                    .map(str::to_owned)
                    .or_else(|| extended_filename(field.headers()));
                let data = field.bytes().await.map_err(multipart_error)?;
                file = Some((filename, data));
            }
            "purpose" => purpose = Some(text(field).await?),
            "expires_after[anchor]" => anchor = Some(text(field).await?),
            "expires_after[seconds]" => seconds = Some(text(field).await?),
            _ => {
                field.bytes().await.map_err(multipart_error)?;
            }
        }
    }
    let (filename, content) = file.ok_or_else(|| missing("file"))?;
    let filename = filename.filter(|f| !f.is_empty()).ok_or_else(|| {
        ApiError::invalid(
            "Invalid 'file': expected a file upload with a filename, but got a plain form field.",
            Some("file"),
            Some("invalid_type"),
        )
    })?;
    if content.is_empty() {
        return Err(ApiError::invalid(
            "Invalid 'file': the file is empty.",
            Some("file"),
            Some("empty_file"),
        ));
    }
    let purpose = purpose.ok_or_else(|| missing("purpose"))?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(ApiError::invalid(
            format!(
                "Invalid value: '{purpose}'. Supported values are: {}.",
                quoted(PURPOSES)
            ),
            Some("purpose"),
            Some("invalid_value"),
        ));
    }
    let expires_after = match (anchor, seconds) {
        (None, None) => None,
        (None, Some(_)) => return Err(missing("expires_after.anchor")),
        (Some(_), None) => return Err(missing("expires_after.seconds")),
        (Some(anchor), Some(seconds)) => {
            if anchor != "created_at" {
                return Err(ApiError::invalid(
                    format!("Invalid value: '{anchor}'. Supported values are: 'created_at'."),
                    Some("expires_after.anchor"),
                    Some("invalid_value"),
                ));
            }
            match seconds.trim().parse::<i64>() {
                Ok(s) if EXPIRY_SECONDS.contains(&s) => Some(s),
                _ => {
                    return Err(ApiError::invalid(
                        format!(
                            "Invalid 'expires_after.seconds': expected an integer between {} and {}, but got '{seconds}'.",
                            EXPIRY_SECONDS.start(),
                            EXPIRY_SECONDS.end()
                        ),
                        Some("expires_after.seconds"),
                        Some("invalid_value"),
                    ));
                }
            }
        }
    };
    Ok(Upload {
        filename,
        purpose,
        content,
        expires_after,
    })
}

async fn upload(
    State(app): State<App>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let form = form.map_err(|e| unreadable(e.status(), &e.body_text()))?;
    let upload = read_upload(form).await?;
    let delay = app.shared.lock().faults.upload_delay;
    if !delay.is_zero() {
        // Nothing is stored yet. A client that disconnects now ends its connection, and hyper
        // drops this future with it (the body is read, so the connection watches for EOF): the
        // upload never happened, and the guard says so in the log.
        tracing::info!(
            filename = %upload.filename,
            delay = %humantime::format_duration(delay),
            "upload held back (upload_delay)"
        );
        let held = HeldUpload(Some(upload.filename.clone()));
        tokio::select! {
            () = app.cancel.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
        held.release();
    }
    let mut inner = app.shared.lock();
    let faults = inner.faults.clone();
    if roll(&mut inner.rng, faults.upload_drop_before) {
        inner.stats.dropped_connections += 1;
        tracing::debug!(filename = %upload.filename, "upload dropped before storing");
        return Ok(dropped_connection());
    }
    let view = inner.storage.add_file(upload);
    inner.stats.files_uploaded += 1;
    if roll(&mut inner.rng, faults.upload_then_drop) {
        inner.stats.dropped_connections += 1;
        tracing::debug!(file_id = %view["id"], "upload stored, answer dropped");
        return Ok(dropped_connection());
    }
    Ok(axum::Json(view).into_response())
}

/// Logs an upload held back by `upload_delay` that was dropped before it was stored (its
/// client went away).
struct HeldUpload(Option<String>);

impl HeldUpload {
    /// The wait is over: the upload goes on.
    fn release(mut self) {
        self.0 = None;
    }
}

impl Drop for HeldUpload {
    fn drop(&mut self) {
        if let Some(filename) = self.0.take() {
            tracing::info!(
                %filename,
                "upload abandoned by its client while held back; nothing stored"
            );
        }
    }
}

async fn list(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = ListQuery::parse(raw.as_deref(), 10_000, 10_000)?;
    let mut inner = app.shared.lock();
    inner.stats.file_lists += 1;
    let files = inner.storage.live_files(q.get("purpose"));
    Ok(axum::Json(q.page(files)).into_response())
}

async fn retrieve(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    let view = inner.storage.live_file(&id)?.view();
    Ok(axum::Json(view).into_response())
}

async fn content(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let bytes = app.shared.lock().storage.live_file(&id)?.content.clone();
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        bytes,
    )
        .into_response())
}

async fn delete(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut inner = app.shared.lock();
    if !inner.storage.delete_file(&id) {
        return Err(file_not_found(&id));
    }
    inner.stats.files_deleted += 1;
    Ok(axum::Json(json!({"id": id, "object": "file", "deleted": true})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_extended_filenames() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static(
                "form-data; name=\"file\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt",
            ),
        );
        assert_eq!(extended_filename(&headers).as_deref(), Some("résumé.txt"));
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("form-data; name=\"file\"; filename*=UTF-8''bad%C"),
        );
        assert_eq!(extended_filename(&headers), None);
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("form-data; name=\"file\""),
        );
        assert_eq!(extended_filename(&headers), None);
    }
}
