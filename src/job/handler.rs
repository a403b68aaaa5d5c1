//! Jobs that act (issue "Jobs that act and show progress"): the function handlers a job or the
//! config names, and the actions a finished response asks for.
//!
//! A response that ends with `function_call` items waits for their outputs; one that ends with
//! an `mcp_approval_request` waits for an approval. respool answers each: a function by its
//! handler (a command or an HTTP endpoint, [`HandlerSpec`]), or by a person
//! (`requires_action`); an approval by a policy of the config, or by a person. The answers go
//! upstream as the input of the job's next turn ([`answer_items`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

/// The longest a handler may run.
pub const MAX_HANDLER_TIMEOUT: Duration = Duration::from_secs(3600);
/// The most output a handler may be allowed (what OpenAI takes as one function output is
/// about 10 MB).
pub const MAX_HANDLER_OUTPUT: u64 = 10 * 1024 * 1024;
/// The most turns a job may be given.
pub const MAX_TURNS: u32 = 100;

/// How to answer a function call: run a command or POST to a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec {
    /// The program and its arguments (no shell). The call's arguments (JSON) are its stdin;
    /// its stdout is the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// A URL the arguments are POSTed to (`application/json`); the answer's body is the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Headers of the `http` request (the config's handlers only: they may hold credentials).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Past this the command is killed (the request abandoned) and the call has failed.
    #[serde(
        default = "default_timeout",
        deserialize_with = "de_secs",
        serialize_with = "ser_secs"
    )]
    pub timeout: Duration,
    /// The command's working directory (default: the daemon's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables for the command. It does not inherit the daemon's
    /// environment (which holds secrets): only PATH, HOME, USER, locale, TZ and TMPDIR, the
    /// `RESPOOL_*` variables and these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Output past this many bytes fails the call.
    #[serde(default = "default_max_output")]
    pub max_output_bytes: u64,
    /// Whether running it twice for one call is harmless: after a crash mid-run, an idempotent
    /// handler runs again; any other is not run again and the call gets an error output.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// What a failed call does: `output` (the default) tells the model what went wrong as the
    /// call's output; `fail` ends the job `failed`.
    #[serde(default, skip_serializing_if = "OnError::is_default")]
    pub on_error: OnError,
    /// `text` (the default) takes any UTF-8 output; `json` requires the output to be JSON.
    #[serde(default, skip_serializing_if = "OutputKind::is_default")]
    pub output: OutputKind,
}

/// What a failed handler does to its job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The model is told, as the call's output, and decides.
    #[default]
    Output,
    /// The job ends `failed` with code `handler_failed`.
    Fail,
}

impl OnError {
    fn is_default(&self) -> bool {
        *self == Self::Output
    }
}

/// What a handler's output must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    #[default]
    Text,
    Json,
}

