//! The schema of a job body (`POST /v1/jobs`): respool's own keys and the rules respool adds to
//! a Responses API create body, from the constants [`JobSpec::from_value`] checks with. The
//! pass-through part is OpenAI's own `CreateResponse` schema (vendored, see
//! [`crate::contract`]) when it is there.
//!
//! A test ([`tests::the_schema_and_the_parser_agree`]) holds the two to each other: a body
//! this schema accepts is one `from_value` accepts, and one it refuses `from_value` refuses.
//!
//! [`JobSpec::from_value`]: crate::job::JobSpec::from_value

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::job::METADATA_JOB_KEY;
use crate::job::spec::{self, NotifyOn};

/// The name of the job body's schema in `components.schemas`.
pub const JOB_REQUEST: &str = "JobRequest";

/// `timeout` as a string: one number and a unit, at most a year (`366d`), whole seconds.
pub const TIMEOUT_PATTERN: &str = "^([1-9][0-9]{0,4}s|[1-9][0-9]{0,4}m|[1-9][0-9]{0,2}h|[1-7][0-9]{3}h|([1-9][0-9]?|[12][0-9]{2}|3[0-5][0-9]|36[0-6])d)$";

/// A handler's `http` URL as the API takes it: http(s), a plain host name or IPv4 address, an
/// optional port and path (a jobs file takes any URL).
pub const HANDLER_URL_PATTERN: &str = "^https?://[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~/-]*)?$";

/// What the REST API refuses in a job body beyond `JobSpec::from_value`, which also reads jobs
/// files: a `timeout` string must be one number and a unit ([`TIMEOUT_PATTERN`]), so that the
/// document can say exactly which strings are taken (a jobs file takes any duration up to a
/// year, `1h 30m` too; `respool submit` sends seconds). The field at fault and why.
pub fn refused_over_rest(body: &Map<String, Value>) -> Option<(&'static str, String)> {
    static TIMEOUT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        #[allow(clippy::expect_used)]
        regex::Regex::new(TIMEOUT_PATTERN).expect("a pattern of the API's own")
    });
    static URL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        #[allow(clippy::expect_used)]
        regex::Regex::new(HANDLER_URL_PATTERN).expect("a pattern of the API's own")
    });
    for handler in body
        .get("handlers")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.values())
    {
        if handler.get("timeout").is_some_and(Value::is_string) {
            return Some((
                "handlers",
                "a handler's `timeout` over the API is a number of seconds (a jobs file also takes `30s`)".into(),
            ));
        }
        if let Some(url) = handler.get("http").and_then(Value::as_str)
            && !URL.is_match(url)
        {
            return Some((
                "handlers",
                "a handler's `http` over the API is an http(s) URL with a plain host name, an optional port and a path without a query".into(),
            ));
        }
    }
    static JOB_ID: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        #[allow(clippy::expect_used)]
        regex::Regex::new(JOB_ID_PATTERN).expect("a pattern of the API's own")
    });
    if let Some(Value::String(a)) = body.get("after")
        && !JOB_ID.is_match(a)
    {
        return Some((
            "after",
            "over the API, `after` is the id of a job (`job_…`); a name is resolved only among the jobs of one jobs file".into(),
        ));
    }
    match body.get("timeout") {
        Some(Value::String(t)) if !TIMEOUT.is_match(t) => Some((
            "timeout",
            format!(
                "`{}` is not a timeout the API takes: seconds (`5400`) or one number and a unit \
                 (`90m`, `2h`, `7d`; s, m, h or d), at most a year",
                t.chars().take(40).collect::<String>()
            ),
        )),
        _ => None,
    }
}

/// A job id: `job_` and a ULID in upper-case Crockford base32 (what respool writes).
pub const JOB_ID_PATTERN: &str = "^job_[0-7][0-9A-HJKMNP-TV-Z]{25}$";

/// A client idempotency key: 1 to 255 visible ASCII characters
/// ([`spec::check_idempotency_key`]).
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[\\u0021-\\u007e]{1,255}$";

/// The prefix of OpenAI's schemas in the document's components (`OpenAI.CreateResponse`).
pub const OPENAI_PREFIX: &str = "OpenAI.";

