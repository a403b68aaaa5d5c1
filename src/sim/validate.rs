//! Validation of `POST /v1/responses` bodies: turns raw JSON into a [`CreateRequest`] or the
//! 400 that OpenAI would answer (with `param` naming the offending field). Checks that need the
//! store (`previous_response_id`) are done by `state.rs`.

use serde_json::{Map, Value, json};

use super::code_interpreter::CodeTool;
use super::error::ApiError;
use super::faults::Overrides;
use super::file_inputs::{FilePart, FileSearch, parse_file_search, parse_parts};
use super::ids;
use super::images::ImageTool;
use crate::contract::{self, ViolationKind};

/// Values accepted in `include` (create body or `include[]` query).
pub(crate) const INCLUDE_VALUES: &[&str] = &[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
];

const SERVICE_TIERS: &[&str] = &[
    "auto",
    "default",
    "flex",
    "scale",
    "priority",
    "fast",
    "ultrafast",
];
const DATA_SOURCE_TOOLS: &[&str] = &["web_search_preview", "web_search", "file_search", "mcp"];

/// A validated create request. `body` keeps every field so settings are echoed as sent.
#[derive(Debug, Clone)]
pub(crate) struct CreateRequest {
    pub body: Map<String, Value>,
    pub model: String,
    /// All user-visible input text, flattened (drives the generated output).
    pub input_text: String,
    /// The input as items with ids, for `GET /input_items`.
    pub input_items: Vec<Value>,
    pub background: bool,
    pub store: bool,
    pub stream: bool,
    pub obfuscate: bool,
    pub metadata: Map<String, Value>,
    pub max_output_tokens: Option<u64>,
    pub previous_response_id: Option<String>,
    /// The conversation (`conversation: "conv_…"` or `{id}`) the response belongs to.
    pub conversation: Option<String>,
    pub has_reasoning: bool,
    pub tools: Vec<Value>,
    pub include: Vec<String>,
    pub overrides: Overrides,
    /// The files the input's `input_file` / `input_image` parts name (checked for shape only;
    /// `state.rs` resolves them).
    pub file_parts: Vec<FilePart>,
    /// The `file_search` tools, merged.
    pub file_search: Option<FileSearch>,
    /// The `image_generation` tool, if any.
    pub image_tool: Option<ImageTool>,
    /// The `code_interpreter` tool, if any (`state.rs` finds or makes its container).
    pub code_tool: Option<CodeTool>,
}

impl CreateRequest {
    /// Whether the model is a deep-research one (extra tool rules, web searches in the output).
    pub fn is_deep_research(&self) -> bool {
        self.model.contains("deep-research")
    }

    /// `max_tool_calls`: how many built-in tool calls the response may make (unbounded when
    /// absent).
    pub fn max_tool_calls(&self) -> usize {
        self.body
            .get("max_tool_calls")
            .and_then(Value::as_u64)
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn invalid_type(param: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid(
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            type_name(got)
        ),
        Some(param),
        Some("invalid_type"),
    )
}

fn opt_bool(body: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(invalid_type(key, "a boolean", other)),
    }
}

fn opt_number_in(body: &Map<String, Value>, key: &str, min: f64, max: f64) -> Result<(), ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x < min {
                Err(ApiError::invalid(
                    format!(
                        "Invalid '{key}': decimal below minimum value. Expected a value >= {min}, but got {x} instead."
                    ),
                    Some(key),
                    Some("decimal_below_min_value"),
                ))
            } else if x > max {
                Err(ApiError::invalid(
                    format!(
                        "Invalid '{key}': decimal above maximum value. Expected a value <= {max}, but got {x} instead."
                    ),
                    Some(key),
                    Some("decimal_above_max_value"),
                ))
            } else {
                Ok(())
            }
        }
        Some(other) => Err(invalid_type(key, "a number", other)),
    }
}

fn enum_value(body: &Map<String, Value>, key: &str, allowed: &[&str]) -> Result<(), ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        Some(Value::String(s)) => Err(ApiError::invalid(
            format!(
                "Invalid value: '{s}'. Supported values are: {}.",
                quoted(allowed)
            ),
            Some(key),
            Some("invalid_value"),
        )),
        Some(other) => Err(invalid_type(key, "a string", other)),
    }
}

