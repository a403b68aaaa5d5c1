//! `docs/configuration.md` is the one reference of the config file; this test keeps it true.
//!
//! The keys the code accepts are not kept in a list here: they are learned from the parser
//! itself. Every config struct denies unknown fields, so a document with a stray key at some
//! place makes the parser name the keys it expected there (serde's `unknown field …, expected
//! one of …`, which serde-saphyr keeps as a structured error). Asking at every place, and into
//! every sink type (`unknown variant`), walks the whole tree: sections, maps whose keys you name
//! (`sinks.NAME`, `pricing.MODEL`), the sink types and their keys, and the words an enum takes.
//! Where no key list comes back, what was refused (the probe map itself, or the value under its
//! key) tells a value from a map whose keys you name. An answer the walk cannot place fails the
//! test rather than being skipped.
//!
//! The test then reads the tables of `docs/configuration.md` (those whose first column is
//! `key`) and fails when:
//! - a key the parser accepts is not documented, or a documented key is not accepted (for a
//!   sink key: for exactly the sink types its row names);
//! - a key that takes one of a few words does not mention each of them in its row;
//! - a row's default is a single literal (`` `60s` ``) and writing that literal into an
//!   otherwise empty config does not give the built-in defaults;
//! - a key written in `respool.example.yaml` is not documented.

use std::collections::{BTreeMap, BTreeSet};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use serde_json::{Map, Value, json};
use serde_saphyr::Error as YamlError;

use super::Config;

const REFERENCE: &str = include_str!("../../docs/configuration.md");
const EXAMPLE: &str = include_str!("../../respool.example.yaml");
/// A key no config struct has, written where the parser is asked what it expects.
const PROBE: &str = "zz_probe";
/// A name for a map key (`sinks.NAME`) in a probe document.
const NAME: &str = "zz_name";

/// What the parser takes at one place of the file.
#[derive(Debug)]
enum Node {
    /// A value; `words` lists what it may be when it is one of a few (an enum), else empty.
    Leaf { words: Vec<&'static str> },
    /// A section: its keys.
    Section(BTreeMap<&'static str, Node>),
    /// A map whose keys you name (`sinks.NAME`, `pricing.MODEL`, `limits.per_model.MODEL`).
    Named(Box<Node>),
    /// A map whose `tag` key (`type`) decides which other keys it takes.
    Tagged {
        tag: &'static str,
        variants: BTreeMap<&'static str, BTreeMap<&'static str, Node>>,
    },
}

/// One step from the top of the file to a place in it.
#[derive(Debug, Clone)]
enum Step {
    Key(&'static str),
    /// A key you name, in a [`Node::Named`] map.
    Name,
    /// The `tag: variant` key beside the keys of a [`Node::Tagged`] map.
    Variant(&'static str, &'static str),
}

/// The config document with `value` at `path`.
fn document(path: &[Step], value: Value) -> Value {
    let mut v = value;
    for step in path.iter().rev() {
        v = match step {
            Step::Key(k) => json!({ *k: v }),
            Step::Name => json!({ NAME: v }),
            Step::Variant(tag, variant) => {
                let mut m = Map::new();
                m.insert((*tag).into(), json!(variant));
                if let Value::Object(rest) = v {
                    m.extend(rest);
                }
                Value::Object(m)
            }
        };
    }
    v
}

/// The parser's answer to the config document with `value` at `path` (JSON is YAML), and the
/// document's text.
fn parse(path: &[Step], value: Value) -> (Result<(), YamlError>, String) {
    let text = document(path, value).to_string();
    (serde_saphyr::from_str::<Config>(&text).map(drop), text)
}

fn unwrap(mut e: &YamlError) -> &YamlError {
    while let YamlError::WithSnippet { error, .. } = e {
        e = error;
    }
    e
}

fn show(path: &[Step]) -> String {
    let parts: Vec<String> = path
        .iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some((*k).to_string()),
            Step::Name => Some("NAME".into()),
            Step::Variant(..) => None,
        })
        .collect();
    if parts.is_empty() {
        "the top level".into()
    } else {
        format!("`{}`", parts.join("."))
    }
}

fn with(path: &[Step], step: Step) -> Vec<Step> {
    let mut p = path.to_vec();
    p.push(step);
    p
}

/// The 1-based column of `needle` in the one-line `text`.
fn column(text: &str, needle: &str) -> u64 {
    let at = text.find(needle).expect("the probe is in the document");
    text[..at].chars().count() as u64 + 1
}

/// The keys a section or sink type takes, from the parser's refusal of [`PROBE`] there.
fn keys_refused(path: &[Step], answer: &Result<(), YamlError>) -> Option<Vec<&'static str>> {
    match answer.as_ref().map_err(unwrap) {
        Err(YamlError::SerdeUnknownField {
            field, expected, ..
        }) if field == PROBE => Some(expected.clone()),
        Err(YamlError::SerdeUnknownField { field, .. }) => {
            panic!(
                "{}: the parser refused `{field}`, not the probe",
                show(path)
            )
        }
        _ => None,
    }
}

