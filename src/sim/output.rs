//! Output generation: deterministic (from the input text) output items, the partial output the
//! response shows step by step while `in_progress`, the SSE events of each step, and usage.
//! No network, no model: a markdown "report" that quotes the input, with `url_citation`
//! annotations whose `start_index`/`end_index` are correct character (code point) offsets.

use rand::Rng;
use serde_json::{Map, Value, json};

use super::faults::{Outcome, OutputShape};
use super::file_inputs::Grounding;
use super::grounding::{annotation_end, append_files, search_steps};
use super::ids;
use super::tools::Artifacts;
use super::validate::CreateRequest;

/// One stream event before it gets its `sequence_number`: its `type` and the other fields.
pub(crate) type EventBody = (String, Map<String, Value>);

/// What happens at one step of an in-progress response.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// Stream events produced by this step, in order.
    pub events: Vec<EventBody>,
    /// The whole `output` array after this step.
    pub output: Vec<Value>,
}

/// The full plan for a response's output.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    /// Steps run while `in_progress` (fewer when the response fails half way).
    pub steps: Vec<Step>,
    /// The `output` at the terminal status.
    pub final_output: Vec<Value>,
    /// `usage` at the terminal status (`None` for failed responses).
    pub usage: Option<Value>,
    /// The outcome, after applying `max_output_tokens`.
    pub outcome: Outcome,
}

const FILLER: &[&str] = &[
    "The available sources broadly agree on the main points, although they differ in emphasis.",
    "Several recent publications revisit the question with new data and reach similar conclusions.",
    "Estimates vary with the method used, so the figures below should be read as ranges.",
    "A closer look at the primary material shows a consistent pattern across regions.",
    "Practitioners stress that context matters more than any single headline number.",
    "The evidence is strongest for the short term and thinner for long-term effects.",
    "Critics point to gaps in the underlying data that later studies have only partly closed.",
    "Taken together, these findings suggest a cautious but clear answer.",
];
const DOMAINS: &[&str] = &[
    "en.wikipedia.org/wiki",
    "arxiv.org/abs",
    "research.example.org/papers",
    "docs.example.com/guides",
    "news.example.net/articles",
];

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The topic of an input: its first non-empty line, at most 80 characters.
pub(crate) fn topic_of(input: &str) -> String {
    let first = input
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("your question");
    let topic: String = first.chars().take(80).collect();
    topic.trim_end_matches(['.', '?', '!', ':']).to_owned()
}

fn slug(topic: &str) -> String {
    let words: Vec<String> = topic
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(5)
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        "topic".to_owned()
    } else {
        words.join("-")
    }
}

/// Builds the report text and its annotations: `url_citation`s, a `file_citation` for each
/// file it draws on (`grounding.rs`), a `container_file_citation` for each file its code
/// saved and a caption per image (`tools.rs`).
fn report(
    input: &str,
    grounding: &Grounding,
    artifacts: &Artifacts,
) -> (String, Vec<Value>, Vec<(String, String)>) {
    let h = fnv(input);
    let topic = topic_of(input);
    let slug = slug(&topic);
    let quote: String = input
        .chars()
        .take(200)
        .collect::<String>()
        .replace('\n', " ");
    let sources: Vec<(String, String)> = (0..3u64)
        .map(|n| {
            let domain = DOMAINS[((h >> (n * 8)) % DOMAINS.len() as u64) as usize];
            (
                format!("https://{domain}/{slug}-{}", n + 1),
                format!("{topic}: source {}", n + 1),
            )
        })
        .collect();
    let filler = |n: u64| FILLER[((h >> (n * 5)) % FILLER.len() as u64) as usize];

    let mut text = String::new();
    let mut annotations = Vec::new();
    let mut cite = |text: &mut String, (url, title): &(String, String)| {
        text.push_str(" (");
        let start = text.chars().count();
        text.push_str(&format!("[{title}]({url})"));
        let end = text.chars().count();
        text.push(')');
        annotations.push(json!({
            "type": "url_citation", "start_index": start, "end_index": end, "url": url, "title": title,
        }));
    };
    text.push_str(&format!("# Report: {topic}\n\n> {quote}\n\n"));
    artifacts.context_text(&mut text);
    text.push_str("## Summary\n\n");
    text.push_str(&format!("This report looks at \"{topic}\". {}", filler(0)));
    cite(&mut text, &sources[0]);
    text.push_str(&format!("\n\n## Findings\n\n1. {}", filler(1)));
    cite(&mut text, &sources[1]);
    text.push_str(&format!("\n2. {}\n3. {}", filler(2), filler(3)));
    cite(&mut text, &sources[2]);
    text.push_str("\n\n");
    append_files(&mut text, &mut annotations, grounding);
    artifacts.append_text(&mut text, &mut annotations);
    text.push_str(&format!("## Conclusion\n\n{} {}\n", filler(4), filler(5)));
    (text, annotations, sources)
}

