//! Markdown → Slack mrkdwn, and cutting mrkdwn without breaking a link or an entity.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// `&`, `<` and `>` are control characters in mrkdwn; everything literal escapes them.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A URL inside `<…|…>`: no `|`, `<`, `>` or spaces, and `&` escaped.
pub fn escape_url(u: &str) -> String {
    u.replace('&', "&amp;")
        .replace('<', "%3C")
        .replace('>', "%3E")
        .replace('|', "%7C")
        .replace(' ', "%20")
}

/// The end of `s` backed up so that it does not stop inside `<…>` or an `&…;` entity (every
/// literal `<` and `&` is escaped, so a bare one always opens a link or an entity), nor
/// after a bold `*` left open on the last line (Slack would show it as a star).
pub fn safe_end(s: &str) -> usize {
    let line_start = s.rfind('\n').map_or(0, |i| i + 1);
    let mut end = match s.rfind('*') {
        Some(star) if star >= line_start && s[line_start..].matches('*').count() % 2 == 1 => star,
        _ => s.len(),
    };
    let s = &s[..end];
    if let Some(lt) = s.rfind('<')
        && !s[lt..].contains('>')
    {
        end = lt;
    }
    if let Some(amp) = s[..end].rfind('&')
        && !s[amp..end].contains(';')
    {
        end = amp;
    }
    end
}

/// At most `max` characters of mrkdwn, with `…` when cut, never ending inside a link or
/// an entity.
pub fn truncate(s: &str, max: usize) -> String {
    super::chat::truncate_with(s, max, safe_end)
}

/// Converts the basics of Markdown: bold, italics, strike, code, links (`<url|text>`),
/// headings (bold lines), lists, quotes and tables (`a | b` rows). Raw HTML stays as text.
pub fn from_markdown(md: &str) -> String {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut w = Writer::default();
    for event in Parser::new_ext(md, opts) {
        w.event(event);
    }
    w.out.trim_end().to_string()
}

#[derive(Default)]
struct Writer {
    out: String,
    quotes: usize,
    /// Open lists: the next number of an ordered one.
    lists: Vec<Option<u64>>,
    /// The marker of a list item, written before its first text.
    marker: Option<String>,
    /// Open bold spans (a heading, `**`, a table head): Slack has one level of bold.
    bold: usize,
    /// Open links and images: their target and where their text starts in `out`.
    links: Vec<(String, usize)>,
    table_head: bool,
    cell: usize,
}

impl Writer {
    fn at_line_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n')
    }

    /// Writes mrkdwn (no newline), with the quote and list prefix at the start of a line.
    fn push(&mut self, s: &str) {
        if self.at_line_start() {
            self.out.push_str(&"> ".repeat(self.quotes));
            let depth = self.lists.len();
            match self.marker.take() {
                Some(m) => {
                    self.out.push_str(&"    ".repeat(depth.saturating_sub(1)));
                    self.out.push_str(&m);
                }
                None => self.out.push_str(&"    ".repeat(depth)),
            }
        }
        self.out.push_str(s);
    }

    /// Writes literal text, which may span lines.
    fn text(&mut self, s: &str) {
        for (i, line) in s.split('\n').enumerate() {
            if i > 0 {
                self.newline();
            }
            if !line.is_empty() {
                self.push(&escape(line));
            }
        }
    }

    fn newline(&mut self) {
        self.out.push('\n');
    }

    fn end_line(&mut self) {
        if !self.at_line_start() {
            self.newline();
        }
    }

    /// Starts a block: on a new line, after a blank one unless inside a list.
    fn block(&mut self) {
        if self.out.is_empty() {
            return;
        }
        self.end_line();
        if self.lists.is_empty() && !self.out.ends_with("\n\n") {
            self.newline();
        }
    }

    fn bold_open(&mut self) {
        if self.bold == 0 {
            self.push("*");
        }
        self.bold += 1;
    }

    fn bold_close(&mut self) {
        self.bold = self.bold.saturating_sub(1);
        if self.bold == 0 {
            self.push("*");
        }
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) | Event::Html(t) | Event::InlineHtml(t) => self.text(&t),
            Event::InlineMath(t) | Event::DisplayMath(t) => self.text(&t),
            Event::Code(t) => self.push(&format!("`{}`", escape(&t))),
            Event::SoftBreak if !self.links.is_empty() => self.push(" "),
            Event::SoftBreak | Event::HardBreak => self.newline(),
            Event::Rule => {
                self.block();
                self.push("──────────");
                self.newline();
            }
            Event::FootnoteReference(label) => self.text(&format!("[{label}]")),
            Event::TaskListMarker(done) => self.push(if done { "☑ " } else { "☐ " }),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => self.block(),
            Tag::Heading { .. } => {
                self.block();
                self.bold_open();
            }
            Tag::BlockQuote(_) => {
                self.block();
                self.quotes += 1;
            }
            Tag::CodeBlock(_) => {
                self.block();
                self.push("```");
                self.newline();
            }
            Tag::List(first) => {
                if self.lists.is_empty() {
                    self.block();
                } else {
                    self.end_line();
                }
                self.lists.push(first);
            }
            Tag::Item => {
                self.end_line();
                let depth = self.lists.len();
                self.marker = Some(match self.lists.last_mut() {
                    Some(Some(n)) => {
                        *n += 1;
                        format!("{}. ", *n - 1)
                    }
                    _ if depth > 1 => "◦ ".to_string(),
                    _ => "• ".to_string(),
                });
            }
            Tag::Table(_) | Tag::HtmlBlock => self.block(),
            Tag::TableHead => {
                self.table_head = true;
                self.cell = 0;
            }
            Tag::TableRow => self.cell = 0,
            Tag::TableCell => {
                if self.cell > 0 {
                    self.push(" | ");
                }
                self.cell += 1;
                if self.table_head {
                    self.bold_open();
                }
            }
            Tag::Emphasis => self.push("_"),
            Tag::Strong => self.bold_open(),
            Tag::Strikethrough => self.push("~"),
            Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                // Write the line prefix now, so the link's text starts after it.
                self.push("");
                self.links.push((dest_url.to_string(), self.out.len()));
            }
            Tag::FootnoteDefinition(label) => {
                self.block();
                self.text(&format!("[{label}]: "));
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph | TagEnd::Item | TagEnd::HtmlBlock => self.end_line(),
            TagEnd::Heading(_) => {
                self.bold_close();
                self.newline();
            }
            TagEnd::BlockQuote(_) => {
                self.quotes = self.quotes.saturating_sub(1);
                self.end_line();
            }
            TagEnd::CodeBlock => {
                self.end_line();
                self.push("```");
                self.newline();
            }
            TagEnd::List(_) => {
                self.lists.pop();
                self.end_line();
            }
            TagEnd::TableHead => {
                self.table_head = false;
                self.newline();
            }
            TagEnd::TableRow => self.newline(),
            TagEnd::TableCell if self.table_head => self.bold_close(),
            TagEnd::Emphasis => self.push("_"),
            TagEnd::Strong => self.bold_close(),
            TagEnd::Strikethrough => self.push("~"),
            TagEnd::Link | TagEnd::Image => {
                if let Some((dest, start)) = self.links.pop() {
                    let text = self.out.split_off(start.min(self.out.len()));
                    // An image inside a link keeps only its alt text: links do not nest.
                    let nested = !self.links.is_empty();
                    self.out.push_str(&link(&dest, text.trim(), nested));
                }
            }
            _ => {}
        }
    }
}

