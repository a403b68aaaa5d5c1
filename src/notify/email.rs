//! The email sink: one `multipart/mixed` message per notification, sent over SMTP with lettre.
//!
//! The message is a `multipart/alternative` (the plain-text and the HTML rendering of the
//! templates) followed by two attachments: the Markdown report and the whole response as JSON.
//! Its `Message-ID` is derived from (job, event, sink), so a retry after a lost answer is the
//! same message to the reader's client instead of a new thread. Every part is sent 7-bit with
//! CRLF line ends and short lines (see `text_part` and `attachment`): servers refuse bare
//! LFs and lines over 998 octets, and a model's answer may hold both.
//!
//! Failures are sorted by cause: no connection, a timeout, a TLS failure or a 4xx reply is
//! [`SinkError::Temporary`]; a 5xx reply (a refused mailbox, failed authentication) and a
//! server that lacks what the settings need (STARTTLS, an AUTH mechanism) are
//! [`SinkError::Permanent`]. The password stays in a [`SecretString`] here and in lettre's
//! redacted `Credentials`; every error text is scrubbed of it, should a server echo it back.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use lettre::message::header::{
    ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue,
};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use super::{ArtifactFile, Notification, Part, SinkError, Templates};
use crate::config::sinks::{self, Secret, SmtpTls};

/// The longest job-name part of an attachment's file name.
const MAX_FILE_STEM_CHARS: usize = 80;

/// Sends notifications as email through one SMTP server.
pub struct EmailSink {
    name: String,
    host: String,
    port: u16,
    tls: SmtpTls,
    username: Option<String>,
    /// Kept only to scrub it from error texts; lettre holds its own copy for AUTH.
    password: Option<SecretString>,
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    bcc: Vec<Mailbox>,
    timeout: Duration,
    // Boxed: they are large, and `Sink` is an enum of every sink.
    templates: Box<Templates>,
    transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
}

