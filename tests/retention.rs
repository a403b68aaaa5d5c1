//! Retention and the database commands against the real daemon: finished jobs past
//! `retention.jobs` are pruned (with `Clock::advance`) and summarized, old webhook deliveries
//! go after 7 days, and `respool db backup` writes a valid SQLite copy while the daemon runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use respool::job::JobStatus;

const DEADLINE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

async fn finished_job(app: &common::TestApp, name: &str) -> String {
    let (status, job) = app.post_job(&common::job_body(name)).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    id
}

async fn rows_of(app: &common::TestApp, table: &str, id: &str) -> i64 {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(app.db_path())
        .read_only(true);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts)
        .await
        .unwrap();
    let column = if table == "jobs" || table == "job_summaries" {
        "id"
    } else {
        "job_id"
    };
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {table} WHERE {column} = ?"
    )))
    .bind(id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let _ = sqlx::Connection::close(conn).await;
    n
}

#[tokio::test]
async fn finished_jobs_past_retention_are_pruned_and_summarized() {
    let app = common::spawn_app_with(
        |cfg| {
            cfg.retention.jobs = Some(90 * DAY);
            cfg.pricing = common::gpt5_priced(2.0, 8.0);
        },
        common::fast_sim(),
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
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(app.db_path())
        .read_only(true);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts)
        .await
        .unwrap();
    let (name, model, status, usage, cost): (String, String, String, Option<String>, Option<i64>) =
        sqlx::query_as(
            "SELECT name, model, status, usage, cost_microusd FROM job_summaries WHERE id = ?",
        )
        .bind(&old)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let _ = sqlx::Connection::close(conn).await;
    assert_eq!(
        (name.as_str(), model.as_str(), status.as_str()),
        ("old", "gpt-5", "completed")
    );
    assert!(usage.is_some());
    assert!(cost.is_some_and(|c| c > 0), "{cost:?}");
    // Counts still include it.
    let completed = metric_with_label(&app, "respool_jobs", "status", "completed").await;
    assert_eq!(completed, Some(2.0));
    app.stop().await;
}

#[tokio::test]
async fn webhook_deliveries_go_after_seven_days_and_jobs_stay_without_retention() {
    let app = common::spawn_app_with(|_| {}, common::fast_sim()).await;
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
    let app = common::spawn_app_with(|_| {}, common::fast_sim()).await;
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
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&file)
        .read_only(true);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts)
        .await
        .unwrap();
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
    let _ = sqlx::Connection::close(conn).await;
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

/// The value of `name{label="value"}` from `GET /metrics`.
async fn metric_with_label(
    app: &common::TestApp,
    name: &str,
    label: &str,
    value: &str,
) -> Option<f64> {
    let text = app
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{name}{{{label}=\"{value}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}
