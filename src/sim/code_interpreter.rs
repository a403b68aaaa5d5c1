//! The code interpreter (`docs/upstream-api.md` §1.5, §1.6, §2.5): the `code_interpreter`
//! tool of a create ([`CodeTool`]), the analysis its code "runs" ([`Analysis`]: the Python,
//! what it prints and the files it saves, all drawn from the input text, so the same input
//! gives the same bytes), the `code_interpreter_call` item with its stream events, and the
//! answer's `container_file_citation`s. The container and its files live in `containers.rs`.

use rand::Rng;
use serde_json::{Value, json};

use super::faults::MAX_CONTAINER_FILES;
use super::images::bar_chart_png;
use super::output::{Step, chunks, ev, obfuscation, with_obfuscation};

/// Where the code runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContainerChoice {
    /// `{"type": "auto", "file_ids": [...]}`: a new container with those files copied in.
    Auto {
        file_ids: Vec<String>,
        memory_limit: Option<String>,
    },
    /// `"cntr_…"`: an existing container.
    Existing(String),
}

/// The `code_interpreter` tool of a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodeTool {
    /// Its position in `tools` (for `param` in errors).
    pub index: usize,
    pub container: ContainerChoice,
}

impl CodeTool {
    /// The first `code_interpreter` tool of `tools` that names a container. Lenient: the
    /// create's schema check refuses a missing or mistyped `container`.
    pub(crate) fn parse(tools: &[Value]) -> Option<Self> {
        tools.iter().enumerate().find_map(|(index, tool)| {
            if tool.get("type").and_then(Value::as_str) != Some("code_interpreter") {
                return None;
            }
            let container = match tool.get("container")? {
                Value::String(id) => ContainerChoice::Existing(id.clone()),
                Value::Object(o) => ContainerChoice::Auto {
                    file_ids: o
                        .get("file_ids")
                        .and_then(Value::as_array)
                        .map(|ids| {
                            ids.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                    memory_limit: o
                        .get("memory_limit")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                },
                _ => return None,
            };
            Some(Self { index, container })
        })
    }

    /// `param` of an error about its container.
    pub(crate) fn param(&self) -> String {
        format!("tools[{}].container", self.index)
    }
}

/// The names of the files a run saves, in the order `container_files=N` takes them.
pub(crate) const FILE_NAMES: [&str; MAX_CONTAINER_FILES] = [
    "results.csv",
    "chart.png",
    "summary.json",
    "report.md",
    "données-東京.txt",
];

/// Where the code saves its files.
pub(crate) const DATA_DIR: &str = "/mnt/data";

const CITIES: &[&str] = &[
    "Zürich",
    "São Paulo",
    "Kraków",
    "東京",
    "Reykjavík",
    "Montréal",
    "Ålesund",
];

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One row of the analysis: a word of the input, a count and a city.
#[derive(Debug, Clone)]
struct Row {
    term: String,
    count: u64,
    city: &'static str,
}

/// Up to six distinct words (three letters or more) of the input, each with a count.
fn rows(input_text: &str) -> Vec<Row> {
    let mut terms: Vec<String> = Vec::new();
    for word in input_text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
    {
        if !terms.contains(&word) {
            terms.push(word);
        }
        if terms.len() == 6 {
            break;
        }
    }
    if terms.is_empty() {
        terms = ["alpha", "beta", "gamma"].map(str::to_owned).to_vec();
    }
    terms
        .into_iter()
        .map(|term| {
            let h = fnv(&term);
            Row {
                count: h % 90 + 10,
                city: CITIES[((h >> 8) % CITIES.len() as u64) as usize],
                term,
            }
        })
        .collect()
}

/// What the code interpreter runs for a response: its code, what it prints, the files it saves.
#[derive(Debug, Clone)]
pub(crate) struct Analysis {
    pub code: String,
    pub logs: String,
    /// `(file name, bytes)`, saved under [`DATA_DIR`].
    pub files: Vec<(String, Vec<u8>)>,
}

/// The code that saves each file, `PATH` standing for its quoted path.
const SAVE_CSV: &str = r##"with open(PATH, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["rank", "term", "count", "share", "city"])
    for rank, (term, count, city) in enumerate(rows, 1):
        writer.writerow([rank, term, count, f"{count / total:.3f}", city])
"##;
const SAVE_CHART: &str = r##"import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(1.6, 1.0), dpi=100)
ax.bar([t for t, _, _ in rows], [c for _, c, _ in rows])
fig.savefig(PATH)
"##;
const SAVE_SUMMARY: &str = r##"summary = {"topic": TOPIC, "rows": len(rows), "total": total}
with open(PATH, "w", encoding="utf-8") as f:
    json.dump(summary, f, ensure_ascii=False, indent=2)
"##;
const SAVE_REPORT: &str = r##"with open(PATH, "w", encoding="utf-8") as f:
    f.write("# Analysis\n")
    for rank, (term, count, city) in enumerate(rows, 1):
        f.write(f"| {rank} | {term} | {count} | {city} |\n")
"##;
const SAVE_TEXT: &str = r##"with open(PATH, "w", encoding="utf-8") as f:
    for term, count, city in rows:
        f.write(f"{term} : {count} ({city})\n")
"##;

/// The bytes of the file `name` and the code that saves it.
fn file(name: &str, rows: &[Row], topic: &str) -> (Vec<u8>, &'static str) {
    let total: u64 = rows.iter().map(|r| r.count).sum();
    match name {
        "results.csv" => {
            let mut csv = String::from("rank,term,count,share,city\n");
            for (i, r) in rows.iter().enumerate() {
                let share = r.count as f64 / total.max(1) as f64;
                csv.push_str(&format!(
                    "{},{},{},{share:.3},{}\n",
                    i + 1,
                    r.term,
                    r.count,
                    r.city
                ));
            }
            (csv.into_bytes(), SAVE_CSV)
        }
        "chart.png" => {
            let counts: Vec<u64> = rows.iter().map(|r| r.count).collect();
            (bar_chart_png(&counts, 160, 100), SAVE_CHART)
        }
        "summary.json" => {
            let summary = json!({
                "topic": topic,
                "rows": rows.len(),
                "total": total,
                "top_term": rows.iter().max_by_key(|r| r.count).map(|r| &r.term),
                "cities": rows.iter().map(|r| r.city).collect::<Vec<_>>(),
            });
            let text = serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n";
            (text.into_bytes(), SAVE_SUMMARY)
        }
        "report.md" => {
            let mut md = format!(
                "# Analysis: {topic}\n\n| rank | term | count | city |\n|---:|---|---:|---|\n"
            );
            for (i, r) in rows.iter().enumerate() {
                md.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    i + 1,
                    r.term,
                    r.count,
                    r.city
                ));
            }
            (md.into_bytes(), SAVE_REPORT)
        }
        _ => {
            let mut txt = format!("Résumé de l'analyse — {topic}\n");
            for r in rows {
                txt.push_str(&format!("{} : {} ({})\n", r.term, r.count, r.city));
            }
            (txt.into_bytes(), SAVE_TEXT)
        }
    }
}