impl fmt::Debug for EmailSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailSink")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .field("cc", &self.cc.len())
            .field("bcc", &self.bcc.len())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl EmailSink {
    /// Reads the password file and the CA file, parses the addresses, compiles the templates
    /// and prepares the SMTP transport. Nothing is sent: a connection is opened per message.
    pub fn new(name: &str, cfg: &sinks::EmailSink) -> Result<Self, SinkError> {
        let password = Secret {
            inline: cfg.password.as_ref(),
            file: cfg.password_file.as_ref(),
        }
        .resolve()
        .map_err(|e| SinkError::Config(format!("password_file: {e}")))?;
        let from = parse_mailbox("from", &cfg.from)?;
        let parse_all = |key: &str, list: &[String]| -> Result<Vec<Mailbox>, SinkError> {
            list.iter().map(|a| parse_mailbox(key, a)).collect()
        };
        let (to, cc, bcc) = (
            parse_all("to", &cfg.to)?,
            parse_all("cc", &cfg.cc)?,
            parse_all("bcc", &cfg.bcc)?,
        );
        if to.is_empty() {
            return Err(SinkError::Config("`to` needs at least one address".into()));
        }
        let templates = Templates::load(&cfg.templates)?;

        let port = cfg.port.unwrap_or(match cfg.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        });
        // `builder_dangerous` + an explicit `Tls` is what `starttls_relay`/`relay` do, minus
        // building a second set of TLS parameters (and reading the system roots twice).
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.as_str())
                .port(port)
                .timeout(Some(cfg.timeout));
        builder = match cfg.tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::Starttls => builder.tls(Tls::Required(tls_parameters(
                &cfg.host,
                cfg.ca_file.as_deref(),
            )?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls_parameters(
                &cfg.host,
                cfg.ca_file.as_deref(),
            )?)),
        };
        match (&cfg.username, &password) {
            (Some(user), Some(pass)) => {
                if cfg.tls == SmtpTls::None && !is_loopback(&cfg.host) {
                    tracing::warn!(
                        sink = %name, host = %cfg.host,
                        "the email sink sends its password unencrypted (`tls: none` to a host that is not loopback)"
                    );
                }
                builder = builder.credentials(Credentials::new(
                    user.clone(),
                    pass.expose_secret().to_string(),
                ));
            }
            (Some(_), None) => {
                return Err(SinkError::Config(
                    "`username` is set but no `password` (or `password_file`)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(SinkError::Config(
                    "`password` is set but no `username`".into(),
                ));
            }
            (None, None) => {}
        }

        Ok(Self {
            name: name.to_string(),
            host: cfg.host.clone(),
            port,
            tls: cfg.tls,
            username: cfg.username.clone(),
            password,
            from,
            to,
            cc,
            bcc,
            timeout: cfg.timeout,
            templates: Box::new(templates),
            transport: Box::new(builder.build()),
        })
    }

    /// Renders and sends one message; the whole SMTP conversation is bounded by `timeout`.
    pub async fn deliver(&self, n: &Notification<'_>) -> Result<(), SinkError> {
        let message_id = message_id(n, &self.name, self.from.email.domain());
        let mut files = Vec::with_capacity(n.artifacts.len());
        for a in n.artifacts {
            // A file gone from disk since it was listed is left out, not the whole message.
            match tokio::fs::read(&a.path).await {
                Ok(bytes) => files.push((a, bytes)),
                Err(e) => tracing::warn!(
                    sink = %self.name, job_id = %n.job.id, artifact = %a.name, error = %e,
                    "cannot read an artifact to attach; sent without it"
                ),
            }
        }
        let message = self.message(n, &message_id, &files)?;
        let sent = tokio::time::timeout(self.timeout, self.transport.send(message)).await;
        match sent {
            Ok(Ok(response)) => {
                tracing::debug!(
                    sink = %self.name, job_id = %n.job.id, message_id = %message_id,
                    reply = %response.code(), "email accepted by the SMTP server"
                );
                Ok(())
            }
            Ok(Err(e)) => Err(self.classify(&e)),
            Err(_) => Err(SinkError::temporary(format!(
                "SMTP {}:{}: no complete answer within {}",
                self.host,
                self.port,
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    /// The message for a notification.
    fn message(
        &self,
        n: &Notification<'_>,
        message_id: &str,
        files: &[(&ArtifactFile, Vec<u8>)],
    ) -> Result<Message, SinkError> {
        let subject = self.templates.render(Part::Subject, n.ctx)?;
        let text = self.templates.render(Part::Text, n.ctx)?;
        let html = self.templates.render(Part::Html, n.ctx)?;
        let report = self.templates.render(Part::Markdown, n.ctx)?;
        let json = match n.response {
            Some(r) => serde_json::to_string_pretty(r),
            None => serde_json::to_string_pretty(&n.event_json()),
        }
        .map_err(|e| SinkError::Permanent(format!("cannot serialize the response: {e}")))?;

        let stem = file_stem(&n.job.name, &n.job.id);
        let mut body = MultiPart::mixed()
            .multipart(
                MultiPart::alternative()
                    .singlepart(text_part(ContentType::TEXT_PLAIN, &text)?)
                    .singlepart(text_part(ContentType::TEXT_HTML, &html)?),
            )
            .singlepart(attachment(
                &format!("{stem}.md"),
                "text/markdown; charset=utf-8",
                report.into_bytes(),
            )?)
            .singlepart(attachment(
                &format!("{stem}.json"),
                "application/json",
                json.into_bytes(),
            )?);
        let mut taken =
            std::collections::BTreeSet::from([format!("{stem}.md"), format!("{stem}.json")]);
        for (a, bytes) in files {
            let media_type = if ContentType::parse(&a.media_type).is_ok() {
                a.media_type.as_str()
            } else {
                "application/octet-stream"
            };
            let name = unique_ascii_name(&a.name, &mut taken);
            body = body.singlepart(attachment(&name, media_type, bytes.clone())?);
        }

        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .date_now()
            .message_id(Some(message_id.to_string()))
            .user_agent(concat!("respool/", env!("CARGO_PKG_VERSION")).to_string())
            // RFC 3834: a machine wrote this; vacation responders should stay quiet.
            .raw_header(raw_header("Auto-Submitted", "auto-generated"))
            .raw_header(raw_header("X-Auto-Response-Suppress", "All"))
            .raw_header(raw_header("X-Respool-Job-Id", &n.job.id))
            .raw_header(raw_header("X-Respool-Event", n.event));
        for m in &self.to {
            builder = builder.to(m.clone());
        }
        for m in &self.cc {
            builder = builder.cc(m.clone());
        }
        // Bcc only reaches the envelope: lettre drops the header once the envelope is built.
        for m in &self.bcc {
            builder = builder.bcc(m.clone());
        }
        builder
            .multipart(body)
            .map_err(|e| SinkError::Config(format!("cannot build the message: {e}")))
    }

    /// Sorts an SMTP failure into temporary or permanent, with a message free of the password.
    fn classify(&self, e: &lettre::transport::smtp::Error) -> SinkError {
        let server = format!("SMTP {}:{}", self.host, self.port);
        // lettre nests its errors and each Display repeats its source: the innermost cause
        // ("Connection refused", "invalid peer certificate: UnknownIssuer") says it all.
        let cause = root_cause(e);
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        let err = if e.is_permanent() {
            match code.as_str() {
                // 535: credentials invalid; 534: mechanism too weak; 538: encryption required.
                "535" | "534" | "538" if self.username.is_some() => SinkError::Permanent(format!(
                    "{server}: authentication failed for user `{}`: {code} {cause}",
                    self.username.as_deref().unwrap_or_default()
                )),
                "530" => SinkError::Permanent(format!(
                    "{server}: the server wants authentication or TLS first ({code} {cause}); check `username`, `password` and `tls`"
                )),
                _ => SinkError::Permanent(format!("{server} refused the message: {code} {cause}")),
            }
        } else if e.is_transient() {
            SinkError::temporary(format!("{server}: temporary failure: {code} {cause}"))
        } else if e.is_client() {
            // The server lacks something the settings need (STARTTLS, an AUTH mechanism,
            // SMTPUTF8): retrying will not change that.
            SinkError::Permanent(format!(
                "{server}: {cause} (check `tls`, `port` and the credentials)"
            ))
        } else {
            // No connection, a failed TLS handshake (a certificate the server may yet fix),
            // a dropped connection, a timeout, an unreadable reply: worth another try.
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_response() {
                "unreadable reply"
            } else {
                "connection failed"
            };
            let hint = match self.tls {
                SmtpTls::None => "check `host` and `port`",
                SmtpTls::Starttls | SmtpTls::Tls => "check `host`, `port`, `tls` and `ca_file`",
            };
            SinkError::temporary(format!("{server}: {what}: {cause} ({hint})"))
        };
        self.scrub(err)
    }

    /// Removes the password, and its base64 forms as sent by AUTH PLAIN and LOGIN, from a
    /// message: some servers quote what they were sent.
    fn scrub(&self, err: SinkError) -> SinkError {
        let Some(password) = self
            .password
            .as_ref()
            .map(ExposeSecret::expose_secret)
            .filter(|p| !p.is_empty())
        else {
            return err;
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let user = self.username.as_deref().unwrap_or_default();
        let forms = [
            password.to_string(),
            b64.encode(password),
            b64.encode(format!("\0{user}\0{password}")),
        ];
        let clean = |mut s: String| {
            for f in &forms {
                s = s.replace(f.as_str(), "[redacted]");
            }
            s
        };
        match err {
            SinkError::Temporary {
                message,
                retry_after,
            } => SinkError::Temporary {
                message: clean(message),
                retry_after,
            },
            SinkError::Permanent(m) => SinkError::Permanent(clean(m)),
            SinkError::Config(m) => SinkError::Config(clean(m)),
        }
    }
}

/// The innermost error of a chain, as text.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn parse_mailbox(key: &str, address: &str) -> Result<Mailbox, SinkError> {
    address.parse::<Mailbox>().map_err(|e| {
        SinkError::Config(format!("`{key}`: `{address}` is not an email address: {e}"))
    })
}

/// TLS settings for `host`: the system roots plus the certificates in `ca_file`, if any.
fn tls_parameters(
    host: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<TlsParameters, SinkError> {
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            SinkError::Config(format!("cannot read ca_file {}: {e}", path.display()))
        })?;
        // lettre accepts a file without certificates; a CA file that adds nothing is a mistake.
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(SinkError::Config(format!(
                "ca_file {}: no PEM certificate in it",
                path.display()
            )));
        }
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            SinkError::Config(format!(
                "ca_file {}: not a valid PEM certificate: {e}",
                path.display()
            ))
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| SinkError::Config(format!("TLS settings for {host}: {e}")))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An attachment part. `file_name` must come from [`file_stem`] (plain ASCII, no quotes).
/// The body goes in base64, byte for byte: the saved file is exactly what was rendered, and
/// every line on the wire is 76 characters and CRLF, whatever the content (lettre would send
/// ASCII with short lines as `7bit`, keeping its bare LFs, which SMTP servers refuse).
fn attachment(file_name: &str, mime: &str, body: Vec<u8>) -> Result<SinglePart, SinkError> {
    // `name=` too: older clients look for the name in the Content-Type only.
    let content_type = format!("{mime}; name=\"{file_name}\"");
    let content_type = ContentType::parse(&content_type)
        .map_err(|e| SinkError::Config(format!("content type {content_type}: {e}")))?;
    let body = encoded(body, ContentTransferEncoding::Base64)?;
    Ok(SinglePart::builder()
        .header(content_type)
        .header(AttachedFile(file_name.to_string()))
        .body(body))
}

/// A text body (the plain-text or the HTML alternative) in its canonical form, CRLF line
/// ends (a model's answer may hold bare CRs and LFs), encoded so that no line on the wire is
/// longer than 76 characters: a model's answer can be one 50 KB line.
fn text_part(content_type: ContentType, text: &str) -> Result<SinglePart, SinkError> {
    let text = crlf(text);
    let encoding = text_encoding(&text);
    Ok(SinglePart::builder()
        .header(content_type)
        .body(encoded(text.into_bytes(), encoding)?))
}

/// Quoted-printable while it is no larger than base64 (it keeps mostly-ASCII text readable
/// in the raw message), base64 for text that is mostly non-ASCII. QP spends three octets on
/// each octet it escapes, base64 four on every three: they break even at one escape in six.
fn text_encoding(text: &str) -> ContentTransferEncoding {
    let escaped = text
        .bytes()
        .filter(|b| !matches!(b, b'\t' | b'\r' | b'\n' | b' '..=b'<' | b'>'..=b'~'))
        .count();
    if escaped <= text.len() / 6 {
        ContentTransferEncoding::QuotedPrintable
    } else {
        ContentTransferEncoding::Base64
    }
}

/// `bytes` encoded by lettre. It refuses only `7bit` and `8bit` for data they cannot carry;
/// neither is asked for here, so the error is a safeguard rather than a path.
fn encoded(bytes: Vec<u8>, encoding: ContentTransferEncoding) -> Result<Body, SinkError> {
    Body::new_with_encoding(bytes, encoding)
        .map_err(|_| SinkError::Permanent(format!("cannot encode a message part as {encoding}")))
}

/// `text` with every line end (`\r\n`, a lone `\n`, a lone `\r`) made `\r\n`: the canonical
/// form of a text part (RFC 2046 §4.1.1) and the only line end SMTP allows (RFC 5321 §2.3.8).
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

/// `Content-Disposition: attachment; filename="…"`. lettre's own header always writes the
/// RFC 2231 form (`filename*0="…"`), which some clients (Outlook over IMAP, some webmails)
/// show as an untitled attachment; our names are plain ASCII and need no encoding.
#[derive(Debug, Clone)]
struct AttachedFile(String);

impl Header for AttachedFile {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Content-Disposition")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        s.split_once("filename=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(name, _)| Self(name.to_string()))
            .ok_or_else(|| "not an attachment disposition".into())
    }

    fn display(&self) -> HeaderValue {
        // Pre-encoded is safe: the name is `[A-Za-z0-9._-]` only (see `file_stem`).
        HeaderValue::dangerous_new_pre_encoded(
            Self::name(),
            format!("attachment; filename=\"{}\"", self.0),
            format!("attachment;\r\n filename=\"{}\"", self.0),
        )
    }
}

