//! Issue 14, "Jobs that act": `kill -9` of the daemon while a function handler runs. The
//! handler is never run twice for the same call: after the restart the model is told it was
//! interrupted and the job still reaches its answer, with one create per turn upstream. An
//! idempotent handler runs again instead.

use std::time::Duration;

use serde_json::json;

use crate::helpers::process::{Harness, Opts};

const WITHIN: Duration = Duration::from_secs(90);

fn runs(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

async fn killed_mid_handler(idempotent: bool) {
    let mut h = Harness::start(Opts {
        run_time: "1s",
        extra_yaml: "actions:\n  job_handlers: true\n".into(),
        ..Opts::default()
    })
    .await;
    let log = h.dir.path().join("runs.log");
    let script = format!(
        "echo run >> '{}'; sleep 4; echo '{{\"rows\": 3}}'",
        log.display()
    );
    let id = h
        .submit_body(&json!({
            "name": "count rows", "model": "gpt-4.1", "input": "How many rows? Zählen!",
            "tools": [{"type": "function", "name": "count_rows",
                       "parameters": {"type": "object", "properties": {"table": {"type": "string"}}, "required": ["table"]}}],
            "handlers": {"count_rows": {"command": ["sh", "-c", script], "timeout": 30, "idempotent": idempotent}},
        }))
        .await;
    // The handler has started: the daemon dies under it.
    let deadline = tokio::time::Instant::now() + WITHIN;
    while runs(&log) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the handler never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut daemon = h.take_daemon();
    daemon.kill9();
    h.start_daemon().await;
    let jobs = h.wait_terminal(std::slice::from_ref(&id), WITHIN).await;
    let job = &jobs[&id];
    assert_eq!(job["status"], "completed", "{job}");
    let (full, _) = h.get(&format!("/v1/jobs/{id}")).await;
    let action = &full["actions"][0];
    if idempotent {
        // Run again after the restart, and answered by it.
        assert_eq!(runs(&log), 2, "an idempotent handler runs again");
        assert_eq!(action["answered_by"], "handler", "{action}");
        assert!(
            job["output_text"].as_str().unwrap().contains("rows"),
            "{job}"
        );
    } else {
        // Never run again: the model was told it was interrupted.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(runs(&log), 1, "a handler not marked idempotent ran twice");
        assert_eq!(action["answered_by"], "respool", "{action}");
        assert!(
            action["error"].as_str().unwrap().contains("not run again"),
            "{action}"
        );
    }
    assert_eq!(action["runs"], if idempotent { 2 } else { 1 });
    // One create per turn (the second tagged `job_…:1`): nothing was paid twice.
    let creates = h.creates_by_job().await;
    assert_eq!(creates.get(&id).copied(), Some(1), "{creates:?}");
    assert_eq!(
        creates.get(&format!("{id}:1")).copied(),
        Some(1),
        "{creates:?}"
    );
}

#[tokio::test]
async fn a_handler_killed_with_the_daemon_is_not_run_again() {
    killed_mid_handler(false).await;
}

#[tokio::test]
async fn an_idempotent_handler_killed_with_the_daemon_runs_again() {
    killed_mid_handler(true).await;
}

/// `kill -9` of the daemon while it follows a response's stream: the restarted daemon resumes
/// the stream after the last milestone it recorded, and the job ends once, created once, with
/// its whole text in its milestones exactly once.
#[tokio::test]
async fn a_stream_followed_when_the_daemon_is_killed_is_resumed_without_loss_or_repeat() {
    const TEXT: &str = "Milestones survive a crash: each word once, in order, über alles.";
    let mut h = Harness::start(Opts {
        run_time: "8s",
        ..Opts::default()
    })
    .await;
    let id = h
        .submit_body(&json!({
            "name": "followed", "model": "o4-mini-deep-research", "input": "Research streams.",
            "tools": [{"type": "web_search_preview"}], "progress": "stream",
            "metadata": {"sim": format!("queue=200ms;run=8s;output=text:{TEXT}")},
        }))
        .await;
    // Killed once the stream has given some milestones.
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let events = h.events(&id).await;
        if events.iter().filter(|e| e["kind"] == "progress").count() >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut daemon = h.take_daemon();
    daemon.kill9();
    h.start_daemon().await;
    let jobs = h.wait_terminal(std::slice::from_ref(&id), WITHIN).await;
    assert_eq!(jobs[&id]["status"], "completed", "{}", jobs[&id]);
    let events = h.events(&id).await;
    let text: String = events
        .iter()
        .filter_map(|e| e["data"]["text_delta"].as_str())
        .collect();
    assert_eq!(text, TEXT, "the streamed text, once: {events:#?}");
    let ends = events
        .iter()
        .filter(|e| e["kind"] == "status" && e["data"]["to"] == "completed")
        .count();
    assert_eq!(ends, 1);
    let creates = h.creates_by_job().await;
    assert_eq!(creates.get(&id).copied(), Some(1), "{creates:?}");
}
