use crate::store::sql;
use std::path::Path;

use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use sqlx::migrate::Migrator;

use super::ToolColumns;
use crate::job::{JobId, JobSpec, JobStatus, Observation, ResponseId};
use crate::pricing::tools::service_tier;
use crate::pricing::{ImagePrices, ToolUsage};
use crate::store::{ApplyContext, NewJob, Store};

const TOOL_USAGE_MIGRATION: &str = "20261206000020_tool_usage.sql";

/// Responses of every shape the columns must survive: each tool, repeats, junk items, tiers.
fn responses() -> Vec<Value> {
    let ws = json!({"type": "web_search_call", "status": "completed",
        "action": {"type": "search", "query": "q"}});
    let fs = json!({"type": "file_search_call", "queries": ["a"], "results": null});
    let ci = |c: Value| json!({"type": "code_interpreter_call", "container_id": c, "code": ""});
    let img = |q: Value, s: Value, status: &str| {
        json!({"type": "image_generation_call",
        "status": status, "quality": q, "size": s, "result": "aGk="})
    };
    vec![
        json!({}),
        json!({"output": [], "service_tier": "default"}),
        json!({"output": [ws, ws, fs], "tools": [{"type": "web_search"}], "service_tier": "flex"}),
        json!({"output": [ws, {"type": "web_search_call", "status": "failed"}],
               "tools": [{"type": "web_search_preview"}, {"type": "function", "name": "f"}],
               "service_tier": "priority"}),
        json!({"output": [ws], "tools": [{"type": "web_search_preview_2025_03_11"}]}),
        json!({"output": [ws], "tools": [{"type": "web_search_preview"}, {"type": "web_search"}]}),
        json!({"output": [ws], "tools": [{"type": 7}, {"type": "web_search_preview"}]}),
        json!({"output": [ws], "tools": {"type": "web_search_preview"}}),
        json!({"output": [ws], "tools": ["web_search_preview"]}),
        json!({"output": [ws], "tools": [{"type": "web_searcher"}]}),
        json!({"output": [ci(json!("c1")), ci(json!("c2")), ci(json!("c1")), ci(json!("")),
                          ci(json!(3)), ci(Value::Null), ci(json!(["c3"])), ci(json!("C1")),
                          ci(json!("ünï"))]}),
        json!({"output": [
            img(json!("low"), json!("1024x1024"), "completed"),
            img(json!("low"), json!("1024x1536"), "completed"),
            img(json!("medium"), json!("1536x1024"), "generating"),
            img(json!("high"), json!("1024x1024"), "completed"),
            img(json!("high"), json!("1536x1024"), "completed"),
            img(json!("auto"), json!("auto"), "completed"),
            img(json!(["high"]), json!(1024), "completed"),
            img(Value::Null, Value::Null, "failed"),
            {"type": "image_generation_call"},
            {"type": "image_generation_call", "status": null},
            {"type": "image_generation_call", "status": ["failed"]},
        ]}),
        // Junk items and types.
        json!({"output": [null, 1, "web_search_call", ["web_search_call"],
                          {"type": ["web_search_call"]}, {"type": "Web_search_call"},
                          {"kind": "file_search_call"}, {"type": {"a": 1}},
                          {"type": "file_search_call", "type2": 1}]}),
        json!({"output": {"0": {"type": "web_search_call"}}}),
        json!({"output": "web_search_call"}),
        json!({"output": null, "service_tier": 5}),
        json!({"service_tier": ""}),
        json!({"service_tier": "x".repeat(32)}),
        json!({"service_tier": "x".repeat(33)}),
        json!({"service_tier": "fl ex"}),
        json!({"service_tier": "flëx"}),
        json!({"service_tier": "a-b_C9"}),
        json!({"service_tier": ["flex"]}),
        json!([{"output": [{"type": "web_search_call"}]}]),
        json!("response"),
        json!(3),
        // A nested item key with characters a path would need to quote.
        json!({"output": [{"type": "file_search_call", "a.b": {"type": 1}, "[x]": 2}]}),
    ]
}