/// The answer `output=` asks for instead of the report, if any (no citations).
fn shaped_text(shape: &OutputShape) -> Option<String> {
    const WORDS: &str = "All work and no play makes a dull report. ";
    match shape {
        OutputShape::Report => None,
        OutputShape::Text(text) => Some(text.clone()),
        OutputShape::Lines(n) => Some((1..=*n).map(|i| format!("Line {i} of {n}.\n")).collect()),
        OutputShape::Line(n) => Some(WORDS.chars().cycle().take(*n).collect()),
        OutputShape::Refusal(text) => Some(text.clone()),
    }
}

/// The web searches a deep-research response makes.
const DEEP_RESEARCH_SEARCHES: usize = 3;

/// How many web searches the response makes: deep research only, within `max_tool_calls`.
pub(crate) fn web_searches(req: &CreateRequest) -> usize {
    if req.is_deep_research() {
        DEEP_RESEARCH_SEARCHES.min(req.max_tool_calls())
    } else {
        0
    }
}

fn tokens(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

pub(crate) fn ev(kind: &str, fields: Value) -> EventBody {
    let map = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    (kind.to_owned(), map)
}

/// The two steps of a search tool call (`web_search_call`, `file_search_call`) as OpenAI
/// streams them: added in progress and searching, then completed and done. `full` joins the
/// output; `announced` is what `response.output_item.done` carries (the same item, or one
/// without what `include` leaves out).
pub(crate) fn search_call_steps(
    steps: &mut Vec<Step>,
    done: &mut Vec<Value>,
    kind: &str,
    id: &str,
    partial: Value,
    full: Value,
    announced: Value,
) {
    let idx = done.len();
    let mut out = done.clone();
    out.push(partial.clone());
    steps.push(Step {
        events: vec![
            ev(
                "response.output_item.added",
                json!({"output_index": idx, "item": partial}),
            ),
            ev(
                &format!("response.{kind}.in_progress"),
                json!({"output_index": idx, "item_id": id}),
            ),
            ev(
                &format!("response.{kind}.searching"),
                json!({"output_index": idx, "item_id": id}),
            ),
        ],
        output: out,
    });
    done.push(full);
    steps.push(Step {
        events: vec![
            ev(
                &format!("response.{kind}.completed"),
                json!({"output_index": idx, "item_id": id}),
            ),
            ev(
                "response.output_item.done",
                json!({"output_index": idx, "item": announced}),
            ),
        ],
        output: done.clone(),
    });
}

/// The random padding of a delta event, when obfuscation is on.
pub(crate) fn obfuscation(rng: &mut impl Rng, on: bool) -> Option<String> {
    on.then(|| {
        let n = rng.random_range(4..16);
        (0..n)
            .map(|_| char::from(rng.random_range(b'a'..=b'z')))
            .collect()
    })
}

/// Adds `obfuscation` to a delta event's fields.
pub(crate) fn with_obfuscation(mut fields: Value, obf: Option<String>) -> Value {
    if let (Some(o), Some(m)) = (obf, fields.as_object_mut()) {
        m.insert("obfuscation".into(), json!(o));
    }
    fields
}

/// Splits text into small word-aligned deltas.
pub(crate) fn chunks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in text.split_inclusive([' ', '\n']) {
        cur.push_str(word);
        if cur.chars().count() >= 24 {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Plans the output of a response: items, steps, usage and the final outcome. `grounding`
/// is what its files resolved to (a `file_search_call` item, file citations); `artifacts`
/// what its hosted tools made (a `code_interpreter_call`, images, their citations).
pub(crate) fn generate(
    req: &CreateRequest,
    grounding: &Grounding,
    artifacts: &Artifacts,
    outcome: Outcome,
    rng: &mut impl Rng,
) -> Generated {
    let obf = req.obfuscate;
    let (report_text, report_annotations, sources) = report(&req.input_text, grounding, artifacts);
    let topic = topic_of(&req.input_text);
    let body = Value::Object(req.body.clone());
    let awaits_client = artifacts.awaits_client();
    let (full_text, all_annotations) = match (
        shaped_text(&req.overrides.output),
        crate::structured::Format::of(&body),
    ) {
        (Some(text), _) => (text, Vec::new()),
        // Asked for JSON: an answer in it, as a model in strict mode gives, without citations.
        (None, Some(crate::structured::Format::JsonSchema { schema, .. })) => (
            super::structured::example(schema, &topic).to_string(),
            Vec::new(),
        ),
        (None, Some(crate::structured::Format::JsonObject)) => (
            json!({"topic": topic, "answer": FILLER[(fnv(&req.input_text) % FILLER.len() as u64) as usize]})
                .to_string(),
            Vec::new(),
        ),
        (None, None) => (report_text, report_annotations),
    };
    // Calling functions, the model stops to wait for their outputs: no message.
    let (full_text, all_annotations) = if awaits_client {
        (String::new(), Vec::new())
    } else {
        (full_text, all_annotations)
    };
    // A refusal is a `refusal` content part, streamed with `response.refusal.*` events.
    let refusing = matches!(req.overrides.output, OutputShape::Refusal(_));

    // Decide how much text is produced.
    let mut outcome = outcome;
    let full_tokens = tokens(full_text.chars().count());
    let mut text_chars = full_text.chars().count();
    if let Some(max) = req.max_output_tokens.filter(|m| *m < full_tokens) {
        if outcome == Outcome::Completed {
            outcome = Outcome::Incomplete {
                reason: "max_output_tokens".into(),
            };
        }
        text_chars = usize::try_from(max * 4)
            .unwrap_or(usize::MAX)
            .min(text_chars);
    } else if matches!(outcome, Outcome::Incomplete { .. }) {
        text_chars /= 2;
    }
    let text: String = full_text.chars().take(text_chars).collect();
    let text_len = text.chars().count();
    let annotations: Vec<Value> = all_annotations
        .into_iter()
        .filter(|a| annotation_end(a) <= text_len as u64)
        .collect();
    let incomplete = matches!(outcome, Outcome::Incomplete { .. });

    let mut steps: Vec<Step> = Vec::new();
    let mut done: Vec<Value> = Vec::new();
    let mut reasoning_tokens = 0;

    // MCP servers' tools are listed before the model starts (the tour's deep research output
    // opens with `mcp_list_tools`, before any reasoning).
    artifacts.list_steps(&mut steps, &mut done);

    if req.has_reasoning {
        let mut summaries = vec![format!(
            "**Planning the answer**\n\nThe request asks about \"{topic}\". I will gather a few sources, compare them and write a short report with citations."
        )];
        if req.is_deep_research() {
            // Deep research thinks at length: several summary parts, each its own step, so a
            // watcher of a long run sees it think.
            summaries.push(format!(
                "**Choosing what to search**\n\nI will look for recent studies and statistics on \"{topic}\", and for the main points where sources disagree."
            ));
            summaries.push(
                "**Outlining the report**\n\nA summary first, then the findings with a citation each, then a short conclusion.".to_owned(),
            );
        }
        reasoning_tokens = summaries
            .iter()
            .map(|s| tokens(s.chars().count()) * 3)
            .sum();
        reasoning_steps(&mut steps, &mut done, &summaries, obf, rng);
    }

    if let Some(searched) = &grounding.search {
        let results_in_events = req.include.iter().any(|i| i == "file_search_call.results");
        search_steps(&mut done, &mut steps, searched, results_in_events);
    }

    if req.is_deep_research() {
        let queries = [
            topic.clone(),
            format!("{topic} latest research"),
            format!("{topic} statistics"),
        ];
        for query in queries.iter().take(web_searches(req)) {
            let id = ids::new("ws");
            let srcs: Vec<Value> = sources
                .iter()
                .map(|(url, _)| json!({"type": "url", "url": url}))
                .collect();
            let partial = json!({"id": id, "type": "web_search_call", "status": "in_progress", "action": {"type": "search", "query": query}});
            let full = json!({"id": id, "type": "web_search_call", "status": "completed", "action": {"type": "search", "query": query, "sources": srcs}});
            search_call_steps(
                &mut steps,
                &mut done,
                "web_search_call",
                &id,
                partial,
                full.clone(),
                full,
            );
        }
    }

    artifacts.steps(&mut steps, &mut done, &req.include, obf, rng);

    if !awaits_client {
        message_steps(
            &mut steps,
            &mut done,
            &text,
            annotations,
            refusing,
            incomplete,
            obf,
            rng,
        );
    }

    let (steps, final_output, usage) = match &outcome {
        Outcome::Failed { .. } => {
            let keep = steps.len() / 2;
            let mut steps = steps;
            steps.truncate(keep);
            let last = steps.last().map(|s| s.output.clone()).unwrap_or_default();
            (steps, last, None)
        }
        _ => {
            let input_tokens = tokens(req.input_text.chars().count()).max(1);
            let output_tokens = match (&outcome, req.max_output_tokens) {
                (Outcome::Incomplete { reason }, Some(max)) if reason == "max_output_tokens" => max,
                // The model wrote the tools' code and arguments too; images cost no output
                // tokens here.
                _ => tokens(text_len) + tokens(artifacts.written_chars()) + reasoning_tokens,
            };
            let usage = json!({
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": reasoning_tokens.min(output_tokens)},
                "total_tokens": input_tokens + output_tokens,
            });
            (steps, done, Some(usage))
        }
    };
    Generated {
        steps,
        final_output,
        usage,
        outcome,
    }
}

/// Adds a reasoning item to the planned output: added, then one step per summary part
/// (part added, its text, part done), the last one also ending the item.
fn reasoning_steps(
    steps: &mut Vec<Step>,
    done: &mut Vec<Value>,
    summaries: &[String],
    obf: bool,
    rng: &mut impl Rng,
) {
    let id = ids::new("rs");
    let idx = done.len();
    let encrypted = format!("gAAAAA{}", ulid::Ulid::new());
    let item = |parts: &[String]| {
        let summary: Vec<Value> = parts
            .iter()
            .map(|t| json!({"type": "summary_text", "text": t}))
            .collect();
        json!({"id": id, "type": "reasoning", "summary": summary, "encrypted_content": encrypted})
    };
    let mut out = done.clone();
    out.push(item(&[]));
    steps.push(Step {
        events: vec![ev(
            "response.output_item.added",
            json!({"output_index": idx, "item": item(&[])}),
        )],
        output: out,
    });
    for (n, summary) in summaries.iter().enumerate() {
        let at = |extra: Value| {
            let mut fields = json!({"item_id": id, "output_index": idx, "summary_index": n});
            if let (Some(f), Value::Object(extra)) = (fields.as_object_mut(), extra) {
                f.extend(extra);
            }
            fields
        };
        let mut events = vec![
            ev(
                "response.reasoning_summary_part.added",
                at(json!({"part": {"type": "summary_text", "text": ""}})),
            ),
            ev(
                "response.reasoning_summary_text.delta",
                with_obfuscation(at(json!({"delta": summary})), obfuscation(rng, obf)),
            ),
            ev(
                "response.reasoning_summary_text.done",
                at(json!({"text": summary})),
            ),
            ev(
                "response.reasoning_summary_part.done",
                at(json!({"part": {"type": "summary_text", "text": summary}})),
            ),
        ];
        let so_far = item(&summaries[..=n]);
        let last = n + 1 == summaries.len();
        if last {
            events.push(ev(
                "response.output_item.done",
                json!({"output_index": idx, "item": so_far}),
            ));
        }
        let mut out = done.clone();
        out.push(so_far.clone());
        if last {
            done.push(so_far);
        }
        steps.push(Step {
            events,
            output: if last { done.clone() } else { out },
        });
    }
}

/// Adds the message to the planned output: added, text deltas in a few steps, done.
#[allow(clippy::too_many_arguments)]
fn message_steps(
    steps: &mut Vec<Step>,
    done: &mut Vec<Value>,
    text: &str,
    annotations: Vec<Value>,
    refusing: bool,
    incomplete: bool,
    obf: bool,
    rng: &mut impl Rng,
) {
    let (part_type, text_key, event) = if refusing {
        ("refusal", "refusal", "response.refusal")
    } else {
        ("output_text", "text", "response.output_text")
    };
    let id = ids::new("msg");
    let idx = done.len();
    let part_of = |text: &str, annotations: Vec<Value>| {
        if refusing {
            json!({"type": part_type, text_key: text})
        } else {
            json!({"type": part_type, text_key: text, "annotations": annotations, "logprobs": []})
        }
    };
    let message = |status: &str, text: &str, annotations: Vec<Value>| {
        json!({
            "id": id, "type": "message", "status": status, "role": "assistant",
            "content": [part_of(text, annotations)],
        })
    };
    let empty_item = json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
    let empty_part = part_of("", Vec::new());
    let mut out = done.clone();
    out.push(message("in_progress", "", Vec::new()));
    steps.push(Step {
        events: vec![
            ev(
                "response.output_item.added",
                json!({"output_index": idx, "item": empty_item}),
            ),
            ev(
                "response.content_part.added",
                json!({"item_id": id, "output_index": idx, "content_index": 0, "part": empty_part}),
            ),
        ],
        output: out,
    });
    let deltas = chunks(text);
    let per_step = deltas.len().div_ceil(8).max(1);
    let mut so_far = String::new();
    let mut announced = 0;
    for group in deltas.chunks(per_step) {
        let mut events = Vec::new();
        for delta in group {
            so_far.push_str(delta);
            let mut fields =
                json!({"item_id": id, "output_index": idx, "content_index": 0, "delta": delta});
            if !refusing {
                fields["logprobs"] = json!([]);
            }
            events.push(ev(
                &format!("{event}.delta"),
                with_obfuscation(fields, obfuscation(rng, obf)),
            ));
            let len = so_far.chars().count() as u64;
            while let Some(a) = annotations.get(announced) {
                if annotation_end(a) > len {
                    break;
                }
                events.push(ev(
                    "response.output_text.annotation.added",
                    json!({"item_id": id, "output_index": idx, "content_index": 0, "annotation_index": announced, "annotation": a}),
                ));
                announced += 1;
            }
        }
        let mut out = done.clone();
        out.push(message(
            "in_progress",
            &so_far,
            annotations[..announced].to_vec(),
        ));
        steps.push(Step {
            events,
            output: out,
        });
    }
    let status = if incomplete {
        "incomplete"
    } else {
        "completed"
    };
    let final_message = message(status, text, annotations.clone());
    let part = part_of(text, annotations);
    let mut text_done =
        json!({"item_id": id, "output_index": idx, "content_index": 0, text_key: text});
    if !refusing {
        text_done["logprobs"] = json!([]);
    }
    done.push(final_message.clone());
    steps.push(Step {
        events: vec![
            ev(&format!("{event}.done"), text_done),
            ev(
                "response.content_part.done",
                json!({"item_id": id, "output_index": idx, "content_index": 0, "part": part}),
            ),
            ev(
                "response.output_item.done",
                json!({"output_index": idx, "item": final_message}),
            ),
        ],
        output: done.clone(),
    });
}

/// Applies `include` to output items: `web_search_call.action.sources`,
/// `file_search_call.results`, `code_interpreter_call.outputs` and
/// `reasoning.encrypted_content` are only shown when asked for.
pub(crate) fn render_output(output: &[Value], include: &[String]) -> Vec<Value> {
    let has = |k: &str| include.iter().any(|i| i == k);
    output
        .iter()
        .map(|item| {
            let mut item = item.clone();
            match item.get("type").and_then(Value::as_str) {
                Some("web_search_call") if !has("web_search_call.action.sources") => {
                    if let Some(action) = item.get_mut("action").and_then(Value::as_object_mut) {
                        action.remove("sources");
                    }
                }
                Some("file_search_call") if !has("file_search_call.results") => {
                    if let Some(obj) = item.as_object_mut() {
                        obj.insert("results".into(), Value::Null);
                    }
                }
                Some("code_interpreter_call") if !has("code_interpreter_call.outputs") => {
                    if let Some(obj) = item.as_object_mut() {
                        obj.insert("outputs".into(), Value::Null);
                    }
                }
                Some("reasoning") if !has("reasoning.encrypted_content") => {
                    if let Some(obj) = item.as_object_mut() {
                        obj.insert("encrypted_content".into(), Value::Null);
                    }
                }
                _ => {}
            }
            item
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_indices_point_at_the_citation() {
        let (text, annotations, _) = report(
            "What is the boiling point of water at altitude? ünïcode",
            &Grounding::default(),
            &Artifacts::default(),
        );
        let chars: Vec<char> = text.chars().collect();
        assert_eq!(annotations.len(), 3);
        for a in annotations {
            let start = a["start_index"].as_u64().expect("start") as usize;
            let end = a["end_index"].as_u64().expect("end") as usize;
            let span: String = chars[start..end].iter().collect();
            let url = a["url"].as_str().expect("url");
            assert!(
                span.starts_with('[') && span.ends_with(&format!("({url})")),
                "{span}"
            );
        }
    }

    #[test]
    fn output_shapes_give_the_text_asked_for() {
        assert_eq!(shaped_text(&OutputShape::Report), None);
        assert_eq!(
            shaped_text(&OutputShape::Text("Paris.".into())).as_deref(),
            Some("Paris.")
        );
        assert_eq!(
            shaped_text(&OutputShape::Lines(2)).as_deref(),
            Some("Line 1 of 2.\nLine 2 of 2.\n")
        );
        let line = shaped_text(&OutputShape::Line(1500)).expect("a line");
        assert_eq!(line.len(), 1500);
        assert!(line.is_ascii() && !line.contains('\n'));
        assert_eq!(shaped_text(&OutputShape::Line(0)).as_deref(), Some(""));
    }

    /// A long deep-research run shows progress all along: its steps (each applied at
    /// `run * (i + 1) / (n + 1)`, `entry.rs`) are many enough that a 40 s run changes at least
    /// every 3 s, and reasoning, web searches and text deltas each come in several steps.
    #[test]
    fn a_deep_research_run_spreads_its_events_over_the_whole_run() {
        let req = super::super::validate::parse_create(
            json!({"model": "o3-deep-research", "input": "Effects of remote work on productivity",
                   "tools": [{"type": "web_search_preview"}], "reasoning": {"summary": "auto"},
                   "background": true, "stream": true})
            .to_string()
            .as_bytes(),
        )
        .expect("valid create");
        let g = generate(
            &req,
            &Grounding::default(),
            &Artifacts::default(),
            Outcome::Completed,
            &mut rand::rng(),
        );
        let run = std::time::Duration::from_secs(40);
        let gap = run / (g.steps.len() as u32 + 1);
        assert!(
            gap <= std::time::Duration::from_secs(3),
            "{} steps: {gap:?}",
            g.steps.len()
        );
        let steps_with = |kind: &str| {
            g.steps
                .iter()
                .filter(|s| s.events.iter().any(|(k, _)| k.starts_with(kind)))
                .count()
        };
        assert!(
            steps_with("response.reasoning_summary") >= 3,
            "reasoning spread out"
        );
        assert!(steps_with("response.web_search_call") >= 6);
        assert!(steps_with("response.output_text.delta") >= 6);
        // No long stretch of the run without an event: the longest run of steps without
        // one is a single step.
        assert!(g.steps.iter().all(|s| !s.events.is_empty()));
    }

    #[test]
    fn chunks_rebuild_the_text() {
        let text = "one two three four five six seven eight nine ten eleven twelve\nthirteen";
        assert_eq!(chunks(text).concat(), text);
    }
}
