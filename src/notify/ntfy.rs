//! The ntfy sink: publishes to a topic through ntfy's JSON API (`POST` to the server's root
//! with `{topic, title, message, tags, priority, click, markdown}`), which carries a title of
//! any Unicode where the `Title` header would need RFC 2047 encoding. The message is the text
//! template, cut to ntfy's 4,096-byte message limit (past it, ntfy turns a message into an
//! attachment, or refuses it). The access token is a secret: sent as `Authorization: Bearer`,
//! never shown.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::chat::{self, Limit};
use super::context::Context;
use super::http;
use super::templates::{Part, Templates};
use super::{Notification, SinkError};
use crate::config::sinks::{NtfySink as NtfyConfig, Secret};

/// ntfy's default `message-size-limit`.
const MESSAGE_MAX_BYTES: usize = 4096;
/// ntfy sets no title limit of its own; a phone shows far less than this.
const TITLE_MAX: usize = 250;
/// ntfy priorities: 3 is the default, 4 is "high".
const PRIORITY_DEFAULT: u8 = 3;
const PRIORITY_HIGH: u8 = 4;

/// An ntfy topic.
pub struct NtfySink {
    /// The server's root, where JSON messages are published.
    root: url::Url,
    topic: String,
    token: Option<SecretString>,
    http: reqwest::Client,
    timeout: Duration,
    templates: Templates,
}

impl std::fmt::Debug for NtfySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only the host: on a public server the topic name is what keeps a topic private.
        f.debug_struct("NtfySink")
            .field("host", &self.root.host_str())
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl NtfySink {
    pub fn new(_name: &str, cfg: &NtfyConfig, http: reqwest::Client) -> Result<Self, SinkError> {
        let (root, topic) = split_topic_url(&cfg.url)?;
        let token = Secret {
            inline: cfg.token.as_ref(),
            file: cfg.token_file.as_ref(),
        }
        .resolve()
        .map_err(SinkError::Config)?;
        Ok(Self {
            root,
            topic,
            token,
            http,
            timeout: cfg.timeout,
            templates: Templates::load(&cfg.templates)?,
        })
    }

    pub async fn deliver(&self, n: &Notification<'_>) -> Result<(), SinkError> {
        let payload = self.payload(n.ctx)?;
        let mut request = self.http.post(self.root.clone()).json(&payload);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t.expose_secret());
        }
        let result = http::send(request, self.timeout)
            .await
            .and_then(http::Answer::into_result);
        let secrets: Vec<String> = self
            .token
            .iter()
            .map(|t| t.expose_secret().to_string())
            .collect();
        result.map_err(|e| http::scrub(e, &secrets))
    }

    fn payload(&self, ctx: &Context) -> Result<Value, SinkError> {
        let title = chat::truncate(&chat::subject(&self.templates, ctx)?, TITLE_MAX);
        let text = hard_breaks(self.templates.render(Part::Text, ctx)?.trim());
        let note = match &ctx.job.url {
            Some(u) => format!("*[The full report is in respool.]({u})*"),
            None => "*The full report is in respool.*".to_string(),
        };
        let message = chat::cut(
            &text,
            Limit::Bytes(MESSAGE_MAX_BYTES),
            &note,
            chat::markdown_safe_end,
        );
        let mut payload = json!({
            "topic": self.topic,
            "title": title,
            "message": message,
            // Plain tags, not emoji shortcodes: the subject already starts with a status emoji.
            "tags": [ctx.status, "respool"],
            "priority": if ctx.status == "failed" { PRIORITY_HIGH } else { PRIORITY_DEFAULT },
            "markdown": true,
        });
        if let Some(u) = &ctx.job.url {
            payload["click"] = json!(u);
        }
        Ok(payload)
    }
}

/// `https://ntfy.example/sub/path/topic` → (`https://ntfy.example/sub/path/`, `topic`).
fn split_topic_url(raw: &str) -> Result<(url::Url, String), SinkError> {
    let bad =
        || SinkError::Config("`url` must be a topic URL such as https://ntfy.sh/my-topic".into());
    let mut url = url::Url::parse(raw.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(bad());
    }
    let path = url.path().trim_end_matches('/').to_string();
    let (parent, topic) = path.rsplit_once('/').ok_or_else(bad)?;
    if topic.is_empty() {
        return Err(bad());
    }
    let topic = topic.to_string();
    url.set_path(&format!("{parent}/"));
    url.set_query(None);
    url.set_fragment(None);
    Ok((url, topic))
}

/// Markdown joins consecutive lines into one paragraph; the text template writes one fact per
/// line. Two trailing spaces make each line break where it was written (outside code fences,
/// where spaces would be kept literally).
fn hard_breaks(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut fenced = false;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let fence = line.trim_start().starts_with("```");
        if fence {
            fenced = !fenced;
        }
        out.push_str(line);
        let next_is_text = lines.peek().is_some_and(|l| !l.trim().is_empty());
        if !fenced && !fence && !line.trim().is_empty() && next_is_text && !line.ends_with("  ") {
            out.push_str("  ");
        }
        if lines.peek().is_some() {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_urls() {
        let (root, topic) = split_topic_url("https://ntfy.sh/my-topic").unwrap();
        assert_eq!(
            (root.as_str(), topic.as_str()),
            ("https://ntfy.sh/", "my-topic")
        );
        let (root, topic) = split_topic_url("http://h:8080/ntfy/alerts/?x=1").unwrap();
        assert_eq!(
            (root.as_str(), topic.as_str()),
            ("http://h:8080/ntfy/", "alerts")
        );
        assert!(split_topic_url("https://ntfy.sh/").is_err());
        assert!(split_topic_url("ftp://ntfy.sh/t").is_err());
    }

    #[test]
    fn lines_keep_their_breaks() {
        assert_eq!(hard_breaks("a\nb\n\nc"), "a  \nb\n\nc");
        assert_eq!(hard_breaks("```\nx\ny\n```\nz"), "```\nx\ny\n```\nz");
    }
}