impl OutputKind {
    fn is_default(&self) -> bool {
        *self == Self::Text
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_max_output() -> u64 {
    1024 * 1024
}

fn de_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => crate::clock::parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    // Milliseconds would be lost as whole seconds; a handler's timeout is checked to be whole
    // milliseconds at least, and written as a duration string when not whole seconds.
    if d.subsec_nanos() == 0 {
        s.serialize_u64(d.as_secs())
    } else {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }
}

impl HandlerSpec {
    /// Parses and checks one handler (`where_` names it in errors, e.g. `handlers.get_weather`).
    /// `headers_allowed`: only the config's handlers may carry headers.
    pub fn parse(v: Value, headers_allowed: bool) -> Result<Self, String> {
        let spec: HandlerSpec = serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            if path == "." || path.is_empty() {
                e.inner().to_string()
            } else {
                format!("`{path}`: {}", e.inner())
            }
        })?;
        spec.check(headers_allowed)?;
        Ok(spec)
    }

    /// The rules serde cannot say.
    pub fn check(&self, headers_allowed: bool) -> Result<(), String> {
        match (&self.command, &self.http) {
            (None, None) => {
                return Err(
                    "needs `command` (a program and its arguments) or `http` (a URL)".into(),
                );
            }
            (Some(_), Some(_)) => {
                return Err("takes `command` or `http`, not both".into());
            }
            (Some(argv), None) => {
                if argv.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err("`command` needs a program (its first element)".into());
                }
                if argv.iter().any(|a| a.contains('\0')) {
                    return Err("`command` must not hold NUL characters".into());
                }
                if !self.headers.is_empty() {
                    return Err("`headers` go with `http`, not `command`".into());
                }
            }
            (None, Some(url)) => {
                let parsed = url::Url::parse(url).map_err(|e| format!("`http`: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err("`http` must be an http:// or https:// URL".into());
                }
                if self.cwd.is_some() || !self.env.is_empty() {
                    return Err("`cwd` and `env` go with `command`, not `http`".into());
                }
                if !headers_allowed && !self.headers.is_empty() {
                    return Err(
                        "`headers` can be set only in the config's `functions:` (a job's spec is \
                         shown to every reader of the API, and headers hold credentials)"
                            .into(),
                    );
                }
            }
        }
        if self.timeout.is_zero() || self.timeout > MAX_HANDLER_TIMEOUT {
            return Err("`timeout` must be more than 0 and at most 1h".into());
        }
        if self.max_output_bytes == 0 || self.max_output_bytes > MAX_HANDLER_OUTPUT {
            return Err(format!(
                "`max_output_bytes` must be 1 to {MAX_HANDLER_OUTPUT}"
            ));
        }
        Ok(())
    }

    /// How the timeline names it: the program, or the URL's host.
    pub fn describe(&self) -> String {
        match (&self.command, &self.http) {
            (Some(argv), _) => format!("`{}`", argv.first().map_or("", String::as_str)),
            (_, Some(url)) => url::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(|h| format!("POST to {h}")))
                .unwrap_or_else(|| "POST".into()),
            _ => "nothing".into(),
        }
    }
}

/// A function or an approval a finished response asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Asked {
    /// `call_…` of a function call, `mcpr_…` of an approval request.
    pub item_id: String,
    pub kind: ActionKind,
    /// The function's name, or the MCP tool's.
    pub name: String,
    /// The MCP server's label (approvals).
    pub server_label: Option<String>,
    /// The arguments, a JSON string as the model wrote it.
    pub arguments: String,
}

/// What kind of answer an action wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// A `function_call`: its output.
    Function,
    /// An `mcp_approval_request`: approve or deny.
    Approval,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Function => "function",
            Self::Approval => "approval",
        }
    }
}

impl TryFrom<String> for ActionKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "function" => Ok(Self::Function),
            "approval" => Ok(Self::Approval),
            other => Err(format!("unknown action kind `{other}`")),
        }
    }
}

/// The function calls and approval requests a response's output ends with, in output order.
/// Items without an id (malformed) are skipped; an id seen twice is taken once.
pub fn asked_of(response: &Value) -> Vec<Asked> {
    let mut out: Vec<Asked> = Vec::new();
    for item in response
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
        let asked = match item.get("type").and_then(Value::as_str) {
            Some("function_call") => text("call_id").map(|id| Asked {
                item_id: id,
                kind: ActionKind::Function,
                name: text("name").unwrap_or_default(),
                server_label: None,
                arguments: text("arguments").unwrap_or_else(|| "{}".into()),
            }),
            Some("mcp_approval_request") => text("id").map(|id| Asked {
                item_id: id,
                kind: ActionKind::Approval,
                name: text("name").unwrap_or_default(),
                server_label: text("server_label"),
                arguments: text("arguments").unwrap_or_else(|| "{}".into()),
            }),
            _ => None,
        };
        if let Some(a) = asked
            && !a.item_id.is_empty()
            && !out.iter().any(|o| o.item_id == a.item_id)
        {
            out.push(a);
        }
    }
    out
}

/// An answered action, as the next turn's input takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub item_id: String,
    pub kind: ActionKind,
    /// A function's output, or an approval's answer (`{"approve": bool, "reason"?}`).
    pub output: String,
}

