//! Request bodies of `/v1/vector_stores` (`vector_store_routes.rs`): the checks that turn raw
//! values into settings or the 400 OpenAI would answer, with `param` naming the field
//! (`docs/upstream-api.md` §5.2).

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::validate::invalid_type;

/// The most files a store create names, and a batch attaches.
pub(crate) const MAX_STORE_FILE_IDS: usize = 500;
pub(crate) const MAX_BATCH_FILES: usize = 2000;

fn out_of_range(param: &str, what: &str, got: &Value) -> ApiError {
    ApiError::invalid(
        format!("Invalid '{param}': expected {what}, but got {got}."),
        Some(param),
        Some("invalid_value"),
    )
}

/// A list of file ids (`file_ids`), at most `max`.
pub(crate) fn file_ids(v: &Value, param: &str, max: usize) -> Result<Vec<String>, ApiError> {
    let Value::Array(items) = v else {
        return Err(invalid_type(param, "an array", v));
    };
    if items.len() > max {
        return Err(ApiError::invalid(
            format!(
                "Invalid '{param}': array too long. Expected an array with maximum length {max}, but got an array with length {} instead.",
                items.len()
            ),
            Some(param),
            Some("array_above_max_length"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if !s.is_empty() => {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
            other => return Err(invalid_type(&format!("{param}[{i}]"), "a string", other)),
        }
    }
    Ok(out)
}

/// An optional string field (`name`, `description`).
pub(crate) fn opt_string(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid_type(key, "a string", other)),
    }
}

/// `expires_after: {anchor: "last_active_at", days: 1..=365}` → the days.
pub(crate) fn expires_after(v: &Value) -> Result<Option<i64>, ApiError> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        other => return Err(invalid_type("expires_after", "an object", other)),
    };
    match obj.get("anchor") {
        Some(Value::String(a)) if a == "last_active_at" => {}
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "Missing required parameter: 'expires_after.anchor'.",
                Some("expires_after.anchor"),
                Some("missing_required_parameter"),
            ));
        }
        Some(other) => {
            return Err(ApiError::invalid(
                format!("Invalid value: {other}. Supported values are: 'last_active_at'."),
                Some("expires_after.anchor"),
                Some("invalid_value"),
            ));
        }
    }
    match obj.get("days") {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(d) if (1..=365).contains(&d) => Ok(Some(d)),
            _ => Err(out_of_range(
                "expires_after.days",
                "an integer between 1 and 365",
                &Value::Number(n.clone()),
            )),
        },
        None | Some(Value::Null) => Err(ApiError::invalid(
            "Missing required parameter: 'expires_after.days'.",
            Some("expires_after.days"),
            Some("missing_required_parameter"),
        )),
        Some(other) => Err(invalid_type("expires_after.days", "an integer", other)),
    }
}

