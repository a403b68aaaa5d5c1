//! Retention and the database commands against the real daemon: finished jobs past
//! `retention.jobs` are pruned (with `Clock::advance`) and summarized, but not while a
//! notification of theirs is undelivered; old summaries, old schedule runs (never one still
//! needed) and retired webhook secrets go too; old webhook deliveries go after 7 days; and
//! `respool db backup` writes a valid SQLite copy while the daemon runs.

use std::time::Duration;

use respool::config::SinkConfig;
use respool::config::sinks::WebhookSink;
use respool::job::JobStatus;
use respool::sim::SimConfig;
use secrecy::SecretString;
use serde_json::Value;

use crate::helpers;
use crate::helpers::db;
use crate::helpers::receiver::{Receiver, Reply};

const DEADLINE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

async fn finished_job(app: &helpers::TestApp, name: &str) -> String {
    let (status, job) = app.post_job(&helpers::job_body(name)).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    id
}

async fn rows_of(app: &helpers::TestApp, table: &str, id: &str) -> i64 {
    let mut conn = db::open(&app.db_url).await;
    let column = if table == "jobs" || table == "job_summaries" {
        "id"
    } else {
        "job_id"
    };
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {table} WHERE {column} = $1"
    )))
    .bind(id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    db::close_any(conn).await;
    n
}

#[tokio::test]
async fn finished_jobs_past_retention_are_pruned_and_summarized() {
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.retention.jobs = Some(90 * DAY);
            cfg.pricing = helpers::gpt5_priced(2.0, 8.0);
        },
        helpers::fast_sim(),
    )
    .await;
    let old = finished_job(&app, "old").await;
    assert!(rows_of(&app, "job_events", &old).await > 0);
    app.wait_until("its webhook is handed to it", DEADLINE, async || {
        rows_of(&app, "webhook_deliveries", &old).await > 0
    })
    .await;

    // 89 days on: nothing is old enough yet.
    app.clock.advance(89 * DAY);
    app.orchestrator.prune_now().await.unwrap();
    assert_eq!(rows_of(&app, "jobs", &old).await, 1);

    // Past 90 days the hourly pass (the last ran before the clock moved) prunes it.
    app.clock.advance(2 * DAY);
    let fresh = finished_job(&app, "fresh").await;
    app.wait_until("the old job is pruned", DEADLINE, async || {
        app.get(&format!("/v1/jobs/{old}")).await.0 == 404
    })
    .await;
    for table in ["jobs", "job_events", "notifications", "webhook_deliveries"] {
        assert_eq!(rows_of(&app, table, &old).await, 0, "{table}");
    }
    assert_eq!(rows_of(&app, "job_summaries", &old).await, 1);
    // The fresh job is kept, whole.
    assert_eq!(app.job(&fresh).await.status, JobStatus::Completed);
    assert!(rows_of(&app, "job_events", &fresh).await > 0);

    // The summary keeps what stats need, with its cost.
    let mut conn = db::open(&app.db_url).await;
    let (name, model, status, usage, cost): (String, String, String, Option<String>, Option<i64>) =
        sqlx::query_as(
            "SELECT name, model, status, usage, cost_microusd FROM job_summaries WHERE id = $1",
        )
        .bind(&old)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    db::close_any(conn).await;
    assert_eq!(
        (name.as_str(), model.as_str(), status.as_str()),
        ("old", "gpt-5", "completed")
    );
    assert!(usage.is_some());
    assert!(cost.is_some_and(|c| c > 0), "{cost:?}");
    // Counts still include it.
    let completed = app
        .labelled_metric("respool_jobs", "status", "completed")
        .await;
    assert_eq!(completed, Some(2.0));
    app.stop().await;
}