/// Asks the parser what it takes at `path`, by writing `{zz_probe: "x"}` there. Panics on an
/// answer it cannot place, so a change in how the parser reports errors fails this test instead
/// of passing it silently.
fn learn(path: &[Step]) -> Node {
    assert!(
        path.len() < 12,
        "the config nests deeper than expected at {} (a struct that does not deny unknown \
         fields takes any key, so the walk cannot find its keys)",
        show(path)
    );
    let (answer, text) = parse(path, json!({ PROBE: "x" }));
    if let Some(keys) = keys_refused(path, &answer) {
        return Node::Section(
            keys.into_iter()
                .map(|k| (k, learn(&with(path, Step::Key(k)))))
                .collect(),
        );
    }
    let Err(err) = answer else {
        // A map took an arbitrary key with a string under it: keys you name, of text.
        return Node::Named(Box::new(learn(&with(path, Step::Name))));
    };
    match unwrap(&err) {
        // A map read as an enum's `{variant: value}`: a key that takes one of a few words.
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } if variant == PROBE => {
            return Node::Leaf {
                words: expected.clone(),
            };
        }
        // A field is missing. If `field: zz_probe` makes it an unknown variant, the place is
        // an internally tagged enum (a sink, by its `type`). If not, a map around the probe
        // missed one of its required keys (a sink's `command`): the probe map was taken, so it
        // holds keys you name.
        YamlError::SerdeMissingField { field, .. } => {
            return learn_tagged(path, field)
                .unwrap_or_else(|| Node::Named(Box::new(learn(&with(path, Step::Name)))));
        }
        // A type error from serde names what it refused: the map itself (a value goes here),
        // or the string under the probe key (the map took the key: keys you name).
        YamlError::SerdeInvalidType { unexpected, .. } => {
            return if unexpected.starts_with("map") {
                Node::Leaf { words: Vec::new() }
            } else {
                Node::Named(Box::new(learn(&with(path, Step::Name))))
            };
        }
        _ => {}
    }
    // The YAML reader's own mismatches say where it stopped: at the map itself, or under it.
    let map_at = column(&text, &format!("{{\"{PROBE}\""));
    let value_at = column(&text, "\"x\"");
    match err.location().map(|l| (l.line(), l.column())) {
        Some((1, c)) if c == map_at => Node::Leaf { words: Vec::new() },
        Some((1, c)) if c >= value_at => Node::Named(Box::new(learn(&with(path, Step::Name)))),
        _ => panic!(
            "cannot tell what {} takes: in {text} the parser answered {err} at {:?}",
            show(path),
            err.location()
        ),
    }
}

/// The sink types (`tag` values) and the keys of each, at `path`; `None` when `tag` does not
/// pick a variant there.
fn learn_tagged(path: &[Step], tag: &'static str) -> Option<Node> {
    let (answer, _) = parse(path, json!({ tag: PROBE }));
    let variants = match answer.as_ref().map_err(unwrap) {
        Err(YamlError::SerdeUnknownVariant {
            variant, expected, ..
        }) if variant == PROBE => expected.clone(),
        _ => return None,
    };
    let variants = variants
        .into_iter()
        .map(|v| {
            let here = with(path, Step::Variant(tag, v));
            let (answer, text) = parse(&here, json!({ PROBE: "x" }));
            let Some(keys) = keys_refused(&here, &answer) else {
                panic!(
                    "{} with `{tag}: {v}` does not refuse an unknown key: {text} gives {answer:?}",
                    show(path)
                );
            };
            let keys = keys
                .into_iter()
                .map(|k| (k, learn(&with(&here, Step::Key(k)))))
                .collect();
            (v, keys)
        })
        .collect();
    Some(Node::Tagged { tag, variants })
}