/// `chunking_strategy`: `auto` (the default, shown as the static 800/400 it stands for) or
/// `static {max_chunk_size_tokens 100–4096, chunk_overlap_tokens ≤ half of it}`.
pub(crate) fn chunking_strategy(v: Option<&Value>) -> Result<Value, ApiError> {
    const PARAM: &str = "chunking_strategy";
    let auto = json!({"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}});
    let obj = match v {
        None | Some(Value::Null) => return Ok(auto),
        Some(Value::Object(o)) => o,
        Some(other) => return Err(invalid_type(PARAM, "an object", other)),
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("auto") => Ok(auto),
        Some("static") => {
            let Some(Value::Object(s)) = obj.get("static") else {
                return Err(ApiError::invalid(
                    "Missing required parameter: 'chunking_strategy.static'.",
                    Some("chunking_strategy.static"),
                    Some("missing_required_parameter"),
                ));
            };
            let int = |key: &str| s.get(key).and_then(Value::as_i64);
            let max = int("max_chunk_size_tokens").filter(|m| (100..=4096).contains(m));
            let Some(max) = max else {
                return Err(out_of_range(
                    "chunking_strategy.static.max_chunk_size_tokens",
                    "an integer between 100 and 4096",
                    s.get("max_chunk_size_tokens").unwrap_or(&Value::Null),
                ));
            };
            let overlap = int("chunk_overlap_tokens").filter(|o| (0..=max / 2).contains(o));
            let Some(overlap) = overlap else {
                return Err(out_of_range(
                    "chunking_strategy.static.chunk_overlap_tokens",
                    "a non-negative integer at most half of max_chunk_size_tokens",
                    s.get("chunk_overlap_tokens").unwrap_or(&Value::Null),
                ));
            };
            Ok(
                json!({"type": "static", "static": {"max_chunk_size_tokens": max, "chunk_overlap_tokens": overlap}}),
            )
        }
        _ => Err(ApiError::invalid(
            "Invalid value for 'chunking_strategy.type': expected 'auto' or 'static'.",
            Some("chunking_strategy.type"),
            Some("invalid_value"),
        )),
    }
}

/// `attributes`: at most 16 keys (≤ 64 characters); values strings of ≤ 512 characters,
/// booleans or numbers. `null` when absent.
pub(crate) fn attributes(v: Option<&Value>) -> Result<Value, ApiError> {
    const PARAM: &str = "attributes";
    let obj = match v {
        None | Some(Value::Null) => return Ok(Value::Null),
        Some(Value::Object(o)) => o,
        Some(other) => return Err(invalid_type(PARAM, "an object", other)),
    };
    if obj.len() > 16 {
        return Err(ApiError::invalid(
            format!(
                "Invalid 'attributes': too many properties. Expected an object with at most 16 properties, but got an object with {} properties instead.",
                obj.len()
            ),
            Some(PARAM),
            Some("object_above_max_properties"),
        ));
    }
    for (key, value) in obj {
        let param = format!("attributes.{key}");
        if key.chars().count() > 64 {
            return Err(ApiError::invalid(
                "Invalid 'attributes': key too long. Expected a key with maximum length 64.",
                Some(PARAM),
                Some("string_above_max_length"),
            ));
        }
        match value {
            Value::String(s) if s.chars().count() > 512 => {
                return Err(ApiError::invalid(
                    format!(
                        "Invalid '{param}': string too long. Expected a string with maximum length 512."
                    ),
                    Some(&param),
                    Some("string_above_max_length"),
                ));
            }
            Value::String(_) | Value::Bool(_) | Value::Number(_) => {}
            other => {
                return Err(invalid_type(
                    &param,
                    "a string, a boolean or a number",
                    other,
                ));
            }
        }
    }
    Ok(Value::Object(obj.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_expiry_chunking_and_attributes() {
        assert_eq!(
            expires_after(&json!({"anchor": "last_active_at", "days": 7})).ok(),
            Some(Some(7))
        );
        assert!(expires_after(&json!({"anchor": "last_active_at", "days": 0})).is_err());
        assert!(expires_after(&json!({"anchor": "last_active_at", "days": 366})).is_err());
        assert!(expires_after(&json!({"anchor": "created_at", "days": 1})).is_err());
        assert!(chunking_strategy(Some(&json!({"type": "auto"}))).is_ok());
        let ok = json!({"type": "static", "static": {"max_chunk_size_tokens": 1000, "chunk_overlap_tokens": 500}});
        assert_eq!(chunking_strategy(Some(&ok)).ok(), Some(ok));
        let bad = json!({"type": "static", "static": {"max_chunk_size_tokens": 1000, "chunk_overlap_tokens": 501}});
        assert!(chunking_strategy(Some(&bad)).is_err());
        assert!(attributes(Some(&json!({"a": "b", "n": 1, "t": true}))).is_ok());
        assert!(attributes(Some(&json!({"a": [1]}))).is_err());
        assert!(attributes(Some(&json!({"a": "x".repeat(513)}))).is_err());
    }
}
