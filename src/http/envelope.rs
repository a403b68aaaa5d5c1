//! The last word on errors: an error answer that is not JSON (axum's own 405 for a method a
//! route does not take, a rejection some layer gives in `text/plain`) is rewritten into the
//! API's envelope, `{"error": {"message", "type", "param", "code"}}`, keeping its status and
//! headers (`Allow` on a 405). Pages answer HTML, and that is left as it is.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;

/// The longest original body kept as the message.
const MAX_MESSAGE: usize = 500;

pub async fn envelope(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") || content_type.starts_with("text/html") {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let mut message: String = text.chars().take(MAX_MESSAGE).collect();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_string();
    }
    let (kind, code) = match status {
        StatusCode::METHOD_NOT_ALLOWED => ("invalid_request_error", "method_not_allowed"),
        StatusCode::NOT_FOUND => ("not_found_error", "not_found"),
        StatusCode::PAYLOAD_TOO_LARGE => ("invalid_request_error", "body_too_large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("invalid_request_error", "unsupported_media_type"),
        s if s.is_server_error() => ("server_error", "server_error"),
        _ => ("invalid_request_error", "invalid_request"),
    };
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // (axum adds `Allow` after this layer has run: then the header alone names them.)
        message = if allow.is_empty() {
            "this endpoint does not take this method; the Allow header names those it takes"
                .to_string()
        } else {
            format!("this endpoint does not take this method; it takes: {allow}")
        };
    }
    let fresh = ApiError {
        status,
        kind,
        message,
        param: None,
        code: Some(code),
    }
    .into_response();
    let (fresh_parts, fresh_body) = fresh.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &fresh_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, Body::new(fresh_body))
}
