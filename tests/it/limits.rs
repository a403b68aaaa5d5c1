//! Submission order and limits against the real daemon and the simulator: jobs in flight per
//! model, priorities, and creates that wait for a nearly used-up rate-limit window.

use std::collections::BTreeMap;
use std::time::Duration;

use respool::job::JobStatus;
use respool::sim::{Faults, SimConfig};
use serde_json::{Value, json};

use crate::helpers;

const DEADLINE: Duration = Duration::from_secs(60);

fn fast_sim() -> SimConfig {
    SimConfig {
        queue_time: Duration::from_millis(100),
        run_time: Duration::from_millis(600),
        ..SimConfig::default()
    }
}

/// A job's events, one short line each (time, kind, message): a failed assertion shows the
/// whole timeline even when the log around it is cut short.
fn kinds(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("{} {} {}", e["at"], e["kind"], e["message"]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The time (unix ms) of a job's first event of `kind`, and of its terminal status event.
async fn span(app: &helpers::TestApp, id: &str) -> (i64, i64) {
    let events = app.events(id).await;
    let first = |pred: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .find(|e| pred(e))
            .and_then(|e| e["at"].as_i64())
            .unwrap_or_else(|| panic!("{id}: {events:#?}"))
    };
    let start = first(&|e| e["kind"] == "submitting");
    let end = first(&|e| {
        e["kind"] == "status"
            && e["data"]["to"]
                .as_str()
                .is_some_and(|s| s.parse::<JobStatus>().is_ok_and(JobStatus::is_terminal))
    });
    (start, end)
}

#[tokio::test]
async fn a_model_at_its_limit_waits_while_other_models_go_on() {
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.limits.per_model = BTreeMap::from([("o3".to_string(), 1)]);
            cfg.limits.max_in_flight = 10;
        },
        fast_sim(),
    )
    .await;
    let mut limited = Vec::new();
    let mut free = Vec::new();
    for i in 0..3 {
        // `o3-pro` shares the `o3` entry (longest prefix), so all three count as one model.
        let model = if i == 1 { "o3-pro" } else { "o3" };
        limited.push(
            app.submit(&json!({"name": format!("limited-{i}"), "model": model, "input": "x"}))
                .await,
        );
        free.push(app.submit(&helpers::job_body(&format!("free-{i}"))).await);
    }
    for id in limited.iter().chain(&free) {
        let job = app.wait_terminal(id, DEADLINE).await;
        assert_eq!(job.status, JobStatus::Completed, "{id}");
    }
    // Never two `o3` jobs in flight: each was submitted after the one before it finished.
    // An event's time is read before its transaction waits for the write lock (and, for a
    // poll result, before it waits for its batch), so a claim that waited for the previous
    // job's end to commit may carry a time a few milliseconds before that end's (CI saw 1 ms).
    // A job here runs ~400 ms upstream; two in flight at once would overlap by that much.
    const CLOCK_SLACK_MS: i64 = 100;
    let mut spans = Vec::new();
    for id in &limited {
        spans.push(span(&app, id).await);
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1 - CLOCK_SLACK_MS,
            "two o3 jobs were in flight at once: {spans:?}"
        );
    }
    // The other model was not starved behind them: all of it was submitted while the first
    // `o3` job still ran.
    for id in &free {
        let (start, _) = span(&app, id).await;
        assert!(
            start < spans[0].1,
            "gpt-5 job {id} waited for o3 ({start} ≥ {})",
            spans[0].1
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn higher_priority_is_submitted_first() {
    let app = helpers::spawn_app_with(|cfg| cfg.limits.max_in_flight = 1, fast_sim()).await;
    // Holds the only slot while the others are queued behind it.
    let blocker = app.submit(&json!({"name": "blocker", "model": "gpt-5", "input": "x", "metadata": {"sim": "run=2s"}}),
    )
    .await;
    app.wait_for(&blocker, DEADLINE, |j| j.response_id.is_some())
        .await;
    let low = app
        .submit(&json!({"name": "low", "model": "gpt-5", "input": "x"}))
        .await;
    // Distinct creation times (milliseconds), so age decides between equal priorities: the
    // daemon's clock moves on, where a real 5 ms sleep is only as exact as the timer.
    app.clock.advance(Duration::from_millis(5));
    let default = app.submit(&helpers::job_body("default")).await;
    let high = app
        .submit(&json!({"name": "high", "model": "gpt-5", "input": "x", "priority": 10}))
        .await;
    let below = app
        .submit(&json!({"name": "below", "model": "gpt-5", "input": "x", "priority": -5}))
        .await;
    let mut order = Vec::new();
    for (name, id) in [
        ("low", &low),
        ("default", &default),
        ("high", &high),
        ("below", &below),
    ] {
        let job = app.wait_terminal(id, DEADLINE).await;
        assert_eq!(job.status, JobStatus::Completed);
        order.push((span(&app, id).await.0, name));
    }
    order.sort();
    let names: Vec<&str> = order.iter().map(|(_, n)| *n).collect();
    // Priority first, then age (`low` and `default` both have priority 0).
    assert_eq!(names, ["high", "low", "default", "below"]);

    let (status, body) = app
        .post_job(&json!({"model": "gpt-5", "input": "x", "priority": "urgent"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "priority", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn creates_wait_for_a_nearly_used_up_rate_limit_window() {
    // The simulator reports a limit of 2 requests per 40 s: after one create, 1 is left, which is
    // the default low-water mark, so the next create of that model waits for the reset (~20 s
    // after the first create; long enough that a loaded machine still claims the second job
    // before it: CI once saw a 20 s window's 10 s pass first, on PostgreSQL beside fuzzing).
    let app = helpers::spawn_app_with(
        |_| {},
        SimConfig {
            faults: Faults {
                ratelimit_requests: 2,
                ratelimit_window: Duration::from_secs(40),
                ..Faults::default()
            },
            ..fast_sim()
        },
    )
    .await;
    let first = app.submit(&helpers::job_body("first")).await;
    app.wait_for(&first, DEADLINE, |j| j.response_id.is_some())
        .await;
    // The window is written off the create's path, a moment after the answer: the second job
    // is submitted once it is there (under load, it could otherwise be claimed before).
    app.wait_until(
        "the first create's window is recorded",
        DEADLINE,
        async || app.count_rows("rate_limit_windows").await > 0,
    )
    .await;
    // A submit pass reads the windows once, before its claims: one that read them just before
    // the window was written may still claim a job submitted now (the product accepts that: the
    // low-water mark leaves a request for it). Such a pass has ended a moment later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = app.submit(&helpers::job_body("second")).await;
    // Another model has a window of its own (none seen yet): it goes at once.
    let other = app
        .submit(&json!({"name": "other", "model": "o4-mini", "input": "x"}))
        .await;
    let job = app.wait_terminal(&second, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.attempts, 1, "waiting is not a create call");

    let events = app.events(&second).await;
    let waits: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "rate_limit_wait")
        .collect();
    assert_eq!(waits.len(), 1, "{}", kinds(&events));
    let msg = waits[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("waiting for rate limit window: 1 requests left for gpt-5; resets in "),
        "{msg}"
    );
    let until = waits[0]["data"]["until"].as_i64().unwrap();
    let (submitted_at, _) = span(&app, &second).await;
    assert!(
        submitted_at >= until,
        "submitted at {submitted_at}, before the window reset at {until}"
    );
    assert!(
        until - waits[0]["at"].as_i64().unwrap() >= 1000,
        "{}",
        kinds(&events)
    );

    let other = app.wait_terminal(&other, DEADLINE).await;
    assert_eq!(other.status, JobStatus::Completed);
    assert_eq!(app.count_events(&other.id, "rate_limit_wait").await, 0);
    // Nothing was refused along the way: the wait came before any 429.
    assert_eq!(app.sim.stats().served_429, 0);
    app.stop().await;
}

/// Several daemons on one database: the rate-limit window of a create made by one daemon holds
/// back the creates of another daemon on the same database (the windows live in the store,
/// not in a daemon's memory).
#[tokio::test]
async fn a_rate_limit_window_seen_by_one_daemon_holds_back_another() {
    // 2 requests per 90 s: after one create, 1 is left (the low-water mark), for ~45 s: time
    // for daemon A to stop and B to start and take the job on a loaded machine (with 30 s,
    // CI's PostgreSQL run beside the fuzzing once took longer, and B found the window gone).
    let a = helpers::spawn_app_with(
        |_| {},
        SimConfig {
            faults: Faults {
                ratelimit_requests: 2,
                ratelimit_window: Duration::from_secs(90),
                ..Faults::default()
            },
            ..fast_sim()
        },
    )
    .await;
    let first = a.submit(&helpers::job_body("first")).await;
    a.wait_for(&first, DEADLINE, |j| j.response_id.is_some())
        .await;
    let db = a.db_url.clone();
    let upstream = a.sim.base_url();
    // Daemon A stops (its writes done); daemon B starts on the same file and upstream, with no
    // window of its own in memory.
    let (sim, dir) = a.stop_daemon().await;
    let b = helpers::spawn_app_with(
        move |c| {
            c.database = Some(db);
            c.upstream.base_url = upstream;
        },
        fast_sim(),
    )
    .await;
    let second = b.submit(&helpers::job_body("second")).await;
    // It waits for the window (up to ~45 s), then runs.
    let job = b.wait_terminal(&second, DEADLINE * 2).await;
    assert_eq!(job.status, JobStatus::Completed);
    let events = b.events(&second).await;
    let waits: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "rate_limit_wait")
        .collect();
    assert_eq!(
        waits.len(),
        1,
        "B waited for A's window: {}",
        kinds(&events)
    );
    let msg = waits[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("waiting for rate limit window: 1 requests left for gpt-5; resets in "),
        "{msg}"
    );
    assert_eq!(sim.stats().served_429, 0);
    b.stop().await;
    sim.shutdown().await;
    drop(dir);
}

/// The store keeps the newest observation of a model's window, whichever order the writes
/// come in (two daemons' creates answered close together).
#[tokio::test]
async fn the_newest_rate_limit_window_wins() {
    use respool::upstream::{RateLimits, RateWindow};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let (one, two) = (
        respool::store::Store::connect(&url).await.unwrap(),
        respool::store::Store::connect(&url).await.unwrap(),
    );
    let limits = |left: u64| RateLimits {
        remaining_requests: Some(left),
        remaining_tokens: Some(100_000),
        reset_requests: Some(Duration::from_secs(5)),
        reset_tokens: Some(Duration::from_secs(5)),
    };
    let newer = RateWindow::observed("o3", &limits(0), 2_000);
    let older = RateWindow::observed("o3", &limits(7), 1_000);
    one.record_rate_window(&newer).await.unwrap();
    two.record_rate_window(&older).await.unwrap();
    assert_eq!(
        one.live_rate_windows(2_000).await.unwrap(),
        vec![newer.clone()]
    );
    let newest = RateWindow::observed("o3", &limits(9), 3_000);
    two.record_rate_window(&newest).await.unwrap();
    assert_eq!(one.live_rate_windows(3_000).await.unwrap(), vec![newest]);
    // Another model has a row of its own; a window past both resets is not read.
    let gpt = RateWindow::observed("gpt-5", &limits(1), 3_000);
    one.record_rate_window(&gpt).await.unwrap();
    assert_eq!(two.live_rate_windows(3_000).await.unwrap().len(), 2);
    assert!(two.live_rate_windows(8_000).await.unwrap().is_empty());
    one.close().await;
    two.close().await;
}
