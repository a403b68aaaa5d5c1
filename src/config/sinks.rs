//! Notification sink settings (`sinks.<name>`) and the outbox's retry policy (`notify`).
//! Secrets can be given inline (usually as `${VAR}`) or as a `*_file` path (a systemd
//! credential, a mounted secret); [`Secret::resolve`] reads the file.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::de_duration;

/// A notification sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// Writes one line per event to the daemon's log.
    Console {},
    /// Email over SMTP.
    Email(EmailSink),
    /// A Slack incoming webhook.
    Slack(SlackSink),
    /// A Standard Webhooks signed POST of a JSON event.
    Webhook(WebhookSink),
    /// A Markdown report and a JSON file per event in a directory.
    File(FileSink),
    /// A Discord channel webhook.
    Discord(DiscordSink),
    /// An ntfy topic.
    Ntfy(NtfySink),
    /// A program that gets the event JSON on stdin.
    Command(CommandSink),
}

impl SinkConfig {
    /// The longest one delivery may take.
    pub fn timeout(&self) -> Duration {
        match self {
            Self::Console {} => Duration::from_secs(1),
            Self::Email(c) => c.timeout,
            Self::Slack(c) => c.timeout,
            Self::Webhook(c) => c.timeout,
            Self::File(_) => Duration::from_secs(30),
            Self::Discord(c) => c.timeout,
            Self::Ntfy(c) => c.timeout,
            Self::Command(c) => c.timeout,
        }
    }

    /// Deliveries to this sink in flight at once: the sink's `max_concurrent`, else a default
    /// by type that a typical service of that kind takes without throttling (chat services
    /// limit a webhook to about one message a second; a mail server takes a few connections).
    pub fn max_concurrent(&self) -> usize {
        let (set, default) = match self {
            Self::Console {} => (None, 64),
            Self::Email(c) => (c.max_concurrent, 4),
            Self::Slack(c) | Self::Discord(c) => (c.max_concurrent, 2),
            Self::Webhook(c) => (c.max_concurrent, 16),
            Self::File(c) => (c.max_concurrent, 8),
            Self::Ntfy(c) => (c.max_concurrent, 4),
            Self::Command(c) => (c.max_concurrent, 4),
        };
        set.map_or(default, NonZeroUsize::get)
    }

    /// The sink's type name, as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Console {} => "console",
            Self::Email(_) => "email",
            Self::Slack(_) => "slack",
            Self::Webhook(_) => "webhook",
            Self::File(_) => "file",
            Self::Discord(_) => "discord",
            Self::Ntfy(_) => "ntfy",
            Self::Command(_) => "command",
        }
    }
}

/// Custom template files of a sink; unset ones use the built-in defaults. Templates are
/// minijinja (Jinja2 syntax); `docs/notifications.md` lists the variables they see.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateFiles {
    /// Subject line (email) or title (Slack header, ntfy, Discord).
    pub subject: Option<PathBuf>,
    /// Plain-text body (email text part, Slack/Discord/ntfy message).
    pub text: Option<PathBuf>,
    /// HTML body (email).
    pub html: Option<PathBuf>,
    /// Markdown report (email attachment, file sink).
    pub markdown: Option<PathBuf>,
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text (only for a relay on loopback or a trusted network).
    None,
    /// Plain connection upgraded with STARTTLS (usually port 587).
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

/// `type: email`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSink {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// A file holding the password (instead of `password`).
    pub password_file: Option<PathBuf>,
    /// `Name <address>` or an address.
    pub from: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    /// A PEM file of extra root certificates (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Timeout of one SMTP conversation.
    #[serde(default = "default_sink_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub templates: TemplateFiles,
    /// Deliveries to this sink in flight at once (default by type, see
    /// [`SinkConfig::max_concurrent`]).
    pub max_concurrent: Option<NonZeroUsize>,
}

fn default_tls() -> SmtpTls {
    SmtpTls::Starttls
}

fn default_sink_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `type: slack` and `type: discord`: a chat service's incoming webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatWebhookSink {
    /// The incoming-webhook URL (a secret: anyone with it can post).
    pub url: Option<SecretString>,
    pub url_file: Option<PathBuf>,
    #[serde(default = "default_sink_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub templates: TemplateFiles,
    /// Deliveries to this sink in flight at once (default by type, see
    /// [`SinkConfig::max_concurrent`]).
    pub max_concurrent: Option<NonZeroUsize>,
}