/// The schemas this module adds to the document's components: the job body's, and the
/// schemas of OpenAI's it refers to, as intake checks with them
/// ([`crate::contract::prepared_schemas`]), renamed under [`OPENAI_PREFIX`].
pub fn components() -> Vec<(String, Value)> {
    let request = job_request(&[]);
    let mut out = vec![(JOB_REQUEST.to_string(), request.clone())];
    if let Some(schemas) = crate::contract::prepared_schemas() {
        let mut wanted = BTreeSet::new();
        refs_in(&request, &mut wanted);
        let mut queue: Vec<String> = wanted.iter().cloned().collect();
        while let Some(name) = queue.pop() {
            let Some(schema) = schemas.get(&name) else {
                continue;
            };
            let mut found = BTreeSet::new();
            refs_in(schema, &mut found);
            for r in found {
                if wanted.insert(r.clone()) {
                    queue.push(r);
                }
            }
        }
        for name in wanted {
            if let Some(schema) = schemas.get(&name) {
                let mut schema = schema.clone();
                prefix_refs(&mut schema);
                out.push((format!("{OPENAI_PREFIX}{name}"), schema));
            }
        }
    }
    out
}

/// The names of OpenAI's schemas that `v` refers to (its `$ref`s, either prefix).
fn refs_in(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str)
                && let Some(name) = r.strip_prefix(REF_ROOT)
            {
                out.insert(name.strip_prefix(OPENAI_PREFIX).unwrap_or(name).to_string());
            }
            for (k, child) in m {
                if !matches!(
                    k.as_str(),
                    "enum" | "const" | "default" | "example" | "examples"
                ) {
                    refs_in(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| refs_in(i, out)),
        _ => {}
    }
}

const REF_ROOT: &str = "#/components/schemas/";

/// OpenAI's `CreateResponse` as one flat map of its top-level properties (its `allOf` parts
/// folded; see [`intersect`]), with `$ref`s renamed under [`OPENAI_PREFIX`]. One flat object is
/// what code generators read well; `allOf` of objects they merge badly.
fn openai_properties(schemas: &Map<String, Value>) -> Map<String, Value> {
    fn collect(schemas: &Map<String, Value>, v: &Value, out: &mut Map<String, Value>, depth: u8) {
        if depth > 8 {
            return;
        }
        if let Some(name) = v
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(REF_ROOT))
            && let Some(target) = schemas.get(name)
        {
            collect(schemas, target, out, depth + 1);
        }
        for part in v
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect(schemas, part, out, depth + 1);
        }
        for (k, p) in v
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let merged = match out.get(k) {
                Some(old) => intersect(old, p),
                None => p.clone(),
            };
            out.insert(k.clone(), merged);
        }
    }
    let mut out = Map::new();
    if let Some(root) = schemas.get("CreateResponse") {
        collect(schemas, root, &mut out, 0);
    }
    for p in out.values_mut() {
        prefix_refs(p);
    }
    out
}

/// A schema that holds exactly when both `a` and `b` do: the one of them when the other is it
/// or it-or-null (`anyOf: [it, {type: null}]`, how OpenAI marks a field optional in one part and
/// not in another), else `allOf` of both.
fn intersect(a: &Value, b: &Value) -> Value {
    let bare = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("description");
        }
        v
    };
    let or_null = |wide: &Value, narrow: &Value| {
        wide.get("anyOf")
            .and_then(Value::as_array)
            .is_some_and(|branches| {
                branches.len() == 2
                    && branches.iter().any(|x| bare(x) == bare(narrow))
                    && branches.iter().any(|x| x == &json!({"type": "null"}))
            })
    };
    if bare(a) == bare(b) || or_null(b, a) {
        a.clone()
    } else if or_null(a, b) {
        b.clone()
    } else {
        json!({"allOf": [a, b]})
    }
}

