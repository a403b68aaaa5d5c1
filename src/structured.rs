//! Structured outputs: a job that asks for JSON (`text.format` of type `json_schema` or
//! `json_object`) gets its answer parsed and checked, and a refusal is told apart from an
//! answer.
//!
//! - [`Format::of`]: what a create body (or the Response echoing it) asks for.
//! - [`schema_problems`]: what is wrong with a job's schema before it is sent: it must compile
//!   as a JSON Schema (intake refuses it otherwise), and in `strict` mode keep OpenAI's rules
//!   (every object closed with `additionalProperties: false` and requiring each of its
//!   properties). OpenAI refuses a schema that breaks them with a 400 when the job is
//!   submitted, and so does the simulator; respool warns at intake (its REST document cannot
//!   state these rules, and it promises to refuse only what the document says). That the root
//!   is an object is in the contract itself (`contract`).
//! - [`judge`]: whether a `completed` Response is an answer: a refusal, output that is not JSON
//!   or does not match the schema each give the job a distinct error code
//!   ([`REFUSAL`], [`NOT_JSON`], [`SCHEMA_MISMATCH`]) instead of a silent `completed`.
//! - [`output_json`]: the parsed answer a job exposes as `output_json`.
//!
//! A leaf: it imports nothing of respool.

use serde_json::Value;

/// The error code of a job whose model refused to answer.
pub const REFUSAL: &str = "refusal";
/// The error code of a job that asked for JSON and got text that does not parse.
pub const NOT_JSON: &str = "output_not_json";
/// The error code of a job whose JSON answer does not match its schema.
pub const SCHEMA_MISMATCH: &str = "output_schema_mismatch";

/// How many schema violations a message lists before "and N more".
const LISTED: usize = 3;
/// How many problems of a schema are reported (and missing properties named in one).
const MAX_PROBLEMS: usize = 20;

/// The structured output a request asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format<'a> {
    /// `{"type": "json_schema", "name", "schema", "strict"}`.
    JsonSchema {
        name: &'a str,
        schema: &'a Value,
        strict: bool,
    },
    /// `{"type": "json_object"}`: any JSON object.
    JsonObject,
}

impl<'a> Format<'a> {
    /// The format named by `body.text.format` (a create body, or a Response, which echoes
    /// it); `None` for plain text.
    pub fn of(body: &'a Value) -> Option<Self> {
        Self::of_format(body.pointer("/text/format")?)
    }

    /// The format a create body's `text.format` names.
    pub fn of_body(body: &'a serde_json::Map<String, Value>) -> Option<Self> {
        Self::of_format(body.get("text")?.get("format")?)
    }

    /// The format a `text.format` object names.
    pub fn of_format(format: &'a Value) -> Option<Self> {
        match format.get("type")?.as_str()? {
            "json_schema" => Some(Self::JsonSchema {
                name: format.get("name").and_then(Value::as_str).unwrap_or(""),
                schema: format.get("schema").unwrap_or(&Value::Null),
                strict: format.get("strict").and_then(Value::as_bool) == Some(true),
            }),
            "json_object" => Some(Self::JsonObject),
            _ => None,
        }
    }
}

/// `schema` compiled: linear-time patterns (`regex`, not a backtracking engine: a schema's
/// `pattern` is checked against model output on the daemon's own threads), and nothing fetched.
fn validator(
    schema: &Value,
) -> Result<jsonschema::Validator, jsonschema::ValidationError<'static>> {
    jsonschema::options()
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(schema)
}

/// What is wrong with `schema` as the schema of a structured output, each problem a sentence
/// naming where it is (`properties.address`); empty when it is fine. `strict` adds OpenAI's
/// strict-mode rules.
pub fn schema_problems(schema: &Value, strict: bool) -> Vec<String> {
    if !schema.is_object() {
        return vec!["must be a JSON Schema: an object".into()];
    }
    if let Err(e) = validator(schema) {
        return vec![format!(
            "is not a valid JSON Schema: {}",
            clip(&e.to_string())
        )];
    }
    let mut problems = Vec::new();
    if strict {
        strict_rules(schema, &mut Vec::new(), &mut problems);
    }
    problems.truncate(MAX_PROBLEMS);
    problems
}

fn is_object_schema(s: &Value) -> bool {
    match s.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => s.get("properties").is_some(),
    }
}

