//! The Discord and ntfy sinks over real HTTP on loopback: what each one posts (shape, limits,
//! mentions, auth), how their rate limits become retries, and that their secrets never show.
#![allow(clippy::field_reassign_with_default)]

use std::time::Duration;

use respool::config::SinkConfig;
use respool::config::sinks::{DiscordSink, NtfySink, TemplateFiles};
use respool::job::JobStatus;
use respool::notify::{Sink, SinkError};
use respool::sim::SimConfig;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers;

const SECRET_PATH: &str = "/api/webhooks/1234567890/sEcReTtOkEn1234567890";
const TOKEN: &str = "tk_sEcReTnTfYtOkEn0987654321";

use crate::helpers::chat::*;
use crate::helpers::receiver::{Receiver, Reply};

fn chars(v: &Value) -> usize {
    v.as_str().unwrap().chars().count()
}

/// 20,000+ characters of Markdown with headings, bold, links and non-ASCII text.
fn long_report() -> String {
    let mut md = String::new();
    let mut n = 0;
    while md.chars().count() < 20_000 {
        n += 1;
        md.push_str(&format!(
            "## Section {n}\n\nSome **bold words** and a [link number {n}](https://example.com/{n}?a=1&b=2) \
             with plain words alpha beta gamma, café naïve 日本語 ✅.\n\n"
        ));
    }
    md
}

/// The last word before the `…` of a cut text, without Markdown around it.
fn last_word_before_cut(cut: &str) -> String {
    let kept = cut
        .strip_suffix('…')
        .unwrap_or_else(|| panic!("no … at the cut: {cut}"));
    // Never inside a link: the last `[` is a whole `[text](url)`.
    if let Some(open) = kept.rfind('[') {
        assert!(
            kept[open..].contains(')'),
            "a link was split: …{}",
            &kept[open..]
        );
    }
    kept.split_whitespace()
        .last()
        .unwrap()
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_string()
}

const VOCABULARY: &[&str] = &[
    "Section",
    "Some",
    "bold",
    "words",
    "and",
    "a",
    "link",
    "number",
    "with",
    "plain",
    "alpha",
    "beta",
    "gamma",
    "café",
    "naïve",
    "日本語",
];

fn assert_whole_word(word: &str) {
    assert!(
        VOCABULARY.contains(&word) || word.chars().all(|c| c.is_ascii_digit()),
        "cut inside a word: {word:?}"
    );
}

// ---- Discord ------------------------------------------------------------------------------

fn discord_config(url: &str) -> SinkConfig {
    SinkConfig::Discord(DiscordSink {
        max_concurrent: None,
        url: Some(SecretString::from(url.to_string())),
        url_file: None,
        timeout: Duration::from_secs(10),
        templates: TemplateFiles::default(),
    })
}

fn discord(url: &str) -> Sink {
    Sink::build("chat", &discord_config(url), &reqwest::Client::new()).unwrap()
}

#[tokio::test]
async fn discord_gets_one_embed_with_the_facts_and_no_mentions() {
    let rx = Receiver::start(vec![Reply::new(204, "")]).await;
    let output = "# Findings\n\n@everyone the **answer** is [here](https://example.com/a).";
    let sample = Sample::new(JobStatus::Completed, "market-scan", output);
    discord(&rx.url_for(SECRET_PATH))
        .deliver(&sample.notification())
        .await
        .unwrap();

    let hits = rx.wait_hits(1, DEADLINE).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].path, SECRET_PATH);
    let msg = hits[0].json();
    assert_eq!(msg["content"], "✅ market-scan completed after 1m 4s");
    assert_eq!(msg["allowed_mentions"], json!({"parse": []}));
    let embeds = msg["embeds"].as_array().unwrap();
    assert_eq!(embeds.len(), 1);
    let embed = &embeds[0];
    assert_eq!(embed["title"], "market-scan");
    assert_eq!(
        embed["url"],
        "https://respool.example/jobs/job_01JTESTSNACK00000000000000"
    );
    assert_eq!(embed["color"], 0x2e_b6_7d);
    assert_eq!(
        embed["timestamp"].as_str(),
        sample.ctx.job.finished_at.as_deref()
    );
    assert_eq!(embed["description"], output);
    assert!(
        embed["footer"]["text"]
            .as_str()
            .unwrap()
            .contains("job_01JTESTSNACK00000000000000")
    );
    let fields: Vec<(String, String)> = embed["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (name, value) in [
        ("Model", "gpt-5"),
        ("Status", "completed"),
        ("Duration", "1m 4s"),
        ("Tokens", "1,200 in · 800 out (300 reasoning)"),
        ("Cost", "$0.01"),
    ] {
        assert!(
            fields.contains(&(name.to_string(), value.to_string())),
            "{name}: {value} not in {fields:?}"
        );
    }
}