pub(crate) fn quoted(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("'{v}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Validates `include` values (from the body or the `include[]` query).
pub(crate) fn check_include(values: &[String]) -> Result<(), ApiError> {
    for v in values {
        if !INCLUDE_VALUES.contains(&v.as_str()) {
            return Err(ApiError::invalid(
                format!(
                    "Invalid value: '{v}'. Supported values are: {}.",
                    quoted(INCLUDE_VALUES)
                ),
                Some("include"),
                Some("invalid_value"),
            ));
        }
    }
    Ok(())
}

/// Parses and validates a create body.
pub(crate) fn parse_create(raw: &[u8]) -> Result<CreateRequest, ApiError> {
    let value: Value =
        serde_json::from_slice(raw).map_err(|e| ApiError::bad_json(&e.to_string()))?;
    let Value::Object(body) = value else {
        return Err(ApiError::bad_json("expected a JSON object"));
    };

    let model = match body.get("model") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "Missing required parameter: 'model'.",
                Some("model"),
                Some("missing_required_parameter"),
            ));
        }
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) => return Err(invalid_type("model", "a non-empty string", other)),
    };
    let (input_text, input_items) = match body.get("input") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "Missing required parameter: 'input'.",
                Some("input"),
                Some("missing_required_parameter"),
            ));
        }
        Some(Value::String(s)) => (
            s.clone(),
            vec![user_message(json!([{"type": "input_text", "text": s}]))],
        ),
        Some(Value::Array(items)) => normalize_items(items)?,
        Some(other) => return Err(invalid_type("input", "a string or an array", other)),
    };

    let background = opt_bool(&body, "background")?.unwrap_or(false);
    let store = opt_bool(&body, "store")?.unwrap_or(true);
    let stream = opt_bool(&body, "stream")?.unwrap_or(false);
    opt_bool(&body, "parallel_tool_calls")?;
    if background && !store {
        return Err(ApiError::invalid(
            "Background sampling requires 'store' to be true; stateless background requests are not supported.",
            Some("background"),
            Some("unsupported_parameter"),
        ));
    }
    let obfuscate = match body.get("stream_options") {
        None | Some(Value::Null) => true,
        Some(Value::Object(opts)) => {
            if !stream {
                return Err(ApiError::invalid(
                    "Invalid 'stream_options': only allowed when 'stream' is true.",
                    Some("stream_options"),
                    Some("invalid_value"),
                ));
            }
            opts.get("include_obfuscation")
                .and_then(Value::as_bool)
                .unwrap_or(true)
        }
        Some(other) => return Err(invalid_type("stream_options", "an object", other)),
    };

    let metadata = check_metadata(&body)?;
    let mut overrides = match metadata.get("sim").and_then(Value::as_str) {
        Some(spec) => Overrides::parse(spec).map_err(|e| {
            ApiError::invalid(
                format!("Invalid 'metadata.sim': {e}."),
                Some("metadata.sim"),
                Some("invalid_value"),
            )
        })?,
        None => Overrides::default(),
    };
    overrides.apply_markers(&input_text).map_err(|e| {
        ApiError::invalid(
            format!("Invalid 'input': {e}."),
            Some("input"),
            Some("invalid_value"),
        )
    })?;

    let max_output_tokens = match body.get("max_output_tokens") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(m) if m >= 16 => Some(m.unsigned_abs()),
            Some(m) => {
                return Err(ApiError::invalid(
                    format!(
                        "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {m} instead."
                    ),
                    Some("max_output_tokens"),
                    Some("integer_below_min_value"),
                ));
            }
            None => {
                return Err(invalid_type(
                    "max_output_tokens",
                    "an integer",
                    &Value::Number(n.clone()),
                ));
            }
        },
        Some(other) => return Err(invalid_type("max_output_tokens", "an integer", other)),
    };
    opt_number_in(&body, "temperature", 0.0, 2.0)?;
    opt_number_in(&body, "top_p", 0.0, 1.0)?;
    opt_number_in(&body, "top_logprobs", 0.0, 20.0)?;
    enum_value(&body, "service_tier", SERVICE_TIERS)?;
    enum_value(&body, "truncation", &["auto", "disabled"])?;

    let previous_response_id = match body.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(invalid_type("previous_response_id", "a string", other)),
    };
    let conversation = match body.get("conversation") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => match o.get("id") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(invalid_type("conversation.id", "a string", other)),
            None => {
                return Err(ApiError::invalid(
                    "Missing required parameter: 'conversation.id'.",
                    Some("conversation.id"),
                    Some("missing_required_parameter"),
                ));
            }
        },
        Some(other) => return Err(invalid_type("conversation", "a string or an object", other)),
    };
    if conversation.is_some() && previous_response_id.is_some() {
        return Err(ApiError::invalid(
            "Cannot provide both 'previous_response_id' and 'conversation'.",
            Some("previous_response_id"),
            Some("mutually_exclusive_parameters"),
        ));
    }

    let include = match body.get("include") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(other) => return Err(invalid_type("include", "an array", other)),
    };
    check_include(&include)?;

    let tools = match body.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => tools.clone(),
        Some(other) => return Err(invalid_type("tools", "an array", other)),
    };
    let has_reasoning = !matches!(body.get("reasoning"), None | Some(Value::Null));
    let file_parts = parse_parts(body.get("input").unwrap_or(&Value::Null))?;
    let file_search = parse_file_search(&tools)?;
    let image_tool = ImageTool::parse(&tools);
    let code_tool = CodeTool::parse(&tools);

    let request = CreateRequest {
        body,
        model,
        input_text,
        input_items,
        background,
        store,
        stream,
        obfuscate,
        metadata,
        max_output_tokens,
        previous_response_id,
        conversation,
        has_reasoning,
        tools,
        include,
        overrides,
        file_parts,
        file_search,
        image_tool,
        code_tool,
    };
    if request.is_deep_research() {
        check_deep_research(&request.tools)?;
    }
    // Last: the checks above answer with OpenAI's own, more specific codes.
    check_contract(&request.body)?;
    check_schema(&request.body)?;
    Ok(request)
}