/// OpenAI's strict-mode rules for every object in `s`, at `path`.
fn strict_rules(s: &Value, path: &mut Vec<String>, problems: &mut Vec<String>) {
    let Some(obj) = s.as_object() else {
        return;
    };
    if problems.len() >= MAX_PROBLEMS {
        return;
    }
    let at = || {
        if path.is_empty() {
            "the root".to_string()
        } else {
            format!("`{}`", path.join("."))
        }
    };
    if is_object_schema(s) {
        if obj.get("additionalProperties") != Some(&Value::Bool(false)) {
            problems.push(format!(
                "{}: an object must set `additionalProperties: false` in strict mode",
                at()
            ));
        }
        let required: std::collections::HashSet<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let missing: Vec<&str> = obj
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| {
                p.keys()
                    .map(String::as_str)
                    .filter(|k| !required.contains(k))
                    .collect()
            })
            .unwrap_or_default();
        if !missing.is_empty() {
            let mut named = missing[..missing.len().min(MAX_PROBLEMS)].join(", ");
            if missing.len() > MAX_PROBLEMS {
                named.push_str(&format!(" and {} more", missing.len() - MAX_PROBLEMS));
            }
            problems.push(format!(
                "{}: strict mode requires every property to be listed in `required` (missing: \
                 {named}); make a property optional with a type that allows null",
                at(),
            ));
        }
    }
    let mut walk = |key: &str, sub: &Value, problems: &mut Vec<String>| {
        path.push(key.to_string());
        strict_rules(sub, path, problems);
        path.pop();
    };
    for group in ["properties", "$defs", "definitions"] {
        if let Some(map) = obj.get(group).and_then(Value::as_object) {
            for (k, sub) in map {
                walk(&format!("{group}.{k}"), sub, problems);
            }
        }
    }
    if let Some(items) = obj.get("items") {
        walk("items", items, problems);
    }
    for group in ["anyOf", "allOf", "oneOf", "prefixItems"] {
        if let Some(list) = obj.get(group).and_then(Value::as_array) {
            for (i, sub) in list.iter().enumerate() {
                walk(&format!("{group}.{i}"), sub, problems);
            }
        }
    }
}

/// The `message` items of a Response's output, in order.
pub fn messages(raw: &Value) -> impl Iterator<Item = &Value> {
    raw.get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("message"))
}

/// Every content part of every `message` of a Response's output, in order.
pub fn message_parts(raw: &Value) -> impl Iterator<Item = &Value> {
    messages(raw).flat_map(|m| {
        m.get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    })
}

/// The `output_text` parts of these messages joined: what the SDKs call `output_text`; `None`
/// when they have no such part.
pub fn text_of<'a>(messages: impl IntoIterator<Item = &'a Value>) -> Option<String> {
    let mut text = String::new();
    let mut any = false;
    for part in messages.into_iter().flat_map(|m| {
        m.get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    }) {
        if part.get("type").and_then(Value::as_str) == Some("output_text")
            && let Some(t) = part.get("text").and_then(Value::as_str)
        {
            text.push_str(t);
            any = true;
        }
    }
    any.then_some(text)
}

/// The text of the first `refusal` part of the Response's messages, if the model refused.
pub fn refusal(raw: &Value) -> Option<&str> {
    message_parts(raw)
        .find(|p| p.get("type").and_then(Value::as_str) == Some("refusal"))
        .map(|p| p.get("refusal").and_then(Value::as_str).unwrap_or(""))
}

/// The answer of a Response that asks for JSON: the `output_text` of its last `message` that
/// is not `phase: commentary` (a model may comment before it answers); `None` without one.
pub fn answer_text(raw: &Value) -> Option<String> {
    let last = messages(raw)
        .filter(|m| m.get("phase").and_then(Value::as_str) != Some("commentary"))
        .last()?;
    text_of([last])
}

/// Whether the Response's output has a `message` item at all (a response that ends in
/// function calls has none: it is not an answer to judge).
fn has_message(raw: &Value) -> bool {
    messages(raw).next().is_some()
}

