//! The Slack sink: a Block Kit message to an incoming webhook. A header with the subject line,
//! the job's facts as fields, an excerpt of the result converted from Markdown to Slack's
//! mrkdwn, and a link to the job. The webhook URL is a secret (anyone holding it can post), so
//! it stays in a `SecretString` and is scrubbed from every error.
//!
//! This file also holds what the chat sinks (Slack, Discord, ntfy) share: [`http`] sends a
//! request with the sink's timeout and maps the answer to a [`SinkError`]; [`chat`] renders the
//! subject, lists the job's facts and fits text into a platform's limit at a word boundary.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::context::Context;
use super::templates::{Part, Templates};
use super::{Notification, SinkError};
use super::{chat, http};
use crate::config::sinks::{Secret, SlackSink as SlackConfig};

/// Block Kit limits (docs.slack.dev, "Blocks"): a header's text, a section's text, one field.
const HEADER_MAX: usize = 150;
const SECTION_TEXT_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;
/// The top-level `text` is the notification line and the fallback; keep it one line's worth.
const FALLBACK_MAX: usize = 300;

/// A Slack incoming webhook.
pub struct SlackSink {
    url: SecretString,
    http: reqwest::Client,
    timeout: Duration,
    templates: Templates,
    /// A custom `templates.text` replaces the result excerpt as the message body.
    custom_text: bool,
}

impl std::fmt::Debug for SlackSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackSink")
            .field("url", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("custom_text", &self.custom_text)
            .finish_non_exhaustive()
    }
}

impl SlackSink {
    pub fn new(_name: &str, cfg: &SlackConfig, http: reqwest::Client) -> Result<Self, SinkError> {
        let url = http::secret_url(Secret {
            inline: cfg.url.as_ref(),
            file: cfg.url_file.as_ref(),
        })?;
        Ok(Self {
            url,
            http,
            timeout: cfg.timeout,
            templates: Templates::load(&cfg.templates)?,
            custom_text: cfg.templates.text.is_some(),
        })
    }

    pub async fn deliver(&self, n: &Notification<'_>) -> Result<(), SinkError> {
        let payload = self.payload(n.ctx)?;
        let request = self.http.post(self.url.expose_secret()).json(&payload);
        let result = http::send(request, self.timeout)
            .await
            .and_then(http::Answer::into_result);
        result.map_err(|e| http::scrub(e, &http::url_secrets(&self.url)))
    }

    /// The Block Kit message: at most four blocks, each within Slack's limits.
    fn payload(&self, ctx: &Context) -> Result<Value, SinkError> {
        let subject = chat::subject(&self.templates, ctx)?;
        let mut blocks = vec![json!({
            "type": "header",
            "text": {"type": "plain_text", "text": chat::truncate(&subject, HEADER_MAX), "emoji": true},
        })];
        let fields: Vec<Value> = chat::facts(ctx)
            .into_iter()
            .map(|(name, value)| {
                let text =
                    mrkdwn::truncate(&format!("*{name}*\n{}", mrkdwn::escape(&value)), FIELD_MAX);
                json!({"type": "mrkdwn", "text": text})
            })
            .collect();
        blocks.push(json!({"type": "section", "fields": fields}));

        let body = if self.custom_text {
            self.templates.render(Part::Text, ctx)?
        } else {
            ctx.output_markdown.clone()
        };
        let body = mrkdwn::from_markdown(&body);
        if !body.is_empty() {
            let note = match &ctx.job.url {
                Some(u) => format!(
                    "_<{}|The full report is in respool.>_",
                    mrkdwn::escape_url(u)
                ),
                None => "_The full report is in respool._".to_string(),
            };
            let text = chat::cut(
                &body,
                chat::Limit::Chars(SECTION_TEXT_MAX),
                &note,
                mrkdwn::safe_end,
            );
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
        }

        // A link in a context block rather than a link button: Slack still sends an
        // interaction payload for a link button and expects the app to acknowledge it; the
        // app behind an incoming webhook usually has no request URL, so every click would
        // end with an error mark on the button.
        let job = format!("job `{}`", mrkdwn::escape(&ctx.job.id));
        let context = match &ctx.job.url {
            Some(u) => format!("<{}|Open in respool> · {job}", mrkdwn::escape_url(u)),
            None => format!("respool · {job}"),
        };
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": mrkdwn::truncate(&context, SECTION_TEXT_MAX)}],
        }));
        Ok(json!({
            "text": mrkdwn::escape(&chat::truncate(&subject, FALLBACK_MAX)),
            "blocks": blocks,
            // Model output links to anything; previews of them would bury the message.
            "unfurl_links": false,
            "unfurl_media": false,
        }))
    }
}

mod mrkdwn;