fn raw_header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
}

/// `<job_…​.completed.mail@example.com>`: the same for every try of a (job, event, sink), so
/// a retry after a lost reply does not open a second thread. `notify test` (outbox id 0)
/// reuses one sample job, so it gets a unique id: servers such as Gmail drop a message whose
/// id they have already seen.
fn message_id(n: &Notification<'_>, sink: &str, domain: &str) -> String {
    let key = super::context::event_key(n.event, n.job.turn);
    let event = atext(key.strip_prefix("job.").unwrap_or(&key));
    let job = atext(&n.job.id);
    let sink = atext(sink);
    if n.id == 0 {
        format!(
            "<{job}.{event}.{sink}.test-{}@{domain}>",
            ulid::Ulid::new().to_string().to_lowercase()
        )
    } else {
        format!("<{job}.{event}.{sink}@{domain}>")
    }
}

/// Keeps the characters a Message-ID's left part may hold without quoting.
fn atext(s: &str) -> String {
    let out: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    if out.is_empty() { "x".into() } else { out }
}

/// An artifact's name as an attachment's file name: reduced to `[A-Za-z0-9._-]` (a space
/// becomes `_`, any other character `-`, runs of them one), never empty, and unique among
/// `taken` (` -2`, `-3`… before the extension).
fn unique_ascii_name(name: &str, taken: &mut std::collections::BTreeSet<String>) -> String {
    let mut safe = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else if c == ' ' {
            '_'
        } else {
            '-'
        };
        if !(matches!(c, '-' | '_') && safe.ends_with(c)) {
            safe.push(c);
        }
    }
    // The extension is kept apart, so a name of other scripts (`東京.txt`) keeps it too.
    let (stem, ext) = match safe.rsplit_once('.') {
        Some((s, e)) if !e.is_empty() && !e.contains(['-', '_']) => (s, format!(".{e}")),
        _ => (safe.as_str(), String::new()),
    };
    let stem = stem.trim_matches(['-', '.', '_']);
    let stem = if stem.is_empty() { "file" } else { stem };
    let mut candidate = format!("{stem}{ext}");
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{stem}-{n}{ext}");
        n += 1;
    }
    candidate
}