/// Why a `completed` Response is not the answer its request asked for: `(code, message)`, or
/// `None` when it is. A refusal with no text beside it is not an answer; when JSON was asked for (the Response
/// echoes `text.format`), `output_text` must parse, and match the schema if there is one.
pub fn judge(raw: &Value, output_text: Option<&str>) -> Option<(&'static str, String)> {
    let answered = output_text.is_some_and(|t| !t.trim().is_empty());
    if let Some(why) = refusal(raw).filter(|_| !answered) {
        let why = why.trim();
        let message = if why.is_empty() {
            "the model refused to answer".to_string()
        } else {
            format!("the model refused to answer: {}", clip(why))
        };
        return Some((REFUSAL, message));
    }
    let format = Format::of(raw)?;
    if !has_message(raw) {
        return None;
    }
    let text = output_text.unwrap_or("");
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) if text.trim().is_empty() => {
            return Some((
                NOT_JSON,
                "the model gave no output where JSON was asked for".into(),
            ));
        }
        Err(e) => {
            return Some((NOT_JSON, format!("the output is not JSON ({e})")));
        }
    };
    match format {
        Format::JsonObject => (!value.is_object()).then(|| {
            (
                SCHEMA_MISMATCH,
                "the output is JSON but not an object".into(),
            )
        }),
        Format::JsonSchema { name, schema, .. } => {
            let validator = validator(schema).ok()?;
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| {
                    let at = e.instance_path().as_str().to_string();
                    let at = if at.is_empty() { "/".to_string() } else { at };
                    format!("at {at}: {}", clip(&e.to_string()))
                })
                .collect();
            if errors.is_empty() {
                return None;
            }
            let mut message = format!(
                "the output does not match the schema `{name}`: {}",
                errors[..errors.len().min(LISTED)].join("; ")
            );
            if errors.len() > LISTED {
                message.push_str(&format!(" (and {} more)", errors.len() - LISTED));
            }
            Some((SCHEMA_MISMATCH, message))
        }
    }
}

/// The parsed answer of a job whose request (`text.format`) asks for JSON; `None` for a plain
/// text job, or when there is no output or it is not a JSON object (OpenAI's structured
/// outputs are objects at the root).
pub fn output_json(
    request: &serde_json::Map<String, Value>,
    output_text: Option<&str>,
) -> Option<Value> {
    Format::of_body(request)?;
    serde_json::from_str(output_text?)
        .ok()
        .filter(Value::is_object)
}