#[tokio::test]
async fn discord_keeps_every_limit_on_a_long_failed_job() {
    let rx = Receiver::start(vec![]).await;
    let sample = Sample::new(JobStatus::Failed, &"n".repeat(300), &long_report())
        .with_error(&"boom ".repeat(1000));
    discord(&rx.url_for(SECRET_PATH))
        .deliver(&sample.notification())
        .await
        .unwrap();

    let msg = rx.wait_hits(1, DEADLINE).await[0].json();
    assert!(chars(&msg["content"]) <= 2000);
    let embed = &msg["embeds"][0];
    assert_eq!(embed["color"], 0xe0_1e_5a);
    assert!(chars(&embed["title"]) <= 256);
    assert!(chars(&embed["description"]) <= 4096);
    let fields = embed["fields"].as_array().unwrap();
    assert!(fields.len() <= 25);
    assert!(
        fields
            .iter()
            .all(|f| chars(&f["name"]) <= 256 && chars(&f["value"]) <= 1024)
    );
    let error = fields.iter().find(|f| f["name"] == "Error").unwrap();
    assert!(
        error["value"].as_str().unwrap().ends_with("boom…"),
        "{error}"
    );
    let total = chars(&embed["title"])
        + chars(&embed["description"])
        + chars(&embed["footer"]["text"])
        + fields
            .iter()
            .map(|f| chars(&f["name"]) + chars(&f["value"]))
            .sum::<usize>();
    assert!(total <= 6000, "the embed holds {total} characters");

    let description = embed["description"].as_str().unwrap();
    let note = "\n\n*[The full report is in respool.](https://respool.example/jobs/job_01JTESTSNACK00000000000000)*";
    let cut = description
        .strip_suffix(note)
        .unwrap_or_else(|| panic!("no note: {description}"));
    assert_whole_word(&last_word_before_cut(cut));
    assert!(
        description.chars().count() > 3000,
        "the description uses the room it has"
    );
}

