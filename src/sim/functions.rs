//! Function calling (`docs/upstream-api.md` §1.5 `function_call`, §2.5 "function"): a create
//! whose `tools` has `function` tools behaves like a model that calls them. Without outputs to
//! answer, the response ends `completed` with one `function_call` item per function (in tool
//! order; only the first with `parallel_tool_calls: false`) and no message; its `arguments`
//! are a JSON string that the function's `parameters` schema accepts, made from the input by
//! the structured-output generator. A follow-up create chained with `previous_response_id`
//! carries a `function_call_output` per call; the model then answers, quoting each output.
//!
//! `tool_choice` is honoured: `none` calls nothing, `required` always calls, `{"type":
//! "function", "name"}` calls only that one, `auto` (the default) calls while fewer than
//! `function_turns=N` (default 1) function-call turns directly precede this one in the chain.
//!
//! The checks of outputs against the chain (`check_outputs`) answer OpenAI's 400s:
//! `No tool call found for function call output with call_id call_….` (param `input`, code
//! null, as reported by clients of the real API) and `No tool output found for function call
//! call_….` (param `input`: UNCONFIRMED).

use rand::Rng;
use serde_json::{Value, json};

use super::chain::{Context, message_text};
use super::error::ApiError;
use super::ids;
use super::output::{Step, ev, obfuscation, with_obfuscation};
use super::validate::CreateRequest;

/// Function-call turns before the model answers when no `function_turns=N` says otherwise.
pub(crate) const DEFAULT_FUNCTION_TURNS: usize = 1;
/// How many characters of one output the answer quotes.
const QUOTED_OUTPUT_CHARS: usize = 4000;
/// Characters per `response.function_call_arguments.delta`.
const DELTA_CHARS: usize = 12;

/// One `function_call` the model makes.
#[derive(Debug, Clone)]
pub(crate) struct PlannedFunctionCall {
    pub id: String,
    pub call_id: String,
    pub name: String,
    /// A JSON object as a string.
    pub arguments: String,
}

/// One `function_call_output` the create carries, with the name of the function it answers.
#[derive(Debug, Clone)]
pub(crate) struct Answered {
    pub call_id: String,
    pub name: String,
    /// The output as text (a content array's text parts joined).
    pub output: String,
}

/// What a response does with its functions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Functions {
    /// The calls it makes (then it ends without a message).
    pub calls: Vec<PlannedFunctionCall>,
    /// The outputs its input carried (the answer quotes them).
    pub answered: Vec<Answered>,
}

