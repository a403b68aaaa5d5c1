//! Remote MCP tools (`docs/upstream-api.md` §1.5, §2.5 "MCP"; the seed tour's "Remote MCP
//! servers"): what the API does with an `mcp` tool that needs no approval. It lists the
//! server's tools (an `mcp_list_tools` item, first in the output), then the model calls them
//! (`mcp_call` items: `search`, then `fetch` of what it found), and the answer draws on what
//! the server said.
//!
//! No network: every simulated server offers the two tools deep research asks of one
//! (`search` and `fetch`, as in the tour), and answers from the input text, so the same input
//! gives the same arguments and outputs. Nothing of a tool's `server_url`, `authorization` or
//! `headers` reaches an item or the answer: only its `server_label`.
//!
//! A call that needs approval (`require_approval` absent, OpenAI's default `always`, or a
//! filter that does not make it `never`) is not made: the response lists the server's tools,
//! makes the unattended calls before it, then ends with an `mcp_approval_request` (`mcpr_…`)
//! for it and no message. A follow-up create chained with `previous_response_id` carries an
//! `mcp_approval_response`: approved, the model makes that call (an `mcp_call` carrying its
//! `approval_request_id`, without listing the tools again) and answers; denied, it answers
//! that the call was not approved. A follow-up makes no other call (the unattended ones were
//! made in the turn that asked) and asks for no further approval. An
//! `approval_request_id` the chain does not hold is a 400 naming `input` (wording
//! UNCONFIRMED).

use rand::Rng;
use serde_json::{Value, json};

use super::chain::Context;
use super::error::ApiError;
use super::ids;
use super::output::{Step, chunks, ev, obfuscation, with_obfuscation};

/// The `mcp_list_tools.error` when listing fails (`mcp_list_error`).
fn list_error(label: &str) -> String {
    format!(
        "Error retrieving tool list from MCP server: '{label}'. Http status code: 424 (Failed Dependency)"
    )
}

/// A tool a simulated MCP server offers.
struct ServerTool {
    name: &'static str,
    description: &'static str,
    /// The one string argument of its input schema.
    argument: &'static str,
}

/// What every simulated server offers: the two tools deep research needs.
const SERVER_TOOLS: [ServerTool; 2] = [
    ServerTool {
        name: "search",
        description: "Search for documents using OpenAI Vector Store search.\nReturns a list of semantically relevant matches. Use the `fetch` tool for full content.",
        argument: "query",
    },
    ServerTool {
        name: "fetch",
        description: "Retrieve complete document content by ID after finding relevant files with `search`.",
        argument: "id",
    },
];

impl ServerTool {
    /// Its entry in `mcp_list_tools.tools`.
    fn listed(&self) -> Value {
        let title = format!(
            "{}{}",
            self.argument[..1].to_uppercase(),
            &self.argument[1..]
        );
        json!({
            "name": self.name,
            "description": self.description,
            "input_schema": {
                "type": "object",
                "required": [self.argument],
                "properties": {self.argument: {"type": "string", "title": title}},
            },
            "annotations": null,
        })
    }
}

/// Whether `filter` (an `allowed_tools` or `require_approval` filter object,
/// `{tool_names?, read_only?}`) matches the tool `name`. Simulated tools carry no annotations,
/// so `read_only: true` matches none of them.
fn filter_matches(filter: &Value, name: &str) -> bool {
    let named = match filter.get("tool_names").and_then(Value::as_array) {
        Some(names) => names.iter().any(|n| n.as_str() == Some(name)),
        None => true,
    };
    let read_only = filter.get("read_only").and_then(Value::as_bool) == Some(true);
    named && !read_only && filter.is_object()
}

/// Whether `allowed_tools` (absent, a list of names or a filter object) lets `name` through.
fn allowed(tool: &Value, name: &str) -> bool {
    match tool.get("allowed_tools") {
        None | Some(Value::Null) => true,
        Some(Value::Array(names)) => names.iter().any(|n| n.as_str() == Some(name)),
        Some(filter) => filter_matches(filter, name),
    }
}

/// Whether calling `name` needs no approval: `require_approval` is `never`, or a filter
/// object whose `never` matches it and whose `always` does not.
fn unattended(tool: &Value, name: &str) -> bool {
    match tool.get("require_approval") {
        Some(Value::String(s)) => s == "never",
        Some(Value::Object(filters)) => {
            let matches = |key: &str| filters.get(key).is_some_and(|f| filter_matches(f, name));
            matches("never") && !matches("always")
        }
        _ => false,
    }
}

