//! `/v1/attachments`: the files jobs send with their input. A client uploads a file here
//! (multipart, one `file` part whose filename is the attachment's name) and names it in a
//! job's `attachments` by the id this answers. The file is checked first: its name must say a
//! type respool attaches and its bytes must agree ([`crate::job::attachment::check`]).

use axum::Json;
use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::extract::ApiPath;
use super::{ApiError, ApiState};
use crate::job::attachment::{self, AttachmentMeta};

/// The largest upload body: one attachment at its largest, and room for the multipart frame.
pub const UPLOAD_BODY_LIMIT: usize = attachment::MAX_ATTACHMENT_BYTES + 64 * 1024;

/// A multipart upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AttachmentUpload {
    /// The file; its part's `filename` is the attachment's name (`report.pdf`), which says
    /// its type.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

fn too_large() -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        kind: "invalid_request_error",
        message: format!(
            "the file is larger than an attachment may be ({} bytes)",
            attachment::MAX_ATTACHMENT_BYTES
        ),
        param: Some("file".into()),
        code: Some("body_too_large"),
    }
}

fn unreadable(detail: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(
        format!("cannot read the multipart body: {detail}"),
        Some("file".into()),
    )
    .with_code("unreadable_body")
}

/// Upload a file for jobs to attach.
#[utoipa::path(post, path = "/v1/attachments", tag = "attachments",
    request_body(content = AttachmentUpload, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored (or already stored: the id is the hash of the name and the bytes)", body = AttachmentMeta),
        (status = 400, description = "No `file` part, no filename, or a file respool does not attach (its type, its content, empty); `param` is `file`", body = ErrorBody),
        (status = 413, description = "The file is larger than 32 MiB", body = ErrorBody),
        (status = 415, description = "The body is not `multipart/form-data`", body = ErrorBody)))]
pub async fn upload(
    State(state): State<ApiState>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut multipart = multipart.map_err(|e| ApiError {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        kind: "invalid_request_error",
        message: format!("the body must be multipart/form-data with a `file` part: {e}"),
        param: None,
        code: Some("unsupported_media_type"),
    })?;
    let mut found = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(unreadable(e.body_text())),
        };
        if field.name() != Some("file") {
            continue;
        }
        if found.is_some() {
            return Err(ApiError::invalid(
                "send one `file` part per request",
                Some("file".into()),
            ));
        }
        let Some(filename) = field.file_name().map(str::to_string) else {
            return Err(ApiError::invalid(
                "the `file` part has no filename; it names the attachment and says its type",
                Some("file".into()),
            ));
        };
        let data = match field.bytes().await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(unreadable(e.body_text())),
        };
        found = Some((filename, data));
    }
    let Some((filename, data)) = found else {
        return Err(ApiError::invalid(
            "the body has no `file` part",
            Some("file".into()),
        ));
    };
    if data.len() > attachment::MAX_ATTACHMENT_BYTES {
        return Err(too_large());
    }
    let meta = attachment::check(&filename, &data)
        .map_err(|m| ApiError::invalid(m, Some("file".into())).with_code("invalid_file"))?;
    let orch = &state.orchestrator;
    orch.store()
        .put_attachment(&meta, &data, orch.now())
        .await?;
    Ok((StatusCode::CREATED, Json(meta)).into_response())
}

/// What is stored of an attachment (not its bytes).
#[utoipa::path(get, path = "/v1/attachments/{id}", tag = "attachments",
    params(("id" = String, Path, description = "`att_` and 64 hex digits", pattern = "^att_[0-9a-f]{64}$")),
    responses((status = 200, body = AttachmentMeta), (status = 404, body = ErrorBody)))]
pub async fn get_attachment(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AttachmentMeta>, ApiError> {
    let not_found = || ApiError::not_found(format!("no attachment {id}"));
    if !attachment::is_attachment_id(&id) {
        return Err(not_found());
    }
    match state
        .orchestrator
        .store()
        .attachments(std::slice::from_ref(&id))
        .await?
        .pop()
        .flatten()
    {
        Some(meta) => Ok(Json(meta)),
        None => Err(not_found()),
    }
}
