//! Every link in the README and `docs/` resolves: a relative link names a file of the
//! repository, and a `#fragment` names a heading of the Markdown file it points into (by
//! GitHub's rule for heading anchors). Code comments that cite a document (`docs/….md`) name
//! one that exists, and nothing points outside the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The README and every Markdown file under `docs/`, relative to the repository.
fn documents() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("docs/ is readable").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| PathBuf::from("docs").join(p.file_name().expect("a file name")))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text's headings (a repeated heading gets `-1`, `-2`, …) and its
/// links, in order.
fn read(markdown: &str) -> (BTreeSet<String>, Vec<String>) {
    let mut anchors = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut links = Vec::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let base = slug(&heading.take().unwrap_or_default());
                let n = seen.entry(base.clone()).or_insert(0);
                anchors.insert(if *n == 0 { base } else { format!("{base}-{n}") });
                *n += 1;
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                links.push(dest_url.to_string());
            }
            _ => {}
        }
    }
    (anchors, links)
}

/// `base/../x` → `x`; `None` when the path climbs out of the repository.
fn resolve(base: &Path, link: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in base.join(link).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn anchors_of(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join(file)).unwrap_or_default();
    read(&text).0
}

#[test]
fn every_link_in_the_docs_resolves() {
    let mut problems = Vec::new();
    let docs = documents();
    assert!(
        docs.len() > 5,
        "expected the README and the docs/ pages, found {docs:?}"
    );
    for doc in &docs {
        let text = std::fs::read_to_string(root().join(doc)).expect("a document is readable");
        let (own, links) = read(&text);
        let dir = doc.parent().unwrap_or(Path::new(""));
        for link in links {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let anchors = if path.is_empty() {
                own.clone()
            } else {
                let Some(target) = resolve(dir, path) else {
                    problems.push(format!(
                        "{}: `{link}` points outside the repository",
                        doc.display()
                    ));
                    continue;
                };
                if !root().join(&target).exists() {
                    problems.push(format!("{}: `{link}`: no such file", doc.display()));
                    continue;
                }
                if target.extension().is_some_and(|x| x == "md") {
                    anchors_of(&target)
                } else {
                    BTreeSet::new()
                }
            };
            if !fragment.is_empty() && !anchors.contains(fragment) {
                problems.push(format!(
                    "{}: `{link}`: no heading with that anchor",
                    doc.display()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n  - {}",
        problems.join("\n  - ")
    );
}

/// Text files of the repository a reader follows: code, docs, examples, the unit, CI.
fn repository_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let rel = dir.join(entry.file_name());
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            if !matches!(
                name.as_str(),
                "target" | "corpus" | "artifacts" | "snapshots"
            ) {
                repository_files(&rel, out);
            }
        } else if [
            ".rs", ".md", ".yaml", ".toml", ".service", ".py", ".sh", ".txt",
        ]
        .iter()
        .any(|x| name.ends_with(x))
            || rel.starts_with(".ci")
        {
            out.push(rel);
        }
    }
}

#[test]
fn citations_of_documents_name_files_that_exist() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "docs", "examples", "systemd", ".ci", "fuzz"] {
        repository_files(Path::new(dir), &mut files);
    }
    files.extend(
        [
            "README.md",
            "respool.example.yaml",
            "jobs.example.yaml",
            "Cargo.toml",
        ]
        .map(PathBuf::from),
    );
    let mut problems = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(root().join(file)) else {
            continue;
        };
        // Spelled in two halves, so this file does not match itself.
        for outside in [concat!("..", "/shared/"), concat!("/work", "/shared")] {
            if text.contains(outside) {
                problems.push(format!(
                    "{} refers to `{outside}`, outside the repository",
                    file.display()
                ));
            }
        }
        // The vendored reference cites other repositories' `docs/` folders.
        if file == Path::new("docs/upstream-api.md") {
            continue;
        }
        for (at, _) in text.match_indices("docs/") {
            let after_word = text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
            let name: String = text[at + "docs/".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            let name = name.trim_end_matches('.');
            if !after_word && name.ends_with(".md") && !root().join("docs").join(name).is_file() {
                problems.push(format!(
                    "{} cites `docs/{name}`, which does not exist",
                    file.display()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dangling citations:\n  - {}",
        problems.join("\n  - ")
    );
}

#[test]
fn anchors_follow_github() {
    assert_eq!(slug("Discord, ntfy, command"), "discord-ntfy-command");
    assert_eq!(slug("`type: email`"), "type-email");
    assert_eq!(
        slug("1. Creating a response in background mode — `POST /v1/responses`"),
        "1-creating-a-response-in-background-mode--post-v1responses"
    );
    let (anchors, _) = read("# A\n## B\n## B\n");
    assert_eq!(
        anchors,
        BTreeSet::from(["a".into(), "b".into(), "b-1".into()])
    );
}
