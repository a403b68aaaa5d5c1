//! OpenAI's own contract for a create request, checked at intake.
//!
//! The request body of `POST /responses` is `#/components/schemas/CreateResponse` in OpenAI's
//! published OpenAPI document (<https://github.com/openai/openai-openapi>). respool vendors that
//! schema and every schema it reaches through `$ref` (`openai-create-response.json` next to this
//! file, written by `scripts/refresh-openai-schema.py`; [`source`] says which commit) and checks
//! the pass-through part of every job against it, so a wrong type or value at a known field is
//! refused when the job is taken in (REST, jobs files, `respool check`) rather than by OpenAI's
//! 400 minutes later. The simulator checks its creates with the same document, so the two
//! cannot disagree.
//!
//! - [`check_create`]: the fields that break the contract, each a [`Violation`] with the path
//!   of the field (as respool writes it, `input.0.content.0.text`, and as OpenAI's `param`
//!   does, `input[0].content[0].text`) and a short message for a human.
//! - [`unknown_fields`]: top-level fields the document does not know. Not errors: they pass
//!   through as they are (a parameter newer than the vendored document keeps working), and
//!   the caller warns about them.
//! - [`openai_document`]: the vendored document itself, for anything that embeds the schemas
//!   (the REST API's OpenAPI document).
//!
//! A leaf: it imports nothing of respool, so `job`, `sim` and `api` can all use it.

mod explain;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The vendored document: `{"source": {...}, "components": {"schemas": {...}}}`.
const DOCUMENT: &str = include_str!("openai-create-response.json");
/// The schema of a create request's body, in the vendored document.
pub const CREATE_RESPONSE: &str = "#/components/schemas/CreateResponse";

/// Where the vendored document comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Source {
    /// `https://github.com/openai/openai-openapi`.
    pub repository: String,
    /// The commit of that repository the schemas were taken from.
    pub commit: String,
    /// That commit's date, `YYYY-MM-DD`.
    pub date: String,
    /// The OpenAPI version of OpenAI's document (`3.1.0`: its schemas are JSON Schema 2020-12).
    pub openapi_version: String,
    /// OpenAI's version of its API document (`info.version`).
    pub info_version: String,
}

/// The vendored document as it is in the file: `source` and `components.schemas` (the
/// closure of `CreateResponse`). `$ref`s in it are `#/components/schemas/NAME` and resolve
/// against this value.
pub fn openai_document() -> &'static Value {
    static PARSED: LazyLock<Value> =
        LazyLock::new(|| serde_json::from_str(DOCUMENT).unwrap_or(Value::Null));
    &PARSED
}

/// The vendored schemas by name (`CreateResponse` and everything it references).
pub fn openai_schemas() -> &'static Map<String, Value> {
    static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);
    openai_document()["components"]["schemas"]
        .as_object()
        .unwrap_or(&EMPTY)
}

/// Where the vendored document comes from (commit, date, versions).
pub fn source() -> &'static Source {
    static SOURCE: LazyLock<Source> = LazyLock::new(|| {
        Source::deserialize(&openai_document()["source"]).unwrap_or_else(|_| Source {
            repository: String::new(),
            commit: "unknown".into(),
            date: "unknown".into(),
            openapi_version: "unknown".into(),
            info_version: "unknown".into(),
        })
    });
    &SOURCE
}

/// One step of a field's path: an object key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// What kind of break a [`Violation`] is; [`ViolationKind::code`] is OpenAI's error code for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// The value has the wrong JSON type (a string where a number goes).
    InvalidType,
    /// The type is right, the value is not (out of range, not one of the allowed values, an
    /// unknown field inside an object that allows none).
    InvalidValue,
    /// A field the object needs is missing.
    Missing,
}

impl ViolationKind {
    /// The `code` OpenAI answers for this kind of bad parameter.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidType => "invalid_type",
            Self::InvalidValue => "invalid_value",
            Self::Missing => "missing_required_parameter",
        }
    }
}

/// A field of a create body that breaks OpenAI's contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    path: Vec<Segment>,
    kind: ViolationKind,
    message: String,
}

impl Violation {
    /// The field's path, from the body's top level.
    pub fn path(&self) -> &[Segment] {
        &self.path
    }