/// A key of the file: its path with `*` for the names you choose, and the sink type it
/// belongs to (`None`: every type, or not a sink key).
type KeyOf = (String, Option<String>);

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Every key the parser accepts, with the words it takes (empty: any value).
fn flatten(
    node: &Node,
    prefix: &str,
    sink: Option<&str>,
    out: &mut BTreeMap<KeyOf, Vec<&'static str>>,
) {
    match node {
        Node::Leaf { words } => {
            out.insert(
                (prefix.to_string(), sink.map(str::to_string)),
                words.clone(),
            );
        }
        Node::Section(keys) => {
            for (k, n) in keys {
                flatten(n, &join(prefix, k), sink, out);
            }
        }
        Node::Named(n) => flatten(n, &join(prefix, "*"), sink, out),
        Node::Tagged { tag, variants } => {
            out.insert(
                (join(prefix, tag), None),
                variants.keys().copied().collect(),
            );
            for (v, keys) in variants {
                for (k, n) in keys {
                    flatten(n, &join(prefix, k), Some(v), out);
                }
            }
        }
    }
}

/// The keys a config document writes, placed on the parser's tree.
fn keys_written(node: &Node, value: &Value, prefix: &str, sink: Option<&str>) -> Vec<KeyOf> {
    let leaf = || vec![(prefix.to_string(), sink.map(str::to_string))];
    let Some(map) = value.as_object() else {
        return match node {
            Node::Leaf { .. } => leaf(),
            // `jobs:` with only comments under it, or a map written `{}`.
            _ => Vec::new(),
        };
    };
    match node {
        Node::Leaf { .. } => leaf(),
        Node::Section(keys) => map
            .iter()
            .flat_map(|(k, v)| match keys.get(k.as_str()) {
                Some(n) => keys_written(n, v, &join(prefix, k), sink),
                None => panic!("the example's `{}` is not a key", join(prefix, k)),
            })
            .collect(),
        Node::Named(n) => map
            .values()
            .flat_map(|v| keys_written(n, v, &join(prefix, "*"), sink))
            .collect(),
        Node::Tagged { tag, variants } => {
            let kind = map.get(*tag).and_then(Value::as_str).unwrap_or_default();
            let Some((kind, keys)) = variants.get_key_value(kind) else {
                panic!("the example's `{prefix}` has no known `{tag}`");
            };
            let mut out = vec![(join(prefix, tag), None)];
            for (k, v) in map.iter().filter(|(k, _)| k.as_str() != *tag) {
                let n = keys
                    .get(k.as_str())
                    .unwrap_or_else(|| panic!("the example's `{}` is not a key", join(prefix, k)));
                out.extend(keys_written(n, v, &join(prefix, k), Some(kind)));
            }
            out
        }
    }
}

/// A table cell: its text (code spans included, without their backticks) and its code spans.
#[derive(Debug, Default, Clone)]
struct Cell {
    text: String,
    code: Vec<String>,
}

/// A documented key: the row it is in, and its default cell (when the table has one).
#[derive(Debug)]
struct Documented {
    row: Vec<Cell>,
    default: Option<Cell>,
}

/// The tables of `markdown` whose first column is `key`: each as its header and rows.
fn key_tables(markdown: &str) -> Vec<(Vec<String>, Vec<Vec<Cell>>)> {
    let mut tables = Vec::new();
    let mut header: Vec<String> = Vec::new();
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    let mut row: Vec<Cell> = Vec::new();
    let mut cell: Option<Cell> = None;
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Table(_)) => {
                header.clear();
                rows.clear();
            }
            Event::Start(Tag::TableHead | Tag::TableRow) => row.clear(),
            Event::Start(Tag::TableCell) => cell = Some(Cell::default()),
            Event::Text(t) => {
                if let Some(c) = cell.as_mut() {
                    c.text.push_str(&t);
                }
            }
            Event::Code(t) => {
                if let Some(c) = cell.as_mut() {
                    c.text.push_str(&t);
                    c.code.push(t.to_string());
                }
            }
            Event::End(TagEnd::TableCell) => row.extend(cell.take()),
            Event::End(TagEnd::TableHead) => {
                header = row.iter().map(|c| c.text.trim().to_lowercase()).collect();
            }
            Event::End(TagEnd::TableRow) => rows.push(std::mem::take(&mut row)),
            Event::End(TagEnd::Table) if header.first().is_some_and(|h| h == "key") => {
                tables.push((header.clone(), rows.clone()));
            }
            _ => {}
        }
    }
    tables
}

