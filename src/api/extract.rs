//! Extractors whose rejections are [`ApiError`]s in the envelope, naming the parameter at
//! fault: axum's own answer a bad query string, path or body with `text/plain`.
//!
//! - [`ApiQuery`]: the query string through `serde_urlencoded`, with `serde_path_to_error`
//!   naming the field (`limit`) whose value does not decode;
//! - [`ApiPath`]: path parameters, named by axum's rejection;
//! - [`ApiJson`] / [`OptionalJson`]: a JSON body of `application/json`, its size capped by the
//!   router's `DefaultBodyLimit` (a larger one is a 413), the field at fault as a dotted path.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::ApiError;

/// A query string decoded into `T`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(ApiQuery)
    }
}

/// Decodes a query string (without the `?`) into `T`, naming the parameter that fails.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let param = field_of(e.path());
        let message = match &param {
            Some(p) => format!("query parameter `{p}`: {}", e.inner()),
            None => format!("the query string does not decode: {}", e.inner()),
        };
        ApiError::invalid(message, param).with_code("invalid_query_parameter")
    })
}

/// Path parameters decoded into `T` (a struct with a field per parameter).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

fn path_rejection(rejection: &PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    let PathRejection::FailedToDeserializePathParams(e) = rejection else {
        // The route and the extractor disagree: ours to fix, not the caller's.
        return ApiError::internal(rejection);
    };
    let param = match e.kind() {
        ErrorKind::ParseErrorAtKey { key, .. }
        | ErrorKind::InvalidUtf8InPathParam { key }
        | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
        _ => None,
    };
    let message = match &param {
        Some(p) => format!("path parameter `{p}`: {}", e.body_text()),
        None => e.body_text(),
    };
    ApiError::invalid(message, param).with_code("invalid_path_parameter")
}

/// A JSON body (`Content-Type: application/json`) decoded into `T`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = json_bytes(req, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(
                ApiError::invalid("a JSON body is required", None).with_code("missing_body")
            );
        }
        decode_json(&body).map(ApiJson)
    }
}

/// A JSON body that may be left out (or empty): then `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = json_bytes(req, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        decode_json(&body).map(OptionalJson)
    }
}

/// The body's bytes, once its content type is JSON (or it has none and is empty).
async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<bytes::Bytes, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("").to_string());
    let body = bytes::Bytes::from_request(req, state)
        .await
        .map_err(|e| body_rejection(&e))?;
    match content_type {
        Some(ct) if is_json(&ct) => Ok(body),
        None if body.is_empty() => Ok(body),
        other => Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            kind: "invalid_request_error",
            message: format!(
                "the body must be JSON with `Content-Type: application/json`{}",
                other.map_or_else(String::new, |ct| format!(", not `{ct}`"))
            ),
            param: Some("Content-Type".into()),
            code: Some("unsupported_media_type"),
        }),
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_rejection(e: &BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "invalid_request_error",
            message: format!(
                "the body is larger than the API takes ({})",
                super::BODY_LIMIT_TEXT
            ),
            param: None,
            code: Some("body_too_large"),
        };
    }
    ApiError::invalid(format!("cannot read the body: {}", e.body_text()), None)
        .with_code("unreadable_body")
}

/// Decodes JSON into `T`, naming the field (as a dotted path) whose value does not fit.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    if value.is_ok()
        && let Err(e) = de.end()
    {
        return Err(
            ApiError::invalid(format!("the body is not valid JSON: {e}"), None)
                .with_code("invalid_json"),
        );
    }
    value.map_err(|e| {
        let inner = e.inner();
        let syntax = inner.is_syntax() || inner.is_eof();
        // serde_json ends a message with where it stopped; for a value, the field says more.
        let text = inner.to_string();
        let plain = match text.rfind(" at line ") {
            Some(i) if !syntax => text[..i].to_string(),
            _ => text,
        };
        let param = if syntax { None } else { field_of(e.path()) };
        let message = match (&param, syntax) {
            (_, true) => format!("the body is not valid JSON: {plain}"),
            (Some(p), false) => format!("field `{p}`: {plain}"),
            (None, false) => format!("invalid request body: {plain}"),
        };
        ApiError::invalid(message, param).with_code(if syntax {
            "invalid_json"
        } else {
            "invalid_value"
        })
    })
}

/// A path to a field (`limit`, `events.0`), or `None` for the whole.
fn field_of(path: &serde_path_to_error::Path) -> Option<String> {
    let p = path.to_string();
    (p != "." && !p.is_empty()).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Q {
        limit: Option<i64>,
        #[allow(dead_code)]
        name: Option<String>,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let e = parse_query::<Q>("name=x&limit=true").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("limit"));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse_query::<Q>("limit=9223372036854775808").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("limit"));
        assert_eq!(parse_query::<Q>("limit=5").unwrap().limit, Some(5));
        assert_eq!(parse_query::<Q>("").unwrap().limit, None);
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct B {
        #[allow(dead_code)]
        url: String,
        #[allow(dead_code)]
        events: Option<Vec<String>>,
    }

    #[test]
    fn body_errors_name_the_field_or_say_the_json_is_bad() {
        let e = decode_json::<B>(br#"{"url": "x", "events": [1]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("events[0]"), "{e:?}");
        let e = decode_json::<B>(br#"{"url": null}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("url"), "{e:?}");
        let e = decode_json::<B>(b"{").unwrap_err();
        assert_eq!(e.param, None);
        assert_eq!(e.code, Some("invalid_json"));
        let e = decode_json::<B>(br#"{"url": "x"} trailing"#).unwrap_err();
        assert_eq!(e.code, Some("invalid_json"));
        assert!(decode_json::<B>(br#"{"url": "x"}"#).is_ok());
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }
}