#[tokio::test]
async fn webhook_deliveries_go_after_seven_days_and_jobs_stay_without_retention() {
    let app = helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await;
    let id = finished_job(&app, "kept").await;
    app.wait_until("its webhook is recorded", DEADLINE, async || {
        app.count_rows("webhook_deliveries").await > 0
    })
    .await;
    app.clock.advance(6 * DAY);
    let r = app.orchestrator.prune_now().await.unwrap();
    assert_eq!(r.deliveries, 0);
    app.clock.advance(2 * DAY);
    app.wait_until("old deliveries are pruned", DEADLINE, async || {
        app.count_rows("webhook_deliveries").await == 0
    })
    .await;
    // No `retention.jobs`: results are kept.
    assert_eq!(app.job(&id).await.status, JobStatus::Completed);
    assert_eq!(app.count_rows("job_summaries").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn db_backup_writes_a_valid_copy_while_the_daemon_runs() {
    let app = helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await;
    if app.db_url.starts_with("postgres") {
        // A server's database is backed up with pg_dump: the daemon says so, and writes nothing.
        let (status, body) = app.get("/v1/admin/backup").await;
        assert_eq!(status, 409, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("pg_dump"), "{message}");
        app.stop().await;
        return;
    }
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(finished_job(&app, &format!("backed-up-{i}")).await);
    }
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("backup.db");
    let server = app.base.clone();
    let target = file.clone();
    let output = tokio::task::spawn_blocking(move || {
        assert_cmd::Command::cargo_bin("respool")
            .unwrap()
            .args(["db", "backup"])
            .arg(&target)
            .args(["--server", &server])
            .env_remove("RESPOOL_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("backup written to "),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    // A SQLite file with every job, readable on its own.
    let mut conn = db::read_only(&file).await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 3);
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    db::close(conn).await;
    // Nothing is left next to the live database.
    let leftovers: Vec<_> = std::fs::read_dir(app.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("backup"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // An existing file is not overwritten without --force.
    let server = app.base.clone();
    let target = file.clone();
    let again = tokio::task::spawn_blocking(move || {
        assert_cmd::Command::cargo_bin("respool")
            .unwrap()
            .args(["db", "backup"])
            .arg(&target)
            .args(["--server", &server])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    // The daemon carries on, and a vacuum through the API works too.
    let r = app
        .request(reqwest::Method::POST, "/v1/admin/vacuum")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["bytes_after"].as_u64().unwrap() > 0, "{v}");
    finished_job(&app, "after-backup").await;
    app.stop().await;
}

/// The outbox rows of a job, read from the database.
async fn outbox_states(app: &helpers::TestApp, id: &str) -> Vec<(String, i64)> {
    let mut conn = db::open(&app.db_url).await;
    // A claimed row is `pending` with its attempt counted before the try's outcome is written:
    // shown as `sending` until then, so a wait for "the first try failed" does not pass early
    // (and the clock is not moved before the retry is scheduled from it).
    let rows = sqlx::query_as(
        "SELECT CASE WHEN state = 'pending' AND attempts > 0 AND last_error IS NULL \
         THEN 'sending' ELSE state END, attempts FROM notifications WHERE job_id = $1",
    )
    .bind(id)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    db::close_any(conn).await;
    rows
}

/// A finished job whose notification is still to be delivered is not pruned with its outbox
/// row; once the row is dead (or delivered), the job goes.
#[tokio::test]
async fn a_job_with_an_undelivered_notification_is_not_pruned() {
    // A sink that answers 503 to every try (temporary): two tries, ten days apart.
    let rx = Receiver::start(vec![Reply::status(503); 100]).await;
    let sink = SinkConfig::Webhook(WebhookSink {
        max_concurrent: None,
        url: rx.url.clone(),
        secret: Some(SecretString::from(helpers::new_secret())),
        secret_file: None,
        timeout: Duration::from_secs(5),
    });
    let app = helpers::spawn_app_with(
        move |cfg| {
            cfg.sinks.insert("hook".into(), sink);
            cfg.notify.default = vec!["hook".into()];
            cfg.notify.initial_backoff = 10 * DAY;
            cfg.notify.max_backoff = 10 * DAY;
            cfg.notify.max_attempts = 2;
            cfg.retention.jobs = Some(DAY);
        },
        helpers::fast_sim(),
    )
    .await;
    let id = finished_job(&app, "undelivered").await;
    app.wait_until("the first try failed", DEADLINE, async || {
        outbox_states(&app, &id).await == [("pending".to_string(), 1)]
    })
    .await;

    // Past retention, the notification still pending: the job and its outbox row stay.
    app.clock.advance(2 * DAY);
    let r = app.orchestrator.prune_now().await.unwrap();
    assert_eq!(r.jobs, 0, "{r:?}");
    assert_eq!(rows_of(&app, "jobs", &id).await, 1);
    assert_eq!(outbox_states(&app, &id).await, [("pending".to_string(), 1)]);

    // The second try fails for good: the row is a dead letter, and the job can go. The
    // daemon's own hourly pass runs after the clock moves and may prune the job the moment
    // its row dies, before this test looks: so it waits for the second try to reach the sink
    // and for the row to be dead or already gone with its job, never pending.
    app.clock.advance(9 * DAY);
    rx.wait_hits(2, DEADLINE).await;
    app.wait_until("the notification is dead or pruned", DEADLINE, async || {
        let states = outbox_states(&app, &id).await;
        states == [("dead".to_string(), 2)]
            || (states.is_empty() && rows_of(&app, "jobs", &id).await == 0)
    })
    .await;
    app.orchestrator.prune_now().await.unwrap();
    assert_eq!(rows_of(&app, "jobs", &id).await, 0);
    assert_eq!(rows_of(&app, "notifications", &id).await, 0);
    assert_eq!(rows_of(&app, "job_summaries", &id).await, 1);
    app.stop().await;
}

/// Summaries of pruned jobs go after `retention.summaries`.
#[tokio::test]
async fn summaries_go_after_their_retention() {
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.retention.jobs = Some(DAY);
            cfg.retention.summaries = Some(32 * DAY);
        },
        helpers::fast_sim(),
    )
    .await;
    let id = finished_job(&app, "summarized").await;
    app.clock.advance(2 * DAY);
    // (The daemon's own hourly pass may run first after each move of the clock: the test
    // looks at what is left, not at which pass removed it.)
    app.orchestrator.prune_now().await.unwrap();
    assert_eq!(rows_of(&app, "jobs", &id).await, 0);
    assert_eq!(rows_of(&app, "job_summaries", &id).await, 1);
    // 22 days after its end: kept.
    app.clock.advance(20 * DAY);
    app.orchestrator.prune_now().await.unwrap();
    assert_eq!(rows_of(&app, "job_summaries", &id).await, 1);
    // 33 days after: gone.
    app.clock.advance(11 * DAY);
    app.orchestrator.prune_now().await.unwrap();
    assert_eq!(rows_of(&app, "job_summaries", &id).await, 0);
    app.stop().await;
}

/// Webhook secrets that stopped being accepted are deleted 30 days later; the current one
/// (no expiry) stays.
#[tokio::test]
async fn retired_webhook_secrets_go_after_thirty_days() {
    let app = helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await;
    let now = app.clock.now_ms();
    let day_ms = 24 * 3_600_000;
    let mut conn = db::open(&app.db_url).await;
    for (secret, expires_at, active) in [
        ("whsec_current", None, 1),
        ("whsec_retired_yesterday", Some(now - day_ms), 0),
        ("whsec_retired_long_ago", Some(now - 31 * day_ms), 0),
        ("whsec_expired_not_yet_retired", Some(now - 40 * day_ms), 1),
    ] {
        sqlx::query(
            "INSERT INTO webhook_secrets (endpoint_id, secret, created_at, expires_at, active) \
             VALUES ('we_test', $1, $2, $3, $4)",
        )
        .bind(secret)
        .bind(now - 60 * day_ms)
        .bind(expires_at)
        .bind(active as i64)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let secrets = async |conn: &mut sqlx::AnyConnection| -> Vec<String> {
        sqlx::query_scalar("SELECT secret FROM webhook_secrets ORDER BY id")
            .fetch_all(conn)
            .await
            .unwrap()
    };
    app.orchestrator.prune_now().await.unwrap();
    assert_eq!(
        secrets(&mut conn).await,
        ["whsec_current", "whsec_retired_yesterday"]
    );
    app.clock.advance(30 * DAY);
    app.orchestrator.prune_now().await.unwrap();
    assert_eq!(secrets(&mut conn).await, ["whsec_current"]);
    db::close_any(conn).await;
    app.stop().await;
}

/// Schedule runs older than `retention.schedule_runs` go, except the newest
/// `schedule_runs_kept` of the schedule and any whose job is unfinished (the overlap rules
/// look for those); the schedule's count of runs still includes the deleted ones.
#[tokio::test]
async fn old_schedule_runs_go_but_never_one_still_needed() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.yaml");
    std::fs::write(
        &jobs,
        "jobs:\n  - name: tick\n    model: gpt-5\n    input: What time is it?\n    \
         schedule: {cron: \"* * * * * *\", overlap: allow}\n",
    )
    .unwrap();
    // Runs that take an hour: every job stays unfinished until the test cancels it.
    let sim = SimConfig {
        queue_time: Duration::from_millis(50),
        run_time: Duration::from_secs(3600),
        ..SimConfig::default()
    };
    let app = helpers::spawn_app_with(
        move |cfg| {
            cfg.jobs_file = Some(jobs);
            cfg.jobs.default_timeout = None;
            cfg.retention.schedule_runs = Some(7 * DAY);
            cfg.retention.schedule_runs_kept = 2;
        },
        sim,
    )
    .await;
    app.wait_until("five ticks", DEADLINE, async || {
        app.count_rows("schedule_runs").await >= 5
    })
    .await;
    // The schedule stops (gone from the jobs file): no new runs from here on.
    app.orchestrator.sync_schedules(&[]).await.unwrap();
    let runs = schedule_runs(&app).await;
    let n = runs.len();
    assert!(n >= 5, "{runs:?}");
    assert_eq!(schedule_run_count(&app).await, n as i64);
    // Every run but the oldest ends.
    for (_, job) in &runs[1..] {
        let job = job.as_deref().unwrap();
        let (status, body) = app.post(&format!("/v1/jobs/{job}/cancel")).await;
        assert_eq!(status, 200, "{body}");
        app.wait_terminal(job, DEADLINE).await;
    }

    // Young runs stay.
    let r = app.orchestrator.prune_now().await.unwrap();
    assert_eq!(r.schedule_runs, 0, "{r:?}");
    assert_eq!(schedule_runs(&app).await.len(), n);

    // Past retention: the oldest (its job unfinished) and the newest two stay. (The daemon's
    // own hourly pass may run first after the clock moved: the test looks at what is left.)
    app.clock.advance(8 * DAY);
    app.orchestrator.prune_now().await.unwrap();
    let kept: Vec<i64> = schedule_runs(&app).await.iter().map(|(t, _)| *t).collect();
    assert_eq!(kept, [runs[0].0, runs[n - 2].0, runs[n - 1].0]);
    assert_eq!(
        schedule_run_count(&app).await,
        n as i64,
        "pruned runs still count"
    );

    // Once its job ends, the oldest goes too.
    let first = runs[0].1.as_deref().unwrap();
    let (status, body) = app.post(&format!("/v1/jobs/{first}/cancel")).await;
    assert_eq!(status, 200, "{body}");
    app.wait_terminal(first, DEADLINE).await;
    app.orchestrator.prune_now().await.unwrap();
    let kept: Vec<i64> = schedule_runs(&app).await.iter().map(|(t, _)| *t).collect();
    assert_eq!(kept, [runs[n - 2].0, runs[n - 1].0]);
    assert_eq!(schedule_run_count(&app).await, n as i64);
    app.stop().await;
}

/// (tick, job id) of every run of the schedule `tick`, oldest first.
async fn schedule_runs(app: &helpers::TestApp) -> Vec<(i64, Option<String>)> {
    let mut conn = db::open(&app.db_url).await;
    let rows = sqlx::query_as(
        "SELECT scheduled_for, job_id FROM schedule_runs WHERE schedule_name = 'tick' \
         ORDER BY scheduled_for",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    db::close_any(conn).await;
    rows
}

/// The count of runs `GET /v1/schedules` shows for `tick`.
async fn schedule_run_count(app: &helpers::TestApp) -> i64 {
    let (status, list) = app.get("/v1/schedules").await;
    assert_eq!(status, 200, "{list}");
    let s: &Value = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tick")
        .unwrap();
    s["runs"].as_i64().unwrap_or_else(|| panic!("{s}"))
}
