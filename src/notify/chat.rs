//! What the chat sinks share about a message's content.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::SinkError;
use super::context::Context;
use super::http;
use super::templates::{Part, Templates};
use crate::config::sinks::{ChatWebhookSink, Secret};

/// A chat service's incoming webhook (Slack, Discord): its URL, the sink's timeout and
/// templates. The URL holds the webhook's token, so it stays in a `SecretString`, is redacted
/// from `Debug` and scrubbed from every error. The sinks differ only in the message they post.
pub struct Hook {
    url: SecretString,
    http: reqwest::Client,
    timeout: Duration,
    pub templates: Templates,
    /// A custom `templates.text` replaces the result excerpt as the message body.
    pub custom_text: bool,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("url", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("custom_text", &self.custom_text)
            .finish_non_exhaustive()
    }
}

impl Hook {
    pub fn new(cfg: &ChatWebhookSink, http: reqwest::Client) -> Result<Self, SinkError> {
        Ok(Self {
            url: http::secret_url(Secret {
                inline: cfg.url.as_ref(),
                file: cfg.url_file.as_ref(),
            })?,
            http,
            timeout: cfg.timeout,
            templates: Templates::load(&cfg.templates)?,
            custom_text: cfg.templates.text.is_some(),
        })
    }

    /// Posts `payload` as JSON; `amend` may adjust the answer before it is judged (Discord
    /// also says in the body how long to wait).
    pub async fn post(
        &self,
        payload: &Value,
        amend: fn(&mut http::Answer),
    ) -> Result<(), SinkError> {
        let request = self.http.post(self.url.expose_secret()).json(payload);
        let result = http::send(request, self.timeout)
            .await
            .and_then(|mut answer| {
                amend(&mut answer);
                answer.into_result()
            });
        result.map_err(|e| http::scrub(e, &http::url_secrets(&self.url)))
    }

    /// The message body: the custom text template, or else the result as Markdown.
    pub fn body(&self, ctx: &Context) -> Result<String, SinkError> {
        Ok(if self.custom_text {
            self.templates.render(Part::Text, ctx)?
        } else {
            ctx.output_markdown.clone()
        })
    }
}

/// The subject template's line, or `name status` when a custom template renders nothing.
pub fn subject(templates: &Templates, ctx: &Context) -> Result<String, SinkError> {
    let s = templates.render(Part::Subject, ctx)?;
    Ok(if s.trim().is_empty() {
        format!("{} {}", ctx.job.name, ctx.status)
    } else {
        s
    })
}

/// The job's facts as (name, value): model, status, duration, tokens, cost, error.
pub fn facts(ctx: &Context) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("Model", ctx.job.model.clone()),
        ("Status", ctx.status.clone()),
    ];
    if let Some(d) = &ctx.job.duration {
        out.push(("Duration", d.clone()));
    }
    if let Some(u) = &ctx.usage {
        let mut tokens = format!(
            "{} in · {} out",
            thousands(u.input_tokens),
            thousands(u.output_tokens)
        );
        if u.reasoning_tokens > 0 {
            tokens.push_str(&format!(" ({} reasoning)", thousands(u.reasoning_tokens)));
        }
        out.push(("Tokens", tokens));
    }
    if let Some(c) = &ctx.cost {
        out.push((
            "Cost",
            match &c.detail {
                Some(d) => format!("{} ({d})", c.display),
                None => c.display.clone(),
            },
        ));
    }
    if let Some(e) = &ctx.job.error {
        out.push(("Error", format!("{}: {}", e.code, e.message)));
    }
    out
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// At most `max` characters of a short text (a title, a field), with `…` when cut,
/// at a word when there is one in the second half.
pub fn truncate(s: &str, max: usize) -> String {
    truncate_with(s, max, str::len)
}

/// [`truncate`], ending where `safe_end` says a cut may fall.
pub fn truncate_with(s: &str, max: usize, safe_end: fn(&str) -> usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let end = word_end(s, Limit::Chars(max).prefix_end(s, max.saturating_sub(1)));
    let head = &s[..end];
    format!("{}…", head[..safe_end(head)].trim_end())
}

