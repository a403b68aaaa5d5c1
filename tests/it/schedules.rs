//! Schedules through the real app: ticks turned into jobs (one per tick, on time), catch-up
//! after a downtime (the app's clock moved forward), and the overlap policies with long runs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use helpers::{TestApp, spawn_app_with};
use respool::sim::SimConfig;
use serde_json::Value;

use crate::helpers;
use crate::helpers::db;

/// Starts the app with `jobs` as its jobs file (kept in the returned directory).
async fn app_with_jobs(jobs: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("jobs.yaml");
    std::fs::write(&path, jobs).unwrap();
    let app = spawn_app_with(|cfg| cfg.jobs_file = Some(path), SimConfig::default()).await;
    (app, dir)
}

async fn schedule(app: &TestApp, name: &str) -> Value {
    let (status, list) = app.get("/v1/schedules").await;
    assert_eq!(status, 200, "{list}");
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no schedule {name} in {list:#}"))
}

/// The ticks a schedule handled, oldest first.
async fn runs(app: &TestApp, name: &str) -> Vec<Value> {
    let (status, list) = app.get(&format!("/v1/schedules/{name}/runs")).await;
    assert_eq!(status, 200, "{list}");
    let mut runs = list["data"].as_array().unwrap().clone();
    runs.reverse();
    runs
}

fn created(runs: &[Value]) -> Vec<&Value> {
    runs.iter().filter(|r| r["outcome"] == "created").collect()
}

async fn jobs_named(app: &TestApp, name: &str) -> Vec<Value> {
    let (status, list) = app.get(&format!("/v1/jobs?name={name}&limit=100")).await;
    assert_eq!(status, 200, "{list}");
    list["data"].as_array().unwrap().clone()
}

/// (scheduled_for, created_at) in unix ms of every run, read from the database.
async fn run_times(app: &TestApp, name: &str) -> Vec<(i64, i64)> {
    let mut conn = db::open(&app.db_url).await;
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT scheduled_for, created_at FROM schedule_runs WHERE schedule_name = $1 ORDER BY scheduled_for",
    )
    .bind(name)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    db::close_any(conn).await;
    rows
}

#[tokio::test]
async fn a_schedule_every_2s_makes_one_job_per_tick_on_time() {
    let (app, _dir) = app_with_jobs(
        "jobs:\n  - name: tick\n    model: gpt-5\n    input: What time is it?\n    \
         schedule: {cron: \"*/2 * * * * *\", overlap: allow}\n  \
         - name: once\n    model: gpt-5\n    input: Run me once.\n",
    )
    .await;
    // The template is not a job; the plain entry is.
    assert_eq!(jobs_named(&app, "once").await.len(), 1);
    app.wait_until("four ticks", Duration::from_secs(20), async || {
        created(&runs(&app, "tick").await).len() >= 4
    })
    .await;
    let runs = runs(&app, "tick").await;
    let runs = created(&runs);
    let ticks: Vec<i64> = runs
        .iter()
        .map(|r| r["scheduled_for"].as_i64().unwrap())
        .collect();
    // Consecutive ticks, 2 s apart: none missed, none twice.
    assert!(ticks.windows(2).all(|w| w[1] - w[0] == 2), "{ticks:?}");
    let job_ids: BTreeSet<&str> = runs.iter().map(|r| r["job_id"].as_str().unwrap()).collect();
    assert_eq!(job_ids.len(), runs.len(), "one job per tick: {runs:?}");
    for r in &runs {
        let job = app.job(r["job_id"].as_str().unwrap()).await;
        assert_eq!(job.name, "tick");
        assert_eq!(
            job.idempotency_key.as_deref(),
            Some(format!("schedule:tick:{}", r["scheduled_for_utc"].as_str().unwrap()).as_str())
        );
    }
    // Each tick fired within a second of its time (the loop wakes for the next tick).
    for (at, created_at) in run_times(&app, "tick").await {
        assert!(
            (0..1000).contains(&(created_at - at)),
            "tick {at} created at {created_at}"
        );
    }
    // The jobs run like any other.
    let first = runs[0]["job_id"].as_str().unwrap();
    let done = app.wait_terminal(first, Duration::from_secs(15)).await;
    assert!(done.output_text.is_some(), "{done:?}");
    let s = schedule(&app, "tick").await;
    assert_eq!(s["cron"], "*/2 * * * * *");
    assert_eq!(s["timezone"], "UTC");
    assert_eq!(s["overlap"], "allow");
    assert_eq!(s["catch_up"], "latest");
    assert!(s["next_run_at"].as_i64().unwrap() > *ticks.last().unwrap());
    app.stop().await;
}