/// At most 300 characters of `s` (a schema error can quote a whole value).
fn clip(s: &str) -> String {
    const MAX: usize = 300;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn strict_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "year": {"type": "integer", "minimum": 1900},
                "tags": {"type": "array", "items": {"type": "string"}},
                "author": {"type": ["object", "null"], "properties": {"name": {"type": "string"}},
                           "required": ["name"], "additionalProperties": false},
            },
            "required": ["title", "year", "tags", "author"],
            "additionalProperties": false,
        })
    }

    fn response(format: Value, text: &str) -> Value {
        json!({"id": "resp_1", "status": "completed", "text": {"format": format},
               "output": [{"type": "message", "role": "assistant",
                           "content": [{"type": "output_text", "text": text, "annotations": []}]}]})
    }

    #[test]
    fn a_good_strict_schema_has_no_problems() {
        assert!(schema_problems(&strict_schema(), true).is_empty());
    }

    #[test]
    fn strict_mode_names_each_open_or_partly_required_object() {
        let mut s = strict_schema();
        s["properties"]["author"]["additionalProperties"] = json!(true);
        s["required"] = json!(["title"]);
        let p = schema_problems(&s, true);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p.iter()
                .any(|m| m.contains("`properties.author`") && m.contains("additionalProperties"))
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("the root") && m.contains("missing: year, tags, author"))
        );
        // Not strict: the same schema is fine.
        assert!(schema_problems(&s, false).is_empty());
    }

    #[test]
    fn strict_mode_walks_from_the_root() {
        let p = schema_problems(
            &json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            true,
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().all(|m| m.starts_with("the root")), "{p:?}");
    }

    #[test]
    fn a_huge_schema_is_checked_quickly_and_reported_briefly() {
        let props: serde_json::Map<String, Value> = (0..100_000)
            .map(|i| (format!("p{i}"), json!({"type": "string"})))
            .collect();
        let schema = json!({"type": "object", "properties": props, "additionalProperties": false});
        let p = schema_problems(&schema, true);
        assert_eq!(p.len(), 1, "{}", p.len());
        assert!(p[0].contains("and 99980 more"), "{}", &p[0][..200]);
        assert!(p[0].len() < 1000);
    }

    #[test]
    fn the_answer_is_the_last_message_not_the_commentary() {
        let format = json!({"type": "json_schema", "name": "n", "schema": {"type": "object"}});
        let raw = json!({"text": {"format": format}, "output": [
            {"type": "message", "phase": "commentary", "content": [{"type": "output_text", "text": "Let me look."}]},
            {"type": "web_search_call"},
            {"type": "message", "phase": "final_answer", "content": [{"type": "output_text", "text": "{\"a\": 1}"}]}]});
        assert_eq!(answer_text(&raw).as_deref(), Some("{\"a\": 1}"));
        assert_eq!(judge(&raw, answer_text(&raw).as_deref()), None);
        // A response that ends in function calls has no answer to judge.
        let calls =
            json!({"text": {"format": format}, "output": [{"type": "function_call", "name": "f"}]});
        assert_eq!(judge(&calls, None), None);
    }

    #[test]
    fn patterns_are_checked_in_linear_time() {
        // A backreference needs a backtracking engine: refused at intake, never run on output.
        let p = schema_problems(
            &json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "(a)\\1"}}}),
            false,
        );
        assert!(p[0].starts_with("is not a valid JSON Schema"), "{p:?}");
        let ok = schema_problems(
            &json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "^[a-z]+$"}}}),
            false,
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn a_schema_that_does_not_compile_is_named() {
        let p = schema_problems(&json!({"type": "strnig"}), false);
        assert!(p[0].starts_with("is not a valid JSON Schema"), "{p:?}");
        assert!(!schema_problems(&json!("object"), false).is_empty());
        // A remote reference is not fetched: it does not compile.
        let remote = json!({"$ref": "https://example.com/schema.json"});
        assert!(!schema_problems(&remote, false).is_empty());
    }

    #[test]
    fn a_refusal_is_not_an_answer() {
        let raw = json!({"status": "completed", "output": [{"type": "message",
            "content": [{"type": "refusal", "refusal": "I can't help with that."}]}]});
        let (code, message) = judge(&raw, None).unwrap();
        assert_eq!(code, REFUSAL);
        assert!(message.ends_with("I can't help with that."), "{message}");
        // Text beside a refusal part is an answer (a partial refusal); so is plain text.
        let mixed = json!({"output": [{"type": "message", "content": [
            {"type": "output_text", "text": "Part one."}, {"type": "refusal", "refusal": "not part two"}]}]});
        assert_eq!(judge(&mixed, Some("Part one.")), None);
        assert_eq!(judge(&mixed, Some("  ")).unwrap().0, REFUSAL);
        let plain = json!({"output": [{"type": "message", "content": [{"type": "output_text", "text": "hi"}]}]});
        assert_eq!(judge(&plain, Some("hi")), None);
    }

    #[test]
    fn json_answers_are_parsed_and_checked_against_the_echoed_schema() {
        let format = json!({"type": "json_schema", "name": "book", "schema": strict_schema(), "strict": true});
        let good = r#"{"title": "Dune", "year": 1965, "tags": ["sf"], "author": null}"#;
        assert_eq!(judge(&response(format.clone(), good), Some(good)), None);

        let bad = r#"{"title": "Dune", "year": 1066, "tags": "sf"}"#;
        let (code, message) = judge(&response(format.clone(), bad), Some(bad)).unwrap();
        assert_eq!(code, SCHEMA_MISMATCH);
        assert!(message.contains("`book`"), "{message}");
        assert!(message.contains("/year"), "{message}");
        assert!(message.contains("/tags"), "{message}");

        let (code, _) = judge(
            &response(format.clone(), "Sure! Here it is"),
            Some("Sure! Here it is"),
        )
        .unwrap();
        assert_eq!(code, NOT_JSON);
        let (code, message) = judge(&response(format, ""), Some("")).unwrap();
        assert_eq!(code, NOT_JSON);
        assert!(message.contains("no output"), "{message}");

        let obj = json!({"type": "json_object"});
        assert_eq!(judge(&response(obj.clone(), "{}"), Some("{}")), None);
        assert_eq!(
            judge(&response(obj, "[1]"), Some("[1]")).unwrap().0,
            SCHEMA_MISMATCH
        );
    }

    #[test]
    fn many_violations_are_counted_not_all_listed() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"},
            "d": {"type": "string"}, "e": {"type": "string"}}});
        let format = json!({"type": "json_schema", "name": "x", "schema": schema});
        let text = r#"{"a":1,"b":2,"c":3,"d":4,"e":5}"#;
        let (_, message) = judge(&response(format, text), Some(text)).unwrap();
        assert!(message.ends_with("(and 2 more)"), "{message}");
    }

    #[test]
    fn output_json_only_for_jobs_that_ask_for_json() {
        let body = |v: Value| v.as_object().cloned().unwrap();
        let request = body(json!({"text": {"format": {"type": "json_object"}}}));
        assert_eq!(
            output_json(&request, Some(r#"{"a": 1}"#)),
            Some(json!({"a": 1}))
        );
        assert_eq!(output_json(&request, Some("nope")), None);
        assert_eq!(output_json(&request, Some("[1, 2]")), None);
        assert_eq!(output_json(&request, None), None);
        let plain = body(json!({"input": "x", "text": {"format": {"type": "text"}}}));
        assert_eq!(output_json(&plain, Some(r#"{"a": 1}"#)), None);
    }
}
