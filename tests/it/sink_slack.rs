//! The Slack sink over real HTTP on loopback: the Block Kit message and Slack's limits on a
//! long result, how Slack's answers become retries or refusals, that the webhook URL (a secret)
//! never shows; and through the daemon, one message per job with `Retry-After` honoured.
#![allow(clippy::field_reassign_with_default)]

use std::time::Duration;

use respool::config::SinkConfig;
use respool::config::sinks::{SlackSink, TemplateFiles};
use respool::job::JobStatus;
use respool::notify::{Sink, SinkError};
use respool::sim::SimConfig;
use secrecy::SecretString;
use serde_json::Value;

use crate::helpers;

const SECRET_PATH: &str = "/services/T0001/B0002/sEcReTtOkEn1234567890";

use crate::helpers::chat::*;
use crate::helpers::receiver::{Receiver, Reply};

fn slack_config(url: &str, timeout: Duration) -> SinkConfig {
    SinkConfig::Slack(SlackSink {
        max_concurrent: None,
        url: Some(SecretString::from(url.to_string())),
        url_file: None,
        timeout,
        templates: TemplateFiles::default(),
    })
}

fn slack(url: &str) -> Sink {
    Sink::build(
        "team",
        &slack_config(url, Duration::from_secs(10)),
        &reqwest::Client::new(),
    )
    .unwrap()
}

fn texts_of_fields(block: &Value) -> Vec<String> {
    block["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap().to_string())
        .collect()
}

fn chars(v: &Value) -> usize {
    v.as_str().unwrap().chars().count()
}

// ---- the message --------------------------------------------------------------------------

#[tokio::test]
async fn the_message_is_block_kit_with_the_jobs_facts_and_the_result() {
    let rx = Receiver::start(vec![]).await;
    let output = "# Findings\n\nThe **answer** is [here](https://example.com/a?b=1&c=2), 3 < 4.\n\n- one\n- two\n";
    let sample = Sample::new(JobStatus::Completed, "market-scan", output);
    slack(&rx.url_for(SECRET_PATH))
        .deliver(&sample.notification())
        .await
        .unwrap();

    let hits = rx.wait_hits(1, DEADLINE).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].path, SECRET_PATH);
    assert!(
        hits[0].headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let msg = hits[0].json();
    assert_eq!(msg["text"], "✅ market-scan completed after 1m 4s");
    assert_eq!(msg["unfurl_links"], false);
    let blocks = msg["blocks"].as_array().unwrap();
    let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["header", "section", "section", "context"]);

    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(
        blocks[0]["text"]["text"],
        "✅ market-scan completed after 1m 4s"
    );

    let fields = texts_of_fields(&blocks[1]);
    assert!(
        blocks[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["type"] == "mrkdwn")
    );
    for expected in [
        "*Model*\ngpt-5",
        "*Status*\ncompleted",
        "*Duration*\n1m 4s",
        "*Tokens*\n1,200 in · 800 out (300 reasoning)",
    ] {
        assert!(
            fields.contains(&expected.to_string()),
            "{expected:?} not in {fields:?}"
        );
    }
    // 1200 × $1.25 + 800 × $10 per million tokens.
    assert!(fields.contains(&"*Cost*\n$0.01".to_string()), "{fields:?}");

    let excerpt = blocks[2]["text"]["text"].as_str().unwrap();
    assert_eq!(blocks[2]["text"]["type"], "mrkdwn");
    assert_eq!(
        excerpt,
        "*Findings*\n\nThe *answer* is <https://example.com/a?b=1&amp;c=2|here>, 3 &lt; 4.\n\n• one\n• two"
    );

    let context = blocks[3]["elements"][0]["text"].as_str().unwrap();
    assert!(
        context.starts_with(
            "<https://respool.example/jobs/job_01JTESTSNACK00000000000000|Open in respool>"
        ),
        "{context}"
    );
}

