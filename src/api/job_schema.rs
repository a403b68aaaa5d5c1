//! The schema of a job body (`POST /v1/jobs`): respool's own keys and the rules respool adds to
//! a Responses API create body, from the constants [`JobSpec::from_value`] checks with. The
//! pass-through part is OpenAI's own `CreateResponse` schema (vendored, see
//! [`crate::contract`]) when it is there.
//!
//! A test ([`tests::the_schema_and_the_parser_agree`]) holds the two to each other: a body
//! this schema accepts is one `from_value` accepts, and one it refuses `from_value` refuses.
//!
//! [`JobSpec::from_value`]: crate::job::JobSpec::from_value

use serde_json::{Value, json};

use crate::job::METADATA_JOB_KEY;
use crate::job::spec::{self, NotifyOn};

/// The name of the job body's schema in `components.schemas`.
pub const JOB_REQUEST: &str = "JobRequest";

/// `timeout` as a string: one number and a unit, at most a year (`366d`), whole seconds.
pub const TIMEOUT_PATTERN: &str = "^([1-9][0-9]{0,4}s|[1-9][0-9]{0,4}m|[1-9][0-9]{0,2}h|[1-7][0-9]{3}h|([1-9][0-9]?|[12][0-9]{2}|3[0-5][0-9]|36[0-6])d)$";

/// A client idempotency key: 1 to 255 visible ASCII characters
/// ([`spec::check_idempotency_key`]).
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[\\u0021-\\u007e]{1,255}$";

/// The schemas this module adds to the document's components.
pub fn components() -> Vec<(String, Value)> {
    vec![(JOB_REQUEST.to_string(), job_request(&[]))]
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

/// The job body's schema, with `sinks` as the names `notify` may use.
pub fn job_request(sinks: &[String]) -> Value {
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
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "pattern": format!("[^{blank}]"), "description": "The model, e.g. `o3-deep-research`."},
            "input": {
                "description": "The prompt: a string, or a list of input items.",
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "minItems": 1}
                ]
            },
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
            "background": {"enum": [true, null]},
            "store": {"enum": [true, null]},
            "stream": {"enum": [false, null]},
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
            "attachments": {"not": {}, "description": "Reserved for a later version."},
            "after": {"not": {}, "description": "Reserved for a later version."}
        },
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
