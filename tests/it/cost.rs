//! Honest cost: OpenAI's models are priced out of the box (the built-in table), in the service
//! tier each response ran in, with the fees of the hosted tools it called; a configured price
//! overrides the built-in one, and a job whose model has no price says so instead of showing
//! nothing (its tool fees are still counted where sums are made).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Dollars of `usage` at these prices per million tokens (no cached tokens in the simulator).
fn tokens_usd(usage: &Value, input: f64, output: f64) -> f64 {
    (usage["input_tokens"].as_f64().unwrap() * input
        + usage["output_tokens"].as_f64().unwrap() * output)
        / 1e6
}

/// Whether a job's row, read from the database, meets `condition` (SQL on its columns).
async fn row_has(app: &helpers::TestApp, id: &str, condition: &str) -> bool {
    app.scalar(&format!(
        "SELECT COUNT(*) FROM jobs WHERE id = '{id}' AND {condition}"
    ))
    .await
        == 1
}

#[tokio::test]
async fn built_in_prices_cost_jobs_and_an_unknown_model_says_so() {
    let app = helpers::spawn_app().await;
    let priced = app
        .submit(
            &json!({"name": "builtin", "model": "o3-deep-research-2025-06-26",
                        "input": "x", "tools": [{"type": "web_search_preview"}]}),
        )
        .await;
    // A deep-research model with no price: its tokens cannot be costed, its searches can.
    let unknown = app
        .submit(
            &json!({"name": "unknown", "model": "acme-deep-research", "input": "x",
                        "tools": [{"type": "web_search_preview"}]}),
        )
        .await;
    for id in [&priced, &unknown] {
        app.wait_terminal(id, Duration::from_secs(20)).await;
    }
    let (_, job) = app.get(&format!("/v1/jobs/{priced}")).await;
    // The simulator's deep research searches three times: $10 per 1,000 calls on a reasoning
    // model, `web_search_preview` or not.
    let tokens = tokens_usd(&job["usage"], 10.0, 40.0);
    let searches = 3.0 * 10.0 / 1000.0;
    let cost = job["cost_usd"].as_f64().expect("a built-in price");
    assert!(
        close(cost, tokens + searches),
        "{cost} vs {tokens} + {searches}: {job}"
    );
    assert!(job.get("cost_unknown").is_none(), "{job}");
    let split = &job["cost"];
    assert!(
        close(split["tokens_usd"].as_f64().unwrap(), tokens),
        "{split}"
    );
    assert!(
        close(split["tool_fees_usd"].as_f64().unwrap(), searches),
        "{split}"
    );
    assert!(
        close(split["web_search_usd"].as_f64().unwrap(), searches),
        "{split}"
    );
    assert_eq!(split["web_search_calls"], 3, "{split}");
    assert_eq!(split["file_search_calls"], 0, "{split}");
    assert_eq!(split["service_tier"], "default", "{split}");
    // The counts are columns of the job, written when it ended.
    assert!(
        row_has(
            &app,
            &priced,
            "web_search_calls = 3 AND web_search_preview_calls = 3 AND file_search_calls = 0 \
             AND code_containers = 0 AND images = 0 AND image_fee_microusd = 0 \
             AND service_tier = 'default'"
        )
        .await
    );

    let (_, job) = app.get(&format!("/v1/jobs/{unknown}")).await;
    assert!(job["cost_usd"].is_null(), "{job}");
    let why = job["cost_unknown"]
        .as_str()
        .expect("says why there is no cost");
    assert!(
        why.contains("`acme-deep-research`")
            && why.contains("pricing:")
            && why.contains("its tool fees were $0.0300"),
        "{why}"
    );
    assert!(job["cost"]["tokens_usd"].is_null(), "{job}");
    assert!(
        close(job["cost"]["tool_fees_usd"].as_f64().unwrap(), searches),
        "{job}"
    );

    // Stats and the budget count what is known: the priced job, and the unknown one's tool
    // fees; they name the model without a price.
    let known = cost + searches;
    let (_, stats) = app.get("/v1/stats?by=model").await;
    assert_eq!(
        stats["totals"]["unpriced_models"],
        json!(["acme-deep-research"]),
        "{stats}"
    );
    assert!(
        close(stats["totals"]["cost_usd"].as_f64().unwrap(), known),
        "{stats}"
    );
    assert!(
        close(
            stats["totals"]["tool_fees_usd"].as_f64().unwrap(),
            2.0 * searches
        ),
        "{stats}"
    );
    assert_eq!(stats["totals"]["tools"]["web_search_calls"], 6, "{stats}");
    let (_, budget) = app.get("/v1/budget").await;
    assert_eq!(
        budget["unpriced_models"],
        json!(["acme-deep-research"]),
        "{budget}"
    );
    assert!(
        close(budget["day"]["spent_usd"].as_f64().unwrap(), known),
        "{budget}"
    );

    // The web page says "unknown price" rather than a dash, and what the tools cost.
    let page = app.page(&format!("/jobs/{unknown}")).await;
    assert!(
        page.contains(
            "<dt>Cost</dt><dd>unknown price <span class=\"muted small\">(tokens unknown + tools $0.03 for 3 web searches)</span></dd>"
        ),
        "{page}"
    );
    app.stop().await;
}