#[tokio::test]
async fn discord_rate_limits_say_how_long_to_wait_in_the_header_or_the_body() {
    let body_only =
        r#"{"message": "You are being rate limited.", "retry_after": 2.5, "global": false}"#;
    let rx = Receiver::start(vec![
        Reply::new(429, body_only),
        Reply::retry_after(429, "1", r#"{"message": "You are being rate limited."}"#),
        Reply::new(404, r#"{"message": "Unknown Webhook", "code": 10015}"#),
    ])
    .await;
    let sample = Sample::new(JobStatus::Completed, "busy", "text");
    let n = sample.notification();
    let sink = discord(&rx.url_for(SECRET_PATH));
    for expected in [Duration::from_millis(2500), Duration::from_secs(1)] {
        match sink.deliver(&n).await.unwrap_err() {
            SinkError::Temporary { retry_after, .. } => assert_eq!(retry_after, Some(expected)),
            other => panic!("expected a temporary error, got {other:?}"),
        }
    }
    let e = sink.deliver(&n).await.unwrap_err();
    assert!(
        matches!(&e, SinkError::Permanent(m) if m.contains("Unknown Webhook")),
        "{e:?}"
    );
    let shown = format!("{e} {e:?} {sink:?}");
    assert!(!shown.contains("sEcReT"), "{shown}");
}

#[tokio::test]
async fn through_the_daemon_discords_retry_after_in_the_body_is_waited_out() {
    let limited =
        r#"{"message": "You are being rate limited.", "retry_after": 1.0, "global": false}"#;
    let rx = Receiver::start(vec![Reply::new(429, limited), Reply::new(204, "")]).await;
    let sink = discord_config(&rx.url_for(SECRET_PATH));
    let app = helpers::spawn_app_with(
        move |cfg| {
            cfg.sinks.insert("chat".into(), sink);
            cfg.notify.default = vec!["chat".into()];
            cfg.notify.initial_backoff = Duration::from_millis(200);
            cfg.notify.max_backoff = Duration::from_secs(2);
        },
        SimConfig::default(),
    )
    .await;
    let (status, body) = app.post_job(&helpers::job_body("chatty")).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.wait_terminal(&id, DEADLINE).await.status,
        JobStatus::Completed
    );
    app.wait_until("the job's `notified` event", DEADLINE, async || {
        app.count_events(&id, "notified").await > 0
    })
    .await;

    let hits = rx.hits();
    assert_eq!(
        hits.iter().map(|h| h.answered).collect::<Vec<_>>(),
        [Some(429), Some(204)]
    );
    let gap = hits[1].at - hits[0].at;
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
    assert!(
        hits[1].json()["content"]
            .as_str()
            .unwrap()
            .contains("chatty completed")
    );
    app.stop().await;
}

// ---- ntfy ---------------------------------------------------------------------------------

fn ntfy(url: &str, token: Option<&str>) -> Sink {
    let cfg = SinkConfig::Ntfy(NtfySink {
        max_concurrent: None,
        url: url.to_string(),
        token: token.map(|t| SecretString::from(t.to_string())),
        token_file: None,
        timeout: Duration::from_secs(10),
        templates: TemplateFiles::default(),
    });
    Sink::build("phone", &cfg, &reqwest::Client::new()).unwrap()
}

#[tokio::test]
async fn ntfy_publishes_json_to_the_server_root_with_the_token() {
    let rx = Receiver::start(vec![]).await;
    let sink = ntfy(&format!("{}/ntfy/alerts", rx.base), Some(TOKEN));
    let failed = Sample::new(JobStatus::Failed, "night-run", "");
    sink.deliver(&failed.notification()).await.unwrap();
    let done = Sample::new(JobStatus::Completed, "night-run", "The **answer**.");
    ntfy(&format!("{}/ntfy/alerts", rx.base), None)
        .deliver(&done.notification())
        .await
        .unwrap();

    let hits = rx.wait_hits(2, DEADLINE).await;
    assert_eq!(hits[0].path, "/ntfy/");
    assert_eq!(
        hits[0].headers["authorization"],
        format!("Bearer {TOKEN}").as_str()
    );
    let msg = hits[0].json();
    assert_eq!(msg["topic"], "alerts");
    assert_eq!(msg["title"], "❌ night-run failed after 1m 4s");
    assert_eq!(msg["tags"], json!(["failed", "respool"]));
    assert_eq!(msg["priority"], 4);
    assert_eq!(
        msg["click"],
        "https://respool.example/jobs/job_01JTESTSNACK00000000000000"
    );
    assert_eq!(msg["markdown"], true);
    let text = msg["message"].as_str().unwrap();
    assert!(
        text.contains("Model: gpt-5  \nTokens: 1200 in, 800 out (300 reasoning)"),
        "{text}"
    );
    assert!(
        text.contains("Error: server_error: The model <crashed> & burned"),
        "{text}"
    );

    assert!(hits[1].headers.get("authorization").is_none());
    let msg = hits[1].json();
    assert_eq!(msg["priority"], 3);
    assert_eq!(msg["tags"], json!(["completed", "respool"]));
    assert!(
        msg["message"]
            .as_str()
            .unwrap()
            .ends_with("The **answer**."),
        "{msg}"
    );
}

#[tokio::test]
async fn ntfy_messages_stay_within_4096_bytes_cut_at_a_word() {
    let rx = Receiver::start(vec![]).await;
    let sample = Sample::new(JobStatus::Completed, "long", &long_report());
    ntfy(&format!("{}/alerts", rx.base), None)
        .deliver(&sample.notification())
        .await
        .unwrap();

    let msg = rx.wait_hits(1, DEADLINE).await[0].json();
    assert_eq!(rx.hits()[0].path, "/");
    let message = msg["message"].as_str().unwrap();
    assert!(message.len() <= 4096, "{} bytes", message.len());
    assert!(
        message.len() > 3500,
        "the message uses the room it has: {} bytes",
        message.len()
    );
    let note = "\n\n*[The full report is in respool.](https://respool.example/jobs/job_01JTESTSNACK00000000000000)*";
    let cut = message
        .strip_suffix(note)
        .unwrap_or_else(|| panic!("no note: {message}"));
    assert_whole_word(&last_word_before_cut(cut));
}

#[tokio::test]
async fn ntfy_rate_limits_are_temporary_and_the_token_never_shows() {
    let rx = Receiver::start(vec![
        Reply::retry_after(
            429,
            "3",
            r#"{"code":42901,"http":429,"error":"limit reached: too many requests"}"#,
        ),
        // A server that echoes what it got must not leak the token through the error either.
        Reply::new(403, &format!("token {TOKEN} may not publish to this topic")),
    ])
    .await;
    let sink = ntfy(&format!("{}/alerts", rx.base), Some(TOKEN));
    let sample = Sample::new(JobStatus::Completed, "busy", "text");
    let n = sample.notification();
    match sink.deliver(&n).await.unwrap_err() {
        SinkError::Temporary { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(3)))
        }
        other => panic!("expected a temporary error, got {other:?}"),
    }
    let e = sink.deliver(&n).await.unwrap_err();
    assert!(
        matches!(&e, SinkError::Permanent(m) if m.contains("403") && m.contains("[redacted]")),
        "{e:?}"
    );
    let shown = format!("{e} {e:?} {sink:?}");
    assert!(!shown.contains("sEcReT"), "{shown}");
}

