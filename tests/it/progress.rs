//! Live progress (`progress: stream`): milestones in the timeline from the response's event
//! stream, resumes after a cut, the fall-back to polls past the resume window, the timeline
//! followed as SSE (`events?follow=true`, `Last-Event-ID`) and `respool jobs watch`. Whatever
//! happens to the stream, each job is created once upstream, ends once, and keeps its whole
//! text: the end always comes from a retrieve.

use std::time::Duration;

use respool::sim::{Faults, SimConfig};
use respool::upstream::sse::SseParser;
use serde_json::{Value, json};

use crate::helpers::{self, TestApp};

const TEXT: &str = "Streams are views, the ledger is the truth. Every word here must arrive once.";

fn body(name: &str, progress: &str, run: &str) -> Value {
    json!({
        "name": name,
        "model": "o4-mini-deep-research",
        "input": "Research live progress.",
        "tools": [{"type": "web_search_preview"}],
        "reasoning": {"summary": "auto"},
        "progress": progress,
        "metadata": {"sim": format!("queue=200ms;run={run};output=text:{TEXT}")},
    })
}

/// The job's `progress` events, in order.
async fn milestones(app: &TestApp, id: &str) -> Vec<Value> {
    app.events(id)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "progress")
        .collect()
}

/// The text milestones, joined: the text as the stream showed it.
fn streamed_text(milestones: &[Value]) -> String {
    milestones
        .iter()
        .filter_map(|m| m["data"]["text_delta"].as_str())
        .collect()
}

/// What must hold of any job whatever its stream went through: one create upstream, one end
/// in the timeline, the whole text.
async fn exactly_once(app: &TestApp, id: &str) -> respool::view::JobView {
    let job = app.wait_terminal(id, Duration::from_secs(60)).await;
    assert_eq!(job.status, respool::job::JobStatus::Completed, "{job:?}");
    assert_eq!(job.output_text.as_deref(), Some(TEXT));
    assert_eq!(app.sim.stats().creates_by_job_id.get(id), Some(&1));
    let ends = app
        .events(id)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "status" && e["data"]["to"] == "completed")
        .count();
    assert_eq!(ends, 1, "{:#?}", app.events(id).await);
    job
}