/// A job's service tier prices its tokens: `flex` at half, `priority` at OpenAI's priority
/// price; file search calls (a knowledge set's `file_search`) cost their fee.
#[tokio::test]
async fn tiers_and_file_search_are_priced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/leave.md"),
        "# Leave\n\n25 days a year.\n",
    )
    .unwrap();
    let config_file = dir.path().join("respool.yaml");
    let app = helpers::spawn_app_with(
        move |c| {
            c.file = Some(config_file);
            c.knowledge.sets.insert(
                "policies".into(),
                respool::config::KnowledgeSetConfig {
                    paths: vec!["policies/*".into()],
                },
            );
        },
        respool::sim::SimConfig {
            file_processing_time: Duration::from_millis(300),
            ..helpers::fast_sim()
        },
    )
    .await;
    let flex = app
        .submit(
            &json!({"model": "gpt-5", "input": "How much leave?", "service_tier": "flex",
                        "knowledge": ["policies"]}),
        )
        .await;
    let priority = app
        .submit(&json!({"model": "gpt-5-2025-08-07", "input": "x", "service_tier": "priority"}))
        .await;
    for id in [&flex, &priority] {
        let job = app.wait_terminal(id, Duration::from_secs(40)).await;
        assert_eq!(job.status, respool::job::JobStatus::Completed, "{job:?}");
    }

    let (_, job) = app.get(&format!("/v1/jobs/{flex}")).await;
    let tokens = tokens_usd(&job["usage"], 0.625, 5.0);
    let search = 2.50 / 1000.0;
    assert!(
        close(job["cost"]["tokens_usd"].as_f64().unwrap(), tokens),
        "{job}"
    );
    assert!(
        close(job["cost_usd"].as_f64().unwrap(), tokens + search),
        "{job}"
    );
    assert_eq!(job["cost"]["service_tier"], "flex", "{job}");
    assert_eq!(job["cost"]["file_search_calls"], 1, "{job}");
    assert!(
        row_has(
            &app,
            &flex,
            "file_search_calls = 1 AND service_tier = 'flex'"
        )
        .await
    );

    let (_, job) = app.get(&format!("/v1/jobs/{priority}")).await;
    let tokens = tokens_usd(&job["usage"], 2.50, 20.0);
    assert!(close(job["cost_usd"].as_f64().unwrap(), tokens), "{job}");
    assert_eq!(job["cost"]["service_tier"], "priority", "{job}");
    assert_eq!(job["cost"]["tool_fees_usd"], 0.0, "{job}");

    // Stats price each tier's tokens apart; the budget's spend is the same sum.
    let mut total = 0.0;
    for id in [&flex, &priority] {
        total += app.get(&format!("/v1/jobs/{id}")).await.1["cost_usd"]
            .as_f64()
            .unwrap();
    }
    let (_, stats) = app.get("/v1/stats").await;
    assert!(
        close(stats["totals"]["cost_usd"].as_f64().unwrap(), total),
        "{stats}"
    );
    let (_, budget) = app.get("/v1/budget").await;
    assert!(
        close(budget["day"]["spent_usd"].as_f64().unwrap(), total),
        "{budget}"
    );
    app.stop().await;
}