/// `type: webhook`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSink {
    pub url: String,
    /// `whsec_…` signing secret.
    pub secret: Option<SecretString>,
    pub secret_file: Option<PathBuf>,
    #[serde(default = "default_sink_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Deliveries to this sink in flight at once (default by type, see
    /// [`SinkConfig::max_concurrent`]).
    pub max_concurrent: Option<NonZeroUsize>,
}

/// `type: file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    /// Where `<date>-<job name>-<job id>.md` and `.json` are written (created if missing).
    pub dir: PathBuf,
    #[serde(default)]
    pub templates: TemplateFiles,
    /// Deliveries to this sink in flight at once (default by type, see
    /// [`SinkConfig::max_concurrent`]).
    pub max_concurrent: Option<NonZeroUsize>,
}

/// `type: slack`.
pub type SlackSink = ChatWebhookSink;

/// `type: discord`.
pub type DiscordSink = ChatWebhookSink;

/// `type: ntfy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtfySink {
    /// The topic URL, e.g. `https://ntfy.sh/my-topic`.
    pub url: String,
    /// An access token, if the topic needs one.
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
    #[serde(default = "default_sink_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub templates: TemplateFiles,
    /// Deliveries to this sink in flight at once (default by type, see
    /// [`SinkConfig::max_concurrent`]).
    pub max_concurrent: Option<NonZeroUsize>,
}

/// `type: command`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSink {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
    /// Killed past this.
    #[serde(default = "default_sink_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Extra environment variables for the program. It does not inherit the daemon's
    /// environment (which holds secrets): only PATH, HOME, USER, locale, TZ and TMPDIR, the
    /// `RESPOOL_*` variables and these.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Deliveries to this sink in flight at once (default by type, see
    /// [`SinkConfig::max_concurrent`]).
    pub max_concurrent: Option<NonZeroUsize>,
}

/// The outbox's delivery policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Sinks notified for every job that names none of its own.
    pub default: Vec<String>,
    /// Deliveries in flight at once, all sinks together (each sink also has its own limit).
    pub max_concurrent: NonZeroUsize,
    /// Tries per notification before it becomes a dead letter.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles each try, with jitter.
    #[serde(deserialize_with = "de_duration")]
    pub initial_backoff: Duration,
    /// Longest wait between tries.
    #[serde(deserialize_with = "de_duration")]
    pub max_backoff: Duration,
    /// Price per million tokens by model: the older place of the top-level `pricing` (which
    /// see), still read when that is not set.
    pub pricing: BTreeMap<String, crate::pricing::ModelPrice>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            default: Vec::new(),
            max_concurrent: NonZeroUsize::MIN.saturating_add(63),
            max_attempts: 10,
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
            pricing: BTreeMap::new(),
        }
    }
}

/// A secret given inline or as a file.
pub struct Secret<'a> {
    pub inline: Option<&'a SecretString>,
    pub file: Option<&'a PathBuf>,
}

impl Secret<'_> {
    /// The secret's value: the inline one, or the file's content without its trailing newline.
    /// `Ok(None)` when neither is set.
    pub fn resolve(&self) -> Result<Option<SecretString>, String> {
        if let Some(s) = self.inline {
            return Ok(Some(s.clone()));
        }
        let Some(path) = self.file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(Some(SecretString::from(
            text.trim_end_matches(['\n', '\r']).to_string(),
        )))
    }
}