/// What the columns should hold for a stored response text.
fn want(text: &str) -> ToolColumns {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|_| json!({}));
    let u = ToolUsage::from_response(&v, &ImagePrices::default());
    ToolColumns {
        web_search_calls: Some(u.web_search_calls),
        web_search_preview_calls: Some(u.web_search_preview_calls),
        file_search_calls: Some(u.file_search_calls),
        code_containers: Some(u.code_containers),
        images: Some(u.images),
        image_fee_microusd: Some(u.image_fee_microusd),
        service_tier: service_tier(&v).map(str::to_owned),
    }
}

/// The migrations before the tool columns, as a database made before them ran them.
async fn before_tool_columns(dir: &Path) -> Migrator {
    let old = dir.join("migrations");
    std::fs::create_dir(&old).unwrap();
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut found = false;
    for entry in std::fs::read_dir(all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        found |= name == TOOL_USAGE_MIGRATION;
        if name.as_str() < TOOL_USAGE_MIGRATION {
            std::fs::copy(&path, old.join(&name)).unwrap();
        }
    }
    assert!(found, "no migration {TOOL_USAGE_MIGRATION}");
    Migrator::new(old.as_path()).await.unwrap()
}

/// The migration's backfill reads every shape as `ToolUsage::from_response` does, for
/// finished jobs and duplicates with a stored response; a response that is not JSON counts
/// nothing; unfinished rows, rows without a response and summaries keep NULL columns.
#[tokio::test]
async fn the_backfill_reads_responses_as_from_response_does() {
    let mut texts: Vec<String> = responses().iter().map(Value::to_string).collect();
    texts.extend(["{not json".to_string(), String::new()]);

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    crate::store::install_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    before_tool_columns(dir.path())
        .await
        .run(&pool)
        .await
        .unwrap();
    let insert_job = async |id: &JobId, status: &str, response: Option<&str>| {
        sql::query(
            "INSERT INTO jobs (id, name, model, status, spec, spec_hash, created_at, \
             updated_at, response) VALUES (?, 'n', 'gpt-5', ?, '{}', 'h', 1, 1, ?)",
        )
        .bind(id)
        .bind(status)
        .bind(response)
        .execute(&pool)
        .await
        .unwrap();
    };
    let insert_duplicate = async |job: &JobId, resp: &str, status: &str, response: Option<&str>| {
        sql::query(
            "INSERT INTO duplicate_responses (response_id, job_id, status, response, found_by, \
             found_at, updated_at) VALUES (?, ?, ?, ?, 'create', 1, 1)",
        )
        .bind(resp)
        .bind(job)
        .bind(status)
        .bind(response)
        .execute(&pool)
        .await
        .unwrap();
    };
    let statuses = ["completed", "failed", "incomplete", "cancelled"];
    let mut finished = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let id = JobId::generate();
        insert_job(&id, statuses[i % 4], Some(text)).await;
        let dup = format!("resp_dup{i}");
        insert_duplicate(&id, &dup, statuses[(i + 1) % 4], Some(text)).await;
        finished.push((id, dup, text));
    }
    // Not backfilled: unfinished, or no response.
    let full = responses()[2].to_string();
    let running = JobId::generate();
    insert_job(&running, "in_progress", Some(&full)).await;
    insert_duplicate(&running, "resp_running", "in_progress", Some(&full)).await;
    let bare = JobId::generate();
    insert_job(&bare, "cancelled", None).await;
    insert_duplicate(&bare, "resp_bare", "cancelled", None).await;
    sql::query(
        "INSERT INTO job_summaries (id, name, model, status, created_at, finished_at, \
         pruned_at) VALUES ('job_pruned', 'n', 'gpt-5', 'completed', 1, 2, 3)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = Store::connect(&url).await.unwrap();
    let columns = async |table: &str, key: &str, value: &str| -> ToolColumns {
        sql::query_as(AssertSqlSafe(format!(
            "SELECT {} FROM {table} WHERE {key} = ?",
            super::TOOL_COLUMNS
        )))
        .bind(value)
        .fetch_one(&store.pool)
        .await
        .unwrap()
    };
    let mut reached = ToolUsage::default();
    for (id, dup, text) in &finished {
        let want = want(text);
        reached.add(&want.usage().unwrap());
        assert_eq!(
            columns("jobs", "id", id.as_str()).await,
            want,
            "jobs: {text}"
        );
        assert_eq!(
            columns("duplicate_responses", "response_id", dup).await,
            want,
            "duplicates: {text}"
        );
    }
    // Every column was exercised with something other than 0.
    assert!(
        reached.web_search_calls > 0
            && reached.web_search_preview_calls > 0
            && reached.file_search_calls > 0
            && reached.code_containers > 0
            && reached.images > 0
            && reached.image_fee_microusd > 0,
        "{reached:?}"
    );
    for (table, key, value) in [
        ("jobs", "id", running.as_str()),
        ("jobs", "id", bare.as_str()),
        ("duplicate_responses", "response_id", "resp_running"),
        ("duplicate_responses", "response_id", "resp_bare"),
        ("job_summaries", "id", "job_pruned"),
    ] {
        assert_eq!(
            columns(table, key, value).await,
            ToolColumns::default(),
            "{table} {value}"
        );
    }
    store.close().await;
}

