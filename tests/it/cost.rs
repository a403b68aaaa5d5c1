//! Honest cost: OpenAI's models are priced out of the box (the built-in table), a configured
//! price overrides it, and a job whose model has no price says so instead of showing nothing.

use std::time::Duration;

use serde_json::json;

use crate::helpers;

#[tokio::test]
async fn built_in_prices_cost_jobs_and_an_unknown_model_says_so() {
    let app = helpers::spawn_app().await;
    let priced = app
        .submit(
            &json!({"name": "builtin", "model": "o3-deep-research-2025-06-26",
                        "input": "x", "tools": [{"type": "web_search_preview"}]}),
        )
        .await;
    let unknown = app
        .submit(&json!({"name": "unknown", "model": "acme-finetune", "input": "x"}))
        .await;
    for id in [&priced, &unknown] {
        app.wait_terminal(id, Duration::from_secs(20)).await;
    }
    let (_, job) = app.get(&format!("/v1/jobs/{priced}")).await;
    let usage = &job["usage"];
    let expected = (usage["input_tokens"].as_f64().unwrap() * 10.0
        + usage["output_tokens"].as_f64().unwrap() * 40.0)
        / 1e6;
    let cost = job["cost_usd"].as_f64().expect("a built-in price");
    assert!(
        (cost - expected).abs() < 1e-12,
        "{cost} vs {expected}: {job}"
    );
    assert!(job.get("cost_unknown").is_none(), "{job}");

    let (_, job) = app.get(&format!("/v1/jobs/{unknown}")).await;
    assert!(job["cost_usd"].is_null(), "{job}");
    let why = job["cost_unknown"]
        .as_str()
        .expect("says why there is no cost");
    assert!(
        why.contains("`acme-finetune`") && why.contains("pricing:"),
        "{why}"
    );

    // Stats and the budget cost the built-in model and name only the unknown one.
    let (_, stats) = app.get("/v1/stats?by=model").await;
    assert_eq!(
        stats["totals"]["unpriced_models"],
        json!(["acme-finetune"]),
        "{stats}"
    );
    assert!(
        (stats["totals"]["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9,
        "{stats}"
    );
    let (_, budget) = app.get("/v1/budget").await;
    assert_eq!(
        budget["unpriced_models"],
        json!(["acme-finetune"]),
        "{budget}"
    );
    assert!(
        (budget["day"]["spent_usd"].as_f64().unwrap() - cost).abs() < 1e-9,
        "{budget}"
    );

    // The web page says "unknown price" rather than a dash.
    let page = app.page(&format!("/jobs/{unknown}")).await;
    assert!(
        page.contains("<dt>Cost</dt><dd>unknown price</dd>"),
        "{page}"
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
