//! The Discord sink: a channel webhook message with one embed (title, an excerpt of the result
//! in Discord's own Markdown, the job's facts as fields, a colour by status). Model output may
//! contain `@everyone` or role mentions, so the message allows no mentions at all. The webhook
//! URL holds its token: it stays in a `SecretString` and is scrubbed from every error.

use serde_json::{Value, json};

use super::chat::{self, Limit};
use super::context::Context;
use super::http;
use super::{Notification, SinkError};
use crate::config::sinks::DiscordSink as DiscordConfig;

/// Discord's message and embed limits (discord.com/developers/docs/resources/message).
const CONTENT_MAX: usize = 2000;
const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 4096;
const FIELD_NAME_MAX: usize = 256;
const FIELD_VALUE_MAX: usize = 1024;
const FIELDS_MAX: usize = 25;
const FOOTER_MAX: usize = 2048;
/// Every title, description, field, footer and author of a message's embeds together.
const EMBED_TOTAL_MAX: usize = 6000;

const GREEN: u32 = 0x2e_b6_7d;
const RED: u32 = 0xe0_1e_5a;
const AMBER: u32 = 0xec_b2_2e;
const GREY: u32 = 0x95_a5_a6;

/// Discord says how long to wait in a 429's JSON body too, in (fractional) seconds.
fn retry_after_in_body(answer: &mut http::Answer) {
    if answer.status == 429 {
        let in_body = serde_json::from_str::<Value>(&answer.body)
            .ok()
            .and_then(|b| b.get("retry_after").and_then(Value::as_f64))
            .and_then(|s| http::parse_retry_after(&s.to_string()));
        answer.retry_after = answer.retry_after.max(in_body);
    }
}

/// A Discord channel webhook.
/// (`Debug` shows no URL: the hook redacts it.)
#[derive(Debug)]
pub struct DiscordSink {
    hook: chat::Hook,
}

impl DiscordSink {
    pub fn new(_name: &str, cfg: &DiscordConfig, http: reqwest::Client) -> Result<Self, SinkError> {
        Ok(Self {
            hook: chat::Hook::new(cfg, http)?,
        })
    }

    pub async fn deliver(&self, n: &Notification<'_>) -> Result<(), SinkError> {
        self.hook
            .post(&self.payload(n.ctx)?, retry_after_in_body)
            .await
    }

    fn payload(&self, ctx: &Context) -> Result<Value, SinkError> {
        let subject = chat::subject(&self.hook.templates, ctx)?;
        let title = chat::truncate(&ctx.job.name, TITLE_MAX);
        let footer = chat::truncate(&format!("respool · {}", ctx.job.id), FOOTER_MAX);
        let fields: Vec<Value> = chat::facts(ctx)
            .into_iter()
            .take(FIELDS_MAX)
            .map(|(name, value)| {
                json!({
                    "name": chat::truncate(name, FIELD_NAME_MAX),
                    "value": chat::truncate(&value, FIELD_VALUE_MAX),
                    "inline": name != "Error",
                })
            })
            .collect();
        let used: usize = title.chars().count()
            + footer.chars().count()
            + fields
                .iter()
                .map(|f| text_len(&f["name"]) + text_len(&f["value"]))
                .sum::<usize>();

        let body = self.hook.body(ctx)?;
        let note = match &ctx.job.url {
            Some(u) => format!("*[The full report is in respool.]({u})*"),
            None => "*The full report is in respool.*".to_string(),
        };
        let room = DESCRIPTION_MAX.min(EMBED_TOTAL_MAX.saturating_sub(used));
        let description = chat::cut(&body, Limit::Chars(room), &note, chat::markdown_safe_end);

        let mut embed = json!({
            "title": title,
            "color": color(&ctx.status),
            "fields": fields,
            "footer": {"text": footer},
        });
        if !description.is_empty() {
            embed["description"] = json!(description);
        }
        if let Some(u) = &ctx.job.url {
            embed["url"] = json!(u);
        }
        if let Some(t) = &ctx.job.finished_at {
            embed["timestamp"] = json!(t);
        }
        Ok(json!({
            "content": chat::truncate(&subject, CONTENT_MAX),
            "embeds": [embed],
            // Never ping anyone, whatever the job's name or the model's output says.
            "allowed_mentions": {"parse": []},
        }))
    }
}

fn text_len(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

fn color(status: &str) -> u32 {
    match status {
        "completed" => GREEN,
        "failed" => RED,
        "incomplete" => AMBER,
        _ => GREY,
    }
}