/// Checks one sink's settings; returns problems as (key path below the sink, message).
pub fn validate_sink(cfg: &SinkConfig) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let secret = |errs: &mut Vec<(String, String)>, key: &str, s: Secret<'_>, required: bool| {
        if s.inline.is_some() && s.file.is_some() {
            errs.push((
                key.to_string(),
                format!("set `{key}` or `{key}_file`, not both"),
            ));
        }
        match s.resolve() {
            Ok(None) if required => {
                errs.push((key.to_string(), format!("is required (or `{key}_file`)")))
            }
            Ok(Some(v)) if v.expose_secret().is_empty() => {
                errs.push((key.to_string(), "is empty".into()))
            }
            Err(e) => errs.push((format!("{key}_file"), e)),
            _ => {}
        }
    };
    match cfg {
        SinkConfig::Console {} => {}
        SinkConfig::Email(e) => {
            secret(
                &mut errs,
                "password",
                Secret {
                    inline: e.password.as_ref(),
                    file: e.password_file.as_ref(),
                },
                false,
            );
            if e.host.trim().is_empty() {
                errs.push(("host".into(), "is required".into()));
            }
            if e.to.is_empty() {
                errs.push(("to".into(), "needs at least one address".into()));
            }
            for (key, list) in [
                ("from", std::slice::from_ref(&e.from)),
                ("to", &e.to[..]),
                ("cc", &e.cc[..]),
                ("bcc", &e.bcc[..]),
            ] {
                for a in list {
                    if a.parse::<lettre::message::Mailbox>().is_err() {
                        errs.push((key.to_string(), format!("`{a}` is not an email address")));
                    }
                }
            }
            let has_password = e.password.is_some() || e.password_file.is_some();
            if has_password && e.username.is_none() {
                errs.push(("username".into(), "is required with a password".into()));
            }
            if e.username.is_some() && !has_password {
                errs.push((
                    "password".into(),
                    "is required with a username (or `password_file`)".into(),
                ));
            }
            if let Some(ca) = &e.ca_file
                && !ca.is_file()
            {
                errs.push(("ca_file".into(), format!("{} is not a file", ca.display())));
            }
        }
        SinkConfig::Slack(s) => {
            let url = Secret {
                inline: s.url.as_ref(),
                file: s.url_file.as_ref(),
            };
            secret(
                &mut errs,
                "url",
                Secret {
                    inline: s.url.as_ref(),
                    file: s.url_file.as_ref(),
                },
                true,
            );
            check_secret_url(&mut errs, url);
        }
        SinkConfig::Discord(s) => {
            let url = Secret {
                inline: s.url.as_ref(),
                file: s.url_file.as_ref(),
            };
            secret(
                &mut errs,
                "url",
                Secret {
                    inline: s.url.as_ref(),
                    file: s.url_file.as_ref(),
                },
                true,
            );
            check_secret_url(&mut errs, url);
        }
        SinkConfig::Webhook(w) => {
            if url::Url::parse(&w.url).is_err() {
                errs.push(("url".into(), "must be a URL".into()));
            }
            match (Secret {
                inline: w.secret.as_ref(),
                file: w.secret_file.as_ref(),
            })
            .resolve()
            {
                Ok(Some(s)) => {
                    if standardwebhooks::Webhook::new(s.expose_secret()).is_err() {
                        errs.push((
                            "secret".into(),
                            "must be `whsec_` followed by base64".into(),
                        ));
                    }
                }
                Ok(None) => errs.push((
                    "secret".into(),
                    "is required (or `secret_file`): deliveries are signed".into(),
                )),
                Err(e) => errs.push(("secret_file".into(), e)),
            }
        }
        SinkConfig::Ntfy(n) => {
            match url::Url::parse(&n.url) {
                Ok(u) if u.path().trim_matches('/').is_empty() => {
                    errs.push((
                        "url".into(),
                        "must name a topic, like `https://ntfy.sh/my-topic`".into(),
                    ));
                }
                Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                    errs.push(("url".into(), "must be an http(s) URL".into()))
                }
                Ok(_) => {}
                Err(_) => errs.push(("url".into(), "must be a URL".into())),
            }
            secret(
                &mut errs,
                "token",
                Secret {
                    inline: n.token.as_ref(),
                    file: n.token_file.as_ref(),
                },
                false,
            );
        }
        SinkConfig::File(f) => {
            if f.dir.as_os_str().is_empty() {
                errs.push(("dir".into(), "is required".into()));
            }
        }
        SinkConfig::Command(c) => {
            if c.command.first().is_none_or(|p| p.is_empty()) {
                errs.push(("command".into(), "needs a program".into()));
            }
        }
    }
    let templates = match cfg {
        SinkConfig::Email(e) => Some(&e.templates),
        SinkConfig::Slack(s) => Some(&s.templates),
        SinkConfig::File(f) => Some(&f.templates),
        SinkConfig::Discord(d) => Some(&d.templates),
        SinkConfig::Ntfy(n) => Some(&n.templates),
        _ => None,
    };
    if let Some(t) = templates {
        for (key, path) in [
            ("subject", &t.subject),
            ("text", &t.text),
            ("html", &t.html),
            ("markdown", &t.markdown),
        ] {
            if let Some(p) = path
                && !p.is_file()
            {
                errs.push((
                    format!("templates.{key}"),
                    format!("{} is not a file", p.display()),
                ));
            }
        }
    }
    errs
}

/// A secret URL (Slack, Discord) must be http(s); the message never repeats it.
fn check_secret_url(errs: &mut Vec<(String, String)>, url: Secret<'_>) {
    if let Ok(Some(u)) = url.resolve() {
        let ok = url::Url::parse(u.expose_secret())
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            errs.push((
                "url".into(),
                "must be an http(s) URL (value not shown: it is a secret)".into(),
            ));
        }
    }
}
