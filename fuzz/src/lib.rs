//! Helpers shared by the fuzz targets: structure-aware JSON values built from fuzz bytes, so
//! targets that take a `serde_json::Value` reach deep shapes that raw JSON text rarely does.

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};

/// Keys the parsers look for, so that generated objects hit their branches.
const KEYS: &[&str] = &[
    "id",
    "type",
    "status",
    "data",
    "model",
    "input",
    "name",
    "notify",
    "sink",
    "on",
    "metadata",
    "timeout",
    "idempotency_key",
    "schedule",
    "priority",
    "budget_exempt",
    "attachments",
    "knowledge",
    "files",
    "paths",
    "background",
    "store",
    "stream",
    "max_output_tokens",
    "previous_response_id",
    "conversation",
    "output",
    "content",
    "text",
    "usage",
    "error",
    "code",
    "message",
    "incomplete_details",
    "reason",
    "every",
    "cron",
    "at",
    "tz",
    "sim",
    "stream_options",
    "format",
    "schema",
    "strict",
    "json_schema",
    "json_object",
    "refusal",
    "annotations",
    "start_index",
    "end_index",
    "index",
    "url",
    "title",
    "url_citation",
    "file_citation",
    "container_file_citation",
    "filename",
    "output_text",
    "phase",
    "action",
    "query",
    "web_search_call",
    "properties",
    "required",
];

/// A JSON value at most `depth` levels deep.
pub fn value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let kind = if depth == 0 {
        u.int_in_range(0..=4)?
    } else {
        u.int_in_range(0..=6)?
    };
    Ok(match kind {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => match u.int_in_range(0..=2)? {
            0 => Value::Number(Number::from(u.arbitrary::<i64>()?)),
            1 => Value::Number(Number::from(u.arbitrary::<u64>()?)),
            _ => Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        },
        3 => Value::String(u.arbitrary()?),
        4 => Value::String(pick(u, KEYS)?.to_string()),
        5 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array((0..n).map(|_| value(u, depth - 1)).collect::<Result<_>>()?)
        }
        _ => {
            let n = u.int_in_range(0..=6)?;
            let mut m = Map::new();
            for _ in 0..n {
                let k = if u.arbitrary()? {
                    pick(u, KEYS)?.to_string()
                } else {
                    u.arbitrary()?
                };
                m.insert(k, value(u, depth - 1)?);
            }
            Value::Object(m)
        }
    })
}

fn pick<'a>(u: &mut Unstructured<'_>, from: &[&'a str]) -> Result<&'a str> {
    Ok(from[u.choose_index(from.len())?])
}

/// The JSON in `data` if it parses, else a value built from the bytes.
pub fn json_or_value(data: &[u8]) -> Option<Value> {
    if let Ok(v) = serde_json::from_slice(data) {
        return Some(v);
    }
    value(&mut Unstructured::new(data), 5).ok()
}

/// No variable is set: `${VAR}` falls back to its default or is an error.
pub fn no_env(_: &str) -> Option<String> {
    None
}

/// No file can be read (a fuzzed jobs file may name any path; the disk is not part of it).
pub fn no_files(name: &str) -> Result<Vec<u8>, String> {
    Err(format!("cannot read `{name}`: no files while fuzzing"))
}