impl Analysis {
    /// The analysis of `input_text` that saves the first `files` of [`FILE_NAMES`].
    pub(crate) fn of(input_text: &str, topic: &str, files: usize) -> Self {
        let rows = rows(input_text);
        let total: u64 = rows.iter().map(|r| r.count).sum();
        // Python accepts Rust's debug quoting of these strings (quotes and backslashes escaped).
        let mut code = String::from("import csv\nimport json\n\nrows = [\n");
        for r in &rows {
            code.push_str(&format!("    ({:?}, {}, {:?}),\n", r.term, r.count, r.city));
        }
        code.push_str("]\ntotal = sum(count for _, count, _ in rows)\n");
        code.push_str("print(f\"{len(rows)} rows, {total} in total\")\n");
        let mut logs = format!("{} rows, {total} in total\n", rows.len());
        let mut saved = Vec::new();
        for name in FILE_NAMES.iter().take(files) {
            let path = format!("{DATA_DIR}/{name}");
            let (bytes, save) = file(name, &rows, topic);
            code.push('\n');
            code.push_str(
                &save
                    .replace("PATH", &format!("{path:?}"))
                    .replace("TOPIC", &format!("{topic:?}")),
            );
            code.push_str(&format!("print(\"Saved {path}\")\n"));
            logs.push_str(&format!("Saved {path}\n"));
            saved.push(((*name).to_owned(), bytes));
        }
        Self {
            code,
            logs,
            files: saved,
        }
    }
}