#[tokio::test]
async fn an_ntfy_server_that_does_not_answer_times_out_as_temporary() {
    let rx = Receiver::start(vec![Reply::hang()]).await;
    let cfg = SinkConfig::Ntfy(NtfySink {
        max_concurrent: None,
        url: format!("{}/alerts", rx.base),
        token: Some(SecretString::from(TOKEN.to_string())),
        token_file: None,
        timeout: Duration::from_millis(300),
        templates: TemplateFiles::default(),
    });
    let sink = Sink::build("phone", &cfg, &reqwest::Client::new()).unwrap();
    let sample = Sample::new(JobStatus::Completed, "slow", "text");
    let e = sink.deliver(&sample.notification()).await.unwrap_err();
    assert!(
        matches!(&e, SinkError::Temporary { message, .. } if message.contains("no answer within")),
        "{e:?}"
    );
    assert!(!format!("{e:?}").contains("sEcReT"));
}

#[tokio::test]
async fn an_ntfy_url_without_a_topic_is_a_config_error() {
    let cfg = SinkConfig::Ntfy(NtfySink {
        max_concurrent: None,
        url: "https://ntfy.sh/".into(),
        token: None,
        token_file: None,
        timeout: Duration::from_secs(1),
        templates: TemplateFiles::default(),
    });
    assert!(matches!(
        Sink::build("phone", &cfg, &reqwest::Client::new()),
        Err(SinkError::Config(_))
    ));
}