fn kind(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The text of a `function_call_output.output`: a string, or a content array's parts.
fn output_text(output: Option<&Value>) -> String {
    match output {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match kind(p) {
                "input_image" => "[image]".to_owned(),
                "input_file" => "[file]".to_owned(),
                _ => p
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) if !other.is_null() => other.to_string(),
        _ => String::new(),
    }
}

/// Checks the create's `function_call_output` items against the chain: each must answer a
/// `function_call` of the chain (or of the input itself), and each call of the previous
/// response must be answered. Returns what they answered, in input order.
pub(crate) fn check_outputs(req: &CreateRequest, ctx: &Context) -> Result<Vec<Answered>, ApiError> {
    let in_input: Vec<(&str, &str)> = req
        .input_items
        .iter()
        .filter(|i| kind(i) == "function_call")
        .map(|i| {
            (
                i.get("call_id").and_then(Value::as_str).unwrap_or(""),
                i.get("name").and_then(Value::as_str).unwrap_or(""),
            )
        })
        .collect();
    let mut answered = Vec::new();
    for item in req
        .input_items
        .iter()
        .filter(|i| kind(i) == "function_call_output")
    {
        let call_id = item.get("call_id").and_then(Value::as_str).unwrap_or("");
        let name = match ctx.calls.get(call_id) {
            Some(name) => name.clone(),
            None => match in_input.iter().find(|(id, _)| *id == call_id) {
                Some((_, name)) => (*name).to_owned(),
                None => {
                    return Err(ApiError::invalid(
                        format!(
                            "No tool call found for function call output with call_id {call_id}."
                        ),
                        Some("input"),
                        None,
                    ));
                }
            },
        };
        answered.push(Answered {
            call_id: call_id.to_owned(),
            name,
            output: output_text(item.get("output")),
        });
    }
    if let Some(missing) = ctx
        .pending_calls
        .iter()
        .find(|id| !answered.iter().any(|a| &a.call_id == *id))
    {
        return Err(ApiError::invalid(
            format!("No tool output found for function call {missing}."),
            Some("input"),
            None,
        ));
    }
    Ok(answered)
}

/// The function tools of a create, in order: `(name, parameters)`.
fn function_tools(tools: &[Value]) -> Vec<(String, Value)> {
    tools
        .iter()
        .filter(|t| kind(t) == "function")
        .filter_map(|t| {
            let name = t.get("name").and_then(Value::as_str)?;
            let parameters = t
                .get("parameters")
                .cloned()
                .unwrap_or(json!({"type": "object", "properties": {}}));
            Some((name.to_owned(), parameters))
        })
        .collect()
}

/// Checks `tool_choice` against the create's tools: a named function must be one of them.
pub(crate) fn check_choice(req: &CreateRequest) -> Result<(), ApiError> {
    let Some(Value::Object(choice)) = req.body.get("tool_choice") else {
        return Ok(());
    };
    if choice.get("type").and_then(Value::as_str) != Some("function") {
        return Ok(());
    }
    let name = choice.get("name").and_then(Value::as_str).unwrap_or("");
    if function_tools(&req.tools).iter().any(|(n, _)| n == name) {
        Ok(())
    } else {
        // UNCONFIRMED wording.
        Err(ApiError::invalid(
            format!("Tool choice 'function' with name '{name}' not found in 'tools' parameter."),
            Some("tool_choice"),
            Some("invalid_value"),
        ))
    }
}

/// Decides the calls the model makes this turn, given what the chain left and what the input
/// answered.
pub(crate) fn plan(req: &CreateRequest, ctx: &Context, answered: Vec<Answered>) -> Functions {
    let tools = function_tools(&req.tools);
    let turns = req
        .overrides
        .function_turns
        .unwrap_or(DEFAULT_FUNCTION_TURNS);
    let chosen: Vec<&(String, Value)> = match req.body.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => Vec::new(),
        Some(Value::String(s)) if s == "required" => tools.iter().collect(),
        Some(Value::Object(c)) if c.get("type").and_then(Value::as_str) == Some("function") => {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            tools.iter().filter(|(n, _)| n == name).collect()
        }
        // A hosted tool forced: no function.
        Some(Value::Object(c))
            if !matches!(
                c.get("type").and_then(Value::as_str),
                Some("allowed_tools") | None
            ) =>
        {
            Vec::new()
        }
        _ if ctx.function_turns < turns => tools.iter().collect(),
        _ => Vec::new(),
    };
    let parallel = req
        .body
        .get("parallel_tool_calls")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let take = if parallel { usize::MAX } else { 1 };
    let topic = topic(req, ctx);
    let calls = chosen
        .into_iter()
        .take(take)
        .map(|(name, parameters)| PlannedFunctionCall {
            id: ids::new("fc"),
            call_id: ids::new("call"),
            name: name.clone(),
            arguments: super::structured::example(parameters, &topic).to_string(),
        })
        .collect();
    Functions { calls, answered }
}

/// What string arguments are made from: the input's first line, or the last question of the
/// chain when the input carries only tool outputs.
fn topic(req: &CreateRequest, ctx: &Context) -> String {
    let own = req
        .input_items
        .iter()
        .filter(|i| kind(i) == "message" && i.get("role").and_then(Value::as_str) == Some("user"))
        .map(message_text)
        .find(|t| !t.trim().is_empty());
    let text = own
        .or_else(|| ctx.last_user_text.clone())
        .unwrap_or_else(|| req.input_text.clone());
    super::output::topic_of(&text)
}

impl Functions {
    /// The `function_call` item of `call` at `status`, with `arguments` written so far.
    fn item(call: &PlannedFunctionCall, status: &str, arguments: &str) -> Value {
        json!({
            "id": call.id,
            "type": "function_call",
            "status": status,
            "arguments": arguments,
            "call_id": call.call_id,
            "name": call.name,
        })
    }

    /// Adds each call to the planned output in two steps: added (in progress, no arguments)
    /// and its arguments streamed in several deltas; the arguments done and the item done.
    pub(crate) fn steps(
        &self,
        steps: &mut Vec<Step>,
        done: &mut Vec<Value>,
        obfuscate: bool,
        rng: &mut impl Rng,
    ) {
        for call in &self.calls {
            let idx = done.len();
            let mut events = vec![ev(
                "response.output_item.added",
                json!({"output_index": idx, "item": Self::item(call, "in_progress", "")}),
            )];
            let chars: Vec<char> = call.arguments.chars().collect();
            for piece in chars.chunks(DELTA_CHARS) {
                let delta: String = piece.iter().collect();
                events.push(ev(
                    "response.function_call_arguments.delta",
                    with_obfuscation(
                        json!({"item_id": call.id, "output_index": idx, "delta": delta}),
                        obfuscation(rng, obfuscate),
                    ),
                ));
            }
            let mut out = done.clone();
            out.push(Self::item(call, "in_progress", &call.arguments));
            steps.push(Step {
                events,
                output: out,
            });
            let full = Self::item(call, "completed", &call.arguments);
            done.push(full.clone());
            steps.push(Step {
                events: vec![
                    ev(
                        "response.function_call_arguments.done",
                        json!({"item_id": call.id, "output_index": idx, "arguments": call.arguments, "name": call.name}),
                    ),
                    ev(
                        "response.output_item.done",
                        json!({"output_index": idx, "item": full}),
                    ),
                ],
                output: done.clone(),
            });
        }
    }

