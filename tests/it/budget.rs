//! Budgets against the real daemon and the simulator: jobs are held once the spend reaches a
//! limit and go on when the period rolls over (`Clock::advance` past midnight) or a reload
//! raises the limit; unpriced and exempt jobs are never held; held jobs can be cancelled.

use std::collections::BTreeMap;
use std::time::Duration;

use respool::job::JobStatus;
use respool::pricing::ModelPrice;
use respool::sim::SimConfig;
use serde_json::{Value, json};

use crate::helpers;
use crate::helpers::ledger;

const DEADLINE: Duration = Duration::from_secs(60);

fn fast_sim() -> SimConfig {
    SimConfig {
        queue_time: Duration::from_millis(100),
        run_time: Duration::from_millis(400),
        ..SimConfig::default()
    }
}

/// A dollar per token: one simulated job costs more than any small limit.
fn dollar_per_token() -> BTreeMap<String, ModelPrice> {
    helpers::gpt5_priced(1_000_000.0, 1_000_000.0)
}

fn tokens(usage: &Option<Value>) -> f64 {
    let u = usage.as_ref().unwrap();
    (u["input_tokens"].as_i64().unwrap() + u["output_tokens"].as_i64().unwrap()) as f64
}

#[tokio::test]
async fn jobs_are_held_at_the_daily_limit_and_go_on_after_midnight() {
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.pricing = dollar_per_token();
            cfg.budget.daily_usd = Some(1.0);
            cfg.budget.monthly_usd = Some(1_000_000.0);
        },
        fast_sim(),
    )
    .await;
    let first = app.submit(&helpers::job_body("first")).await;
    let first = app.wait_terminal(&first, DEADLINE).await;
    assert_eq!(first.status, JobStatus::Completed);
    let spent = tokens(&first.usage);

    let (status, budget) = app.get("/v1/budget").await;
    assert_eq!(status, 200, "{budget}");
    assert_eq!(budget["reached"], "daily", "{budget}");
    assert_eq!(budget["day"]["spent_usd"].as_f64(), Some(spent), "{budget}");
    assert_eq!(budget["day"]["limit_usd"].as_f64(), Some(1.0), "{budget}");
    assert_eq!(budget["timezone"], "UTC");

    // Over budget: a new job waits `held`, saying which budget and the spend.
    let held = app.submit(&helpers::job_body("held")).await;
    app.wait_for(&held, DEADLINE, |j| j.status == JobStatus::Held)
        .await;
    let events = app.events(&held).await;
    let hold = events.iter().find(|e| e["kind"] == "held").unwrap();
    let msg = hold["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "held: daily budget reached (${spent:.2} spent today of $1.00, UTC)"
        )),
        "{msg}"
    );
    assert_eq!(hold["data"]["budget"], "daily");

    // A model without a price cannot be costed: not held. An exempt job is not held either.
    let unpriced = app
        .submit(&json!({"name": "unpriced", "model": "zeta-local", "input": "x"}))
        .await;
    let exempt = app
        .submit(&json!({"name": "exempt", "model": "gpt-5", "input": "x", "budget_exempt": true}))
        .await;
    for id in [&unpriced, &exempt] {
        let job = app.wait_terminal(id, DEADLINE).await;
        assert_eq!(job.status, JobStatus::Completed, "{id}");
        assert_eq!(app.count_events(id, "held").await, 0);
    }
    // A held job can be cancelled like a pending one.
    let cancelled = app.submit(&helpers::job_body("cancelled")).await;
    app.wait_for(&cancelled, DEADLINE, |j| j.status == JobStatus::Held)
        .await;
    let (status, body) = app.post(&format!("/v1/jobs/{cancelled}/cancel")).await;
    assert_eq!(status, 200, "{body}");
    let job = app.wait_terminal(&cancelled, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Cancelled);
    assert_eq!(job.error.unwrap().code, "cancelled");

    let (_, budget) = app.get("/v1/budget").await;
    assert_eq!(budget["held"], 1, "{budget}");
    assert_eq!(budget["unpriced_models"], json!(["zeta-local"]), "{budget}");
    assert_eq!(
        app.get("/v1/jobs?status=held").await.1["data"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(app.sim.stats().creates_by_job_id.get(&held), None);

    // Past midnight the day's spend starts again: the held job goes.
    app.clock.advance(Duration::from_secs(24 * 3600));
    let job = app.wait_terminal(&held, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    let kinds = app.event_kinds(&held).await;
    let released = kinds.iter().position(|k| k == "released").unwrap();
    let submitting = kinds.iter().position(|k| k == "submitting").unwrap();
    assert!(
        kinds.iter().position(|k| k == "held").unwrap() < released && released < submitting,
        "{kinds:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn raising_the_budget_by_a_reload_releases_held_jobs() {
    let cfg_path = std::sync::Arc::new(std::sync::Mutex::new(None));
    let write_config = |path: &std::path::Path, cfg: &respool::config::Config, daily: f64| {
        let yaml = format!(
            "listen: 127.0.0.1:0\ndatabase: {}\nupstream:\n  base_url: {}\n  api_key: sk-test-key\n\
             polling:\n  min_interval: 200ms\n  max_interval: 2s\n\
             pricing:\n  gpt-5: {{input: 1000000, output: 1000000}}\nbudget:\n  daily_usd: {daily}\n",
            cfg.database.as_deref().unwrap(),
            cfg.upstream.base_url
        );
        std::fs::write(path, yaml).unwrap();
    };
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.pricing = dollar_per_token();
            cfg.budget.daily_usd = Some(1.0);
            let path = helpers::test_dir(cfg).join("respool.yaml");
            write_config(&path, cfg, 1.0);
            cfg.file = Some(path.clone());
            *cfg_path.lock().unwrap() = Some((path, cfg.clone()));
        },
        fast_sim(),
    )
    .await;
    let first = app.submit(&helpers::job_body("first")).await;
    assert_eq!(
        app.wait_terminal(&first, DEADLINE).await.status,
        JobStatus::Completed
    );
    let held = app.submit(&helpers::job_body("held")).await;
    app.wait_for(&held, DEADLINE, |j| j.status == JobStatus::Held)
        .await;

    let (path, cfg) = cfg_path.lock().unwrap().clone().unwrap();
    write_config(&path, &cfg, 1_000_000.0);
    let (status, body) = app.post("/v1/admin/reload").await;
    assert_eq!(status, 200, "{body}");
    let job = app.wait_terminal(&held, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(app.count_events(&held, "released").await, 1);
    let (_, budget) = app.get("/v1/budget").await;
    assert_eq!(budget["reached"], Value::Null, "{budget}");
    assert_eq!(budget["day"]["limit_usd"].as_f64(), Some(1_000_000.0));
    app.stop().await;
}

/// A tool fee counts against a budget like tokens do: a deep-research job whose model has no
/// price costs only its three web searches (here $400 each), and that alone reaches the daily
/// limit, so the next job is held.
#[tokio::test]
async fn a_tool_fee_counts_against_the_budget() {
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.tool_pricing.web_search = Some(400_000.0);
            cfg.budget.daily_usd = Some(1000.0);
        },
        fast_sim(),
    )
    .await;
    let searching = app
        .submit(
            &json!({"name": "searching", "model": "acme-deep-research", "input": "x",
                        "tools": [{"type": "web_search_preview"}]}),
        )
        .await;
    let job = app.wait_terminal(&searching, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed);
    let (_, budget) = app.get("/v1/budget").await;
    // Its tokens have no price; its searches do.
    assert_eq!(
        budget["unpriced_models"],
        json!(["acme-deep-research"]),
        "{budget}"
    );
    assert_eq!(
        budget["day"]["spent_usd"].as_f64(),
        Some(1200.0),
        "{budget}"
    );
    assert_eq!(budget["reached"], "daily", "{budget}");
    let held = app.submit(&helpers::job_body("held")).await;
    app.wait_for(&held, DEADLINE, |j| j.status == JobStatus::Held)
        .await;
    let events = app.events(&held).await;
    let hold = events.iter().find(|e| e["kind"] == "held").unwrap();
    assert!(
        hold["message"]
            .as_str()
            .unwrap()
            .starts_with("held: daily budget reached ($1200.00 spent today of $1000.00, UTC)"),
        "{hold}"
    );
    app.stop().await;
}

