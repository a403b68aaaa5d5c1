//! What a create inherits from the turns before it ([`Context`]): the responses of its
//! `previous_response_id` chain, or the items of its conversation (`docs/upstream-api.md`
//! §6.1, §6.2). The model sees those turns (the report says what came before), the function
//! calls and MCP approval requests they made are what a `function_call_output` or an
//! `mcp_approval_response` may answer, and the function-call turns that directly precede this
//! one decide whether the model calls functions again (`function_turns=N`).
//!
//! `state.rs` builds a context from its store; this file only reads items.

use std::collections::HashMap;

use serde_json::Value;

/// How many earlier turns the report quotes, at most.
const QUOTED_TURNS: usize = 6;
/// How many characters of each earlier turn the report quotes.
const QUOTED_CHARS: usize = 120;

/// One earlier response as the chain holds it: what it was given and what it answered.
pub(crate) struct Turn<'a> {
    pub input: &'a [Value],
    pub output: &'a [Value],
}

/// What the turns before a create leave it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Context {
    /// The earlier turns, oldest first, as `(role, text)`.
    pub earlier: Vec<(String, String)>,
    /// Every `function_call` of the earlier turns: `call_id` → function name.
    pub calls: HashMap<String, String>,
    /// The `call_id`s of the immediately previous response's `function_call`s, in order: each
    /// needs a `function_call_output` in the next create's input.
    pub pending_calls: Vec<String>,
    /// How many turns directly before this one ended calling functions.
    pub function_turns: usize,
    /// Every `mcp_approval_request` item of the earlier turns, by id.
    pub approval_requests: HashMap<String, Value>,
    /// The last user text of the earlier turns (what a follow-up that carries only tool
    /// outputs is about).
    pub last_user_text: Option<String>,
}

fn kind(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or("")
}

fn str_of<'a>(item: &'a Value, key: &str) -> &'a str {
    item.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The text of a message item (`input_text`/`output_text` parts, or a string content).
pub(crate) fn message_text(item: &Value) -> String {
    match item.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

impl Context {
    /// The context of a create chained to `turns` (oldest first, the previous response
    /// last).
    pub(crate) fn of_chain(turns: &[Turn<'_>]) -> Self {
        let mut ctx = Self::default();
        for turn in turns {
            ctx.absorb(turn.input);
            ctx.absorb(turn.output);
        }
        if let Some(last) = turns.last() {
            ctx.pending_calls = last
                .output
                .iter()
                .filter(|i| kind(i) == "function_call")
                .map(|i| str_of(i, "call_id").to_owned())
                .collect();
        }
        ctx.function_turns = turns
            .iter()
            .rev()
            .take_while(|t| t.output.iter().any(|i| kind(i) == "function_call"))
            .count();
        ctx
    }

    /// The context of a create on a conversation holding `items` (oldest first).
    pub(crate) fn of_conversation(items: &[Value]) -> Self {
        let mut ctx = Self::default();
        ctx.absorb(items);
        ctx
    }

    fn absorb(&mut self, items: &[Value]) {
        for item in items {
            match kind(item) {
                "function_call" => {
                    self.calls.insert(
                        str_of(item, "call_id").to_owned(),
                        str_of(item, "name").to_owned(),
                    );
                }
                "mcp_approval_request" => {
                    self.approval_requests
                        .insert(str_of(item, "id").to_owned(), item.clone());
                }
                "message" | "" if item.get("content").is_some() => {
                    let role = item
                        .get("role")
                        .and_then(Value::as_str)
                        .unwrap_or("user")
                        .to_owned();
                    let text = message_text(item);
                    if text.trim().is_empty() {
                        continue;
                    }
                    if role == "user" {
                        self.last_user_text = Some(text.clone());
                    }
                    self.earlier.push((role, text));
                }
                _ => {}
            }
        }
    }

    /// "Earlier in this conversation: …", quoting the last few turns; empty without any.
    pub(crate) fn earlier_text(&self) -> String {
        if self.earlier.is_empty() {
            return String::new();
        }
        let skip = self.earlier.len().saturating_sub(QUOTED_TURNS);
        let quoted: Vec<String> = self.earlier[skip..]
            .iter()
            .map(|(role, text)| {
                let one_line = text.replace('\n', " ");
                let mut short: String = one_line.chars().take(QUOTED_CHARS).collect();
                if one_line.chars().count() > QUOTED_CHARS {
                    short.push('…');
                }
                format!("{role}: \"{}\"", short.trim())
            })
            .collect();
        format!("Earlier in this conversation: {}.\n\n", quoted.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_chain_knows_its_calls_pending_calls_and_function_turns() {
        let q = [
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Zürich?"}]}),
        ];
        let calls = [
            json!({"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"}),
        ];
        let outputs =
            [json!({"type": "function_call_output", "call_id": "call_1", "output": "3°C"})];
        let calls2 = [
            json!({"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"}),
        ];
        let ctx = Context::of_chain(&[
            Turn {
                input: &q,
                output: &calls,
            },
            Turn {
                input: &outputs,
                output: &calls2,
            },
        ]);
        assert_eq!(ctx.function_turns, 2);
        assert_eq!(ctx.pending_calls, ["call_2"]);
        assert_eq!(ctx.calls.len(), 2);
        assert_eq!(ctx.last_user_text.as_deref(), Some("Weather in Zürich?"));
        assert!(
            ctx.earlier_text()
                .starts_with("Earlier in this conversation: user: \"Weather in Zürich?\"")
        );
        let answered = [
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is cold."}]}),
        ];
        let after = Context::of_chain(&[Turn {
            input: &q,
            output: &answered,
        }]);
        assert_eq!(after.function_turns, 0);
        assert!(after.pending_calls.is_empty());
        assert_eq!(Context::default().earlier_text(), "");
    }
}