/// Every model of the built-in table is priced end to end: a job of each gets a cost, and
/// stats and the budget count each of them (no model left unpriced).
#[tokio::test]
async fn every_built_in_model_gets_a_cost_in_stats_and_budgets() {
    let app = helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await;
    let mut ids = Vec::new();
    for model in respool::pricing::builtin().keys() {
        let mut body = json!({"name": model, "model": model, "input": "x"});
        if model.contains("deep-research") {
            body["tools"] = json!([{"type": "web_search_preview"}]);
        }
        ids.push((model.clone(), app.submit(&body).await));
    }
    let mut total = 0.0;
    for (model, id) in &ids {
        app.wait_terminal(id, Duration::from_secs(60)).await;
        let (_, job) = app.get(&format!("/v1/jobs/{id}")).await;
        let cost = job["cost_usd"]
            .as_f64()
            .unwrap_or_else(|| panic!("{model} has no cost: {job}"));
        assert!(cost > 0.0, "{model}: {job}");
        total += cost;
    }
    let (_, stats) = app.get("/v1/stats?by=model").await;
    assert_eq!(stats["totals"]["unpriced_models"], json!([]), "{stats}");
    let groups = stats["groups"].as_array().unwrap();
    assert_eq!(groups.len(), ids.len(), "{stats}");
    for g in groups {
        assert!(g["cost_usd"].as_f64().is_some_and(|c| c > 0.0), "{g}");
    }
    assert!(
        close(stats["totals"]["cost_usd"].as_f64().unwrap(), total),
        "{stats}"
    );
    let (_, budget) = app.get("/v1/budget").await;
    assert_eq!(budget["unpriced_models"], json!([]), "{budget}");
    assert!(
        close(budget["day"]["spent_usd"].as_f64().unwrap(), total),
        "{budget}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_configured_price_overrides_the_built_in_one() {
    let app = helpers::spawn_app_with(
        |c| c.pricing = helpers::gpt5_priced(100.0, 1000.0),
        respool::sim::SimConfig::default(),
    )
    .await;
    let id = app.submit(&helpers::job_body("mine")).await;
    app.wait_terminal(&id, Duration::from_secs(20)).await;
    let (_, job) = app.get(&format!("/v1/jobs/{id}")).await;
    let usage = &job["usage"];
    let expected = (usage["input_tokens"].as_f64().unwrap() * 100.0
        + usage["output_tokens"].as_f64().unwrap() * 1000.0)
        / 1e6;
    assert!(
        (job["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-12,
        "{job}"
    );
    app.stop().await;
}

/// A code interpreter container and generated images cost their fees, beside the tokens:
/// $0.03 a container, and an image by its quality and size (gpt-image-1's prices).
#[tokio::test]
async fn containers_and_images_are_priced() {
    let app = helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await;
    let id = app
        .submit(&json!({"model": "gpt-4.1", "input": "SIM_IMAGE_COUNT=2 Chart the tides and draw a harbour",
            "tools": [{"type": "code_interpreter", "container": {"type": "auto"}},
                      {"type": "image_generation", "size": "1024x1536", "quality": "high"}]}))
        .await;
    let job = app.wait_terminal(&id, Duration::from_secs(40)).await;
    assert_eq!(job.status, respool::job::JobStatus::Completed, "{job:?}");
    let (_, job) = app.get(&format!("/v1/jobs/{id}")).await;
    let tokens = tokens_usd(&job["usage"], 2.00, 8.00);
    let fees = 0.03 + 2.0 * 0.25;
    assert!(
        close(job["cost"]["tokens_usd"].as_f64().unwrap(), tokens),
        "{job}"
    );
    assert!(
        close(job["cost"]["tool_fees_usd"].as_f64().unwrap(), fees),
        "{job}"
    );
    assert!(
        close(job["cost_usd"].as_f64().unwrap(), tokens + fees),
        "{job}"
    );
    assert!(row_has(&app, &id, "code_containers = 1 AND images = 2").await);
}