/// One `mcp_call` the model makes.
#[derive(Debug, Clone)]
pub(crate) struct PlannedCall {
    pub id: String,
    pub name: &'static str,
    /// The arguments, a JSON object as a string.
    pub arguments: String,
    /// What the server answered (a JSON text), or `None` when the call failed.
    pub output: Option<String>,
    /// The `mcp_approval_request` that let it be made, if one had to.
    pub approval_request_id: Option<String>,
    /// What the answer says of it.
    summary: String,
}

/// An `mcp_approval_request` the model makes instead of a call.
#[derive(Debug, Clone)]
pub(crate) struct ApprovalRequest {
    pub id: String,
    pub name: &'static str,
    pub arguments: String,
}

/// A client's `mcp_approval_response` to a request of the chain.
#[derive(Debug, Clone)]
pub(crate) struct Approval {
    pub request_id: String,
    pub server_label: String,
    pub name: String,
    pub arguments: String,
    pub approve: bool,
    pub reason: Option<String>,
}

/// Reads the create's `mcp_approval_response` items; each must answer an
/// `mcp_approval_request` of the chain, else a 400 naming `input` (wording UNCONFIRMED).
pub(crate) fn approvals(input_items: &[Value], ctx: &Context) -> Result<Vec<Approval>, ApiError> {
    let mut out = Vec::new();
    for item in input_items
        .iter()
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("mcp_approval_response"))
    {
        let id = item
            .get("approval_request_id")
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(request) = ctx.approval_requests.get(id) else {
            return Err(ApiError::invalid(
                format!(
                    "No approval request found for approval response with approval_request_id {id}."
                ),
                Some("input"),
                None,
            ));
        };
        let field = |k: &str| {
            request
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        out.push(Approval {
            request_id: id.to_owned(),
            server_label: field("server_label"),
            name: field("name"),
            arguments: field("arguments"),
            approve: item
                .get("approve")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            reason: item
                .get("reason")
                .and_then(Value::as_str)
                .filter(|r| !r.trim().is_empty())
                .map(str::to_owned),
        });
    }
    Ok(out)
}

/// One MCP server a response uses: its listing and the calls made to it.
#[derive(Debug, Clone)]
pub(crate) struct McpServer {
    pub label: String,
    /// The `mcpl_…` id of its `mcp_list_tools` item.
    list_id: String,
    /// `mcp_list_tools.tools`.
    tools: Vec<Value>,
    /// `mcp_list_tools.error`.
    list_error: Option<String>,
    /// Whether this response lists its tools (a follow-up to an approval does not).
    listed: bool,
    pub calls: Vec<PlannedCall>,
    /// The approval the model asks for instead of its next call, if any.
    pub approval_request: Option<ApprovalRequest>,
    /// What the answer says of each call the client did not approve.
    denied: Vec<String>,
}

/// How a response's MCP servers misbehave (`metadata.sim` directives).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct McpFaults {
    /// Listing fails (`mcp_list_error`): no tools, no calls.
    pub list_error: bool,
    /// The first call to each server fails with an HTTP 502 (`mcp_error`), and no more follow.
    pub call_error: bool,
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A label as a host-name part: lowercase ASCII letters, digits and `-`.
fn host_part(label: &str) -> String {
    let part: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let part = part.trim_matches('-');
    if part.is_empty() {
        "mcp".to_owned()
    } else {
        part.to_owned()
    }
}