/// A file the run saved, as the answer cites it.
#[derive(Debug, Clone)]
pub(crate) struct CitedFile {
    /// `cfile_…`.
    pub file_id: String,
    /// The base name (`results.csv`).
    pub filename: String,
    /// `/mnt/data/results.csv`.
    pub path: String,
    pub bytes: usize,
}

/// What a code interpreter call did: where it ran, what it ran and printed, what it saved.
#[derive(Debug, Clone)]
pub(crate) struct CodeRun {
    /// `cntr_…`.
    pub container_id: String,
    pub code: String,
    pub logs: String,
    pub files: Vec<CitedFile>,
}

impl CodeRun {
    fn item(&self, id: &str, status: &str, code: &str, outputs: Value) -> Value {
        json!({
            "id": id,
            "type": "code_interpreter_call",
            "status": status,
            "container_id": self.container_id,
            "code": code,
            "outputs": outputs,
        })
    }

    /// Adds the `code_interpreter_call` item in three steps: added, in progress and its code
    /// streamed; interpreting; completed and done. The item kept in the output always has its
    /// `outputs` (`render_output` hides them unless `include` asks); the stream's
    /// `output_item.done` carries them only when the create's `include` has
    /// `code_interpreter_call.outputs`.
    pub(crate) fn steps(
        &self,
        steps: &mut Vec<Step>,
        done: &mut Vec<Value>,
        outputs_in_events: bool,
        obfuscate: bool,
        rng: &mut impl Rng,
    ) {
        let id = super::ids::new("ci");
        let idx = done.len();
        let at = |extra: Value| {
            let mut fields = json!({"output_index": idx, "item_id": id});
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
                json!({"output_index": idx, "item": self.item(&id, "in_progress", "", Value::Null)}),
            ),
            ev("response.code_interpreter_call.in_progress", at(json!({}))),
        ];
        for delta in chunks(&self.code) {
            events.push(ev(
                "response.code_interpreter_call_code.delta",
                with_obfuscation(at(json!({"delta": delta})), obfuscation(rng, obfuscate)),
            ));
        }
        steps.push(Step {
            events,
            output: with(self.item(&id, "in_progress", &self.code, Value::Null)),
        });
        steps.push(Step {
            events: vec![
                ev(
                    "response.code_interpreter_call_code.done",
                    at(json!({"code": self.code})),
                ),
                ev("response.code_interpreter_call.interpreting", at(json!({}))),
            ],
            output: with(self.item(&id, "interpreting", &self.code, Value::Null)),
        });
        let outputs = json!([{"type": "logs", "logs": self.logs}]);
        let full = self.item(&id, "completed", &self.code, outputs);
        let announced = if outputs_in_events {
            full.clone()
        } else {
            self.item(&id, "completed", &self.code, Value::Null)
        };
        steps.push(Step {
            events: vec![
                ev("response.code_interpreter_call.completed", at(json!({}))),
                ev(
                    "response.output_item.done",
                    json!({"output_index": idx, "item": announced}),
                ),
            ],
            output: with(full.clone()),
        });
        done.push(full);
    }

    /// Appends the "Files from the analysis" section: one markdown link per file
    /// (`[results.csv](sandbox:/mnt/data/results.csv)`), each covered by a
    /// `container_file_citation` whose `start_index`/`end_index` are character (code point)
    /// offsets of the link.
    pub(crate) fn append_citations(&self, text: &mut String, annotations: &mut Vec<Value>) {
        if self.files.is_empty() {
            text.push_str(
                "## Analysis\n\nThe analysis ran in the code interpreter and saved no files.\n\n",
            );
            return;
        }
        text.push_str("## Files from the analysis\n\n");
        for f in &self.files {
            text.push_str("- ");
            let start = text.chars().count();
            text.push_str(&format!("[{}](sandbox:{})", f.filename, f.path));
            let end = text.chars().count();
            text.push_str(&format!(": {} bytes.\n", f.bytes));
            annotations.push(json!({
                "type": "container_file_citation",
                "container_id": self.container_id,
                "file_id": f.file_id,
                "filename": f.filename,
                "start_index": start,
                "end_index": end,
            }));
        }
        text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tool_names_its_container() {
        let tools = [
            json!({"type": "image_generation"}),
            json!({"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["file-a"]}}),
        ];
        assert_eq!(
            CodeTool::parse(&tools),
            Some(CodeTool {
                index: 1,
                container: ContainerChoice::Auto {
                    file_ids: vec!["file-a".into()],
                    memory_limit: None
                }
            })
        );
        let named = CodeTool::parse(&[json!({"type": "code_interpreter", "container": "cntr_x"})])
            .expect("a tool");
        assert_eq!(named.container, ContainerChoice::Existing("cntr_x".into()));
        assert_eq!(named.param(), "tools[0].container");
        assert_eq!(
            CodeTool::parse(&[json!({"type": "code_interpreter"})]),
            None
        );
    }

    #[test]
    fn the_analysis_saves_what_it_says_deterministically() {
        let a = Analysis::of("Café prices in Zürich, über alles", "Café prices", 5);
        assert_eq!(a.files.len(), 5);
        let names: Vec<&str> = a.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, FILE_NAMES);
        let csv = std::str::from_utf8(&a.files[0].1).expect("utf-8");
        assert!(
            csv.starts_with("rank,term,count,share,city\n1,café,"),
            "{csv}"
        );
        assert!(!csv.is_ascii());
        assert!(a.files[1].1.starts_with(b"\x89PNG\r\n\x1a\n"));
        let summary: Value = serde_json::from_slice(&a.files[2].1).expect("json");
        assert_eq!(summary["topic"], "Café prices");
        for (name, _) in &a.files {
            assert!(a.code.contains(&format!("/mnt/data/{name}")), "{name}");
            assert!(
                a.logs.contains(&format!("Saved /mnt/data/{name}")),
                "{name}"
            );
        }
        let again = Analysis::of("Café prices in Zürich, über alles", "Café prices", 5);
        assert_eq!(again.files, a.files);
        let none = Analysis::of("  ", "your question", 0);
        assert!(none.files.is_empty() && none.code.contains("\"alpha\""));
    }

    #[test]
    fn citations_cover_the_link_naming_each_file() {
        let run = CodeRun {
            container_id: "cntr_1".into(),
            code: String::new(),
            logs: String::new(),
            files: ["results.csv", "données-東京.txt"]
                .iter()
                .map(|n| CitedFile {
                    file_id: format!("cfile_{n}"),
                    filename: (*n).to_owned(),
                    path: format!("/mnt/data/{n}"),
                    bytes: 7,
                })
                .collect(),
        };
        let mut text = "Intro ünïcode 東京.\n\n".to_owned();
        let mut annotations = Vec::new();
        run.append_citations(&mut text, &mut annotations);
        let chars: Vec<char> = text.chars().collect();
        assert_eq!(annotations.len(), 2);
        for a in &annotations {
            let start = a["start_index"].as_u64().expect("start") as usize;
            let end = a["end_index"].as_u64().expect("end") as usize;
            let span: String = chars[start..end].iter().collect();
            let name = a["filename"].as_str().expect("filename");
            assert_eq!(span, format!("[{name}](sandbox:/mnt/data/{name})"));
        }
    }
}
