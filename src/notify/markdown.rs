//! Model output for people: citations and reasoning summaries pulled from the Response JSON,
//! a Markdown report with its sources, and sanitized HTML (model output is untrusted: it is
//! rendered with pulldown-cmark, then cleaned with ammonia before any mail client or browser
//! sees it).

use serde::Serialize;
use serde_json::Value;

/// A citation of the output (`url_citation`, `file_citation`, `container_file_citation`),
/// numbered in order of first use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    pub index: usize,
    pub title: String,
    pub url: Option<String>,
}

/// The distinct citations of every `output_text` part, in order.
pub fn citations(response: &Value) -> Vec<Citation> {
    let mut out: Vec<Citation> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let parts = output_parts(response);
    for part in parts {
        for a in part
            .get("annotations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(key) = citation_key(a) else {
                continue;
            };
            if seen.insert(key.clone()) {
                out.push(Citation {
                    index: out.len() + 1,
                    title: key.0,
                    url: key.1,
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

/// A response made readable: its text with a numbered marker (`[1]`) after each passage that
/// cites a source, what its tools did, and its sources numbered as the markers are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// The output text with the citation markers put in.
    pub body: String,
    /// One line per kind of tool activity (`Searched the web 3 times: …`).
    pub activity: Vec<String>,
    pub citations: Vec<Citation>,
}

impl Report {
    /// The report of `output_text` (what the job recorded) and its stored `response`. The
    /// markers go where each annotation says (`end_index` of a URL or container-file citation,
    /// `index` of a file citation, counted in characters of its own part); when the text of the
    /// response's parts is not `output_text`, or there is no response, the text is left as it
    /// is and the sources are only listed.
    pub fn of(output_text: &str, response: Option<&Value>) -> Self {
        let Some(response) = response else {
            return Self {
                body: output_text.to_string(),
                ..Self::default()
            };
        };
        let citations = citations(response);
        let activity = activity(response);
        let numbers: std::collections::HashMap<(&str, Option<&str>), usize> = citations
            .iter()
            .map(|c| ((c.title.as_str(), c.url.as_deref()), c.index))
            .collect();
        let number = |a: &Value| -> Option<usize> {
            let (title, url) = citation_key(a)?;
            numbers.get(&(title.as_str(), url.as_deref())).copied()
        };
        let mut body = String::new();
        let mut plain = String::new();
        for part in output_parts(response) {
            let Some(text) = part.get("text").and_then(Value::as_str) else {
                continue;
            };
            plain.push_str(text);
            let mut marks: Vec<(usize, usize)> = part
                .get("annotations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| {
                    let at = a
                        .get("end_index")
                        .or_else(|| a.get("index"))
                        .and_then(Value::as_u64)?;
                    Some((usize::try_from(at).ok()?, number(a)?))
                })
                .collect();
            marks.sort_unstable();
            marks.dedup();
            // Byte offset of each character position, the end included.
            let offsets: Vec<usize> = text
                .char_indices()
                .map(|(b, _)| b)
                .chain([text.len()])
                .collect();
            let mut last = 0;
            for (at, n) in marks {
                let Some(&byte) = offsets.get(at) else {
                    continue;
                };
                body.push_str(&text[last..byte]);
                // Escaped where Markdown would read `[1](…)`, `[1][…]` or `[1]:` as a link.
                if text[byte..].starts_with(['(', '[', ':']) {
                    body.push_str(&format!("\\[{n}\\]"));
                } else {
                    body.push_str(&format!("[{n}]"));
                }
                last = byte;
            }
            body.push_str(&text[last..]);
        }
        if plain != output_text {
            body = output_text.to_string();
        }
        Self {
            body,
            activity,
            citations,
        }
    }

    /// The whole report as Markdown: the body, then "Tool activity" and "Sources" sections
    /// when there are any.
    pub fn markdown(&self) -> String {
        let mut md = self.body.trim_end().to_string();
        if !self.activity.is_empty() {
            md.push_str("\n\n## Tool activity\n\n");
            for line in &self.activity {
                md.push_str(&format!("- {line}\n"));
            }
        }
        if self.citations.is_empty() {
            return md;
        }
        sources_section(&mut md, &self.citations);
        md
    }
}

/// Every `output_text` part of every `message`, in order.
fn output_parts(response: &Value) -> impl Iterator<Item = &Value> {
    crate::structured::message_parts(response)
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("output_text"))
}

/// What a response's tools did, one line per kind, in a fixed order.
pub fn activity(response: &Value) -> Vec<String> {
    let items: Vec<&Value> = response
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let of = |t: &'static str| {
        items
            .iter()
            .filter(move |i| i.get("type").and_then(Value::as_str) == Some(t))
    };
    let mut out = Vec::new();
    let mut searches = Vec::new();
    let (mut opened, mut found) = (0, 0);
    for i in of("web_search_call") {
        match i.pointer("/action/type").and_then(Value::as_str) {
            Some("open_page") => opened += 1,
            Some("find_in_page") | Some("find") => found += 1,
            _ => searches.push(
                i.pointer("/action/query")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            ),
        }
    }
    if !searches.is_empty() {
        out.push(format!(
            "Searched the web {}{}",
            times(searches.len()),
            quoted(&searches)
        ));
    }
    if opened > 0 {
        out.push(format!("Opened {opened} page{}", plural(opened)));
    }
    if found > 0 {
        out.push(format!("Searched within pages {}", times(found)));
    }
    let file_queries: Vec<&str> = of("file_search_call")
        .flat_map(|i| {
            i.get("queries")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(Value::as_str)
        .collect();
    let file_searches = of("file_search_call").count();
    if file_searches > 0 {
        out.push(format!(
            "Searched your files {}{}",
            times(file_searches),
            quoted(&file_queries)
        ));
    }
    let runs = of("code_interpreter_call").count();
    if runs > 0 {
        out.push(format!("Ran code {}", times(runs)));
    }
    let images = of("image_generation_call").count();
    if images > 0 {
        out.push(format!("Generated {images} image{}", plural(images)));
    }
    let mut tools: Vec<String> = of("mcp_call")
        .map(|i| {
            let server = i.get("server_label").and_then(Value::as_str).unwrap_or("?");
            let name = i.get("name").and_then(Value::as_str).unwrap_or("?");
            format!("{server}/{name}")
        })
        .collect();
    if !tools.is_empty() {
        let n = tools.len();
        tools.sort();
        tools.dedup();
        out.push(format!(
            "Called MCP tools {}: {}",
            times(n),
            tools.join(", ")
        ));
    }
    let mut functions: Vec<&str> = of("function_call")
        .filter_map(|i| i.get("name").and_then(Value::as_str))
        .collect();
    if !functions.is_empty() {
        let n = functions.len();
        functions.sort_unstable();
        functions.dedup();
        out.push(format!(
            "Called functions {}: {}",
            times(n),
            functions.join(", ")
        ));
    }
    out
}

fn times(n: usize) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `: “a”, “b” and 3 more` for the non-blank queries, at most five shown.
fn quoted(queries: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut seen: Vec<&str> = Vec::new();
    for q in queries.iter().map(|q| q.trim()).filter(|q| !q.is_empty()) {
        if !seen.contains(&q) {
            seen.push(q);
        }
    }
    if seen.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = seen
        .iter()
        .take(SHOWN)
        .map(|q| format!("“{}”", excerpt(q, 80)))
        .collect();
    let more = seen.len().saturating_sub(SHOWN);
    if more > 0 {
        format!(": {} and {more} more", shown.join(", "))
    } else {
        format!(": {}", shown.join(", "))
    }
}

/// The (title, url) a citation annotation is listed under; `None` for other annotations.
fn citation_key(a: &Value) -> Option<(String, Option<String>)> {
    match a.get("type").and_then(Value::as_str) {
        Some("url_citation") | None => {
            let url = a.get("url").and_then(Value::as_str)?.to_string();
            let title = a
                .get("title")
                .and_then(Value::as_str)
                .map_or_else(|| url.clone(), str::to_string);
            Some((title, Some(url)))
        }
        Some("file_citation" | "container_file_citation") => {
            let name = a
                .get("filename")
                .or_else(|| a.get("file_id"))
                .and_then(Value::as_str)?;
            Some((name.to_string(), None))
        }
        _ => None,
    }
}

fn sources_section(md: &mut String, citations: &[Citation]) {
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
        let md = Report::of("x", Some(&resp)).markdown();
        assert!(
            md.contains("## Sources\n\n1. [A](https://a.example)\n2. notes.pdf"),
            "{md}"
        );
    }

    #[test]
    fn citation_markers_go_where_the_annotations_say_in_characters() {
        // Accents and CJK: character offsets are not byte offsets.
        let one = "Café prices rose (Bloomberg). 東京 too (NHK).";
        let end_b = one.chars().position(|c| c == '.').unwrap() + 1;
        let end_n = one.chars().count();
        let two = "A chart was made.";
        let resp = json!({"output": [
            {"type": "web_search_call", "action": {"type": "search", "query": "café prices 2026"}},
            {"type": "web_search_call", "action": {"type": "search", "query": "東京 prices"}},
            {"type": "web_search_call", "action": {"type": "open_page", "url": "https://b.example"}},
            {"type": "code_interpreter_call", "container_id": "cntr_1", "code": "plot()"},
            {"type": "message", "content": [
                {"type": "output_text", "text": one, "annotations": [
                    {"type": "url_citation", "url": "https://b.example", "title": "Bloomberg", "start_index": 18, "end_index": end_b},
                    {"type": "url_citation", "url": "https://n.example", "title": "NHK", "start_index": 31, "end_index": end_n},
                    {"type": "url_citation", "url": "https://b.example", "title": "Bloomberg", "start_index": 31, "end_index": end_n}]},
                {"type": "output_text", "text": two, "annotations": [
                    {"type": "container_file_citation", "container_id": "cntr_1", "file_id": "cfile_1",
                     "filename": "chart.png", "start_index": 2, "end_index": 7},
                    {"type": "url_citation", "url": "https://far.example", "title": "Past the end", "start_index": 0, "end_index": 999}]}]}]});
        let text = format!("{one}{two}");
        let r = Report::of(&text, Some(&resp));
        assert_eq!(
            r.body,
            "Café prices rose (Bloomberg).[1] 東京 too (NHK).[1][2]A chart[3] was made."
        );
        assert_eq!(
            r.citations
                .iter()
                .map(|c| c.title.as_str())
                .collect::<Vec<_>>(),
            ["Bloomberg", "NHK", "chart.png", "Past the end"]
        );
        assert_eq!(
            r.activity,
            [
                "Searched the web twice: “café prices 2026”, “東京 prices”",
                "Opened 1 page",
                "Ran code once",
            ]
        );
        let md = r.markdown();
        assert!(
            md.contains("## Tool activity\n\n- Searched the web twice"),
            "{md}"
        );
        assert!(
            md.contains("3. chart.png\n4. [Past the end](https://far.example)"),
            "{md}"
        );
        // Rendered, a marker is text, not a link.
        let html = to_safe_html(&r.body);
        assert!(html.contains("(Bloomberg).[1]"), "{html}");
        // Before `(`, it is escaped: `[1](x)` would be a link.
        let text = "See this(x).";
        let linky = json!({"output": [{"type": "message", "content": [{"type": "output_text", "text": text,
            "annotations": [{"type": "url_citation", "url": "https://a.example", "title": "A", "start_index": 0, "end_index": 8}]}]}]});
        let escaped = Report::of(text, Some(&linky));
        assert_eq!(escaped.body, "See this\\[1\\](x).");
        let html = to_safe_html(&escaped.body);
        assert!(html.contains("See this[1](x)."), "{html}");
        assert!(!html.contains("<a"), "{html}");

        // When the parts are not the recorded text (a JSON answer, a text cut short), the text
        // stays as it is; the sources are still listed.
        let other = Report::of("Something else.", Some(&resp));
        assert_eq!(other.body, "Something else.");
        assert_eq!(other.citations.len(), 4);
        // No response: the text alone.
        assert_eq!(Report::of("Plain.", None).markdown(), "Plain.");
    }

    #[test]
    fn many_queries_are_counted_not_all_listed() {
        let searches: Vec<Value> = (0..9)
            .map(|i| json!({"type": "web_search_call", "action": {"type": "search", "query": format!("q{}", i % 7)}}))
            .collect();
        let lines = activity(&json!({"output": searches}));
        assert_eq!(
            lines,
            ["Searched the web 9 times: “q0”, “q1”, “q2”, “q3”, “q4” and 2 more"]
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
