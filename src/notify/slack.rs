//! The Slack sink: a Block Kit message to an incoming webhook. A header with the subject line,
//! the job's facts as fields, an excerpt of the result converted from Markdown to Slack's
//! mrkdwn, and a link to the job. The webhook URL is a secret (anyone holding it can post), so
//! it stays in a `SecretString` and is scrubbed from every error.
//!
//! What the chat sinks (Slack, Discord, ntfy) share lives beside it: [`super::http`] sends a
//! request with the sink's timeout and maps the answer to a [`SinkError`]; [`chat`] renders the
//! subject, lists the job's facts, fits text into a platform's limit at a word boundary, and
//! holds the [`chat::Hook`] (secret URL, timeout, templates) Slack and Discord post through.

use serde_json::{Value, json};

use super::chat;
use super::context::Context;
use super::{Notification, SinkError};
use crate::config::sinks::SlackSink as SlackConfig;

/// Block Kit limits (docs.slack.dev, "Blocks"): a header's text, a section's text, one field.
const HEADER_MAX: usize = 150;
const SECTION_TEXT_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;
/// The top-level `text` is the notification line and the fallback; keep it one line's worth.
const FALLBACK_MAX: usize = 300;

/// A Slack incoming webhook.
/// (`Debug` shows no URL: the hook redacts it.)
#[derive(Debug)]
pub struct SlackSink {
    hook: chat::Hook,
}

impl SlackSink {
    pub fn new(_name: &str, cfg: &SlackConfig, http: reqwest::Client) -> Result<Self, SinkError> {
        Ok(Self {
            hook: chat::Hook::new(cfg, http)?,
        })
    }

    pub async fn deliver(&self, n: &Notification<'_>) -> Result<(), SinkError> {
        self.hook.post(&self.payload(n.ctx)?, |_| {}).await
    }

    /// The Block Kit message: at most four blocks, each within Slack's limits.
    fn payload(&self, ctx: &Context) -> Result<Value, SinkError> {
        let subject = chat::subject(&self.hook.templates, ctx)?;
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

        let body = self.hook.body(ctx)?;
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