/// The MCP servers of a create's `tools` and what the model does with each: `search` for
/// `topic`, then `fetch` of the first document found (each only when `allowed_tools` lists
/// it), at most `budget` calls in all (`max_tool_calls`). A call that needs approval becomes
/// an `mcp_approval_request` and ends the calls, unless `approvals` (a follow-up) answer it.
pub(crate) fn plan(
    tools: &[Value],
    topic: &str,
    faults: McpFaults,
    budget: usize,
    approvals: &[Approval],
) -> Vec<McpServer> {
    let follow_up = !approvals.is_empty();
    let mut budget = budget;
    let mut asked = false;
    let mut servers = Vec::new();
    for tool in tools
        .iter()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("mcp"))
    {
        let label = tool
            .get("server_label")
            .and_then(Value::as_str)
            .unwrap_or("mcp")
            .to_owned();
        let offered: Vec<&ServerTool> = SERVER_TOOLS
            .iter()
            .filter(|t| allowed(tool, t.name))
            .collect();
        let mut server = McpServer {
            label,
            list_id: ids::new("mcpl"),
            tools: Vec::new(),
            list_error: None,
            listed: !follow_up,
            calls: Vec::new(),
            approval_request: None,
            denied: Vec::new(),
        };
        if faults.list_error && !follow_up {
            server.list_error = Some(list_error(&server.label));
            servers.push(server);
            continue;
        }
        server.tools = offered.iter().map(|t| t.listed()).collect();
        let docs = documents(&server.label, topic);
        for t in &offered {
            if asked || budget == 0 || (faults.call_error && !server.calls.is_empty()) {
                break;
            }
            let name = t.name;
            if unattended(tool, name) {
                if follow_up {
                    // Made in the turn that asked for approval already.
                    continue;
                }
                budget -= 1;
                let call = make_call(&server.label, topic, name, faults.call_error, &docs);
                server.calls.push(call);
                continue;
            }
            if !follow_up {
                let (arguments, _, _) = call_content(&server.label, topic, name, &docs);
                server.approval_request = Some(ApprovalRequest {
                    id: ids::new("mcpr"),
                    name,
                    arguments: arguments.to_string(),
                });
                asked = true;
                break;
            }
            let answer = approvals
                .iter()
                .find(|a| a.server_label == server.label && a.name == name);
            match answer {
                Some(a) if a.approve => {
                    budget -= 1;
                    let mut call = make_call(&server.label, topic, name, faults.call_error, &docs);
                    call.approval_request_id = Some(a.request_id.clone());
                    if !a.arguments.is_empty() {
                        call.arguments = a.arguments.clone();
                    }
                    server.calls.push(call);
                }
                Some(a) => {
                    let why = a
                        .reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    server.denied.push(format!(
                        "The call to {}'s `{name}` tool was not approved{why}, so this answer does not draw on it.",
                        server.label
                    ));
                }
                None => {}
            }
        }
        servers.push(server);
    }
    servers
}

/// The two documents a server's `search` finds for `topic`: `(id, title, url)`.
fn documents(label: &str, topic: &str) -> Vec<(String, String, String)> {
    let h = fnv(&format!("{label}\n{topic}"));
    let host = host_part(label);
    (0..2u64)
        .map(|n| {
            let id = format!("doc-{:08x}", (h >> (n * 16)) as u32);
            let short: String = topic.chars().take(40).collect();
            let title = format!("{} (part {})", short.trim_end(), n + 1);
            let url = format!("https://{host}.example.com/documents/{id}");
            (id, title, url)
        })
        .collect()
}

/// A call's arguments, the server's answer and what the answer says of it.
fn call_content(
    label: &str,
    topic: &str,
    name: &str,
    docs: &[(String, String, String)],
) -> (Value, Value, String) {
    if name == "search" {
        let results: Vec<Value> = docs
            .iter()
            .map(|(id, title, url)| json!({"id": id, "title": title, "url": url}))
            .collect();
        (
            json!({"query": topic}),
            json!({"results": results}),
            format!(
                "Searched {label} for \"{topic}\" and found {} documents.",
                docs.len()
            ),
        )
    } else {
        let (id, title, url) = &docs[0];
        let gist = "the rules, the exceptions and whom to ask";
        let text = format!("What {label} holds on \"{topic}\": {gist}.");
        (
            json!({"id": id}),
            json!({"id": id, "title": title, "text": text, "url": url, "metadata": null}),
            format!("Read \"{title}\" ({id}): {gist}."),
        )
    }
}

/// One call to `name` of the server `label`; it fails when `fail`.
fn make_call(
    label: &str,
    topic: &str,
    name: &'static str,
    fail: bool,
    docs: &[(String, String, String)],
) -> PlannedCall {
    let (arguments, output, summary) = call_content(label, topic, name, docs);
    let (output, summary) = if fail {
        (
            None,
            format!(
                "The call to {label}'s `{name}` tool failed (HTTP 502 Bad Gateway), so this answer does not draw on {label}."
            ),
        )
    } else {
        (Some(output.to_string()), summary)
    };
    PlannedCall {
        id: ids::new("mcp"),
        name,
        arguments: arguments.to_string(),
        output,
        approval_request_id: None,
        summary,
    }
}