/// A `json_schema` text format's schema must compile and, in strict mode, keep OpenAI's rules;
/// OpenAI answers a 400 `invalid_json_schema` naming the format otherwise.
fn check_schema(body: &Map<String, Value>) -> Result<(), ApiError> {
    let Some(format) = body.get("text").and_then(|t| t.get("format")) else {
        return Ok(());
    };
    let Some(crate::structured::Format::JsonSchema {
        name,
        schema,
        strict,
    }) = crate::structured::Format::of_format(format)
    else {
        return Ok(());
    };
    match crate::structured::schema_problems(schema, strict).first() {
        None => Ok(()),
        Some(problem) => Err(ApiError::invalid(
            format!("Invalid schema for response_format '{name}': {problem}."),
            Some("text.format.schema"),
            Some("invalid_json_schema"),
        )),
    }
}

/// Checks the body against OpenAI's create-request schema, the same vendored document respool
/// checks jobs with at intake, and answers the first break as OpenAI does: a 400 naming the
/// field in OpenAI's `param` form (`input[0].content[0].text`). Fields the schema does not name
/// are let through, as respool lets them through.
fn check_contract(body: &Map<String, Value>) -> Result<(), ApiError> {
    let Some(v) = contract::check_create(body)
        .into_iter()
        .find(|v| !spec_quirk(body, &v.param()))
    else {
        return Ok(());
    };
    let param = v.param();
    let message = match v.kind() {
        ViolationKind::Missing => format!("Missing required parameter: '{param}'."),
        ViolationKind::InvalidType => format!("Invalid type for '{param}': {}.", v.message()),
        ViolationKind::InvalidValue => format!("Invalid value for '{param}': {}.", v.message()),
    };
    Err(ApiError::invalid(
        message,
        Some(&param),
        Some(v.kind().code()),
    ))
}

/// Whether a break of the vendored schema is one of its known mistakes, which OpenAI and its
/// SDKs do not follow: the schema's `MCPApprovalResponse` requires a `request_id` it does not
/// define, and the SDKs never send one (they send `approval_request_id`).
fn spec_quirk(body: &Map<String, Value>, param: &str) -> bool {
    let Some(index) = param
        .strip_prefix("input[")
        .and_then(|rest| rest.strip_suffix("].request_id"))
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return false;
    };
    body.get("input")
        .and_then(|i| i.get(index))
        .and_then(|item| item.get("type"))
        .and_then(Value::as_str)
        == Some("mcp_approval_response")
}

