//! The web pages' stats and filters: `/stats` shows the counts, tokens and costs of the
//! windows (pruned jobs included) and a row per day; the job list filters by metadata and
//! keeps the filter in its form.

use std::time::Duration;

use respool::job::JobStatus;
use serde_json::{Value, json};

use crate::helpers;

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn page(app: &helpers::TestApp, path: &str) -> (u16, String) {
    let r = app
        .request(reqwest::Method::GET, path)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn tok(job: &Value, pointer: &str) -> i64 {
    job["usage"]
        .pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The `<section>` of the page whose text contains `heading`.
fn section<'a>(html: &'a str, heading: &str) -> &'a str {
    html.split("<section")
        .find(|s| s.contains(heading))
        .unwrap_or_else(|| panic!("no section {heading} in {html}"))
}

#[tokio::test]
async fn stats_page_shows_windows_costs_and_days_with_pruned_jobs() {
    let app = helpers::spawn_app_with(
        |cfg| {
            cfg.retention.jobs = Some(2 * DAY);
            // A dollar per token, so the costs show in cents.
            cfg.pricing = helpers::gpt5_priced(1_000_000.0, 1_000_000.0);
        },
        helpers::fast_sim(),
    )
    .await;
    let body = |name: &str, model: &str| json!({"name": name, "model": model, "input": "hi"});
    app.advance_to_noon_utc();
    let old = app
        .finished(&body("old", "gpt-5"), JobStatus::Completed)
        .await;
    app.clock.advance(3 * DAY);
    let a = app
        .finished(&body("a", "gpt-5"), JobStatus::Completed)
        .await;
    let mut failing = body("b", "gpt-5");
    failing["metadata"] = json!({"sim": "outcome=failed:server_error"});
    let f = app.finished(&failing, JobStatus::Failed).await;
    let r = app
        .finished(&body("r", "zeta-local"), JobStatus::Completed)
        .await;
    app.orchestrator.prune_now().await.unwrap();
    assert_eq!(
        app.count_rows("job_summaries").await,
        1,
        "the old job is pruned"
    );

    let (code, html) = page(&app, "/stats").await;
    assert_eq!(code, 200, "{html}");
    assert!(
        !html.contains("are counted"),
        "no truncation notice any more"
    );
    let total = |jobs: &[&Value]| {
        jobs.iter()
            .map(|j| tok(j, "/input_tokens") + tok(j, "/output_tokens"))
            .sum::<i64>()
    };
    let priced_cost = format!("${:.2}", total(&[&old, &a, &f]) as f64);
    assert!(total(&[&old, &a, &f]) > 0);
    for heading in ["Last 7 days", "Last 30 days"] {
        let w = section(&html, heading);
        // Four jobs, the pruned one included.
        assert!(
            w.contains(r#"<span class="tile-n">4</span><span class="tile-l">jobs</span>"#),
            "{w}"
        );
        assert!(w.contains(&priced_cost), "{priced_cost} in {w}");
        assert!(w.contains("failed · 1"), "{w}");
        assert!(w.contains("completed · 3"), "{w}");
        assert!(
            w.contains("status=failed"),
            "status counts link to the list: {w}"
        );
        assert!(w.contains("<code>zeta-local</code>"), "{w}");
        assert!(
            w.contains("No price, built in or under"),
            "unpriced models are named: {w}"
        );
    }
    // The failed count links to a list of exactly the jobs it counts, `since` its window.
    let week = section(&html, "Last 7 days");
    let at = week
        .find("href=\"/?status=failed")
        .expect("a link for failed");
    let href = &week[at + 6..];
    let href = href[..href.find('"').unwrap()].replace("&amp;", "&");
    assert!(
        href.contains("since=20"),
        "the window's start, not a rolling 7d: {href}"
    );
    let (code, list) = page(&app, &href).await;
    assert_eq!(code, 200, "{list}");
    assert!(list.contains(f["id"].as_str().unwrap()), "{list}");
    assert!(!list.contains(a["id"].as_str().unwrap()), "{list}");
    assert!(
        list.contains("selected>Since 20"),
        "the since filter shows: {list}"
    );
    // The by-day table: today's row, then the pruned job's day.
    let day = |j: &Value| {
        chrono::DateTime::from_timestamp(j["created_at"].as_i64().unwrap(), 0)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string()
    };
    let days = section(&html, "By day");
    // The table starts at the first day with a job (the pruned one's), quiet days after it
    // included, and ends today.
    let date = |j: &Value| chrono::NaiveDate::parse_from_str(&day(j), "%Y-%m-%d").unwrap();
    let spanned = (date(&a) - date(&old)).num_days() + 1;
    assert!(spanned >= 3, "{spanned}");
    assert_eq!(
        days.matches("<tr").count() as i64,
        1 + spanned,
        "a header and a row per day since the first job: {days}"
    );
    let row = |date: &str| -> &str {
        let at = days
            .find(&format!(r#"<span class="mono">{date}</span>"#))
            .unwrap_or_else(|| panic!("no row for {date}: {days}"));
        &days[at..at + days[at..].find("</tr>").unwrap()]
    };
    let today = row(&day(&a));
    assert_eq!(day(&a), day(&r));
    assert!(today.contains(r#"data-label="Jobs">3<"#), "{today}");
    assert!(
        today.contains(r#"n-bad" data-label="Failed">1<"#),
        "{today}"
    );
    assert!(today.contains("seg-bad w-"), "{today}");
    let before = row(&day(&old));
    assert!(before.contains(r#"data-label="Jobs">1<"#), "{before}");
    // All time counts the jobs still stored.
    assert!(section(&html, "All time").contains("completed · 2"));
    app.stop().await;
}

#[tokio::test]
async fn job_list_filters_by_metadata_and_keeps_the_filter() {
    let app = helpers::spawn_app_with(|_| {}, helpers::fast_sim()).await;
    let mut ids = Vec::new();
    for team in ["red", "blue"] {
        let (code, job) = app
            .post_job(
                &json!({"name": format!("team-{team}"), "model": "gpt-5", "input": "hi",
                "metadata": {"team": team}}),
            )
            .await;
        assert_eq!(code, 201, "{job}");
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let (code, html) = page(&app, "/?metadata=team%3Dred").await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains(&ids[0]), "the red job is listed: {html}");
    assert!(!html.contains(&ids[1]), "the blue job is not: {html}");
    assert!(
        html.contains(r#"name="metadata" value="team=red""#),
        "{html}"
    );
    assert!(html.contains(">Clear</a>"), "the filter counts as a filter");

    let (_, all) = page(&app, "/").await;
    assert!(all.contains(&ids[0]) && all.contains(&ids[1]));
    let (_, none) = page(&app, "/?metadata=team%3Dgreen").await;
    assert!(none.contains("No jobs match these filters."), "{none}");

    let (code, bad) = page(&app, "/?metadata=team").await;
    assert_eq!(code, 400);
    assert!(bad.contains("key=value"), "{bad}");
    app.stop().await;
}
