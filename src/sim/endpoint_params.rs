//! Request bodies of `/v1/webhook_endpoints` (`endpoints.rs`): the event types an endpoint may
//! subscribe to, and the checks that turn a raw body into values or the 400 OpenAI would answer,
//! with `param` naming the offending field.

use serde_json::{Map, Value};

use super::error::ApiError;
use super::validate::{invalid_type, quoted};

/// Event types an endpoint may subscribe to (and `test` may send): the client's list, so the
/// two cannot disagree.
pub(crate) use crate::contract::EVENT_TYPES;

/// A JSON object body (an empty body counts as `{}`), with no keys outside `allowed`.
pub(crate) fn object_body(raw: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let value: Value =
        serde_json::from_slice(raw).map_err(|e| ApiError::bad_json(&e.to_string()))?;
    let Value::Object(body) = value else {
        return Err(ApiError::bad_json("expected a JSON object"));
    };
    if let Some(key) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            format!("Unknown parameter: '{key}'."),
            Some(key),
            Some("unknown_parameter"),
        ));
    }
    Ok(body)
}

fn missing(param: &str) -> ApiError {
    ApiError::invalid(
        format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

pub(crate) fn check_name(v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
        other => Err(invalid_type("name", "a non-empty string", other)),
    }
}

pub(crate) fn check_url(v: &Value) -> Result<String, ApiError> {
    let Value::String(s) = v else {
        return Err(invalid_type("url", "a string", v));
    };
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(s.clone()),
        _ => Err(ApiError::invalid(
            format!("Invalid 'url': '{s}' is not a valid http(s) URL."),
            Some("url"),
            Some("invalid_value"),
        )),
    }
}

pub(crate) fn check_event_type(param: &str, v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) if EVENT_TYPES.contains(&s.as_str()) => Ok(s.clone()),
        Value::String(s) => Err(ApiError::invalid(
            format!(
                "Invalid value: '{s}'. Supported values are: {}.",
                quoted(EVENT_TYPES)
            ),
            Some(param),
            Some("invalid_value"),
        )),
        other => Err(invalid_type(param, "a string", other)),
    }
}

pub(crate) fn check_event_types(v: &Value) -> Result<Vec<String>, ApiError> {
    let Value::Array(items) = v else {
        return Err(invalid_type("event_types", "an array", v));
    };
    if items.is_empty() {
        return Err(ApiError::invalid(
            "Invalid 'event_types': empty array. Expected an array with minimum length 1.",
            Some("event_types"),
            Some("empty_array"),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let t = check_event_type(&format!("event_types[{i}]"), item)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// A present, non-null value, or the missing-parameter error.
pub(crate) fn required<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a Value, ApiError> {
    body.get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| missing(key))
}
