//! The parts of a generated answer that come from files (`docs/upstream-api.md` §1.5, §1.6,
//! §7.15): a "From your files" section of the report naming every file of the input and every
//! file search hit, with one `file_citation` per file that has an id, and the
//! `file_search_call` output item with its stream events.
//!
//! A `file_citation`'s `index` is the character (code point) offset in the text just after the
//! file's name, where a client would put the citation marker; OpenAI's schema calls it "the
//! index of the file in the list of files", but real payloads carry a text position.

use serde_json::{Value, json};

use super::file_inputs::{Grounding, Mention, Searched};
use super::ids;
use super::output::{Step, search_call_steps};

/// Every file the answer names: the input's, then the search hits not already named.
fn mentions(g: &Grounding) -> Vec<Mention> {
    let mut all = g.mentions.clone();
    for hit in g.search.iter().flat_map(|s| &s.hits) {
        if !all
            .iter()
            .any(|m| m.file_id.as_deref() == Some(hit.file_id.as_str()))
        {
            all.push(Mention {
                file_id: Some(hit.file_id.clone()),
                filename: hit.filename.clone(),
            });
        }
    }
    all
}

/// Appends the "From your files" section (nothing when no file is involved) and its
/// `file_citation` annotations.
pub(crate) fn append_files(text: &mut String, annotations: &mut Vec<Value>, g: &Grounding) {
    let all = mentions(g);
    if all.is_empty() {
        return;
    }
    text.push_str("## From your files\n\n");
    for m in all {
        text.push_str("- ");
        text.push_str(&m.filename);
        let index = text.chars().count();
        let searched = g
            .search
            .iter()
            .flat_map(|s| &s.hits)
            .any(|h| Some(&h.file_id) == m.file_id.as_ref());
        text.push_str(if searched {
            ": file search found passages here that agree with the summary above.\n"
        } else {
            ": read in full; it is consistent with the sources above.\n"
        });
        if let Some(file_id) = m.file_id {
            annotations.push(json!({
                "type": "file_citation",
                "file_id": file_id,
                "filename": m.filename,
                "index": index,
            }));
        }
    }
    text.push('\n');
}

/// Where an annotation ends in the text: `end_index`, or `index` for file citations.
pub(crate) fn annotation_end(a: &Value) -> u64 {
    a.get("end_index")
        .or_else(|| a.get("index"))
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
}

fn results(searched: &Searched) -> Value {
    searched
        .hits
        .iter()
        .map(|h| {
            json!({
                "file_id": h.file_id,
                "filename": h.filename,
                "score": h.score,
                "text": h.text,
                "attributes": h.attributes,
            })
        })
        .collect()
}

/// Adds the `file_search_call` item to the planned output: announced and searching in one
/// step, completed in the next. The item kept in the output always carries its `results`
/// (`render_output` hides them unless `include` asks); the stream events carry them only when
/// the create's `include` has `file_search_call.results`.
pub(crate) fn search_steps(
    done: &mut Vec<Value>,
    steps: &mut Vec<Step>,
    searched: &Searched,
    results_in_events: bool,
) {
    let id = ids::new("fs");
    let item = |status: &str, results: Value| {
        json!({
            "id": id,
            "type": "file_search_call",
            "status": status,
            "queries": searched.queries,
            "results": results,
        })
    };
    let partial = item("in_progress", Value::Null);
    let full = item("completed", results(searched));
    let announced = if results_in_events {
        full.clone()
    } else {
        item("completed", Value::Null)
    };
    search_call_steps(
        steps,
        done,
        "file_search_call",
        &id,
        partial,
        full,
        announced,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::vector_stores::Hit;

    #[test]
    fn citations_point_just_after_each_file_name() {
        let g = Grounding {
            mentions: vec![
                Mention {
                    file_id: Some("file-a".into()),
                    filename: "résumé.pdf".into(),
                },
                Mention {
                    file_id: None,
                    filename: "inline.txt".into(),
                },
            ],
            search: Some(Searched {
                queries: vec!["q".into()],
                hits: vec![Hit {
                    file_id: "file-b".into(),
                    filename: "notes.md".into(),
                    score: 0.9,
                    text: "t".into(),
                    attributes: Value::Null,
                }],
            }),
            store_busy: false,
        };
        let mut text = "Intro ünïcode.\n\n".to_owned();
        let mut annotations = Vec::new();
        append_files(&mut text, &mut annotations, &g);
        assert!(text.contains("inline.txt"));
        assert_eq!(annotations.len(), 2);
        let chars: Vec<char> = text.chars().collect();
        for a in &annotations {
            let index = usize::try_from(annotation_end(a)).expect("index");
            let name = a["filename"].as_str().expect("filename");
            let before: String = chars[index - name.chars().count()..index].iter().collect();
            assert_eq!(before, name);
        }
    }
}