/// `metadata`: at most 16 string values, keys of at most 64 and values of at most 512
/// characters (also for vector stores).
pub(crate) fn check_metadata(body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let metadata = match body.get("metadata") {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => return Err(invalid_type("metadata", "an object", other)),
    };
    if metadata.len() > 16 {
        return Err(ApiError::invalid(
            format!(
                "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got an object with {} properties instead.",
                metadata.len()
            ),
            Some("metadata"),
            Some("object_above_max_properties"),
        ));
    }
    for (key, value) in &metadata {
        let key_len = key.chars().count();
        if key_len > 64 {
            return Err(ApiError::invalid(
                format!(
                    "Invalid 'metadata': key too long. Expected a key with maximum length 64, but got a key with length {key_len} instead."
                ),
                Some("metadata"),
                Some("string_above_max_length"),
            ));
        }
        let param = format!("metadata.{key}");
        let Value::String(text) = value else {
            return Err(invalid_type(&param, "a string", value));
        };
        let len = text.chars().count();
        if len > 512 {
            return Err(ApiError::invalid(
                format!(
                    "Invalid '{param}': string too long. Expected a string with maximum length 512, but got a string with length {len} instead."
                ),
                Some(&param),
                Some("string_above_max_length"),
            ));
        }
    }
    Ok(metadata)
}

fn check_deep_research(tools: &[Value]) -> Result<(), ApiError> {
    let kind = |t: &Value| {
        t.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    if !tools
        .iter()
        .any(|t| DATA_SOURCE_TOOLS.contains(&kind(t).as_str()))
    {
        return Err(ApiError::invalid(
            "Deep research models require at least one of 'web_search_preview', 'mcp', or 'file_search' tools.",
            Some("tools"),
            Some("invalid_value"),
        ));
    }
    if tools.iter().any(|t| kind(t) == "function") {
        return Err(ApiError::invalid(
            "Deep research models do not support function tools.",
            Some("tools"),
            Some("invalid_value"),
        ));
    }
    let bad_mcp = tools.iter().any(|t| {
        kind(t) == "mcp" && t.get("require_approval").and_then(Value::as_str) != Some("never")
    });
    if bad_mcp {
        return Err(ApiError::invalid(
            "Deep research models require MCP tools to use require_approval 'never'.",
            Some("tools"),
            Some("invalid_value"),
        ));
    }
    Ok(())
}

fn user_message(content: Value) -> Value {
    json!({
        "type": "message",
        "id": ids::new("msg"),
        "status": "completed",
        "role": "user",
        "content": content,
    })
}

/// Normalizes an input array into items with ids and gathers its text.
pub(crate) fn normalize_items(items: &[Value]) -> Result<(String, Vec<Value>), ApiError> {
    let mut texts = Vec::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(invalid_type(&format!("input[{i}]"), "an object", item));
        };
        let mut obj = obj.clone();
        match obj.get("content") {
            Some(Value::String(s)) => {
                texts.push(s.clone());
                let part_type = if obj.get("role").and_then(Value::as_str) == Some("assistant") {
                    "output_text"
                } else {
                    "input_text"
                };
                obj.insert("content".into(), json!([{"type": part_type, "text": s}]));
            }
            Some(Value::Array(parts)) => {
                texts.extend(
                    parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .map(str::to_owned),
                );
            }
            _ => {}
        }
        if obj.contains_key("role") && !obj.contains_key("type") {
            obj.insert("type".into(), json!("message"));
        }
        if !obj.contains_key("id") {
            let prefix = match obj.get("type").and_then(Value::as_str) {
                Some("function_call_output") => "fco",
                Some("mcp_approval_response") => "mcpa",
                Some("function_call") => "fc",
                _ => "msg",
            };
            obj.insert("id".into(), json!(ids::new(prefix)));
        }
        out.push(Value::Object(obj));
    }
    Ok((texts.join("\n"), out))
}
