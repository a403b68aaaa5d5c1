//! What a response's stream events mean for its timeline: the pure part of live progress
//! (`progress.rs` reads the stream and writes). Milestones: reasoning summary parts, web and
//! file searches, tool calls, and the text as it grows — a text milestone at most every
//! [`TEXT_EVERY_MS`], carrying the text added since the last one, so the text milestones of a
//! job, joined, are its text so far.

use serde_json::{Value, json};

use crate::store::Milestone;
use crate::upstream::StreamEvent;

/// The least time between two text milestones.
pub const TEXT_EVERY_MS: i64 = 2_000;

/// The longest reasoning summary or query kept in a milestone, in characters.
const MAX_LABEL: usize = 160;

/// The state of one job's stream as milestones see it.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    /// Characters of output text so far (recorded and pending).
    pub text_chars: u64,
    /// Text read since the last text milestone.
    pending_text: String,
    /// When the last text milestone was made (unix ms).
    last_text_at: i64,
    /// Milestones made so far (all kinds).
    pub count: u64,
}

impl Tracker {
    /// A tracker that goes on from what the timeline holds (`text_chars` of the last
    /// milestone).
    pub fn resumed(text_chars: u64) -> Self {
        Self {
            text_chars,
            ..Self::default()
        }
    }

    /// Reads one event; returns the milestones it makes (a pending text milestone first, so
    /// the timeline keeps the stream's order).
    pub fn on_event(&mut self, ev: &StreamEvent, now: i64) -> Vec<Milestone> {
        let mut out = Vec::new();
        let d = &ev.data;
        match ev.kind.as_str() {
            "response.output_text.delta" | "response.refusal.delta" => {
                if let Some(delta) = d.get("delta").and_then(Value::as_str) {
                    self.text_chars += delta.chars().count() as u64;
                    self.pending_text.push_str(delta);
                }
                if now - self.last_text_at >= TEXT_EVERY_MS {
                    out.extend(self.flush_text(now, ev.seq));
                }
            }
            "response.reasoning_summary_part.done" => {
                let text = d
                    .pointer("/part/text")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let title = title_of(text);
                out.extend(self.flush_text(now, ev.seq));
                out.push(self.milestone(
                    "reasoning",
                    if title.is_empty() {
                        "reasoning".to_string()
                    } else {
                        format!("reasoning: {title}")
                    },
                    json!({"summary": title}),
                    ev.seq,
                ));
            }
            "response.output_item.done" => {
                if let Some(m) = self.item_milestone(d.get("item").unwrap_or(&Value::Null), ev.seq)
                {
                    out.extend(self.flush_text(now, ev.seq));
                    out.push(m);
                }
            }
            k if ev.is_terminal() || k == "response.output_text.done" => {
                out.extend(self.flush_text(now, ev.seq));
            }
            _ => {}
        }
        out
    }

    /// The pending text as a milestone, if there is any and it is due (`force`) — for the
    /// follower's timer and for the end of a stream.
    pub fn flush_due(&mut self, now: i64, force: bool, seq: Option<i64>) -> Option<Milestone> {
        if force || now - self.last_text_at >= TEXT_EVERY_MS {
            self.flush_text(now, seq)
        } else {
            None
        }
    }

    fn flush_text(&mut self, now: i64, seq: Option<i64>) -> Option<Milestone> {
        if self.pending_text.is_empty() {
            return None;
        }
        self.last_text_at = now;
        let added = std::mem::take(&mut self.pending_text);
        let chars = self.text_chars;
        Some(self.milestone(
            "text",
            format!("text: {chars} characters (~{} tokens)", tokens_of(chars)),
            json!({"text_delta": added}),
            seq,
        ))
    }