#[tokio::test]
async fn missed_ticks_follow_catch_up_after_a_downtime() {
    let jobs: String = ["none", "latest", "all"]
        .iter()
        .map(|c| {
            format!(
                "  - name: cu-{c}\n    model: gpt-5\n    input: Hourly report.\n    \
                 schedule: {{cron: \"0 * * * *\", catch_up: {c}, overlap: allow}}\n"
            )
        })
        .collect();
    let (app, _dir) = app_with_jobs(&format!("jobs:\n{jobs}")).await;
    const H: i64 = 3600;
    let first = schedule(&app, "cu-all").await["next_run_at"]
        .as_i64()
        .unwrap();
    assert_eq!(first % H, 0);
    // "Down" from now until 30 minutes past the fourth missed hour.
    let clock = app.orchestrator.clock().clone();
    let target_ms = (first + 3 * H + H / 2) * 1000;
    clock.advance(Duration::from_millis(
        (target_ms - clock.now_ms()).try_into().unwrap(),
    ));
    for c in ["none", "latest", "all"] {
        let name = format!("cu-{c}");
        app.wait_until(
            &format!("{name} moved on"),
            Duration::from_secs(10),
            async || schedule(&app, &name).await["next_run_at"] == first + 4 * H,
        )
        .await;
    }
    let ran = async |name: &str| -> Vec<i64> {
        created(&runs(&app, name).await)
            .iter()
            .map(|r| r["scheduled_for"].as_i64().unwrap())
            .collect()
    };
    // none: skip every missed tick.
    assert_eq!(ran("cu-none").await, Vec::<i64>::new());
    let s = schedule(&app, "cu-none").await;
    assert_eq!(s["skipped_count"], 4);
    assert_eq!(s["last_skipped"]["scheduled_for"], first + 3 * H);
    // latest: the most recent missed tick, once.
    assert_eq!(ran("cu-latest").await, vec![first + 3 * H]);
    let s = schedule(&app, "cu-latest").await;
    assert_eq!(s["skipped_count"], 3);
    assert_eq!(s["last_run"]["scheduled_for"], first + 3 * H);
    // all: every missed tick, oldest first.
    assert_eq!(
        ran("cu-all").await,
        vec![first, first + H, first + 2 * H, first + 3 * H]
    );
    assert_eq!(schedule(&app, "cu-all").await["skipped_count"], 0);
    assert_eq!(jobs_named(&app, "cu-all").await.len(), 4);
    assert_eq!(jobs_named(&app, "cu-none").await.len(), 0);
    // A later on-time tick runs whatever the policy: the clock is set to two seconds before
    // it, and the daemon sees it come due. (Jumping onto the tick itself would make it a tick
    // missed in a stall whenever the daemon's next pass comes more than a second later.)
    let before_tick = (first + 4 * H) * 1000 - 2000;
    clock.advance(Duration::from_millis(
        (before_tick - clock.now_ms()).try_into().unwrap(),
    ));
    app.wait_until("the next tick ran", Duration::from_secs(10), async || {
        ran("cu-none").await == vec![first + 4 * H]
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn overlap_skip_queue_allow_with_long_runs() {
    let jobs: String = ["skip", "queue", "allow"]
        .iter()
        .map(|o| {
            format!(
                "  - name: ov-{o}\n    model: gpt-5\n    input: A long run.\n    \
                 metadata: {{sim: \"run=5s\"}}\n    \
                 schedule: {{cron: \"*/2 * * * * *\", overlap: {o}}}\n"
            )
        })
        .collect();
    let (app, _dir) = app_with_jobs(&format!("jobs:\n{jobs}")).await;

    // queue: the second tick gets a job at once, which waits, unsubmitted, for the first.
    app.wait_until("ov-queue: two ticks", Duration::from_secs(10), async || {
        runs(&app, "ov-queue").await.len() >= 2
    })
    .await;
    let queue = runs(&app, "ov-queue").await;
    assert!(
        queue.iter().all(|r| r["outcome"] == "created"),
        "{queue:#?}"
    );
    let first = queue[0]["job_id"].as_str().unwrap().to_string();
    let second = queue[1]["job_id"].as_str().unwrap().to_string();
    assert!(queue[1]["waiting"].as_bool().unwrap(), "{queue:#?}");
    let j2 = app.job(&second).await;
    assert_eq!(j2.status.as_str(), "pending", "{j2:?}");
    assert!(j2.response_id.is_none());
    assert!(app.event_kinds(&second).await.contains(&"waiting".into()));

    // Four ticks for each: the first run of each takes 5 s, so it spans them all.
    for o in ["skip", "queue", "allow"] {
        let name = format!("ov-{o}");
        app.wait_until(
            &format!("{name}: four ticks"),
            Duration::from_secs(20),
            async || runs(&app, &name).await.len() >= 4,
        )
        .await;
    }

    // allow: a job per tick, running side by side.
    let allow = runs(&app, "ov-allow").await;
    assert!(
        allow.iter().all(|r| r["outcome"] == "created"),
        "{allow:#?}"
    );
    let running = jobs_named(&app, "ov-allow")
        .await
        .iter()
        .filter(|j| j["status"] == "queued" || j["status"] == "in_progress")
        .count();
    assert!(running >= 2, "allow runs overlap: {running} running");

    // skip: the ticks during the first run are recorded as skipped, with no job.
    let skip = runs(&app, "ov-skip").await;
    assert_eq!(skip[0]["outcome"], "created", "{skip:#?}");
    let skipped: Vec<&Value> = skip.iter().filter(|r| r["outcome"] == "skipped").collect();
    assert!(skipped.len() >= 2, "{skip:#?}");
    assert!(
        skipped
            .iter()
            .all(|r| r["job_id"].is_null() && r["reason"].as_str().unwrap().contains("overlap"))
    );
    let s = schedule(&app, "ov-skip").await;
    assert!(s["skipped_count"].as_i64().unwrap() >= 2, "{s:#}");
    assert!(
        s["last_skipped"]["reason"]
            .as_str()
            .unwrap()
            .contains("overlap")
    );

    // queue: every tick got a job; once the first has finished, the second goes.
    let queue = runs(&app, "ov-queue").await;
    assert!(
        queue.iter().all(|r| r["outcome"] == "created"),
        "{queue:#?}"
    );
    let j1 = app.wait_terminal(&first, Duration::from_secs(20)).await;
    let j2 = app
        .wait_for(&second, Duration::from_secs(20), |j| {
            j.submitted_at.is_some()
        })
        .await;
    assert!(
        j2.submitted_at.unwrap() >= j1.finished_at.unwrap(),
        "{j1:?}\n{j2:?}"
    );
    assert!(app.event_kinds(&second).await.contains(&"released".into()));
    // Never two runs of the queue schedule upstream at once.
    let jobs = jobs_named(&app, "ov-queue").await;
    let running = jobs
        .iter()
        .filter(|j| j["status"] == "queued" || j["status"] == "in_progress")
        .count();
    assert!(running <= 1, "{jobs:#?}");
    app.stop().await;
}

#[tokio::test]
async fn a_bad_schedule_names_file_line_job_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.yaml");
    std::fs::write(
        &path,
        "jobs:\n  - name: nightly\n    model: gpt-5\n    input: hi\n    schedule:\n      cron: \"0 6 * * MON\"\n      timezone: Europe/Pariss\n",
    )
    .unwrap();
    let config = respool::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: Some(dir.path().join("db.sqlite").display().to_string()),
        jobs_file: Some(path),
        ..respool::config::Config::default()
    };
    let err = match respool::app::Application::build_with_env(
        config,
        respool::clock::Clock::system(),
        &|_| None,
    )
    .await
    {
        Ok(_) => panic!("a bad schedule must stop the start"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("jobs.yaml:7:") && err.contains("job `nightly`: field `schedule.timezone`"),
        "{err}"
    );
    assert!(err.contains("Europe/Pariss"), "{err}");
}

#[tokio::test]
async fn the_api_refuses_a_scheduled_job() {
    let (app, _dir) = app_with_jobs("jobs: []\n").await;
    let (status, body) = app
        .post_job(&serde_json::json!({"model": "gpt-5", "input": "hi", "schedule": "0 6 * * *"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "schedule");
    app.stop().await;
}
