//! `GET /v1/stats` and `respool stats` against the real daemon: counts by status, tokens and
//! costs by model, day and name, the `since` window, a bad `by`, and a job pruned by retention
//! (kept as a summary) still counted.

use std::collections::BTreeMap;
use std::time::Duration;

use respool::job::JobStatus;
use serde_json::{Value, json};

use crate::helpers;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn body(name: &str, model: &str) -> Value {
    json!({"name": name, "model": model, "input": format!("Write about {name}.")})
}

fn tok(job: &Value, pointer: &str) -> i64 {
    job["usage"]
        .pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// What gpt-5 costs at the test's prices ($2 per million input, $8 per million output).
fn cost(jobs: &[&Value]) -> f64 {
    jobs.iter()
        .map(|j| (tok(j, "/input_tokens") * 2 + tok(j, "/output_tokens") * 8) as f64 / 1e6)
        .sum()
}

fn group<'a>(stats: &'a Value, key: &str) -> &'a Value {
    stats["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no group {key} in {stats:#}"))
}

fn keys(stats: &Value) -> Vec<(String, i64)> {
    stats["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap().to_string(),
                g["jobs"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test]
async fn stats_count_statuses_tokens_and_costs_by_model_day_and_name() {
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.retention.jobs = Some(2 * DAY);
            cfg.pricing = helpers::gpt5_priced(2.0, 8.0);
        },
        helpers::fast_sim(),
    )
    .await;

    // A job three days old, then pruned: only its summary is left.
    app.advance_to_noon_utc();
    let old = app
        .finished(&body("old", "gpt-5"), JobStatus::Completed)
        .await;
    app.clock.advance(3 * DAY);
    let a1 = app
        .finished(&body("alpha", "gpt-5"), JobStatus::Completed)
        .await;
    let b1 = app
        .finished(&body("beta", "gpt-5"), JobStatus::Completed)
        .await;
    let mut failing = body("alpha", "gpt-5");
    failing["metadata"] = json!({"sim": "outcome=failed:server_error"});
    let f1 = app.finished(&failing, JobStatus::Failed).await;
    let r1 = app
        .finished(&body("research", "zeta-local"), JobStatus::Completed)
        .await;
    app.orchestrator.prune_now().await.unwrap();
    let (code, _) = app
        .get(&format!("/v1/jobs/{}", old["id"].as_str().unwrap()))
        .await;
    assert_eq!(code, 404, "the old job is pruned");
    assert_eq!(app.count_rows("job_summaries").await, 1);

    // By model (the default), over the default 30 days: the pruned job counts.
    let (code, stats) = app.get("/v1/stats").await;
    assert_eq!(code, 200, "{stats}");
    assert_eq!(stats["object"], "stats");
    assert_eq!(stats["by"], "model");
    assert_eq!(stats["timezone"], "UTC");
    let now = app.clock.now_ms() / 1000;
    assert!((stats["since"].as_i64().unwrap() - (now - 30 * 86_400)).abs() < 60);
    assert_eq!(
        keys(&stats),
        [("gpt-5".into(), 4), ("zeta-local".into(), 1)]
    );
    let gpt = group(&stats, "gpt-5");
    assert_eq!(gpt["by_status"], json!({"completed": 3, "failed": 1}));
    let all = [&old, &a1, &b1, &f1, &r1];
    let priced = [&old, &a1, &b1, &f1];
    let sum = |jobs: &[&Value], p: &str| jobs.iter().map(|j| tok(j, p)).sum::<i64>();
    assert!(sum(&priced, "/total_tokens") > 0);
    assert_eq!(gpt["tokens"]["input"], sum(&priced, "/input_tokens"));
    assert_eq!(gpt["tokens"]["output"], sum(&priced, "/output_tokens"));
    assert_eq!(
        gpt["tokens"]["reasoning"],
        sum(&priced, "/output_tokens_details/reasoning_tokens")
    );
    assert_eq!(gpt["tokens"]["total"], sum(&priced, "/total_tokens"));
    assert!(close(&gpt["cost_usd"], cost(&priced)), "{gpt}");
    let o4 = group(&stats, "zeta-local");
    assert_eq!(o4["cost_usd"], Value::Null, "no price: no cost");
    assert!(o4["tokens"]["total"].as_i64().unwrap() > 0);
    let totals = &stats["totals"];
    assert_eq!(totals["jobs"], 5);
    assert_eq!(totals["by_status"], json!({"completed": 4, "failed": 1}));
    assert_eq!(totals["tokens"]["total"], sum(&all, "/total_tokens"));
    assert!(close(&totals["cost_usd"], cost(&priced)), "{totals}");
    assert_eq!(totals["unpriced_models"], json!(["zeta-local"]));

    // By name: most jobs first, then by name.
    let (_, by_name) = app.get("/v1/stats?by=name").await;
    assert_eq!(
        keys(&by_name),
        [
            ("alpha".into(), 2),
            ("beta".into(), 1),
            ("old".into(), 1),
            ("research".into(), 1)
        ]
    );
    assert_eq!(
        group(&by_name, "alpha")["by_status"],
        json!({"completed": 1, "failed": 1})
    );

    // By day (UTC here): the pruned job's day, then today's, from the jobs' own creation times.
    let (_, by_day) = app.get("/v1/stats?by=day&since=30d").await;
    let day = |j: &Value| {
        chrono::DateTime::from_timestamp(j["created_at"].as_i64().unwrap(), 0)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string()
    };
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for j in all {
        *expected.entry(day(j)).or_default() += 1;
    }
    assert_eq!(expected.len(), 2, "three days apart");
    assert_eq!(keys(&by_day), expected.into_iter().collect::<Vec<_>>());
    assert_eq!(group(&by_day, &day(&old))["jobs"], 1);

    // The window: a day back leaves the pruned job out.
    let (_, recent) = app.get("/v1/stats?since=1d").await;
    assert_eq!(recent["totals"]["jobs"], 4);
    assert_eq!(group(&recent, "gpt-5")["jobs"], 3);

    // Bad parameters are named.
    let (code, err) = app.get("/v1/stats?by=week").await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(err["error"]["param"], "by");
    assert!(err["error"]["message"].as_str().unwrap().contains("week"));
    let (code, err) = app.get("/v1/stats?since=yesterday-ish").await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(err["error"]["param"], "since");

    // The endpoint is in the OpenAPI document.
    let (_, doc) = app.get("/openapi.json").await;
    assert!(doc["paths"]["/v1/stats"]["get"].is_object(), "{doc:#}");
    assert!(doc["components"]["schemas"]["StatsReport"].is_object());

    // The CLI, the real binary: the table and the JSON.
    let base = app.base.clone();
    let (table, json_out) = tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            let dir = tempfile::tempdir().unwrap();
            let out = assert_cmd::Command::cargo_bin("respool")
                .unwrap()
                .current_dir(dir.path())
                .env_remove("RESPOOL_CONFIG")
                .env_remove("RESPOOL_TOKEN")
                .env("NO_COLOR", "1")
                .arg("stats")
                .args(["--server", &base])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        (run(&["--by", "name"]), run(&["--json", "--since", "1d"]))
    })
    .await
    .unwrap();
    let cells = |key: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == key))
            .unwrap_or_else(|| panic!("no {key} row in\n{table}"))
            .split(|c: char| c.is_whitespace() || c == '│')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert!(table.contains("by name"), "{table}");
    // NAME, JOBS, COMPLETED, FAILED, OTHER, TOKENS, COST
    assert_eq!(cells("alpha")[1..5], ["2", "1", "1", "0"], "{table}");
    assert_eq!(cells("research")[6], "-", "{table}");
    let total = cells("TOTAL");
    assert_eq!(total[1..5], ["5", "4", "1", "0"], "{table}");
    assert_eq!(total[5], sum(&all, "/total_tokens").to_string(), "{table}");
    assert_eq!(total[6], format!("${:.4}", cost(&priced)), "{table}");
    let printed: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(printed["object"], "stats");
    assert_eq!(printed["totals"]["jobs"], 4);
    assert_eq!(
        keys(&printed),
        [("gpt-5".into(), 3), ("zeta-local".into(), 1)]
    );
    app.stop().await;
}