    fn item_milestone(&mut self, item: &Value, seq: Option<i64>) -> Option<Milestone> {
        let kind = item.get("type").and_then(Value::as_str)?;
        let s = |p: &str| item.pointer(p).and_then(Value::as_str).map(title_of);
        let (what, message, extra) = match kind {
            "web_search_call" => {
                let query = s("/action/query").unwrap_or_default();
                (
                    "web_search",
                    format!("web search: {query}"),
                    json!({"query": query}),
                )
            }
            "file_search_call" => {
                let queries: Vec<String> = item
                    .get("queries")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(title_of).collect())
                    .unwrap_or_default();
                (
                    "file_search",
                    format!("file search: {}", queries.join("; ")),
                    json!({"queries": queries}),
                )
            }
            "function_call" | "custom_tool_call" | "mcp_call" => {
                let name = s("/name").unwrap_or_default();
                let server = s("/server_label");
                let label = match &server {
                    Some(srv) => format!("{srv}.{name}"),
                    None => name.clone(),
                };
                (
                    "tool_call",
                    format!("tool call: {label}"),
                    json!({"tool": kind, "name": name}),
                )
            }
            k if k.ends_with("_call") => (
                "tool_call",
                format!(
                    "tool call: {}",
                    k.trim_end_matches("_call").replace('_', " ")
                ),
                json!({"tool": k}),
            ),
            _ => return None,
        };
        Some(self.milestone(what, message, extra, seq))
    }

    fn milestone(
        &mut self,
        what: &str,
        message: String,
        extra: Value,
        seq: Option<i64>,
    ) -> Milestone {
        self.count += 1;
        let mut data = json!({
            "kind": what,
            "seq": seq,
            "text_chars": self.text_chars,
            "tokens_est": tokens_of(self.text_chars),
        });
        if let (Some(o), Value::Object(e)) = (data.as_object_mut(), extra) {
            o.extend(e);
        }
        Milestone { message, data }
    }
}

/// A rough count of output tokens for a number of characters (about four to a token in
/// English): the stream carries no usage until its end.
pub fn tokens_of(chars: u64) -> u64 {
    chars.div_ceil(4)
}

/// The first line of a text, without Markdown emphasis, cut to [`MAX_LABEL`] characters.
fn title_of(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let line = line.trim().trim_matches('*').trim_matches('#').trim();
    let mut out: String = line.chars().take(MAX_LABEL).collect();
    if line.chars().count() > MAX_LABEL {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, seq: i64, data: Value) -> StreamEvent {
        StreamEvent {
            kind: kind.into(),
            seq: Some(seq),
            data,
        }
    }

    #[test]
    fn text_milestones_are_throttled_and_join_to_the_text() {
        let mut t = Tracker::default();
        let mut all = Vec::new();
        let mut now = 10_000;
        for (i, word) in ["Hello ", "wide ", "world, ", "again."].iter().enumerate() {
            all.extend(t.on_event(
                &ev(
                    "response.output_text.delta",
                    i as i64,
                    json!({"delta": word}),
                ),
                now,
            ));
            now += 700;
        }
        // The first delta makes one at once; the next ones wait for the 2 s to pass.
        assert_eq!(all.len(), 2, "{all:?}");
        all.extend(t.on_event(&ev("response.output_text.done", 9, json!({})), now));
        let text: String = all
            .iter()
            .filter_map(|m| m.data["text_delta"].as_str())
            .collect();
        assert_eq!(text, "Hello wide world, again.");
        assert_eq!(all.last().unwrap().data["text_chars"], 24);
    }

    #[test]
    fn searches_reasoning_and_tool_calls_are_milestones() {
        let mut t = Tracker::default();
        let m = t.on_event(
            &ev(
                "response.reasoning_summary_part.done",
                3,
                json!({"part": {"type": "summary_text", "text": "**Planning the answer**\n\nMore."}}),
            ),
            0,
        );
        assert_eq!(m[0].message, "reasoning: Planning the answer");
        let m = t.on_event(
            &ev(
                "response.output_item.done",
                4,
                json!({"item": {"type": "web_search_call", "action": {"query": "rust sse"}}}),
            ),
            0,
        );
        assert_eq!(m[0].data["kind"], "web_search");
        assert_eq!(m[0].data["seq"], 4);
        let m = t.on_event(
            &ev(
                "response.output_item.done",
                5,
                json!({"item": {"type": "code_interpreter_call"}}),
            ),
            0,
        );
        assert_eq!(m[0].message, "tool call: code interpreter");
        // A message item is not a milestone of its own (its text is).
        assert!(
            t.on_event(
                &ev(
                    "response.output_item.done",
                    6,
                    json!({"item": {"type": "message"}})
                ),
                0
            )
            .is_empty()
        );
        assert!(
            t.on_event(&ev("response.sim_future_event", 7, json!({})), 0)
                .is_empty()
        );
    }
}