/// Renames `#/components/schemas/X` to `#/components/schemas/OpenAI.X` in a schema of OpenAI's,
/// and drops its `title`s: annotations to a validator, but a code generator names its classes
/// after them, and OpenAI gives several schemas the same one ("Input file").
fn prefix_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            // The keyword (a string), not a property named `title` (whose value is a schema).
            if m.get("title").is_some_and(Value::is_string) {
                m.remove("title");
            }
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some(name) = r.strip_prefix(REF_ROOT)
                && !name.starts_with(OPENAI_PREFIX)
            {
                *r = format!("{REF_ROOT}{OPENAI_PREFIX}{name}");
            }
            for (k, child) in m.iter_mut() {
                if !matches!(
                    k.as_str(),
                    "enum" | "const" | "default" | "example" | "examples"
                ) {
                    prefix_refs(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(prefix_refs),
        _ => {}
    }
}

/// Writes the configured sink names into the job body's `notify` (a job may name only those).
pub fn set_sinks(schemas: &mut Value, sinks: &[String]) {
    schemas[JOB_REQUEST] = job_request(sinks);
}

fn notify_on() -> Value {
    json!({
        "type": "array",
        "items": {"type": "string", "enum": NotifyOn::ALL.map(|o| o.as_str())},
        "description": "The outcomes this sink hears about (default: all four)."
    })
}

/// The job body's schema, with `sinks` as the names `notify` may use: OpenAI's
/// `CreateResponse` (when the vendored contract loaded) and respool's rules, both.
pub fn job_request(sinks: &[String]) -> Value {
    let mut own = respool_rules(sinks);
    let Some(schemas) = crate::contract::prepared_schemas() else {
        return own;
    };
    let openai = openai_properties(schemas);
    let Some(props) = own.get_mut("properties").and_then(Value::as_object_mut) else {
        return own;
    };
    for (name, schema) in openai {
        match name.as_str() {
            // respool's rule is narrower than OpenAI's, which accepts every value respool's
            // does (a test holds them to that): respool's stands alone.
            "model" | "metadata" | "background" | "store" | "stream" | "max_output_tokens" => {}
            "input" => {
                props.insert(name, non_empty_input(&schema, schemas));
            }
            _ => {
                props.insert(name, schema);
            }
        }
    }
    own
}

/// OpenAI's `input` (a string or a list of items) with respool's rule that neither is empty.
fn non_empty_input(schema: &Value, schemas: &Map<String, Value>) -> Value {
    let target = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix(REF_ROOT))
        .map(|n| n.strip_prefix(OPENAI_PREFIX).unwrap_or(n))
        .and_then(|n| schemas.get(n));
    let Some(mut input) = target.cloned() else {
        return json!({"allOf": [schema, respool_input()]});
    };
    prefix_refs(&mut input);
    let mut seen = 0;
    for branch in input
        .get_mut("anyOf")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        match branch.get("type").and_then(Value::as_str) {
            Some("string") => {
                branch["minLength"] = json!(1);
                seen += 1;
            }
            Some("array") => {
                branch["minItems"] = json!(1);
                seen += 1;
            }
            _ => {}
        }
    }
    if seen == 2 {
        input
    } else {
        json!({"allOf": [schema, respool_input()]})
    }
}

fn respool_input() -> Value {
    json!({
        "description": "The prompt: a string, or a list of input items.",
        "anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "minItems": 1}
        ]
    })
}