/// A store on the run's backend: a SQLite file in `dir`, or a fresh PostgreSQL database when
/// the run is on PostgreSQL (`RESPOOL_TEST_BACKEND=postgres`).
async fn store_on_the_runs_backend(dir: &std::path::Path) -> respool::store::Store {
    let url = match helpers::postgres::suite_server() {
        Some(server) => helpers::postgres::fresh_database(&server).await,
        None => format!("sqlite://{}", dir.join("usage.db").display()),
    };
    respool::store::Store::connect(&url).await.unwrap()
}

/// Takes in a job, sends it and records it completed with `usage`.
async fn complete_with_usage(store: &respool::store::Store, name: &str, usage: Value, now: i64) {
    use respool::job::{Observation, ResponseId};
    use respool::store::{ApplyContext, ApplyOutcome, Attach, Lease};
    let id = ledger::insert(
        store,
        json!({"name": name, "model": "gpt-5", "input": "hi"}),
        name,
        now,
    )
    .await;
    let per_model = BTreeMap::new();
    let claim = store
        .claim_submission(now, Lease::unowned(60_000), &ledger::limits(10, &per_model))
        .await
        .unwrap()
        .claim
        .expect("a job is claimed");
    assert_eq!(claim.id, id);
    let rid = ResponseId::parse(&format!("resp_{name}")).unwrap();
    let ctx = ledger::attach_ctx(now);
    let attached = store.attach_response(&id, &rid, &ctx).await.unwrap();
    assert!(matches!(attached, Attach::Attached { .. }), "{attached:?}");
    let obs = Observation {
        response_id: rid.clone(),
        status: JobStatus::Completed,
        output_text: Some("ok".into()),
        usage: Some(usage.clone()),
        error: None,
        raw: json!({"id": rid.as_str(), "status": "completed", "output": [], "usage": usage}),
    };
    let apply = ApplyContext {
        now: now + 1,
        next_poll_at: now + 2,
        poll_interval_ms: 1_000,
        cancel_reason: None,
        outbox: &[],
        source: "poll",
        request_id: None,
        artifacts: &[],
        image_prices: Default::default(),
    };
    let out = store.apply_observation(&id, &obs, &apply).await.unwrap();
    assert!(matches!(out, ApplyOutcome::Applied { .. }), "{out:?}");
}

/// The spend of a period sums token counts past `i64::MAX` by saturating, on both backends
/// (PostgreSQL's cast of such a sum failed with "bigint out of range", so the budget of a
/// day with such jobs could not be read); sums that fit stay exact.
#[tokio::test]
async fn usage_sums_past_i64_max_saturate_on_either_backend() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_on_the_runs_backend(dir.path()).await;
    let now = 1_700_000_000_000;
    for (i, name) in ["huge_one", "huge_two"].iter().enumerate() {
        let usage = json!({"input_tokens": 5_000_000_000_000_000_000i64, "output_tokens": 4_000_000_000_000_000_000i64,
                           "total_tokens": i64::MAX});
        complete_with_usage(&store, name, usage, now + 10 * i as i64).await;
    }
    let rows = store.usage_since(0).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].input_tokens, i64::MAX, "{rows:?}");
    assert_eq!(rows[0].output_tokens, 8_000_000_000_000_000_000, "{rows:?}");
    assert_eq!(rows[0].cached_tokens, 0, "{rows:?}");
    store.close().await;
}