/// `sinks.NAME.env.VAR` → `sinks.*.env.*`: a segment in capitals is a name you choose.
fn normalise(key: &str) -> String {
    key.split('.')
        .map(|seg| {
            let chosen = seg.chars().any(|c| c.is_ascii_uppercase())
                && !seg.chars().any(|c| c.is_ascii_lowercase());
            if chosen { "*" } else { seg }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Every key the reference documents. Problems (a key documented twice) go to `problems`.
fn documented(problems: &mut Vec<String>) -> BTreeMap<KeyOf, Documented> {
    let mut out = BTreeMap::new();
    for (header, rows) in key_tables(REFERENCE) {
        let sink_col = header.iter().position(|h| h == "sink types");
        let default_col = header.iter().position(|h| h == "default");
        for row in rows {
            let kinds: Vec<Option<String>> = match sink_col.map(|i| &row[i]) {
                Some(c) if c.text.trim() == "all" => vec![None],
                Some(c) => c.code.iter().cloned().map(Some).collect(),
                None => vec![None],
            };
            for key in &row[0].code {
                for kind in &kinds {
                    let k = (normalise(key), kind.clone());
                    let doc = Documented {
                        row: row.clone(),
                        default: default_col.map(|i| row[i].clone()),
                    };
                    if out.insert(k, doc).is_some() {
                        problems.push(format!("`{key}` ({kind:?}) is documented twice"));
                    }
                }
            }
        }
    }
    out
}

fn describe((key, sink): &KeyOf) -> String {
    let key = key.replace('*', "NAME");
    match sink {
        Some(t) => format!("`{key}` (sink type `{t}`)"),
        None => format!("`{key}`"),
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// The config with `key` (no names in it) set to `literal`, written as YAML.
fn config_with(key: &str, literal: &str) -> Result<Config, String> {
    let mut text = String::new();
    let parts: Vec<&str> = key.split('.').collect();
    for (depth, part) in parts.iter().enumerate() {
        text.push_str(&"  ".repeat(depth));
        text.push_str(part);
        text.push(':');
        if depth + 1 == parts.len() {
            text.push(' ');
            text.push_str(literal);
        }
        text.push('\n');
    }
    Config::from_yaml("default", &text, &no_env).map_err(|e| e.to_string())
}

#[test]
fn the_configuration_reference_matches_the_parser() {
    let tree = learn(&[]);
    let mut accepted = BTreeMap::new();
    flatten(&tree, "", None, &mut accepted);
    // The walk must have reached the corners a reader relies on; if it stops early, the
    // comparison below would be vacuous.
    for corner in [
        ("upstream.uncertain_create", None),
        ("sinks.*.type", None),
        ("sinks.*.templates.markdown", Some("email")),
        ("sinks.*.env.*", Some("command")),
        ("pricing.*.cached_input", None),
        ("limits.per_model.*", None),
    ] {
        let key = (corner.0.to_string(), corner.1.map(str::to_string));
        assert!(
            accepted.contains_key(&key),
            "the walk of the parser missed {}: {accepted:#?}",
            describe(&key)
        );
    }

    let mut problems = Vec::new();
    let docs = documented(&mut problems);
    for key in accepted.keys().filter(|k| !docs.contains_key(*k)) {
        problems.push(format!(
            "{} is accepted by the parser but not documented",
            describe(key)
        ));
    }
    for key in docs.keys().filter(|k| !accepted.contains_key(*k)) {
        problems.push(format!(
            "{} is documented but the parser does not accept it",
            describe(key)
        ));
    }
    for (key, words) in &accepted {
        let Some(doc) = docs.get(key) else { continue };
        let written: BTreeSet<&str> = doc
            .row
            .iter()
            .flat_map(|c| c.code.iter().map(String::as_str))
            .collect();
        for w in words.iter().filter(|w| !written.contains(**w)) {
            problems.push(format!(
                "{} takes `{w}`, which its row does not mention",
                describe(key)
            ));
        }
    }

    let defaults = format!("{:?}", Config::from_yaml("default", "", &no_env).unwrap());
    let mut checked = 0;
    for ((key, sink), doc) in &docs {
        let Some(cell) = &doc.default else { continue };
        let literal = match cell.code.as_slice() {
            [one] if cell.text.trim() == one => one,
            _ => continue,
        };
        if sink.is_some() || key.contains('*') || !accepted.contains_key(&(key.clone(), None)) {
            continue;
        }
        checked += 1;
        match config_with(key, literal) {
            Ok(cfg) if format!("{cfg:?}") == defaults => {}
            Ok(_) => problems.push(format!(
                "`{key}`: the documented default `{literal}` is not the built-in default"
            )),
            Err(e) => problems.push(format!(
                "`{key}`: the documented default `{literal}` does not parse: {e}"
            )),
        }
    }
    assert!(checked >= 20, "only {checked} defaults were checked");

    let example: Value = serde_saphyr::from_str(EXAMPLE).expect("respool.example.yaml parses");
    for key in keys_written(&tree, &example, "", None) {
        if !docs.contains_key(&key) {
            problems.push(format!(
                "{} is written in respool.example.yaml but not documented",
                describe(&key)
            ));
        }
    }

    assert!(
        problems.is_empty(),
        "docs/configuration.md and the config parser disagree:\n  - {}",
        problems.join("\n  - ")
    );
}