/// The input items that carry `answers` upstream: `function_call_output` and
/// `mcp_approval_response` items, in the order the response asked.
pub fn answer_items(answers: &[Answer]) -> Vec<Value> {
    answers
        .iter()
        .map(|a| match a.kind {
            ActionKind::Function => json!({
                "type": "function_call_output",
                "call_id": a.item_id,
                "output": a.output,
            }),
            ActionKind::Approval => {
                let answer: Value = serde_json::from_str(&a.output).unwrap_or(Value::Null);
                let mut item = json!({
                    "type": "mcp_approval_response",
                    "approval_request_id": a.item_id,
                    "approve": answer.get("approve").and_then(Value::as_bool).unwrap_or(false),
                });
                if let Some(reason) = answer.get("reason").and_then(Value::as_str)
                    && let Some(o) = item.as_object_mut()
                {
                    o.insert("reason".into(), reason.into());
                }
                item
            }
        })
        .collect()
}

/// Makes a job's create body the create of its next turn: the answers as its input, chained to
/// the turn before (`previous_response_id`), or, for a job on a conversation, on that
/// conversation (which holds the turn before; OpenAI takes one or the other, not both).
pub fn next_turn_body(
    body: &mut serde_json::Map<String, Value>,
    previous: &str,
    answers: &[Answer],
    tag: &str,
) {
    body.insert("input".into(), Value::Array(answer_items(answers)));
    if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert(
            super::METADATA_JOB_KEY.into(),
            Value::String(tag.to_string()),
        );
    }
    let on_conversation = !matches!(body.get("conversation"), None | Some(Value::Null));
    if on_conversation {
        body.remove("previous_response_id");
    } else {
        body.insert(
            "previous_response_id".into(),
            Value::String(previous.to_string()),
        );
    }
}

/// An approval's stored answer.
pub fn approval_output(approve: bool, reason: Option<&str>) -> String {
    let mut v = json!({"approve": approve});
    if let (Some(r), Some(o)) = (reason, v.as_object_mut()) {
        o.insert("reason".into(), r.into());
    }
    v.to_string()
}