/// The write path: a job's final observation records its tool usage and tier with its
/// tokens (images at the prices in the context); an earlier, unfinished one records none;
/// the row reads them back.
#[tokio::test]
async fn the_final_observation_records_tool_usage() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    let id = JobId::generate();
    let spec = JobSpec::from_value(json!({"model": "gpt-5", "input": "x"}), "#1").unwrap();
    store
        .insert_job(NewJob {
            id: id.clone(),
            spec,
            spec_hash: "h".into(),
            now: 1,
            deadline_at: None,
            origin: "test".into(),
        })
        .await
        .unwrap();
    let response = json!({"status": "completed", "service_tier": "flex",
        "tools": [{"type": "web_search_preview"}],
        "output": [{"type": "web_search_call"}, {"type": "web_search_call"},
                   {"type": "code_interpreter_call", "container_id": "c"},
                   {"type": "image_generation_call", "quality": "high", "size": "1024x1536"}],
        "usage": {"input_tokens": 10, "output_tokens": 5}});
    store
        .attach_response(
            &id,
            &ResponseId::parse("resp_1").unwrap(),
            &crate::store::AttachContext::create_answered_at(1),
        )
        .await
        .unwrap();
    let mut images = ImagePrices::default();
    images.high.portrait = 0.5;
    let observe = async |status: JobStatus, now: i64| {
        let obs = Observation {
            response_id: ResponseId::parse("resp_1").unwrap(),
            status,
            output_text: None,
            usage: status.is_terminal().then(|| response["usage"].clone()),
            error: None,
            raw: response.clone(),
        };
        let ctx = ApplyContext {
            now,
            next_poll_at: now + 1000,
            poll_interval_ms: 1000,
            cancel_reason: None,
            outbox: &[],
            source: "poll",
            request_id: None,
            artifacts: &[],
            image_prices: images,
        };
        store.apply_observation(&id, &obs, &ctx).await.unwrap();
        store.get_job(&id).await.unwrap().unwrap()
    };
    let row = observe(JobStatus::InProgress, 2).await;
    assert_eq!(row.tools, ToolColumns::default(), "nothing before the end");
    let row = observe(JobStatus::Completed, 3).await;
    assert_eq!(
        row.tools.usage(),
        Some(ToolUsage {
            web_search_calls: 2,
            web_search_preview_calls: 2,
            file_search_calls: 0,
            code_containers: 1,
            images: 1,
            image_fee_microusd: 500_000,
        })
    );
    assert_eq!(row.tools.service_tier.as_deref(), Some("flex"));
    assert_eq!(row.tools.tier(), crate::pricing::ServiceTier::Flex);
    store.close().await;
}