#[tokio::test]
async fn a_stream_job_records_milestones_and_ends_as_a_poll_job_does() {
    let app = helpers::spawn_app().await;
    let streamed = app.submit(&body("streamed", "stream", "3s")).await;
    let polled = app.submit(&body("polled", "poll", "3s")).await;
    let s = exactly_once(&app, &streamed).await;
    let p = exactly_once(&app, &polled).await;
    assert_eq!(s.output_text, p.output_text);
    assert_eq!(s.usage, p.usage);

    let m = milestones(&app, &streamed).await;
    let kinds: Vec<&str> = m
        .iter()
        .filter_map(|e| e["data"]["kind"].as_str())
        .collect();
    for want in ["reasoning", "web_search", "text"] {
        assert!(kinds.contains(&want), "{want} missing: {kinds:?}");
    }
    assert_eq!(streamed_text(&m), TEXT);
    // Sequence numbers only grow.
    let seqs: Vec<i64> = m.iter().filter_map(|e| e["data"]["seq"].as_i64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
    // The stored response is upstream's, whole.
    let (_, stored) = app.get(&format!("/v1/jobs/{streamed}/response")).await;
    assert_eq!(stored["status"], "completed");
    assert!(
        app.event_kinds(&streamed)
            .await
            .contains(&"stream".to_string())
    );
    // A poll job has no stream and no milestones.
    assert!(milestones(&app, &polled).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_cut_stream_is_resumed_and_nothing_is_lost_or_doubled() {
    let sim = SimConfig {
        faults: Faults {
            stream_drop: 1.0,
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let app = helpers::spawn_app_with(|_| {}, sim).await;
    let id = app.submit(&body("cut", "stream", "3s")).await;
    exactly_once(&app, &id).await;
    let events = app.events(&id).await;
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "stream" && e["message"].as_str().unwrap().contains("resumed")),
        "{events:#?}"
    );
    // The cut lost no delta and repeated none.
    assert_eq!(streamed_text(&milestones(&app, &id).await), TEXT);
    app.stop().await;
}

#[tokio::test]
async fn past_the_resume_window_the_job_falls_back_to_polls() {
    let sim = SimConfig {
        faults: Faults {
            stream_drop: 1.0,
            ..Faults::default()
        },
        stream_resume_window: Duration::ZERO,
        ..SimConfig::default()
    };
    let app = helpers::spawn_app_with(|_| {}, sim).await;
    // Long enough that no poll ends the job before the follower tries to resume.
    let id = app.submit(&body("late", "stream", "6s")).await;
    exactly_once(&app, &id).await;
    let events = app.events(&id).await;
    let fell_back = events.iter().find(|e| {
        e["kind"] == "stream"
            && e["message"]
                .as_str()
                .unwrap()
                .contains("following the job by polls")
    });
    let fell_back = fell_back.unwrap_or_else(|| panic!("{events:#?}"));
    assert!(
        fell_back["message"]
            .as_str()
            .unwrap()
            .contains("can no longer be streamed"),
        "{fell_back}"
    );
    app.stop().await;
}

/// Reads `GET /v1/jobs/{id}/events?follow=true` to its end: each event's SSE id and its JSON.
async fn follow(app: &TestApp, id: &str, last: Option<i64>) -> Vec<(i64, Value)> {
    follow_at(app, &format!("/v1/jobs/{id}/events?follow=true"), last).await
}

/// Reads an SSE timeline at `path` to its end.
async fn follow_at(app: &TestApp, path: &str, last: Option<i64>) -> Vec<(i64, Value)> {
    let mut rb = app.http.get(format!("{}{path}", app.base));
    if let Some(n) = last {
        rb = rb.header("last-event-id", n.to_string());
    }
    let mut resp = rb.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    let read = async {
        while let Some(bytes) = resp.chunk().await.unwrap() {
            for ev in parser.push(&bytes) {
                let v: Value = serde_json::from_str(&ev.data).unwrap();
                out.push((v["id"].as_i64().unwrap(), v));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the follow stream ends with the job");
    out
}

#[tokio::test]
async fn following_the_timeline_gives_every_event_in_order_and_resumes_after_an_id() {
    let app = helpers::spawn_app().await;
    let id = app.submit(&body("followed", "stream", "2s")).await;
    let live = follow(&app, &id, None).await;
    let ids: Vec<i64> = live.iter().map(|(i, _)| *i).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // It ends after the job's end, having given the end.
    assert!(
        live.iter()
            .any(|(_, e)| e["kind"] == "status" && e["data"]["to"] == "completed"),
        "{live:#?}"
    );
    assert!(live.iter().any(|(_, e)| e["kind"] == "progress"));
    // The same events as the plain list, in its order.
    let listed: Vec<i64> = app
        .events(&id)
        .await
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, listed[..ids.len()]);
    // Reconnecting after the third event gives exactly the rest.
    let again = follow(&app, &id, Some(ids[2])).await;
    let rest: Vec<i64> = again.iter().map(|(i, _)| *i).collect();
    assert_eq!(rest, listed[3..listed.len().min(3 + rest.len())]);
    assert_eq!(rest.first(), ids.get(3));
    // A Last-Event-ID that is not an id is refused, naming the header.
    let resp = app
        .http
        .get(format!("{}/v1/jobs/{id}/events?follow=true", app.base))
        .header("last-event-id", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "Last-Event-ID");
    app.stop().await;
}

#[tokio::test]
async fn jobs_watch_shows_progress_as_a_long_run_goes() {
    let app = helpers::spawn_app().await;
    let id = app.submit(&body("watched", "stream", "20s")).await;
    let server = app.base.clone();
    let job = id.clone();
    let out = tokio::task::spawn_blocking(move || {
        assert_cmd::Command::cargo_bin("respool")
            .unwrap()
            .args(["jobs", "watch", &job, "--server", &server])
            .env_remove("RESPOOL_CONFIG")
            .env_remove("RESPOOL_TOKEN")
            .env("NO_COLOR", "1")
            .timeout(Duration::from_secs(90))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let progress_lines = stdout
        .lines()
        .filter(|l| l.contains("] progress: "))
        .count();
    assert!(progress_lines >= 5, "{stdout}");
    assert!(stdout.contains("completed"), "{stdout}");
    assert!(
        stdout.contains("Every word here"),
        "the text as it grows: {stdout}"
    );
    // Progress came all through the run: no gap of more than a few seconds between the
    // milestones' own times (recorded by the daemon, not measured here).
    let at: Vec<i64> = milestones(&app, &id)
        .await
        .iter()
        .map(|m| m["at"].as_i64().unwrap())
        .collect();
    let widest = at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        widest <= 5_000,
        "a {widest} ms gap between milestones: {at:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn progress_must_be_poll_or_stream_and_stream_true_points_to_it() {
    let app = helpers::spawn_app().await;
    let (status, err) = app
        .post_job(&json!({"model": "gpt-5", "input": "x", "progress": "live"}))
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("progress"),
        "{err}"
    );
    let (status, err) = app
        .post_job(&json!({"model": "gpt-5", "input": "x", "stream": true}))
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("progress: stream"),
        "{err}"
    );
    app.stop().await;
}

/// The job page follows the same timeline (`/jobs/{id}/live`, on the page's session): a running
/// job's page has the live view, its stream gives the API's events, and it ends with the job.
#[tokio::test]
async fn the_job_page_follows_the_timeline_live() {
    let app = helpers::spawn_app().await;
    let id = app.submit(&body("on the page", "stream", "2s")).await;
    let page = app.page(&format!("/jobs/{id}")).await;
    assert!(page.contains(r#"id="live-progress""#), "{page}");
    let live = follow_at(&app, &format!("/jobs/{id}/live"), None).await;
    assert!(
        live.iter()
            .any(|(_, e)| e["kind"] == "status" && e["data"]["to"] == "completed"),
        "{live:#?}"
    );
    let text: String = live
        .iter()
        .filter_map(|(_, e)| e["data"]["text_delta"].as_str())
        .collect();
    assert_eq!(text, TEXT, "the page's live text is the whole answer, once");
    // The same events as the API's, in its order (the API's may have one more: written after
    // the page's stream closed, a notification).
    let api = follow(&app, &id, None).await;
    let ids = |v: &[(i64, Value)]| v.iter().map(|(i, _)| *i).collect::<Vec<_>>();
    assert_eq!(ids(&live), ids(&api)[..live.len()]);
    // A finished job's page has no live view; an unknown job's stream is a 404.
    let page = app.page(&format!("/jobs/{id}")).await;
    assert!(!page.contains(r#"id="live-progress""#));
    let r = app
        .http
        .get(format!(
            "{}/jobs/job_01KBN8V3ZQ4W7G8Y2H5J6K9M0P/live",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}