/// `<job name>-<job id>`, with the name reduced to `[A-Za-z0-9._-]` so every mail client and
/// file system takes it as is.
fn file_stem(name: &str, id: &str) -> String {
    let mut safe = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            safe.push(c);
        } else if !safe.ends_with('-') {
            safe.push('-');
        }
    }
    let safe: String = safe
        .trim_matches(['-', '.'])
        .chars()
        .take(MAX_FILE_STEM_CHARS)
        .collect();
    let safe = safe.trim_end_matches(['-', '.']);
    let id = atext(id);
    if safe.is_empty() {
        id
    } else {
        format!("{safe}-{id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sinks::TemplateFiles;
    use crate::notify::Context;
    use crate::notify::sample::sample_job;

    fn cfg() -> sinks::EmailSink {
        sinks::EmailSink {
            host: "mail.example.com".into(),
            port: None,
            tls: SmtpTls::Starttls,
            username: Some("alice".into()),
            password: Some(SecretString::from("hunter2-very-secret")),
            password_file: None,
            from: "respool <respool@example.com>".into(),
            to: vec!["Alice <alice@example.com>".into()],
            cc: vec!["carol@example.com".into()],
            bcc: vec!["audit@example.com".into()],
            ca_file: None,
            timeout: Duration::from_secs(5),
            templates: TemplateFiles::default(),
            max_concurrent: None,
        }
    }

    fn formatted(sink: &EmailSink, id: i64) -> String {
        let (job, response, events) = sample_job(1_700_000_000_000);
        let config = crate::config::Config::default();
        let ctx = Context::build("job.completed", &job, Some(&response), &events, &config);
        let n = Notification {
            id,
            event: "job.completed",
            job: &job,
            response: Some(&response),
            ctx: &ctx,
            artifacts: &[],
        };
        let id = message_id(&n, &sink.name, sink.from.email.domain());
        String::from_utf8(sink.message(&n, &id, &[]).unwrap().formatted()).unwrap()
    }

    /// The sample job with `text` as its whole output (no citations: their offsets would not
    /// fit), its message as sent, and what each part must decode to.
    fn formatted_with_output(text: &str) -> (Vec<u8>, [(&'static str, Vec<u8>); 4]) {
        let sink = EmailSink::new("mail", &cfg()).unwrap();
        let (mut job, mut response, events) = sample_job(1_700_000_000_000);
        job.output_text = Some(text.to_string());
        let mut message = response["output"][1].take();
        message["content"][0]["text"] = text.into();
        message["content"][0]["annotations"] = serde_json::json!([]);
        response["output"] = serde_json::json!([message]);
        let config = crate::config::Config::default();
        let ctx = Context::build("job.completed", &job, Some(&response), &events, &config);
        let n = Notification {
            id: 7,
            event: "job.completed",
            job: &job,
            response: Some(&response),
            ctx: &ctx,
            artifacts: &[],
        };
        let raw = sink
            .message(&n, "<x@example.com>", &[])
            .unwrap()
            .formatted();
        let render = |part| sink.templates.render(part, &ctx).unwrap();
        // Text bodies travel in the canonical form (CRLF line ends); attachments byte for byte.
        let expected = [
            ("text/plain", crlf(&render(Part::Text)).into_bytes()),
            ("text/html", crlf(&render(Part::Html)).into_bytes()),
            ("text/markdown", render(Part::Markdown).into_bytes()),
            (
                "application/json",
                serde_json::to_string_pretty(&response)
                    .unwrap()
                    .into_bytes(),
            ),
        ];
        (raw, expected)
    }

    /// What RFC 5321 and 5322 ask of every line: CRLF only, at most 998 octets, 7-bit.
    fn assert_wire_safe(raw: &[u8]) {
        assert!(
            raw.is_ascii(),
            "8-bit data in a message sent without 8BITMIME"
        );
        for (i, b) in raw.iter().enumerate() {
            match b {
                b'\n' => assert!(i > 0 && raw[i - 1] == b'\r', "bare LF at octet {i}"),
                b'\r' => assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at octet {i}"),
                _ => {}
            }
        }
        let longest = raw
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
            .max()
            .unwrap_or(0);
        assert!(longest <= 998, "a line of {longest} octets");
    }

    /// The leaf parts of a MIME entity, each as (content type, decoded body).
    fn leaves(entity: &[u8], out: &mut Vec<(String, Vec<u8>)>) {
        let entity = std::str::from_utf8(entity).expect("the message is ASCII");
        let (head, body) = entity.split_once("\r\n\r\n").unwrap_or((entity, ""));
        let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        let header = |name: &str| {
            head.split("\r\n").find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let content_type = header("Content-Type").unwrap_or_else(|| "text/plain".into());
        if content_type.starts_with("multipart/") {
            let boundary = content_type
                .split_once("boundary=")
                .map(|(_, b)| b.split(';').next().unwrap().trim_matches('"'))
                .expect("a multipart has a boundary");
            let body = format!("\r\n{body}");
            let delimiter = format!("\r\n--{boundary}");
            for chunk in body.split(&delimiter).skip(1) {
                if chunk.starts_with("--") {
                    return;
                }
                leaves(chunk.strip_prefix("\r\n").unwrap().as_bytes(), out);
            }
            panic!("multipart without its closing boundary");
        }
        let decoded = match header("Content-Transfer-Encoding").as_deref() {
            Some("base64") => base64::engine::general_purpose::STANDARD
                .decode(body.replace("\r\n", ""))
                .expect("valid base64"),
            Some("quoted-printable") => {
                quoted_printable::decode(body, quoted_printable::ParseMode::Strict)
                    .expect("valid quoted-printable")
            }
            // Identity encodings: `assert_wire_safe` has checked their lines.
            Some("7bit") | None => body.as_bytes().to_vec(),
            other => panic!("{content_type}: unexpected transfer encoding {other:?}"),
        };
        let mime = content_type.split(';').next().unwrap().trim().to_string();
        out.push((mime, decoded));
    }

    /// Formats the message of a job whose output is `text` and checks it on the wire and
    /// part by part.
    fn assert_round_trip(text: &str) {
        let (raw, expected) = formatted_with_output(text);
        assert_wire_safe(&raw);
        let mut parts = Vec::new();
        leaves(&raw, &mut parts);
        let types: Vec<&str> = parts.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(types, expected.iter().map(|(t, _)| *t).collect::<Vec<_>>());
        for ((mime, got), (_, want)) in parts.iter().zip(&expected) {
            assert!(
                got == want,
                "{mime} does not decode to what was rendered ({} vs {} bytes)",
                got.len(),
                want.len()
            );
        }
    }

    #[test]
    fn crlf_makes_every_line_end_crlf() {
        assert_eq!(
            crlf("a\nb\r\nc\rd\n\re\r\r\n"),
            "a\r\nb\r\nc\r\nd\r\n\r\ne\r\n\r\n"
        );
        assert_eq!(crlf(""), "");
        assert_eq!(crlf("no line end"), "no line end");
    }

    #[test]
    fn text_is_quoted_printable_unless_mostly_non_ascii() {
        use ContentTransferEncoding::{Base64, QuotedPrintable};
        assert_eq!(text_encoding(""), QuotedPrintable);
        assert_eq!(text_encoding("plain words\r\n"), QuotedPrintable);
        assert_eq!(
            text_encoding("The café on the corner has a résumé of the news."),
            QuotedPrintable
        );
        assert_eq!(text_encoding("東京の天気は晴れです"), Base64);
        assert_eq!(text_encoding("Привет, мир!"), Base64);
    }

    #[test]
    fn ascii_output_is_sent_crlf_clean() {
        // Short enough that every line of the JSON is short too: lettre alone sent that `7bit`,
        // bare LFs and all.
        assert_round_trip("The answer is 42.\n");
        assert_round_trip(
            "# Findings\n\nAll ASCII, short lines.\n\n- one\n- two\n- three\n\nDone.\n",
        );
    }

    #[test]
    fn non_ascii_output_is_sent_crlf_clean() {
        assert_round_trip("# Résumé\n\nÜber café — 東京 ✅\nПривет, мир!\n");
    }

    #[test]
    fn empty_output_is_sent_crlf_clean() {
        assert_round_trip("");
    }

    #[test]
    fn huge_output_is_sent_crlf_clean() {
        let mut text = String::new();
        let mut n = 0;
        while text.len() <= 1_100_000 {
            n += 1;
            text.push_str(&format!(
                "Line {n}: the quick brown fox jumps over the lazy dog.\n"
            ));
            if n % 1000 == 0 {
                text.push_str(&"x".repeat(5_000));
                text.push('\n');
            }
        }
        assert_round_trip(&text);
    }

    #[test]
    fn a_line_longer_than_1000_characters_is_wrapped() {
        assert_round_trip(&format!("{}\nend\n", "word ".repeat(400)));
        // A model answer can be one 50 KB line.
        assert_round_trip(&"a".repeat(50_000));
    }

    #[test]
    fn many_short_lines_are_sent_crlf_clean() {
        let text: String = (0..2_000).map(|i| format!("{i}\n")).collect();
        assert_round_trip(&text);
    }

    #[test]
    fn bare_cr_and_lf_mixes_are_sent_crlf_clean() {
        assert_round_trip("one\rtwo\nthree\r\nfour\n\rfive\r\r\nsix\r");
    }

    #[test]
    fn lines_starting_with_a_dot_survive() {
        assert_round_trip(".\n.hidden\n..\nnot a dot\n.\n");
    }

    #[test]
    fn message_has_alternative_body_and_two_attachments() {
        let sink = EmailSink::new("mail", &cfg()).unwrap();
        let m = formatted(&sink, 7);
        let (headers, _) = m.split_once("\r\n\r\n").unwrap();
        assert!(
            headers.contains("Content-Type: multipart/mixed"),
            "{headers}"
        );
        assert!(
            headers.contains("To: \"Alice\" <alice@example.com>")
                || headers.contains("To: Alice <alice@example.com>")
        );
        assert!(headers.contains("Cc: carol@example.com"));
        assert!(!headers.contains("Bcc"), "Bcc must not be a header");
        assert!(headers.contains("Date: "));
        assert!(headers.contains("Auto-Submitted: auto-generated"));
        assert!(
            headers.contains(
                "Message-ID: <job_00000000000000000000000000.completed.mail@example.com>"
            ),
            "{headers}"
        );
        assert!(m.contains("Content-Type: multipart/alternative"));
        assert!(m.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(m.contains("Content-Type: text/html; charset=utf-8"));
        assert!(
            m.contains("filename=\"respool-test-job_00000000000000000000000000.md\""),
            "{m}"
        );
        assert!(m.contains("Content-Disposition: attachment;\r\n filename=\"respool-test-job_00000000000000000000000000.md\"\r\n"));
        assert!(m.contains("Content-Type: text/markdown; charset=utf-8"));
        assert!(m.contains("filename=\"respool-test-job_00000000000000000000000000.json\""));
        assert!(m.contains("Content-Type: application/json"));
        assert!(!m.contains("hunter2"));
    }

    /// Artifacts go as attachments byte for byte (binary, ASCII text without a final line
    /// end, non-ASCII text, empty), under ASCII names that stay unique, and the message stays
    /// wire-safe; the text part lists them.
    #[test]
    fn artifacts_are_attached_byte_for_byte_under_ascii_names() {
        let sink = EmailSink::new("mail", &cfg()).unwrap();
        let (job, response, events) = sample_job(1_700_000_000_000);
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        png.extend((0..=255u8).cycle().take(5_000));
        let csv = "région,valeur\nÎle-de-France,12\n".as_bytes().to_vec();
        let long_ascii = "x".repeat(3_000).into_bytes();
        let file = |name: &str, media: &str| ArtifactFile {
            name: name.into(),
            media_type: media.into(),
            path: std::path::PathBuf::from("/nonexistent"),
        };
        let files = [
            file("image-1.png", "image/png"),
            file("Größe übersicht.csv", "text/csv"),
            file("Grüße übersicht.csv", "text/csv"),
            file("one line.txt", "text/plain"),
            file("empty.txt", "not a / media type;;"),
            file("東京.txt", "text/plain"),
        ];
        let parts: Vec<(&ArtifactFile, Vec<u8>)> = files
            .iter()
            .zip([
                png.clone(),
                csv.clone(),
                csv.clone(),
                long_ascii.clone(),
                Vec::new(),
                csv.clone(),
            ])
            .collect();
        let rows: Vec<crate::store::ArtifactRow> = files
            .iter()
            .map(|f| crate::store::ArtifactRow {
                name: f.name.clone(),
                kind: "container_file".into(),
                media_type: f.media_type.clone(),
                bytes: 10,
                sha256: None,
                source: "cntr_1/cfile_1".into(),
                path: None,
                error: None,
                created_at: 0,
            })
            .collect();
        let config = crate::config::Config::default();
        let ctx = Context::build("job.completed", &job, Some(&response), &events, &config)
            .with_artifacts(&rows, &config, true);
        let n = Notification {
            id: 7,
            event: "job.completed",
            job: &job,
            response: Some(&response),
            ctx: &ctx,
            artifacts: &files,
        };
        let raw = sink
            .message(&n, "<x@example.com>", &parts)
            .unwrap()
            .formatted();
        assert_wire_safe(&raw);
        let text = String::from_utf8(raw.clone()).unwrap();
        for name in [
            "image-1.png",
            "Gr-e_-bersicht.csv",
            "Gr-e_-bersicht-2.csv",
            "one_line.txt",
            "empty.txt",
            "file.txt",
        ] {
            assert!(
                text.contains(&format!("filename=\"{name}\"")),
                "{name} is not attached under its ASCII name"
            );
        }
        let mut out = Vec::new();
        leaves(&raw, &mut out);
        let bodies: Vec<&Vec<u8>> = out.iter().skip(4).map(|(_, b)| b).collect();
        assert_eq!(bodies, [&png, &csv, &csv, &long_ascii, &Vec::new(), &csv]);
        let types: Vec<&str> = out.iter().skip(4).map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "image/png",
                "text/csv",
                "text/csv",
                "text/plain",
                "application/octet-stream",
                "text/plain"
            ]
        );
        // The text part names each one.
        let plain = String::from_utf8(out[0].1.clone()).unwrap();
        assert!(plain.contains("Artifacts:"), "{plain}");
        assert!(
            plain.contains("- Größe übersicht.csv (10 B), attached"),
            "{plain}"
        );
    }

    #[test]
    fn message_id_is_stable_per_job_and_event_but_unique_for_notify_test() {
        let sink = EmailSink::new("mail", &cfg()).unwrap();
        let id = |m: String| {
            m.lines()
                .find(|l| l.starts_with("Message-ID:"))
                .unwrap()
                .to_string()
        };
        assert_eq!(id(formatted(&sink, 7)), id(formatted(&sink, 8)));
        assert_ne!(id(formatted(&sink, 0)), id(formatted(&sink, 0)));
    }

    #[test]
    fn envelope_includes_bcc() {
        let sink = EmailSink::new("mail", &cfg()).unwrap();
        let (job, response, events) = sample_job(1_700_000_000_000);
        let ctx = Context::build(
            "job.completed",
            &job,
            Some(&response),
            &events,
            &crate::config::Config::default(),
        );
        let n = Notification {
            id: 1,
            event: "job.completed",
            job: &job,
            response: Some(&response),
            ctx: &ctx,
            artifacts: &[],
        };
        let msg = sink.message(&n, "<x@example.com>", &[]).unwrap();
        let rcpt: Vec<String> = msg
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            rcpt,
            [
                "alice@example.com",
                "carol@example.com",
                "audit@example.com"
            ]
        );
    }

    #[test]
    fn bad_address_is_a_config_error_naming_it() {
        let mut c = cfg();
        c.cc = vec!["not an address".into()];
        let err = EmailSink::new("mail", &c).unwrap_err();
        assert!(
            matches!(&err, SinkError::Config(m) if m.contains("`cc`") && m.contains("not an address")),
            "{err}"
        );
    }

    #[test]
    fn username_without_password_is_a_config_error() {
        let mut c = cfg();
        c.password = None;
        assert!(matches!(
            EmailSink::new("mail", &c),
            Err(SinkError::Config(_))
        ));
    }

    #[test]
    fn a_ca_file_without_certificates_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let mut c = cfg();
        c.ca_file = Some(path);
        assert!(
            matches!(EmailSink::new("mail", &c), Err(SinkError::Config(m)) if m.contains("ca_file"))
        );
    }

    #[test]
    fn debug_and_scrub_hide_the_password() {
        let sink = EmailSink::new("mail", &cfg()).unwrap();
        assert!(!format!("{sink:?}").contains("hunter2"));
        let b64 = base64::engine::general_purpose::STANDARD;
        let echoed = format!(
            "535 bad: hunter2-very-secret {}",
            b64.encode("\0alice\0hunter2-very-secret")
        );
        let err = sink.scrub(SinkError::Permanent(echoed));
        assert!(!err.to_string().contains("hunter2"));
        assert!(
            !err.to_string()
                .contains(&b64.encode("\0alice\0hunter2-very-secret"))
        );
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("weekly-report", "job_01"), "weekly-report-job_01");
        assert_eq!(
            file_stem("Q3 / résumé: draft?", "job_01"),
            "Q3-r-sum-draft-job_01"
        );
        assert_eq!(file_stem("../../etc/passwd", "job_01"), "etc-passwd-job_01");
        assert_eq!(file_stem("???", "job_01"), "job_01");
        assert_eq!(
            file_stem(&"a".repeat(300), "job_01").len(),
            MAX_FILE_STEM_CHARS + "-job_01".len()
        );
    }
}