/// respool's own keys and the rules respool adds to OpenAI's.
fn respool_rules(sinks: &[String]) -> Value {
    let blank = spec::BLANK_CLASS;
    let control = "\\u0000-\\u001f\\u007f-\\u009f";
    // With no sinks configured, `notify` can only be empty.
    let sink = if sinks.is_empty() {
        json!({"not": {}})
    } else {
        json!({"type": "string", "enum": sinks})
    };
    let max_timeout = spec::MAX_TIMEOUT.as_secs();
    json!({
        "type": "object",
        "description": "A job: a Responses API create body (any parameter of OpenAI's `POST /v1/responses` passes through) plus respool's own keys, which are taken out before the body is sent. respool always sends `background: true` and `store: true`.",
        "required": ["model"],
        "properties": {
            "model": {"type": "string", "pattern": format!("[^{blank}]"), "description": "The model, e.g. `o3-deep-research`."},
            "input": respool_input(),
            "name": {
                "type": "string",
                "pattern": format!("^[^{control}]*[^{blank}{control}][^{control}]*$"),
                "maxLength": spec::MAX_NAME_CHARS,
                "description": "A human name (default: the model)."
            },
            "notify": {
                "type": ["array", "null"],
                "description": "Where to send notifications (default: the config's `notify.default`): sink names, or `{sink, on}` maps.",
                "items": {
                    "anyOf": [
                        sink.clone(),
                        {
                            "type": "object",
                            "required": ["sink"],
                            "additionalProperties": false,
                            "properties": {"sink": sink, "on": notify_on()}
                        }
                    ]
                }
            },
            "idempotency_key": {
                "type": ["string", "null"],
                "pattern": IDEMPOTENCY_KEY_PATTERN,
                "description": "Submitting the same key again returns the same job (also the `Idempotency-Key` header)."
            },
            "timeout": {
                "description": "Past this the response is cancelled and the job ends `cancelled` (code `timeout`): seconds, or a number and a unit (`90m`).",
                "anyOf": [
                    {"type": "integer", "minimum": 1, "maximum": max_timeout},
                    {"type": "string", "pattern": TIMEOUT_PATTERN},
                    {"type": "null"}
                ]
            },
            "priority": {
                "type": ["integer", "null"],
                "minimum": spec::PRIORITY_RANGE.start(),
                "maximum": spec::PRIORITY_RANGE.end(),
                "description": "Submission order: higher first (default 0)."
            },
            "budget_exempt": {"type": ["boolean", "null"], "description": "Submitted even when a budget is reached."},
            "progress": {
                "anyOf": [{"type": "string", "enum": crate::job::progress::Progress::NAMES}, {"type": "null"}],
                "description": "How respool follows the job while it runs: `poll` (polls and webhooks) or `stream` (live milestones from the response's event stream; polls and webhooks still decide its end). Default: the config's `jobs.progress`."
            },
            "background": {"anyOf": [{"type": "boolean", "const": true}, {"type": "null"}], "description": "respool always sends `true`; leave it out."},
            "store": {"anyOf": [{"type": "boolean", "const": true}, {"type": "null"}], "description": "respool always sends `true`; leave it out."},
            "stream": {"anyOf": [{"type": "boolean", "const": false}, {"type": "null"}], "description": "Leave it out: for live progress write `progress: stream` (respool then sends `stream: true` itself)."},
            "metadata": {
                "description": "Up to 15 string pairs (OpenAI allows 16; respool adds its own).",
                "anyOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "maxProperties": spec::MAX_METADATA_KEYS,
                        "propertyNames": {
                            "minLength": 1,
                            "maxLength": spec::MAX_METADATA_KEY_CHARS,
                            "not": {"const": METADATA_JOB_KEY}
                        },
                        "additionalProperties": {"type": "string", "maxLength": spec::MAX_METADATA_VALUE_CHARS}
                    }
                ]
            },
            "max_output_tokens": {"type": ["integer", "null"], "minimum": spec::MIN_MAX_OUTPUT_TOKENS},
            "schedule": {"type": "null", "description": "Refused here (but for `null`): schedules come from the daemon's jobs file."},
            "attachments": {
                "type": ["array", "null"],
                "maxItems": crate::job::attachment::MAX_ATTACHMENTS,
                "items": {"type": "string", "pattern": crate::job::attachment::ID_PATTERN},
                "description": "Files sent with the input, by the ids `POST /v1/attachments` answered (documents as `input_file`, images as `input_image`). An id the daemon does not have is a 404."
            },
            "knowledge": {
                "type": ["array", "null"],
                "maxItems": spec::MAX_KNOWLEDGE_SETS,
                "items": {
                    "oneOf": [
                        {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$", "description": "A set of the config (`knowledge.sets`); a name it does not have is a 404."},
                        {
                            "type": "object",
                            "required": ["name", "files"],
                            "additionalProperties": false,
                            "properties": {
                                "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
                                "files": {
                                    "type": "array", "minItems": 1, "maxItems": spec::MAX_KNOWLEDGE_FILES,
                                    "items": {"type": "string", "pattern": crate::job::attachment::ID_PATTERN}
                                }
                            }
                        }
                    ]
                },
                "description": "Document sets the model searches: one vector store per set name, its files uploaded, attached and processed before the job is submitted, and `file_search` added to its tools. A set's name (from the config), or `{name, files}` with attachment ids."
            },
            "handlers": {
                "type": ["object", "null"],
                "propertyNames": {"type": "string", "minLength": 1},
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "command": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[^\\u0000]*$"},
                            "prefixItems": [{"type": "string", "pattern": "^[^\\u0000]*[!-~][^\\u0000]*$"}],
                            "description": "The program and its arguments (no shell): the call's arguments on stdin, stdout is the output."},
                        "http": {"type": "string", "pattern": HANDLER_URL_PATTERN, "description": "A URL the arguments are POSTed to; the answer's body is the output."},
                        "timeout": {"type": "integer", "minimum": 1, "maximum": 3600, "description": "Seconds, at most an hour (default 60); a jobs file also takes a duration (`30s`)."},
                        "cwd": {"type": "string"},
                        "env": {"type": "object", "additionalProperties": {"type": "string"}},
                        "max_output_bytes": {"type": "integer", "minimum": 1, "maximum": crate::job::handler::MAX_HANDLER_OUTPUT},
                        "idempotent": {"type": "boolean"},
                        "on_error": {"enum": ["output", "fail"]},
                        "output": {"enum": ["text", "json"]}
                    },
                    "oneOf": [
                        {"required": ["command"], "not": {"required": ["http"]}},
                        {"required": ["http"], "not": {"anyOf": [{"required": ["command"]}, {"required": ["cwd"]}, {"required": ["env"]}]}}
                    ]
                },
                "description": "The job's own function handlers, by function name (see docs/jobs.md#jobs-that-act); over the config's `functions:`. Taken only when the config allows jobs' handlers (`actions.job_handlers`): otherwise 403."
            },
            "max_turns": {
                "type": ["integer", "null"], "minimum": 1, "maximum": crate::job::handler::MAX_TURNS,
                "description": "Responses the job may make in all: the first, and one per round of function outputs or approvals (default: the config's `actions.max_turns`)."
            },
            "after": {
                "type": ["string", "null"], "pattern": JOB_ID_PATTERN,
                "description": "The job this one runs after (see docs/jobs.md#chains-and-conversations): it waits (`pending`) until that job ends, then runs with `previous_response_id` set to that job's final response (or, on a conversation, on it); if that job did not complete it ends `cancelled` with error code `predecessor_failed`. Unknown: 404 `predecessor_not_found`."
            },
            "input_template": {
                "type": ["string", "null"], "pattern": "\\{\\{\\s*after\\.output_text\\s*\\}\\}",
                "description": "Instead of `input` (needs `after`): the input, with `{{after.output_text}}` standing for the output of the job it runs after; then no `previous_response_id` is sent."
            }
        },
        "allOf": [
            {
                "description": "`input` is required, unless `input_template` gives it.",
                "anyOf": [
                    {"required": ["input"]},
                    {"required": ["input_template"], "properties": {"input_template": {"type": "string"}}}
                ]
            },
            {
                "description": "`input_template` needs `after` and replaces `input`.",
                "if": {"required": ["input_template"], "properties": {"input_template": {"type": "string"}}},
                "then": {"required": ["after"], "properties": {"after": {"type": "string"}}, "not": {"required": ["input"]}}
            },
            {
                "description": "`after` sets `previous_response_id` itself.",
                "not": {
                    "required": ["after", "previous_response_id"],
                    "properties": {
                        "after": {"not": {"type": "null"}},
                        "previous_response_id": {"not": {"type": "null"}}
                    }
                }
            }
        ],
        "not": {
            "description": "`conversation` and `previous_response_id` cannot both be set.",
            "required": ["previous_response_id", "conversation"],
            "properties": {
                "previous_response_id": {"not": {"type": "null"}},
                "conversation": {"not": {"type": "null"}}
            }
        },
        "examples": [{
            "model": "o3-deep-research",
            "input": "Summarize this week's papers on retrieval-augmented generation.",
            "tools": [{"type": "web_search_preview"}],
            "name": "weekly-rag-summary",
            "metadata": {"team": "research"},
            "timeout": "2h"
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobSpec;
    use proptest::prelude::*;

    const SINK: &str = "log";

    /// A validator for the job body as the document describes it (with one sink, `log`).
    fn validator() -> jsonschema::Validator {
        let mut schemas = Map::new();
        for (name, schema) in components() {
            schemas.insert(name, schema);
        }
        schemas.insert(JOB_REQUEST.into(), job_request(&[SINK.to_string()]));
        let root = json!({
            "$ref": format!("{REF_ROOT}{JOB_REQUEST}"),
            "components": {"schemas": schemas},
        });
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .unwrap()
    }

    /// What intake says of a body: `from_value`, then the sinks `accept` checks.
    fn intake_accepts(body: &Value) -> bool {
        // (`create_job` refuses a schedule after `from_value`: a template runs from a file.)
        if body.as_object().and_then(refused_over_rest).is_some() {
            return false;
        }
        match JobSpec::from_value(body.clone(), "#1") {
            Ok(spec) => {
                spec.schedule.is_none()
                    && spec.notify.iter().flatten().all(|route| route.sink == SINK)
            }
            Err(_) => false,
        }
    }

    /// A field: mostly absent or valid, now and then invalid, so that both whole bodies that
    /// pass and bodies that fail on one rule come up often.
    /// A field mostly absent, now and then valid or invalid.
    fn rare(valid: Vec<Value>, invalid: Vec<Value>) -> BoxedStrategy<Option<Value>> {
        prop_oneof![
            16 => Just(None),
            1 => prop::sample::select(valid).prop_map(Some),
            1 => prop::sample::select(invalid).prop_map(Some),
        ]
        .boxed()
    }

    fn field(valid: Vec<Value>, invalid: Vec<Value>) -> BoxedStrategy<Option<Value>> {
        let absent_or_valid = if valid.is_empty() {
            Just(None).boxed()
        } else {
            proptest::option::of(prop::sample::select(valid)).boxed()
        };
        if invalid.is_empty() {
            return absent_or_valid;
        }
        prop_oneof![
            12 => absent_or_valid,
            1 => prop::sample::select(invalid).prop_map(Some),
        ]
        .boxed()
    }

    /// A required field: present and valid, now and then invalid or absent.
    fn required(valid: Vec<Value>, invalid: Vec<Value>) -> BoxedStrategy<Option<Value>> {
        prop_oneof![
            24 => prop::sample::select(valid).prop_map(Some),
            1 => Just(None),
            1 => prop::sample::select(invalid).prop_map(Some),
        ]
        .boxed()
    }

    /// The generator is not vacuous: a good share of its bodies pass, and a good share fail.
    #[test]
    fn the_bodies_are_mixed() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = bodies();
        let accepted = (0..1000)
            .filter(|_| intake_accepts(&strategy.new_tree(&mut runner).unwrap().current()))
            .count();
        let mut why = std::collections::BTreeMap::<String, usize>::new();
        for _ in 0..300 {
            let b = strategy.new_tree(&mut runner).unwrap().current();
            if let Err(errs) = JobSpec::from_value(b, "#1") {
                for e in errs {
                    *why.entry(e.field.clone()).or_default() += 1;
                }
            }
        }
        assert!(
            (150..=850).contains(&accepted),
            "{accepted} of 1000 accepted; refused for: {why:?}"
        );
    }

    /// Bodies drawn from the values at the edges of each rule.
    fn bodies() -> impl Strategy<Value = Value> {
        let long = "x".repeat(201);
        let fields = vec![
            (
                "model",
                required(
                    vec![json!("o3-deep-research"), json!("x"), json!(" m ")],
                    vec![
                        json!(""),
                        json!(" \u{feff}"),
                        json!("\u{85}"),
                        json!(5),
                        Value::Null,
                    ],
                ),
            ),
            (
                "input",
                required(
                    vec![
                        json!("Say hi."),
                        json!([{"role": "user", "content": "hi"}]),
                        json!([{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]),
                    ],
                    vec![
                        json!(""),
                        json!([]),
                        json!([{"role": "user", "content": [{"type": "input_text", "text": null}]}]),
                        json!([42]),
                        json!({"a": 1}),
                    ],
                ),
            ),
            (
                "name",
                field(
                    vec![json!("report"), json!(" é "), json!("x".repeat(200))],
                    vec![
                        json!(""),
                        json!("  "),
                        json!("a\u{7}b"),
                        json!(long),
                        Value::Null,
                        json!(3),
                    ],
                ),
            ),
            (
                "timeout",
                field(
                    vec![
                        json!(3600),
                        json!(3600.0),
                        json!(31_622_400),
                        json!("90m"),
                        json!("366d"),
                        json!("7999h"),
                        Value::Null,
                    ],
                    vec![
                        json!(0),
                        json!(-1),
                        json!(31_622_401),
                        json!("367d"),
                        json!("0s"),
                        json!("soon"),
                        json!(1.5),
                        // humantime reads these and a jobs file takes them; the API does not.
                        json!("1h 30m"),
                        json!("2hours"),
                        json!("1w"),
                        json!("8000h"),
                        json!(" 30m"),
                    ],
                ),
            ),
            (
                "priority",
                field(
                    vec![json!(0), json!(1000), json!(-1000), json!(7.0), Value::Null],
                    vec![json!(1001), json!(-1001), json!(7.5), json!("1")],
                ),
            ),
            (
                "metadata",
                field(
                    vec![
                        json!({}),
                        json!({"team": "r"}),
                        json!({"k": "v".repeat(512)}),
                        Value::Null,
                    ],
                    vec![
                        json!({"respool_job_id": "x"}),
                        json!({"": "x"}),
                        json!({"k": 1}),
                        json!({"k": "v".repeat(513)}),
                        json!([]),
                    ],
                ),
            ),
            (
                "max_output_tokens",
                field(
                    vec![json!(16), json!(16.0), json!(100_000), Value::Null],
                    vec![json!(15), json!(-16), json!("16"), json!(16.5)],
                ),
            ),
            (
                "progress",
                rare(
                    vec![json!("poll"), json!("stream"), Value::Null],
                    vec![json!("live"), json!(true)],
                ),
            ),
            (
                "budget_exempt",
                field(
                    vec![json!(true), json!(false), Value::Null],
                    vec![json!("true"), json!(1)],
                ),
            ),
            (
                "notify",
                field(
                    vec![
                        json!([SINK]),
                        json!([{"sink": SINK, "on": ["failed"]}]),
                        json!([{"sink": SINK}]),
                        json!([]),
                        Value::Null,
                    ],
                    vec![
                        json!(["nope"]),
                        json!([{"sink": SINK, "on": ["exploded"]}]),
                        json!([{"sink": SINK, "x": 1}]),
                        json!([""]),
                        json!("log"),
                        json!([{"on": []}]),
                    ],
                ),
            ),
            (
                "idempotency_key",
                field(
                    vec![json!("key-1"), json!("~!"), Value::Null],
                    vec![
                        json!(""),
                        json!("has space"),
                        json!("é"),
                        json!(1),
                        json!("k".repeat(256)),
                    ],
                ),
            ),
            (
                "temperature",
                field(
                    vec![json!(0.2), json!(2), Value::Null],
                    vec![json!(3), json!("hot"), json!(-1)],
                ),
            ),
            (
                "previous_response_id",
                field(vec![json!("resp_1"), Value::Null], vec![json!(5)]),
            ),
            (
                "conversation",
                field(vec![json!("conv_1"), Value::Null], vec![json!(5)]),
            ),
            (
                "schedule",
                field(
                    vec![Value::Null],
                    vec![json!({"cron": "0 * * * *"}), json!("x")],
                ),
            ),
            (
                "attachments",
                field(
                    vec![
                        json!([format!("att_{}", "0".repeat(64))]),
                        json!([]),
                        Value::Null,
                    ],
                    vec![json!(["a.pdf"]), json!("att_x"), json!([5])],
                ),
            ),
            (
                "handlers",
                rare(
                    vec![
                        json!({}),
                        json!({"get_weather": {"command": ["python3", "w.py"], "timeout": 30, "on_error": "fail"}}),
                        json!({"lookup": {"http": "https://tools.example.com:8443/lookup", "output": "json", "idempotent": true}}),
                        Value::Null,
                    ],
                    vec![
                        json!({"f": {}}),
                        json!({"f": {"command": []}}),
                        json!({"f": {"command": ["a"], "http": "https://x.example"}}),
                        json!({"f": {"http": "https://x.example", "headers": {"a": "b"}}}),
                        json!({"f": {"command": ["a"], "timeout": 7200}}),
                        json!({"f": {"command": ["a"], "on_error": "explode"}}),
                        json!({"f": {"command": ["a"], "tiemout": 3}}),
                        json!("f"),
                    ],
                ),
            ),
            (
                "after",
                rare(
                    vec![json!("job_01K00000000000000000000000"), Value::Null],
                    vec![json!("plan"), json!("job_x"), json!(5)],
                ),
            ),
            (
                // Rare: with `input` (nearly always there) it is refused.
                "input_template",
                rare(
                    vec![
                        json!("Check: {{after.output_text}}"),
                        json!("{{ after.output_text }}"),
                        Value::Null,
                    ],
                    vec![json!("no placeholder"), json!(5)],
                ),
            ),
            (
                "max_turns",
                rare(
                    vec![json!(1), json!(100), json!(4.0), Value::Null],
                    vec![json!(0), json!(101), json!(2.5), json!("3")],
                ),
            ),
            (
                "knowledge",
                field(
                    vec![
                        json!(["handbook"]),
                        json!([{"name": "kb-1", "files": [format!("att_{}", "1".repeat(64))]}]),
                        json!(["a", "a"]),
                        Value::Null,
                    ],
                    vec![
                        json!("handbook"),
                        json!([{"name": "kb"}]),
                        json!([{"name": "bad name", "files": [format!("att_{}", "1".repeat(64))]}]),
                        json!(["a", "b", "c"]),
                        json!([{"name": "kb", "files": [], "x": 1}]),
                    ],
                ),
            ),
            (
                "background",
                field(
                    vec![json!(true), Value::Null],
                    vec![json!(false), json!("true")],
                ),
            ),
            (
                "store",
                field(vec![json!(true), Value::Null], vec![json!(false)]),
            ),
            (
                "stream",
                field(vec![json!(false), Value::Null], vec![json!(true)]),
            ),
            (
                "future_param",
                field(vec![json!({"anything": [1, "two"]})], vec![]),
            ),
        ];
        let (names, strategies): (Vec<&'static str>, Vec<BoxedStrategy<Option<Value>>>) =
            fields.into_iter().unzip();
        strategies.prop_map(move |values| {
            let mut m = Map::new();
            for (k, v) in names.iter().zip(values) {
                if let Some(v) = v {
                    m.insert((*k).to_string(), v);
                }
            }
            Value::Object(m)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The document's job body schema and intake agree on every body: what one accepts,
        /// the other does, so a client generated from the document is never refused for a body
        /// its types allowed, and a body the document refuses never becomes a job.
        #[test]
        fn the_schema_and_the_parser_agree(body in bodies()) {
            static VALIDATOR: std::sync::LazyLock<jsonschema::Validator> =
                std::sync::LazyLock::new(validator);
            let by_schema = VALIDATOR.is_valid(&body);
            let by_intake = intake_accepts(&body);
            let why: Vec<String> = VALIDATOR.iter_errors(&body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
            prop_assert_eq!(by_schema, by_intake, "{} — schema says: {:?}; intake says: {:?}", body, why, JobSpec::from_value(body.clone(), "#1").err());
        }
    }

    /// Where respool's rule stands in for OpenAI's, OpenAI's accepts whatever respool's does.
    #[test]
    fn respools_rules_are_narrower_than_openais() {
        let schemas = crate::contract::prepared_schemas().unwrap();
        let openai = openai_properties(schemas);
        let own = respool_rules(&[]);
        let samples = [
            json!("o3-deep-research"),
            json!("x"),
            json!({"team": "r"}),
            json!({}),
            json!(true),
            json!(false),
            json!(16),
            json!(1e9),
            Value::Null,
        ];
        let mut all = Map::new();
        for (name, schema) in schemas {
            let mut schema = schema.clone();
            prefix_refs(&mut schema);
            all.insert(format!("{OPENAI_PREFIX}{name}"), schema);
        }
        for key in [
            "model",
            "metadata",
            "background",
            "store",
            "stream",
            "max_output_tokens",
        ] {
            let compile = |schema: &Value| {
                jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .build(&json!({"allOf": [schema], "components": {"schemas": all.clone()}}))
                    .unwrap_or_else(|e| panic!("{key}: {e}"))
            };
            let theirs = compile(&openai[key]);
            let ours = compile(&own["properties"][key]);
            for v in &samples {
                if ours.is_valid(v) {
                    assert!(
                        theirs.is_valid(v),
                        "{key}: {v} passes respool's rule but not OpenAI's"
                    );
                }
            }
        }
    }

    /// A property named `title` survives the dropping of `title` annotations.
    #[test]
    fn properties_named_title_are_kept() {
        let mut v = json!({"title": "Citation", "type": "object", "properties": {"title": {"type": "string", "title": "T"}}, "required": ["title"]});
        prefix_refs(&mut v);
        assert_eq!(
            v,
            json!({"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]})
        );
    }
}