#[tokio::test]
async fn a_failed_job_shows_its_error_escaped_and_no_empty_section() {
    let rx = Receiver::start(vec![]).await;
    let sample = Sample::new(JobStatus::Failed, "a <b> & c", "");
    slack(&rx.url_for(SECRET_PATH))
        .deliver(&sample.notification())
        .await
        .unwrap();

    let msg = rx.wait_hits(1, DEADLINE).await[0].json();
    assert_eq!(msg["text"], "❌ a &lt;b&gt; &amp; c failed after 1m 4s");
    let blocks = msg["blocks"].as_array().unwrap();
    // The header is plain text: shown as written.
    assert_eq!(blocks[0]["text"]["text"], "❌ a <b> & c failed after 1m 4s");
    let fields = texts_of_fields(&blocks[1]);
    assert!(
        fields.contains(&"*Status*\nfailed".to_string()),
        "{fields:?}"
    );
    assert!(
        fields
            .contains(&"*Error*\nserver_error: The model &lt;crashed&gt; &amp; burned".to_string()),
        "{fields:?}"
    );
    let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["header", "section", "context"]);
}

#[tokio::test]
async fn a_custom_text_template_replaces_the_result_excerpt() {
    let rx = Receiver::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(&text, "Custom for **{{ job.name }}**: {{ excerpt }}").unwrap();
    let cfg = SinkConfig::Slack(SlackSink {
        max_concurrent: None,
        url: Some(SecretString::from(rx.url_for(SECRET_PATH))),
        url_file: None,
        timeout: Duration::from_secs(10),
        templates: TemplateFiles {
            text: Some(text),
            ..TemplateFiles::default()
        },
    });
    let sink = Sink::build("team", &cfg, &reqwest::Client::new()).unwrap();
    let sample = Sample::new(JobStatus::Completed, "brief", "Short answer.");
    sink.deliver(&sample.notification()).await.unwrap();

    let msg = rx.wait_hits(1, DEADLINE).await[0].json();
    assert_eq!(
        msg["blocks"][2]["text"]["text"],
        "Custom for *brief*: Short answer."
    );
}

/// 20,000+ characters of Markdown with headings, bold and links; a name past the header limit.
fn long_report() -> String {
    let mut md = String::new();
    let mut n = 0;
    while md.chars().count() < 20_000 {
        n += 1;
        md.push_str(&format!(
            "## Section {n}\n\nSome **bold words** and a [link number {n}](https://example.com/{n}?a=1&b=2) \
             with plain words alpha beta gamma & delta.\n\n"
        ));
    }
    md
}

const VOCABULARY: &[&str] = &[
    "Section", "Some", "bold", "words", "and", "a", "link", "number", "with", "plain", "alpha",
    "beta", "gamma", "delta",
];

#[tokio::test]
async fn a_long_result_keeps_every_slack_limit_and_is_cut_at_a_word() {
    let rx = Receiver::start(vec![]).await;
    let name = "n".repeat(200);
    let sample =
        Sample::new(JobStatus::Failed, &name, &long_report()).with_error(&"boom ".repeat(1000));
    slack(&rx.url_for(SECRET_PATH))
        .deliver(&sample.notification())
        .await
        .unwrap();

    let hit = &rx.wait_hits(1, DEADLINE).await[0];
    assert!(
        hit.body.len() < 16_000,
        "the message is {} bytes",
        hit.body.len()
    );
    let msg = hit.json();
    let blocks = msg["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50);
    assert!(chars(&blocks[0]["text"]["text"]) <= 150);
    assert!(blocks[0]["text"]["text"].as_str().unwrap().ends_with('…'));
    for b in blocks.iter().filter(|b| b["type"] == "section") {
        if let Some(t) = b.get("text") {
            assert!(
                chars(&t["text"]) <= 3000,
                "a section of {} chars",
                chars(&t["text"])
            );
        }
        if let Some(fields) = b.get("fields") {
            assert!(fields.as_array().unwrap().len() <= 10);
            assert!(
                fields
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|f| chars(&f["text"]) <= 2000)
            );
            let error = fields
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["text"].as_str().unwrap().starts_with("*Error*"));
            assert!(error.unwrap()["text"].as_str().unwrap().ends_with("boom…"));
        }
    }

    let excerpt = blocks[2]["text"]["text"].as_str().unwrap();
    assert!(
        excerpt.chars().count() > 2500,
        "the excerpt uses the room it has: {}",
        excerpt.chars().count()
    );
    let note = "\n\n_<https://respool.example/jobs/job_01JTESTSNACK00000000000000|The full report is in respool.>_";
    let cut = excerpt
        .strip_suffix(note)
        .unwrap_or_else(|| panic!("no note at the end: {excerpt}"));
    let kept = cut
        .strip_suffix('…')
        .unwrap_or_else(|| panic!("no … at the cut: {cut}"));
    let last_word = kept
        .split_whitespace()
        .last()
        .unwrap()
        .trim_matches(|c: char| !c.is_alphanumeric());
    assert!(
        VOCABULARY.contains(&last_word) || last_word.chars().all(|c| c.is_ascii_digit()),
        "cut inside a word: {last_word:?} in …{}",
        &kept[kept.len().saturating_sub(80)..]
    );
    // Never inside a link or an entity: every `<` closes, every `&` is a whole entity.
    assert_eq!(
        kept.matches('<').count(),
        kept.matches('>').count(),
        "{kept}"
    );
    assert!(
        kept.split('&')
            .skip(1)
            .all(|s| s.starts_with("amp;") || s.starts_with("lt;") || s.starts_with("gt;"))
    );
    assert!(
        kept.contains("*Section 1*")
            && kept.contains("<https://example.com/1?a=1&amp;b=2|link number 1>")
    );
}

