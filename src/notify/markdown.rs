//! Model output for people: citations and reasoning summaries pulled from the Response JSON,
//! a Markdown report with its sources, and sanitized HTML (model output is untrusted: it is
//! rendered with pulldown-cmark, then cleaned with ammonia before any mail client or browser
//! sees it).

use serde::Serialize;
use serde_json::Value;

/// A `url_citation` (or `file_citation`) of the output, numbered in order of first use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    pub index: usize,
    pub title: String,
    pub url: Option<String>,
}

/// The distinct citations of every `output_text` part, in order.
pub fn citations(response: &Value) -> Vec<Citation> {
    let mut out: Vec<Citation> = Vec::new();
    let parts = response
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("message"))
        .flat_map(|i| {
            i.get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        });
    for part in parts {
        for a in part
            .get("annotations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (title, url) = match a.get("type").and_then(Value::as_str) {
                Some("url_citation") | None => {
                    let url = a.get("url").and_then(Value::as_str).map(str::to_string);
                    let title = a.get("title").and_then(Value::as_str).map(str::to_string);
                    match (title, url) {
                        (t, Some(u)) => (t.unwrap_or_else(|| u.clone()), Some(u)),
                        _ => continue,
                    }
                }
                Some("file_citation") => {
                    let name = a
                        .get("filename")
                        .or_else(|| a.get("file_id"))
                        .and_then(Value::as_str);
                    match name {
                        Some(n) => (n.to_string(), None),
                        None => continue,
                    }
                }
                _ => continue,
            };
            if !out.iter().any(|c| c.url == url && c.title == title) {
                out.push(Citation {
                    index: out.len() + 1,
                    title,
                    url,
                });
            }
        }
    }
    out
}

/// The text of every reasoning summary, in order.
pub fn reasoning_summaries(response: &Value) -> Vec<String> {
    response
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("reasoning"))
        .flat_map(|i| {
            i.get("summary")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|s| s.get("text").and_then(Value::as_str))
        .filter(|t| !t.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The output with a "Sources" section listing its citations.
pub fn report(output: &str, citations: &[Citation]) -> String {
    let mut md = output.trim_end().to_string();
    if !citations.is_empty() {
        md.push_str("\n\n## Sources\n\n");
        for c in citations {
            match &c.url {
                Some(u) => md.push_str(&format!(
                    "{}. [{}]({})\n",
                    c.index,
                    escape_link_text(&c.title),
                    u
                )),
                None => md.push_str(&format!("{}. {}\n", c.index, c.title)),
            }
        }
    }
    md
}

fn escape_link_text(s: &str) -> String {
    s.replace('[', "\\[").replace(']', "\\]")
}

/// `text` as a fenced Markdown code block of language `lang`, its fence longer than any run
/// of backticks inside so the text cannot end it early.
pub fn code_block(lang: &str, text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{lang}\n{text}\n{fence}\n")
}

/// Markdown → HTML with only safe tags and attributes; links open with `rel="noopener
/// noreferrer"`.
pub fn to_safe_html(md: &str) -> String {
    use pulldown_cmark::{Options, Parser, html};
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    opts.insert(Options::ENABLE_FOOTNOTES);
    opts.insert(Options::ENABLE_TASKLISTS);
    let mut raw = String::new();
    html::push_html(&mut raw, Parser::new_ext(md, opts));
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer"))
        .clean(&raw)
        .to_string()
}

/// At most `max` characters of `text`, cut at a word boundary, with `…` when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    let cut = match cut.rfind(char::is_whitespace) {
        Some(i) if i > max / 2 => &cut[..i],
        _ => &cut[..],
    };
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_code_block_outlasts_the_backticks_inside() {
        assert_eq!(code_block("json", "{}"), "```json\n{}\n```\n");
        let tricky = "{\"a\": \"````\\n# not a heading\"}";
        let block = code_block("json", tricky);
        assert!(block.starts_with("`````json\n"), "{block}");
        // Rendered, the whole text stays inside one code element.
        let html = to_safe_html(&block);
        assert_eq!(html.matches("<code").count(), 1, "{html}");
        assert!(!html.contains("<h1>"), "{html}");
    }

    use serde_json::json;

    use super::*;

    #[test]
    fn citations_and_summaries() {
        let resp = json!({"output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Thought A"}]},
            {"type": "message", "content": [{"type": "output_text", "text": "x", "annotations": [
                {"type": "url_citation", "url": "https://a.example", "title": "A", "start_index": 0, "end_index": 1},
                {"type": "url_citation", "url": "https://a.example", "title": "A", "start_index": 0, "end_index": 1},
                {"type": "file_citation", "file_id": "file-1", "filename": "notes.pdf", "index": 0}]}]}]});
        let c = citations(&resp);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0],
            Citation {
                index: 1,
                title: "A".into(),
                url: Some("https://a.example".into())
            }
        );
        assert_eq!(c[1].title, "notes.pdf");
        assert_eq!(reasoning_summaries(&resp), vec!["Thought A".to_string()]);
        let md = report("Body", &c);
        assert!(
            md.contains("## Sources\n\n1. [A](https://a.example)\n2. notes.pdf"),
            "{md}"
        );
    }

    #[test]
    fn html_is_sanitized() {
        let html = to_safe_html(
            "# Hi\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) <img src=x onerror=alert(1)> [y](https://ok.example)",
        );
        assert!(html.contains("<h1>Hi</h1>"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("href=\"javascript:"), "{html}");
        assert!(!html.contains("onerror"), "{html}");
        assert!(html.contains("href=\"https://ok.example\""), "{html}");
    }

    #[test]
    fn excerpts_cut_at_words() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("one two three four", 12), "one two…");
    }
}