impl McpServer {
    /// The `mcp_list_tools` item; `tools` is empty until the listing is done.
    fn list_item(&self, done: bool) -> Value {
        json!({
            "id": self.list_id,
            "type": "mcp_list_tools",
            "server_label": self.label,
            "tools": if done { self.tools.clone() } else { Vec::new() },
            "error": if done { json!(self.list_error) } else { Value::Null },
        })
    }

    /// The `mcp_call` item of `call` at `status`, with `arguments` written so far.
    fn call_item(&self, call: &PlannedCall, status: &str, arguments: &str) -> Value {
        let ended = status == "completed" || status == "failed";
        let error = match (&call.output, ended) {
            (None, true) => json!({"type": "http_error", "code": 502, "message": "Bad Gateway"}),
            _ => Value::Null,
        };
        json!({
            "id": call.id,
            "type": "mcp_call",
            "server_label": self.label,
            "name": call.name,
            "arguments": arguments,
            "output": if ended { json!(call.output) } else { Value::Null },
            "error": error,
            "approval_request_id": call.approval_request_id,
            "status": status,
        })
    }
}

/// Adds each server's listing to the planned output (two steps each: added and in progress;
/// completed or failed, and done).
pub(crate) fn list_steps(steps: &mut Vec<Step>, done: &mut Vec<Value>, servers: &[McpServer]) {
    for server in servers.iter().filter(|s| s.listed) {
        let idx = done.len();
        let at = json!({"output_index": idx, "item_id": server.list_id});
        let partial = server.list_item(false);
        let mut out = done.clone();
        out.push(partial.clone());
        steps.push(Step {
            events: vec![
                ev(
                    "response.output_item.added",
                    json!({"output_index": idx, "item": partial}),
                ),
                ev("response.mcp_list_tools.in_progress", at.clone()),
            ],
            output: out,
        });
        let end = if server.list_error.is_some() {
            "response.mcp_list_tools.failed"
        } else {
            "response.mcp_list_tools.completed"
        };
        let full = server.list_item(true);
        done.push(full.clone());
        steps.push(Step {
            events: vec![
                ev(end, at),
                ev(
                    "response.output_item.done",
                    json!({"output_index": idx, "item": full}),
                ),
            ],
            output: done.clone(),
        });
    }
}

/// Adds each call to the planned output, in three steps: added, in progress and its
/// arguments streamed; the arguments done (the call is `calling` the server); completed or
/// failed, and done.
pub(crate) fn call_steps(
    steps: &mut Vec<Step>,
    done: &mut Vec<Value>,
    servers: &[McpServer],
    obfuscate: bool,
    rng: &mut impl Rng,
) {
    for server in servers {
        for call in &server.calls {
            let idx = done.len();
            let at = |extra: Value| {
                let mut fields = json!({"output_index": idx, "item_id": call.id});
                if let (Some(f), Value::Object(extra)) = (fields.as_object_mut(), extra) {
                    f.extend(extra);
                }
                fields
            };
            let with = |item: Value| {
                let mut out = done.clone();
                out.push(item);
                out
            };
            let mut events = vec![
                ev(
                    "response.output_item.added",
                    json!({"output_index": idx, "item": server.call_item(call, "in_progress", "")}),
                ),
                ev("response.mcp_call.in_progress", at(json!({}))),
            ];
            for delta in chunks(&call.arguments) {
                events.push(ev(
                    "response.mcp_call_arguments.delta",
                    with_obfuscation(at(json!({"delta": delta})), obfuscation(rng, obfuscate)),
                ));
            }
            steps.push(Step {
                events,
                output: with(server.call_item(call, "in_progress", &call.arguments)),
            });
            steps.push(Step {
                events: vec![ev(
                    "response.mcp_call_arguments.done",
                    at(json!({"arguments": call.arguments})),
                )],
                output: with(server.call_item(call, "calling", &call.arguments)),
            });
            let (status, event) = match call.output {
                Some(_) => ("completed", "response.mcp_call.completed"),
                None => ("failed", "response.mcp_call.failed"),
            };
            let full = server.call_item(call, status, &call.arguments);
            steps.push(Step {
                events: vec![
                    ev(event, at(json!({}))),
                    ev(
                        "response.output_item.done",
                        json!({"output_index": idx, "item": full}),
                    ),
                ],
                output: with(full.clone()),
            });
            done.push(full);
        }
        if let Some(request) = &server.approval_request {
            let idx = done.len();
            let item = json!({
                "id": request.id,
                "type": "mcp_approval_request",
                "server_label": server.label,
                "name": request.name,
                "arguments": request.arguments,
            });
            done.push(item.clone());
            steps.push(Step {
                events: vec![
                    ev(
                        "response.output_item.added",
                        json!({"output_index": idx, "item": item}),
                    ),
                    ev(
                        "response.output_item.done",
                        json!({"output_index": idx, "item": item}),
                    ),
                ],
                output: done.clone(),
            });
        }
    }
}