    /// The path as respool writes fields (and jobs-file errors locate them):
    /// `input.0.content.0.text`.
    pub fn field(&self) -> String {
        if self.path.is_empty() {
            return "(body)".into();
        }
        self.path
            .iter()
            .map(|s| match s {
                Segment::Key(k) => k.clone(),
                Segment::Index(i) => i.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The path as OpenAI's `param` writes it: `input[0].content[0].text`.
    pub fn param(&self) -> String {
        let mut out = String::new();
        for s in &self.path {
            match s {
                Segment::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    pub fn kind(&self) -> ViolationKind {
        self.kind
    }

    /// What is wrong, for a human, without the field's name (`must be a number or null, not
    /// the string "hot"`). At most a few hundred characters, whatever the schema or the value.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field(), self.message)
    }
}

/// Event types an endpoint may subscribe to (and `test` may send): the list of the `openai`
/// Python SDK 3.57.0 (`resources/webhooks/webhooks.py`).
pub const EVENT_TYPES: &[&str] = &[
    "batch.completed",
    "batch.failed",
    "batch.expired",
    "batch.cancelled",
    "response.completed",
    "response.failed",
    "response.cancelled",
    "response.incomplete",
    "eval.run.succeeded",
    "eval.run.failed",
    "eval.run.canceled",
    "fine_tuning.job.succeeded",
    "fine_tuning.job.failed",
    "fine_tuning.job.cancelled",
    "realtime.call.incoming",
    "video.completed",
    "video.failed",
    "agent.environment.ready",
    "agent.environment.failed",
    "agent.environment.suspended",
    "agent.environment.expired",
    "agent.session.created",
    "agent.session.action_required",
    "agent.session.in_progress",
    "agent.session.idle",
    "agent.session.failed",
    "safety.alert.created",
];

/// The compiled contract, built once.
struct Contract {
    validator: jsonschema::Validator,
    /// The schemas as the validator reads them (see [`prepare`] and [`relax_required`]).
    prepared: Map<String, Value>,
    /// The top-level fields `CreateResponse` names (through its `allOf` parts).
    known: BTreeSet<String>,
}

static CONTRACT: LazyLock<Result<Contract, String>> = LazyLock::new(|| {
    let contract = build(openai_document());
    if let Err(e) = &contract {
        // Only a broken vendored file gets here (a unit test builds it); intake then takes
        // every body as it did before the contract existed.
        tracing::error!(error = %e, "OpenAI's create-request schema did not load; job bodies are not checked against it");
    }
    contract
});

fn build(document: &Value) -> Result<Contract, String> {
    let schemas = document["components"]["schemas"]
        .as_object()
        .ok_or("the vendored document has no components.schemas")?;
    let mut prepared = Value::Object(schemas.clone());
    relax_required(&mut prepared, schemas);
    prepare(&mut prepared);
    tighten(&mut prepared);
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": CREATE_RESPONSE,
        "components": {"schemas": prepared.clone()},
    });
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .map_err(|e| format!("the schema does not compile: {e}"))?;
    let mut known = BTreeSet::new();
    collect_properties(schemas, CREATE_RESPONSE, &mut known, 0);
    if known.is_empty() {
        return Err("CreateResponse names no fields".into());
    }
    let Value::Object(prepared) = prepared else {
        return Err("the prepared schemas are not a map".into());
    };
    Ok(Contract {
        validator,
        prepared,
        known,
    })
}

/// Adapts OpenAPI's schemas to plain JSON Schema, in memory (the vendored file stays as OpenAI
/// wrote it; see also [`relax_required`]): every `oneOf` becomes an `anyOf`. OpenAPI uses `oneOf` with a `discriminator`
/// for "one of these kinds", and its branches overlap (a user message with a content list is
/// both an `EasyInputMessage` and an `InputMessage`), so JSON Schema's "exactly one" would
/// refuse bodies OpenAI takes. `discriminator`, `x-*` and `example` are annotations to a JSON
/// Schema validator and are left alone.
fn prepare(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if let Some(branches) = map.remove("oneOf") {
                match map.remove("anyOf") {
                    // Both on one schema: each must hold.
                    Some(any) => {
                        let all = json!([{"anyOf": branches}, {"anyOf": any}]);
                        match map.get_mut("allOf") {
                            Some(Value::Array(parts)) => {
                                parts.extend(all.as_array().into_iter().flatten().cloned());
                            }
                            _ => {
                                map.insert("allOf".into(), all);
                            }
                        }
                    }
                    None => {
                        map.insert("anyOf".into(), branches);
                    }
                }
            }
            for (key, value) in map.iter_mut() {
                // Values, not schemas: an `enum` or `default` holding an object with a `oneOf`
                // key is data.
                if !matches!(
                    key.as_str(),
                    "enum" | "const" | "default" | "example" | "examples"
                ) {
                    prepare(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(prepare),
        _ => {}
    }
}

/// What OpenAI enforces that its document does not say, written into the schemas so that
/// intake, the simulator and the REST API's document all hold it: a structured output's JSON
/// Schema (`text.format.schema`) describes an object at its root (`type: object`).
fn tighten(schemas: &mut Value) {
    if let Some(s) = schemas
        .get_mut("ResponseFormatJsonSchemaSchema")
        .and_then(Value::as_object_mut)
    {
        s.insert("required".into(), json!(["type"]));
        s.insert(
            "properties".into(),
            json!({"type": {"const": "object", "description": "A structured output is an object at its root."}}),
        );
    }
    drop_formats(schemas);
    // An item reference is its `id` (and `type`) alone: with no `type` it would otherwise
    // take any object that has an `id`, such as another item whose `type` is wrong, and a
    // body OpenAI refuses would pass intake (Schemathesis found one).
    if let Some(s) = schemas
        .get_mut("ItemReferenceParam")
        .and_then(Value::as_object_mut)
    {
        s.insert("additionalProperties".into(), json!(false));
    }
}

/// Removes every `format` keyword: the check does not enforce them (JSON Schema 2020-12 makes
/// them annotations), so the document must not claim them either (`uri` on input URLs,
/// `float`). OpenAI's own answer decides such a value.
fn drop_formats(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if map.get("format").is_some_and(Value::is_string) {
                map.remove("format");
            }
            for (key, value) in map.iter_mut() {
                if !matches!(
                    key.as_str(),
                    "enum" | "const" | "default" | "example" | "examples"
                ) {
                    drop_formats(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(drop_formats),
        _ => {}
    }
}

/// Drops from each `required` list the properties whose schema admits null. OpenAI's document
/// shares schemas between requests and responses and marks "always present in a response,
/// possibly null" as required (`FunctionTool.strict`); the API takes a request without such a
/// field as if it were null, and so does respool. A required field that cannot be null (an
/// `input_text` part's `text`) stays required.
fn relax_required(node: &mut Value, schemas: &Map<String, Value>) {
    match node {
        Value::Object(map) => {
            if let (Some(Value::Array(required)), Some(Value::Object(props))) =
                (map.get("required"), map.get("properties"))
            {
                let kept: Vec<Value> = required
                    .iter()
                    .filter(|name| {
                        !name
                            .as_str()
                            .and_then(|n| props.get(n))
                            .is_some_and(|p| admits_null(p, schemas, 0))
                    })
                    .cloned()
                    .collect();
                map.insert("required".into(), Value::Array(kept));
            }
            for (key, value) in map.iter_mut() {
                if !matches!(
                    key.as_str(),
                    "enum" | "const" | "default" | "example" | "examples"
                ) {
                    relax_required(value, schemas);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| relax_required(i, schemas)),
        _ => {}
    }
}

/// Whether `schema` accepts null (through `type`, `const`, `enum`, `anyOf`/`oneOf` branches
/// and `$ref`s).
fn admits_null(schema: &Value, schemas: &Map<String, Value>, depth: usize) -> bool {
    if depth > 16 {
        return false;
    }
    let by_type = match schema.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
        _ => false,
    };
    let by_value = schema.get("const") == Some(&Value::Null)
        || schema
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|e| e.contains(&Value::Null));
    let by_branch = ["anyOf", "oneOf"].iter().any(|k| {
        schema
            .get(*k)
            .and_then(Value::as_array)
            .is_some_and(|bs| bs.iter().any(|b| admits_null(b, schemas, depth + 1)))
    });
    let by_ref = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .and_then(|name| schemas.get(name))
        .is_some_and(|target| admits_null(target, schemas, depth + 1));
    by_type || by_value || by_branch || by_ref
}

/// Adds the property names of the schema at `reference` (through `$ref` and `allOf`).
fn collect_properties(
    schemas: &Map<String, Value>,
    reference: &str,
    out: &mut BTreeSet<String>,
    depth: usize,
) {
    let Some(schema) = reference
        .strip_prefix("#/components/schemas/")
        .and_then(|name| schemas.get(name))
    else {
        return;
    };
    collect_from(schemas, schema, out, depth);
}

fn collect_from(
    schemas: &Map<String, Value>,
    schema: &Value,
    out: &mut BTreeSet<String>,
    depth: usize,
) {
    if depth > 16 {
        return;
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        out.extend(props.keys().cloned());
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        collect_properties(schemas, reference, out, depth + 1);
    }
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect_from(schemas, part, out, depth + 1);
    }
}

/// The schemas exactly as intake checks with them (OpenAI's, with the two adaptations of
/// [`prepare`] and [`relax_required`]), for the API's OpenAPI document to embed: what the
/// document says of a job body is then what intake enforces. `None` when the vendored file did
/// not load (then intake checks nothing either).
pub fn prepared_schemas() -> Option<&'static Map<String, Value>> {
    CONTRACT.as_ref().ok().map(|c| &c.prepared)
}

/// The fields of `body` (a create request's pass-through part: respool's own keys taken out)
/// that break OpenAI's contract, in the body's order, each with a short message. Empty when
/// the body is valid. Top-level fields the document does not know are not checked (see
/// [`unknown_fields`]); fields inside known ones are checked as the document says.
pub fn check_create(body: &Map<String, Value>) -> Vec<Violation> {
    let Ok(contract) = &*CONTRACT else {
        return Vec::new();
    };
    let instance = Value::Object(body.clone());
    let errors: Vec<_> = contract.validator.iter_errors(&instance).collect();
    explain::violations(&instance, &errors)
}

/// The top-level fields of `body` that OpenAI's create-request schema does not name, in the
/// body's order. They are passed through to OpenAI as they are; callers warn about them (a
/// typo, or a parameter newer than the vendored document).
pub fn unknown_fields(body: &Map<String, Value>) -> Vec<String> {
    let Ok(contract) = &*CONTRACT else {
        return Vec::new();
    };
    body.keys()
        .filter(|k| !contract.known.contains(k.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