/// `<url|text>` for web and mail links; the text alone for anything else.
fn link(dest: &str, text: &str, nested: bool) -> String {
    let web = ["http://", "https://", "mailto:"]
        .iter()
        .any(|p| dest.starts_with(p));
    let text = text.replace(['<', '>', '\n'], " ").replace('|', "¦");
    match (web && !nested, text.is_empty()) {
        (true, true) => format!("<{}>", escape_url(dest)),
        (true, false) if text == escape(dest) => format!("<{}>", escape_url(dest)),
        (true, false) => format!("<{}|{text}>", escape_url(dest)),
        (false, true) => escape(dest),
        (false, false) => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_the_basics() {
        let md = "# Title\n\nSome **bold** and *it* and ~~gone~~ and `a<b`.\n\n\
                  - one [site](https://a.example/?x=1&y=2)\n- two\n  1. nested\n\n> quoted\n\n\
                  | a | b |\n|---|---|\n| 1 | 2 |\n\n<script>x & y</script>";
        let out = from_markdown(md);
        assert!(
            out.starts_with("*Title*\n\nSome *bold* and _it_ and ~gone~ and `a&lt;b`."),
            "{out}"
        );
        assert!(
            out.contains("• one <https://a.example/?x=1&amp;y=2|site>\n• two\n    1. nested"),
            "{out}"
        );
        assert!(out.contains("> quoted"), "{out}");
        assert!(out.contains("*a* | *b*\n1 | 2"), "{out}");
        assert!(
            out.contains("&lt;script&gt;x &amp; y&lt;/script&gt;"),
            "{out}"
        );
    }

    #[test]
    fn links_that_are_not_web_stay_text() {
        assert_eq!(from_markdown("[x](javascript:alert(1))"), "x");
        assert_eq!(from_markdown("<https://a.example>"), "<https://a.example>");
        assert_eq!(
            from_markdown("**[a|b](https://a.example)**"),
            "*<https://a.example|a¦b>*"
        );
        assert_eq!(
            from_markdown("[![alt](https://i.example/p.png)](https://a.example)"),
            "<https://a.example|alt>"
        );
    }

    #[test]
    fn cuts_never_split_a_link_or_an_entity() {
        assert_eq!(safe_end("see <https://a.example|the si"), 4);
        assert_eq!(safe_end("a &am"), 2);
        assert_eq!(safe_end("a &amp; <u|t> b"), 15);
        assert_eq!(truncate("x &amp; y", 5), "x…");
        assert_eq!(safe_end("*a*\nsome *bold wo"), 9);
    }
}