/// Two usage objects added up: every number at the same path summed (a number only one has is
/// kept), anything else taken from `b` (the later one). Used to count every turn of a job.
pub fn sum_usage(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_u64(), y.as_u64()) {
            (Some(x), Some(y)) => Value::from(x.saturating_add(y)),
            _ => b.clone(),
        },
        (Value::Object(x), Value::Object(y)) => {
            let mut out = x.clone();
            for (k, v) in y {
                let merged = match x.get(k) {
                    Some(prev) => sum_usage(prev, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (_, Value::Null) => a.clone(),
        _ => b.clone(),
    }
}

/// An MCP approval policy of the config: approves (or denies) a server's tools at once.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// The MCP server's `server_label`.
    pub server: String,
    /// Its tools the policy covers; all when absent.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// Approve (the default) or deny.
    #[serde(default = "yes")]
    pub approve: bool,
}

fn yes() -> bool {
    true
}

impl ApprovalPolicy {
    /// Whether this policy answers a request for `tool` on `server`.
    pub fn covers(&self, server: Option<&str>, tool: &str) -> bool {
        server == Some(self.server.as_str())
            && self
                .tools
                .as_ref()
                .is_none_or(|t| t.iter().any(|n| n == tool))
    }
}

/// The answer of the first policy that covers an approval request, if any.
pub fn policy_answer<'a>(
    policies: &'a [ApprovalPolicy],
    asked: &Asked,
) -> Option<&'a ApprovalPolicy> {
    policies
        .iter()
        .find(|p| p.covers(asked.server_label.as_deref(), &asked.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn handlers_parse_with_clear_errors() {
        let ok = HandlerSpec::parse(
            json!({"command": ["python3", "w.py"], "timeout": "5s"}),
            false,
        )
        .unwrap();
        assert_eq!(ok.timeout, Duration::from_secs(5));
        assert_eq!(ok.on_error, OnError::Output);
        let err = |v: Value| HandlerSpec::parse(v, false).unwrap_err();
        assert!(err(json!({})).contains("needs `command`"));
        assert!(err(json!({"command": []})).contains("needs a program"));
        assert!(err(json!({"command": ["a"], "http": "https://x"})).contains("not both"));
        assert!(err(json!({"http": "ftp://x"})).contains("http://"));
        assert!(err(json!({"http": "https://x", "headers": {"a": "b"}})).contains("config"));
        assert!(
            HandlerSpec::parse(json!({"http": "https://x", "headers": {"a": "b"}}), true).is_ok()
        );
        assert!(err(json!({"command": ["a"], "timeout": "2h"})).contains("at most 1h"));
        assert!(err(json!({"command": ["a"], "tiemout": 3})).contains("tiemout"));
        assert!(err(json!({"command": ["a"], "on_error": "explode"})).contains("on_error"));
        // A spec stores and reads back as it was.
        let back: HandlerSpec = serde_json::from_value(serde_json::to_value(&ok).unwrap()).unwrap();
        assert_eq!(back, ok);
    }

    #[test]
    fn asked_takes_calls_and_approvals_in_order() {
        let r = json!({"output": [
            {"type": "reasoning", "id": "rs_1"},
            {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "get_weather", "arguments": "{\"city\":\"Zürich\"}"},
            {"type": "mcp_approval_request", "id": "mcpr_1", "server_label": "docs", "name": "search", "arguments": "{}"},
            {"type": "function_call", "id": "fc_2", "call_id": "call_a", "name": "dup", "arguments": "{}"},
            {"type": "function_call", "id": "fc_3", "name": "no_id"},
        ]});
        let asked = asked_of(&r);
        assert_eq!(asked.len(), 2);
        assert_eq!(asked[0].item_id, "call_a");
        assert_eq!(asked[0].arguments, "{\"city\":\"Zürich\"}");
        assert_eq!(asked[1].kind, ActionKind::Approval);
        assert_eq!(asked[1].server_label.as_deref(), Some("docs"));
        assert!(asked_of(&json!({"output": [{"type": "message"}]})).is_empty());
        assert!(asked_of(&json!(null)).is_empty());
    }

    #[test]
    fn answers_become_input_items() {
        let items = answer_items(&[
            Answer {
                item_id: "call_a".into(),
                kind: ActionKind::Function,
                output: "".into(),
            },
            Answer {
                item_id: "mcpr_1".into(),
                kind: ActionKind::Approval,
                output: approval_output(false, Some("not on Fridays")),
            },
        ]);
        assert_eq!(
            items[0],
            json!({"type": "function_call_output", "call_id": "call_a", "output": ""})
        );
        assert_eq!(
            items[1],
            json!({"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": false, "reason": "not on Fridays"})
        );
    }

    #[test]
    fn usage_adds_up_over_turns() {
        let a = json!({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 20}, "total_tokens": 150});
        let b = json!({"input_tokens": 300, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 305});
        assert_eq!(
            sum_usage(&a, &b),
            json!({"input_tokens": 400, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 55, "output_tokens_details": {"reasoning_tokens": 20}, "total_tokens": 455})
        );
        assert_eq!(sum_usage(&a, &Value::Null), a);
        assert_eq!(sum_usage(&json!({}), &b), b);
    }

    #[test]
    fn policies_cover_servers_and_tools() {
        let p = ApprovalPolicy {
            server: "docs".into(),
            tools: Some(vec!["search".into()]),
            approve: true,
        };
        assert!(p.covers(Some("docs"), "search"));
        assert!(!p.covers(Some("docs"), "delete"));
        assert!(!p.covers(Some("other"), "search"));
        assert!(!p.covers(None, "search"));
    }

    proptest! {
        /// Whatever a response's output holds, reading what it asks never panics, and every
        /// id it returns is one of the output's own and appears once.
        #[test]
        fn asked_never_panics(items in proptest::collection::vec(
            (prop_oneof![Just("function_call"), Just("mcp_approval_request"), Just("message"), Just("")],
             proptest::option::of("[a-z_]{0,6}"), proptest::option::of(".{0,10}")), 0..8)) {
            let output: Vec<Value> = items.iter().map(|(t, id, args)| json!({
                "type": t, "call_id": id, "id": id, "name": "f", "arguments": args,
            })).collect();
            let asked = asked_of(&json!({"output": output}));
            let mut seen = std::collections::HashSet::new();
            for a in &asked {
                prop_assert!(seen.insert(a.item_id.clone()));
                prop_assert!(items.iter().any(|(_, id, _)| id.as_deref() == Some(a.item_id.as_str())));
            }
        }
    }
}