/// `end`, or the last whitespace before it when `end` splits a word and that keeps more
/// than half.
fn word_end(text: &str, end: usize) -> usize {
    if text[end..].starts_with(char::is_whitespace) {
        return end;
    }
    text[..end]
        .rfind(char::is_whitespace)
        .filter(|&ws| ws > end / 2)
        .unwrap_or(end)
}

/// How a platform measures a limit.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    Chars(usize),
    Bytes(usize),
}

impl Limit {
    fn max(self) -> usize {
        match self {
            Limit::Chars(n) | Limit::Bytes(n) => n,
        }
    }

    fn measure(self, s: &str) -> usize {
        match self {
            Limit::Chars(_) => s.chars().count(),
            Limit::Bytes(_) => s.len(),
        }
    }

    /// The byte index where the longest prefix of `s` within `n` units ends.
    fn prefix_end(self, s: &str, n: usize) -> usize {
        match self {
            Limit::Chars(_) => s.char_indices().nth(n).map_or(s.len(), |(i, _)| i),
            Limit::Bytes(_) => {
                let mut i = n.min(s.len());
                while !s.is_char_boundary(i) {
                    i -= 1;
                }
                i
            }
        }
    }
}

/// `text` when it fits `limit`; else its longest prefix that ends on a whole word (and where
/// `safe_end` says a cut may fall), an open code fence closed, `…`, and `note` on its own
/// paragraph. The result always fits.
pub fn cut(text: &str, limit: Limit, note: &str, safe_end: fn(&str) -> usize) -> String {
    let text = text.trim_end();
    if limit.measure(text) <= limit.max() {
        return text.to_string();
    }
    let tail = format!("…\n```\n\n{note}");
    let room = limit.max().saturating_sub(limit.measure(&tail));
    let end = word_end(text, limit.prefix_end(text, room));
    let end = safe_end(&text[..end]);
    let mut out = text[..end].trim_end().to_string();
    out.push('…');
    if out.matches("```").count() % 2 == 1 {
        out.push_str("\n```");
    }
    out.push_str("\n\n");
    out.push_str(note);
    out
}

/// For Markdown (Discord, ntfy): never stop inside `[text](url)`, nor after a `**` left
/// open on the last line.
pub fn markdown_safe_end(s: &str) -> usize {
    let line_start = s.rfind('\n').map_or(0, |i| i + 1);
    let s = match s.rfind("**") {
        Some(i) if i >= line_start && s[line_start..].matches("**").count() % 2 == 1 => &s[..i],
        _ => s,
    };
    if let Some(open) = s.rfind('[') {
        let after = &s[open..];
        let in_text = !after.contains(']');
        let in_url = after.find("](").is_some_and(|i| !after[i..].contains(')'));
        if in_text || in_url {
            return open;
        }
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_a_word_and_fits() {
        let text = "alpha beta gamma delta epsilon zeta eta theta";
        let out = cut(text, Limit::Chars(30), "(more)", |s| s.len());
        assert_eq!(out, "alpha beta gamma…\n\n(more)");
        assert!(out.chars().count() <= 30);
        assert_eq!(cut(text, Limit::Chars(100), "(more)", |s| s.len()), text);
        let fenced = format!("```\n{}\n```", "word ".repeat(100));
        let out = cut(&fenced, Limit::Bytes(120), "n", |s| s.len());
        assert!(out.ends_with("word…\n```\n\nn"), "{out}");
        assert!(out.len() <= 120);
    }

    #[test]
    fn markdown_links_are_not_split() {
        assert_eq!(markdown_safe_end("see [the site](https://a.ex"), 4);
        assert_eq!(markdown_safe_end("see [the si"), 4);
        assert_eq!(markdown_safe_end("see [1] and [x](u) more"), 23);
        assert_eq!(markdown_safe_end("**a** and **bold wo"), 10);
    }

    #[test]
    fn formats() {
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("one two three", 10), "one two…");
    }
}