/// Whether a server waits for the client to approve a call.
pub(crate) fn awaits_approval(servers: &[McpServer]) -> bool {
    servers.iter().any(|s| s.approval_request.is_some())
}

/// Appends what each server answered to the report (nothing without servers).
pub(crate) fn append_text(text: &mut String, servers: &[McpServer]) {
    for server in servers {
        let label = &server.label;
        text.push_str(&format!("## From {label}\n\n"));
        if server.list_error.is_some() {
            text.push_str(&format!(
                "The tools of {label} could not be listed (HTTP 424), so this answer does not draw on it.\n\n"
            ));
            continue;
        }
        if server.calls.is_empty() && server.denied.is_empty() {
            text.push_str(&format!(
                "{label} was available, but this answer did not need it.\n\n"
            ));
            continue;
        }
        let said: Vec<&str> = server
            .calls
            .iter()
            .map(|c| c.summary.as_str())
            .chain(server.denied.iter().map(String::as_str))
            .collect();
        text.push_str(&said.join(" "));
        text.push_str("\n\n");
    }
}

/// The characters the model wrote for the calls (their arguments), for usage.
pub(crate) fn written_chars(servers: &[McpServer]) -> usize {
    servers
        .iter()
        .flat_map(|s| &s.calls)
        .map(|c| c.arguments.chars().count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mcp(extra: Value) -> Value {
        let mut tool = json!({"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com/sse", "require_approval": "never"});
        if let (Some(t), Value::Object(extra)) = (tool.as_object_mut(), extra) {
            t.extend(extra);
        }
        tool
    }

    fn names(server: &McpServer) -> Vec<&str> {
        server.calls.iter().map(|c| c.name).collect()
    }

    #[test]
    fn search_then_fetch_with_json_arguments() {
        let servers = plan(
            &[mcp(json!({}))],
            "Grüße aus Zürich",
            McpFaults::default(),
            9,
            &[],
        );
        assert_eq!(servers.len(), 1);
        let s = &servers[0];
        assert_eq!(names(s), ["search", "fetch"]);
        let args: Value = serde_json::from_str(&s.calls[0].arguments).expect("json");
        assert_eq!(args, json!({"query": "Grüße aus Zürich"}));
        let found: Value =
            serde_json::from_str(s.calls[0].output.as_deref().expect("output")).expect("json");
        let fetch: Value = serde_json::from_str(&s.calls[1].arguments).expect("json");
        assert_eq!(fetch["id"], found["results"][0]["id"]);
        let again = plan(
            &[mcp(json!({}))],
            "Grüße aus Zürich",
            McpFaults::default(),
            9,
            &[],
        );
        assert_eq!(again[0].calls[1].output, s.calls[1].output);
    }

    #[test]
    fn allowed_tools_and_the_budget_limit_the_calls() {
        let f = McpFaults::default();
        let only = |allowed: Value| {
            let s = plan(&[mcp(json!({"allowed_tools": allowed}))], "t", f, 9, &[]);
            (s[0].tools.len(), names(&s[0]).join(","))
        };
        assert_eq!(only(json!(["fetch"])), (1, "fetch".into()));
        assert_eq!(
            only(json!({"tool_names": ["search"]})),
            (1, "search".into())
        );
        assert_eq!(only(json!({"read_only": true})), (0, String::new()));
        let two = plan(
            &[mcp(json!({})), mcp(json!({"server_label": "b"}))],
            "t",
            f,
            3,
            &[],
        );
        assert_eq!((names(&two[0]).len(), names(&two[1]).len()), (2, 1));
    }

    #[test]
    fn a_call_that_needs_approval_becomes_a_request() {
        let f = McpFaults::default();
        let asked = |approval: Value| {
            let s = plan(
                &[mcp(json!({"require_approval": approval}))],
                "t",
                f,
                9,
                &[],
            );
            (
                names(&s[0]).join(","),
                s[0].approval_request.as_ref().map(|r| r.name),
            )
        };
        assert_eq!(asked(json!("never")), ("search,fetch".into(), None));
        assert_eq!(asked(json!("always")), (String::new(), Some("search")));
        assert_eq!(asked(Value::Null), (String::new(), Some("search")));
        assert_eq!(
            asked(json!({"never": {"tool_names": ["search"]}})),
            ("search".into(), Some("fetch"))
        );
        assert_eq!(
            asked(
                json!({"never": {"tool_names": ["search", "fetch"]}, "always": {"tool_names": ["fetch"]}})
            ),
            ("search".into(), Some("fetch"))
        );
        let only_search = json!({"allowed_tools": ["search"], "require_approval": {"never": {"tool_names": ["search"]}}});
        assert_eq!(
            names(&plan(&[mcp(only_search)], "t", f, 9, &[])[0]),
            ["search"]
        );

        let tool = mcp(json!({"require_approval": "always"}));
        let first = plan(std::slice::from_ref(&tool), "t", f, 9, &[]);
        let request = first[0].approval_request.clone().expect("a request");
        assert!(request.id.starts_with("mcpr_"));
        assert!(awaits_approval(&first));
        let answer = |approve: bool| Approval {
            request_id: request.id.clone(),
            server_label: "docs".into(),
            name: "search".into(),
            arguments: request.arguments.clone(),
            approve,
            reason: Some("not today".into()),
        };
        let approved = plan(std::slice::from_ref(&tool), "t", f, 9, &[answer(true)]);
        assert_eq!(
            names(&approved[0]),
            ["search"],
            "no new request in a follow-up"
        );
        assert_eq!(
            approved[0].calls[0].approval_request_id.as_deref(),
            Some(request.id.as_str())
        );
        assert!(!approved[0].listed && !awaits_approval(&approved));
        let denied = plan(std::slice::from_ref(&tool), "t", f, 9, &[answer(false)]);
        assert!(denied[0].calls.is_empty());
        let mut text = String::new();
        append_text(&mut text, &denied);
        assert!(
            text.contains("The call to docs's `search` tool was not approved (not today)"),
            "{text}"
        );
    }

    #[test]
    fn faults_end_the_listing_or_the_first_call() {
        let listing = plan(
            &[mcp(json!({}))],
            "t",
            McpFaults {
                list_error: true,
                call_error: false,
            },
            9,
            &[],
        );
        assert!(listing[0].calls.is_empty() && listing[0].tools.is_empty());
        assert_eq!(
            listing[0].list_item(true)["error"],
            "Error retrieving tool list from MCP server: 'docs'. Http status code: 424 (Failed Dependency)"
        );
        let failing = plan(
            &[mcp(json!({}))],
            "t",
            McpFaults {
                list_error: false,
                call_error: true,
            },
            9,
            &[],
        );
        assert_eq!(names(&failing[0]), ["search"]);
        let item = failing[0].call_item(&failing[0].calls[0], "failed", "{}");
        assert_eq!(item["output"], Value::Null);
        assert_eq!(
            item["error"],
            json!({"type": "http_error", "code": 502, "message": "Bad Gateway"})
        );
    }

    #[test]
    fn no_credential_reaches_an_item_or_the_text() {
        let tool = mcp(json!({
            "server_url": "https://u:pw-SECRET1@mcp.example.com/sse?token=SECRET2",
            "authorization": "SECRET3", "headers": {"X-Key": "SECRET4"},
        }));
        let servers = plan(&[tool], "t", McpFaults::default(), 9, &[]);
        let mut text = String::new();
        append_text(&mut text, &servers);
        let (mut steps, mut done) = (Vec::new(), Vec::new());
        list_steps(&mut steps, &mut done, &servers);
        call_steps(&mut steps, &mut done, &servers, true, &mut rand::rng());
        let all = format!("{text}{}", serde_json::to_string(&done).expect("json"));
        assert!(
            !all.contains("SECRET") && !all.contains("mcp.example.com"),
            "{all}"
        );
    }
}