// ---- Slack's answers ----------------------------------------------------------------------

#[tokio::test]
async fn a_429_is_temporary_with_slacks_retry_after() {
    let rx = Receiver::start(vec![Reply::retry_after(429, "1", "rate_limited")]).await;
    let sample = Sample::new(JobStatus::Completed, "busy", "text");
    let err = slack(&rx.url_for(SECRET_PATH))
        .deliver(&sample.notification())
        .await
        .unwrap_err();
    match err {
        SinkError::Temporary {
            retry_after,
            message,
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
            assert!(
                message.contains("429") && message.contains("rate_limited"),
                "{message}"
            );
        }
        other => panic!("expected a temporary error, got {other:?}"),
    }
}

#[tokio::test]
async fn refusals_are_permanent_outages_temporary_and_the_url_never_shows() {
    let rx = Receiver::start(vec![
        Reply::new(404, "no_service"),
        Reply::new(400, "invalid_payload"),
        Reply::new(403, "action_prohibited"),
        Reply::new(500, "rollup_error"),
        Reply::hang(),
    ])
    .await;
    let sample = Sample::new(JobStatus::Completed, "refused", "text");
    let n = sample.notification();
    let sink = slack(&rx.url_for(SECRET_PATH));
    let leaks = |e: &SinkError| {
        let shown = format!("{e} {e:?}");
        shown.contains(SECRET_PATH) || shown.contains("sEcReT")
    };
    assert!(!format!("{sink:?}").contains("sEcReT"), "{sink:?}");

    for expected in [
        "404: no_service",
        "400: invalid_payload",
        "403: action_prohibited",
    ] {
        let e = sink.deliver(&n).await.unwrap_err();
        assert!(
            matches!(&e, SinkError::Permanent(m) if m.contains(expected)),
            "{e:?}"
        );
        assert!(!leaks(&e), "{e:?}");
    }
    let e = sink.deliver(&n).await.unwrap_err();
    assert!(
        matches!(
            &e,
            SinkError::Temporary {
                retry_after: None,
                ..
            }
        ),
        "{e:?}"
    );

    // No answer within the sink's timeout.
    let quick = Sink::build(
        "team",
        &slack_config(&rx.url_for(SECRET_PATH), Duration::from_millis(300)),
        &reqwest::Client::new(),
    )
    .unwrap();
    let e = quick.deliver(&n).await.unwrap_err();
    assert!(
        matches!(&e, SinkError::Temporary { message, .. } if message.contains("no answer within")),
        "{e:?}"
    );
    assert!(!leaks(&e), "{e:?}");

    // Nothing listening (port 1 is privileged and unused on a test machine): a connection
    // error, without the URL reqwest would print.
    let gone = slack(&format!("http://127.0.0.1:1{SECRET_PATH}"));
    let e = gone.deliver(&n).await.unwrap_err();
    assert!(matches!(&e, SinkError::Temporary { .. }), "{e:?}");
    assert!(!leaks(&e), "{e:?}");
    assert_eq!(rx.hits().len(), 5);
}

