//! Observability against the real daemon: `/metrics` parses as Prometheus text and carries the
//! documented metrics, `/readyz` says 503 when upstream is unreachable, and upstream request
//! ids are kept in the timeline for calls that change something.

use std::time::Duration;

use respool::job::JobStatus;
use respool::sim::SimConfig;
use serde_json::{Value, json};

use crate::helpers;
use crate::helpers::db;

const DEADLINE: Duration = Duration::from_secs(60);

async fn scrape(app: &helpers::TestApp) -> prometheus_parse::Scrape {
    let r = app
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
    );
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k).is_some_and(|x| x == *v))
        })
        .and_then(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            prometheus_parse::Value::Histogram(ref h) => h.last().map(|b| b.count),
            _ => None,
        })
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text_with_the_documented_names() {
    let app = helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await;
    let (status, job) = app.post_job(&helpers::job_body("measured")).await;
    assert_eq!(status, 201);
    let id = job["id"].as_str().unwrap();
    assert_eq!(
        app.wait_terminal(id, DEADLINE).await.status,
        JobStatus::Completed
    );
    app.wait_until("the webhook is recorded", DEADLINE, async || {
        app.count_rows("webhook_deliveries").await > 0
    })
    .await;
    // A rejected delivery is counted with its reason.
    let (status, _) = app
        .post_webhook(helpers::event_body("response.completed", "resp_x"), &[])
        .await;
    assert_eq!(status, 400);

    let s = scrape(&app).await;
    // State, from this daemon's database.
    assert_eq!(
        value(&s, "respool_jobs", &[("status", "completed")]),
        Some(1.0)
    );
    assert_eq!(value(&s, "respool_jobs", &[("status", "held")]), Some(0.0));
    assert_eq!(value(&s, "respool_webhook_deliveries", &[]), Some(1.0));
    // The database the daemon runs on, by name.
    let backend = if app.db_url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(
        value(&s, "respool_database_info", &[("backend", backend)]),
        Some(1.0),
        "{backend}"
    );
    for queue in ["pending", "held", "due_polls", "outbox_pending"] {
        assert_eq!(
            value(&s, "respool_queue_depth", &[("queue", queue)]),
            Some(0.0),
            "{queue}"
        );
    }
    // Events, process-wide (other tests of this binary count too: at least ours).
    let at_least_one = |name: &str, labels: &[(&str, &str)]| {
        let v = value(&s, name, labels);
        assert!(v.is_some_and(|v| v >= 1.0), "{name} {labels:?}: {v:?}");
    };
    at_least_one("respool_submissions_total", &[("outcome", "accepted")]);
    at_least_one(
        "respool_webhook_deliveries_total",
        &[("result", "accepted")],
    );
    at_least_one(
        "respool_webhook_deliveries_total",
        &[("result", "rejected"), ("reason", "missing_header")],
    );
    at_least_one(
        "respool_upstream_request_duration_seconds",
        &[("endpoint", "create")],
    );
    // Polls may or may not have happened (the webhook can win): the family is declared
    // once any poll ran in this process; the histogram is a real one, with buckets.
    assert!(
        s.docs
            .contains_key("respool_upstream_request_duration_seconds"),
        "{:?}",
        s.docs.keys().collect::<Vec<_>>()
    );
    app.stop().await;
}

#[tokio::test]
async fn readyz_is_503_when_upstream_is_unreachable() {
    // A port nobody listens on.
    let [closed] = crate::helpers::free_ports();
    let app = helpers::spawn_app_with(
        |cfg| cfg.upstream.base_url = format!("http://127.0.0.1:{closed}/v1"),
        helpers::fast_sim(),
    )
    .await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not ready");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("upstream unreachable"),
        "{body}"
    );
    // Alive all the same.
    assert_eq!(app.get("/healthz").await.0, 200);
    app.stop().await;

    // With the simulator reachable the probe (a free 404) makes it ready, and it is not even
    // needed after a real call.
    let app = helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn readyz_names_refused_credentials() {
    let app = helpers::spawn_app_with(
        |_| {},
        SimConfig {
            api_key: Some("sk-the-right-key".into()),
            ..helpers::fast_sim()
        },
    )
    .await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("upstream refuses our credentials"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn upstream_request_ids_are_kept_for_calls_that_change_something() {
    let app = helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await;
    let is_request_id = |v: &Value| v.as_str().is_some_and(|s| s.starts_with("req_"));

    // A poll that changes the status keeps its request id (webhooks off: polling finds it).
    app.sim.set_webhook_target(None, vec![]);
    let (_, job) = app.post_job(&helpers::job_body("polled")).await;
    let id = job["id"].as_str().unwrap();
    app.wait_terminal(id, DEADLINE).await;
    let events = app.events(id).await;
    let submitted = events.iter().find(|e| e["kind"] == "submitted").unwrap();
    assert!(
        is_request_id(&submitted["data"]["request_id"]),
        "{events:#?}"
    );
    let polled: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "status" && e["data"]["source"] == "poll")
        .collect();
    assert!(!polled.is_empty(), "{events:#?}");
    for e in polled {
        assert!(is_request_id(&e["data"]["request_id"]), "{e}");
    }

    // A cancel keeps the cancel call's request id.
    let (_, job) = app
        .post_job(&json!({"name": "long", "model": "gpt-5", "input": "x", "metadata": {"sim": "run=30s"}}))
        .await;
    let id = job["id"].as_str().unwrap();
    app.wait_for(id, DEADLINE, |j| j.status == JobStatus::InProgress)
        .await;
    let (status, _) = app.post(&format!("/v1/jobs/{id}/cancel")).await;
    assert_eq!(status, 200);
    let job = app.wait_terminal(id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Cancelled);
    let events = app.events(id).await;
    let cancelled = events
        .iter()
        .find(|e| e["kind"] == "status" && e["data"]["to"] == "cancelled")
        .unwrap();
    assert!(
        is_request_id(&cancelled["data"]["request_id"]),
        "{events:#?}"
    );
    app.stop().await;
}

/// `/readyz` proves the main database takes a write: a write lock held by another connection
/// (as a VACUUM holds it) answers 503 quickly, and so does a database opened read-only.
#[tokio::test]
async fn readyz_is_503_when_the_database_does_not_take_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ready.db");
    let path = db.display().to_string();
    let app =
        helpers::spawn_app_with(move |cfg| cfg.database = Some(path), helpers::fast_sim()).await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");

    // Another connection holds the write lock.
    let mut other = db::writer(&db).await;
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (status, body) = app.get("/readyz").await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.starts_with("database unavailable"), "{reason}");
    assert!(reason.contains("locked"), "{reason}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    db::close(other).await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;

    // The same database, opened read-only: the daemon starts, and is not ready.
    let url = format!("sqlite://{}?mode=ro", db.display());
    let app =
        helpers::spawn_app_with(move |cfg| cfg.database = Some(url), helpers::fast_sim()).await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("read-only"), "{reason}");
    assert_eq!(app.get("/healthz").await.0, 200);
    app.stop().await;
}