    /// Appends to the answer what each function returned (nothing without outputs).
    pub(crate) fn append_text(&self, text: &mut String) {
        if self.answered.is_empty() {
            return;
        }
        text.push_str("## Function results\n\n");
        for a in &self.answered {
            let n = a.output.chars().count();
            let said = if n == 0 {
                "nothing (an empty output)".to_owned()
            } else if n > QUOTED_OUTPUT_CHARS {
                let head: String = a.output.chars().take(QUOTED_OUTPUT_CHARS).collect();
                format!("\"{head}…\" ({n} characters in all)")
            } else {
                format!("\"{}\"", a.output)
            };
            text.push_str(&format!(
                "- `{}` ({}) returned {said}.\n",
                a.name, a.call_id
            ));
        }
        text.push('\n');
    }

    /// The characters the model wrote for the calls (their arguments), for usage.
    pub(crate) fn written_chars(&self) -> usize {
        self.calls.iter().map(|c| c.arguments.chars().count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> CreateRequest {
        super::super::validate::parse_create(body.to_string().as_bytes()).expect("valid create")
    }

    fn weather() -> Value {
        json!({"type": "function", "name": "get_weather", "strict": true, "parameters": {
            "type": "object", "additionalProperties": false, "required": ["location", "unit"],
            "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}}})
    }

    fn time() -> Value {
        json!({"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}})
    }

    fn names(f: &Functions) -> Vec<&str> {
        f.calls.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn calls_follow_tool_choice_and_parallel_tool_calls() {
        let ctx = Context::default();
        let plan_of = |extra: Value| {
            let mut body = json!({"model": "gpt-5", "input": "Wetter in Zürich?", "tools": [weather(), time()]});
            if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
                b.extend(extra);
            }
            plan(&request(body), &ctx, Vec::new())
        };
        let all = plan_of(json!({}));
        assert_eq!(names(&all), ["get_weather", "get_time"]);
        let args: Value = serde_json::from_str(&all.calls[0].arguments).expect("json");
        assert!(
            args["location"]
                .as_str()
                .expect("a string")
                .contains("Wetter in Zürich")
        );
        assert!(args["unit"] == "c" || args["unit"] == "f");
        assert!(all.calls[0].id.starts_with("fc_") && all.calls[0].call_id.starts_with("call_"));
        assert_eq!(
            names(&plan_of(json!({"parallel_tool_calls": false}))),
            ["get_weather"]
        );
        assert!(plan_of(json!({"tool_choice": "none"})).calls.is_empty());
        assert_eq!(
            names(&plan_of(
                json!({"tool_choice": {"type": "function", "name": "get_time"}})
            )),
            ["get_time"]
        );
        assert!(
            plan_of(json!({"metadata": {"sim": "function_turns=0"}}))
                .calls
                .is_empty()
        );
    }

    #[test]
    fn outputs_must_answer_the_chain() {
        let mut ctx = Context::default();
        ctx.calls.insert("call_1".into(), "get_weather".into());
        ctx.pending_calls = vec!["call_1".into()];
        let with =
            |input: Value| check_outputs(&request(json!({"model": "gpt-5", "input": input})), &ctx);
        let ok = with(json!([{"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "3°C"}]}]))
            .expect("answers the call");
        assert_eq!(
            (ok[0].name.as_str(), ok[0].output.as_str()),
            ("get_weather", "3°C")
        );
        let unknown =
            with(json!([{"type": "function_call_output", "call_id": "call_9", "output": "x"}]))
                .expect_err("unknown call");
        assert_eq!(
            unknown.message,
            "No tool call found for function call output with call_id call_9."
        );
        assert_eq!(unknown.param.as_deref(), Some("input"));
        let missing = with(json!("Any news?")).expect_err("unanswered call");
        assert_eq!(
            missing.message,
            "No tool output found for function call call_1."
        );
    }

    #[test]
    fn the_answer_quotes_each_output() {
        let f = Functions {
            calls: Vec::new(),
            answered: vec![
                Answered {
                    call_id: "call_1".into(),
                    name: "a".into(),
                    output: "Grüße".into(),
                },
                Answered {
                    call_id: "call_2".into(),
                    name: "b".into(),
                    output: String::new(),
                },
                Answered {
                    call_id: "call_3".into(),
                    name: "c".into(),
                    output: "x".repeat(5000),
                },
            ],
        };
        let mut text = String::new();
        f.append_text(&mut text);
        assert!(text.contains("`a` (call_1) returned \"Grüße\"."), "{text}");
        assert!(text.contains("returned nothing (an empty output)"));
        assert!(text.contains("(5000 characters in all)"));
    }
}