#[tokio::test]
async fn a_missing_or_malformed_url_is_a_config_error_that_does_not_echo_it() {
    let http = reqwest::Client::new();
    let e = Sink::build(
        "team",
        &slack_config("not a url sEcReT", Duration::from_secs(1)),
        &http,
    )
    .unwrap_err();
    assert!(
        matches!(&e, SinkError::Config(_)) && !format!("{e} {e:?}").contains("sEcReT"),
        "{e:?}"
    );
    let none = SinkConfig::Slack(SlackSink {
        max_concurrent: None,
        url: None,
        url_file: None,
        timeout: Duration::from_secs(1),
        templates: TemplateFiles::default(),
    });
    assert!(matches!(
        Sink::build("team", &none, &http),
        Err(SinkError::Config(_))
    ));
}

// ---- through the daemon -------------------------------------------------------------------

async fn app_with_slack(url: &str) -> helpers::TestApp {
    let sink = slack_config(url, Duration::from_secs(10));
    helpers::spawn_app_with(
        move |cfg| {
            cfg.sinks.insert("team".into(), sink);
            cfg.notify.default = vec!["team".into()];
            cfg.notify.initial_backoff = Duration::from_millis(200);
            cfg.notify.max_backoff = Duration::from_secs(2);
        },
        SimConfig::default(),
    )
    .await
}

async fn run_job(app: &helpers::TestApp, name: &str) -> String {
    let (status, body) = app.post_job(&helpers::job_body(name)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    app.wait_until("the job's `notified` event", DEADLINE, async || {
        app.count_events(&id, "notified").await > 0
    })
    .await;
    id
}

#[tokio::test]
async fn a_finished_job_posts_exactly_one_slack_message() {
    let rx = Receiver::start(vec![]).await;
    let app = app_with_slack(&rx.url_for(SECRET_PATH)).await;
    let id = run_job(&app, "daily-brief").await;

    // Step the workers a few more times: nothing is due, so nothing more is sent.
    for _ in 0..3 {
        app.orchestrator.run_once().await.unwrap();
    }
    let hits = rx.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let msg = hits[0].json();
    assert_eq!(msg["blocks"][0]["type"], "header");
    assert!(
        msg["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("daily-brief completed"),
        "{msg:#}"
    );
    let output = app.job(&id).await.output_text.unwrap();
    let first_word = output
        .split_whitespace()
        .find(|w| w.chars().all(char::is_alphanumeric))
        .unwrap();
    assert!(
        msg["blocks"][2]["text"]["text"]
            .as_str()
            .unwrap()
            .contains(first_word),
        "{msg:#}"
    );
    assert_eq!(app.count_events(&id, "notified").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn slack_rate_limits_are_waited_out_and_the_message_arrives_once() {
    let rx = Receiver::start(vec![
        Reply::retry_after(429, "1", "rate_limited"),
        Reply::retry_after(429, "1", "rate_limited"),
    ])
    .await;
    let app = app_with_slack(&rx.url_for(SECRET_PATH)).await;
    let id = run_job(&app, "throttled").await;

    let hits = rx.wait_hits(3, DEADLINE).await;
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert_eq!(
        hits.iter().map(|h| h.answered).collect::<Vec<_>>(),
        [Some(429), Some(429), Some(200)]
    );
    // The outbox's own backoff starts at 200ms; Slack's `Retry-After: 1` is longer and wins.
    for pair in hits.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
    }
    assert_eq!(
        hits[0].body, hits[2].body,
        "every try sends the same message"
    );
    assert_eq!(app.count_events(&id, "notified").await, 1);
    assert_eq!(app.count_events(&id, "notify_failed").await, 0);
    app.stop().await;
}
