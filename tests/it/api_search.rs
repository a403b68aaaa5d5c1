//! Finding jobs: full-text search over name, input and output (hostile input included), and the
//! model and metadata filters, documented in the OpenAPI.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers;

const DEADLINE: Duration = Duration::from_secs(30);

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The ids `GET /v1/jobs?{query}` returns, asserting a 200.
async fn ids(app: &helpers::TestApp, query: &str) -> Vec<String> {
    let (status, body) = app.get(&format!("/v1/jobs?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn search_finds_jobs_by_name_input_and_output() {
    let app = helpers::spawn_app().await;
    let walrus = app
        .submit(
            &json!({"name": "zoo-report", "model": "gpt-5", "input": "Tell me about the walrus."}),
        )
        .await;
    let items = app
        .submit(&json!({"name": "items", "model": "gpt-5", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Describe the narwhal"}]},
            {"role": "user", "content": "and the ocelot"}
        ]}))
        .await;
    let other = app.submit(&helpers::job_body("penguins")).await;

    assert_eq!(ids(&app, "search=walrus").await, vec![walrus.clone()]);
    assert_eq!(ids(&app, "search=Zoo-Report").await, vec![walrus.clone()]);
    assert_eq!(ids(&app, "search=narwhal").await, vec![items.clone()]);
    assert_eq!(ids(&app, "search=ocelot").await, vec![items.clone()]);
    // Every word must match.
    assert_eq!(
        ids(&app, "search=walrus%20narwhal").await,
        Vec::<String>::new()
    );
    assert_eq!(ids(&app, "search=").await.len(), 3);

    // Output text is indexed once the job finishes.
    let done = app.wait_terminal(&other, DEADLINE).await;
    let output = done.output_text.unwrap();
    let input_words = "penguins write about";
    let word = output
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| w.len() > 3 && !input_words.contains(&w.to_lowercase()))
        .expect("a word only the output has")
        .to_string();
    let found = ids(&app, &format!("search={}", enc(&word))).await;
    assert!(found.contains(&other), "{word}: {found:?}");
}

#[tokio::test]
async fn hostile_search_text_is_never_a_server_error() {
    let app = helpers::spawn_app().await;
    let id = app
        .submit(&json!({"name": "foo", "model": "gpt-5", "input": "foo bar: baz"}))
        .await;
    for text in [
        "\"foo OR -bar:\"",
        "foo OR -bar:",
        "\"",
        "\"\"\"",
        "-",
        "*",
        "name:foo",
        "NEAR(foo bar)",
        "foo AND",
        "(",
        "^foo",
        "{name}: x",
        "'; DROP TABLE jobs; --",
        "\u{0}",
    ] {
        let (status, body) = app.get(&format!("/v1/jobs?search={}", enc(text))).await;
        assert_eq!(status, 200, "{text:?}: {body}");
    }
    // Operators are words: `foo OR -bar:` needs the tokens foo, or and bar.
    assert!(ids(&app, &format!("search={}", enc("foo bar:"))).await == vec![id.clone()]);
    assert!(
        ids(&app, &format!("search={}", enc("foo OR -bar:")))
            .await
            .is_empty()
    );
    // The job is still there.
    assert_eq!(ids(&app, "").await, vec![id]);
}

#[tokio::test]
async fn model_and_metadata_filters() {
    let app = helpers::spawn_app().await;
    let a = app
        .submit(&json!({"name": "a", "model": "gpt-5", "input": "x",
                "metadata": {"team": "blue", "env": "prod"}}))
        .await;
    let b = app
        .submit(&json!({"name": "b", "model": "gpt-5-mini", "input": "x",
                "metadata": {"team": "blue", "env": "dev"}}))
        .await;
    let c = app
        .submit(&json!({"name": "c", "model": "gpt-5", "input": "x"}))
        .await;

    assert_eq!(ids(&app, "model=gpt-5-mini").await, vec![b.clone()]);
    assert_eq!(ids(&app, "model=gpt-5").await, vec![c.clone(), a.clone()]);
    assert_eq!(
        ids(&app, "metadata=team%3Dblue").await,
        vec![b.clone(), a.clone()]
    );
    assert_eq!(
        ids(&app, "metadata=team%3Dblue&metadata=env%3Dprod").await,
        vec![a.clone()]
    );
    assert_eq!(ids(&app, "metadata=team%3Dblue&model=gpt-5").await, vec![a]);
    assert!(ids(&app, "metadata=team%3Dred").await.is_empty());
    // A key with JSON-path characters is just a key.
    assert!(
        ids(&app, &format!("metadata={}", enc("a.b\"[0]=x")))
            .await
            .is_empty()
    );

    let (status, body) = app.get("/v1/jobs?metadata=novalue").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "metadata");
}

#[tokio::test]
async fn the_openapi_document_lists_the_new_filters() {
    let app = helpers::spawn_app().await;
    let doc: Value = app
        .request(reqwest::Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let params: Vec<&str> = doc["paths"]["/v1/jobs"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for want in ["search", "model", "metadata"] {
        assert!(params.contains(&want), "{params:?}");
    }
}

#[tokio::test]
async fn a_pruned_job_leaves_the_search_index() {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    let app = helpers::spawn_app_with(
        |cfg| cfg.retention.jobs = Some(30 * DAY),
        helpers::fast_sim(),
    )
    .await;
    let old = app
        .submit(&json!({"name": "old", "model": "gpt-5", "input": "About the axolotl."}))
        .await;
    app.wait_terminal(&old, DEADLINE).await;
    assert_eq!(ids(&app, "search=axolotl").await, vec![old]);
    app.clock.advance(31 * DAY);
    let new = app
        .submit(&json!({"name": "new", "model": "gpt-5", "input": "Also the axolotl."}))
        .await;
    app.wait_terminal(&new, DEADLINE).await;
    // The maintenance loop may have pruned the old job already; now it surely has.
    app.orchestrator.prune_now().await.unwrap();
    assert_eq!(ids(&app, "search=axolotl").await, vec![new]);
    // Nothing of the pruned job is left in the index: one key and one row per job.
    assert_eq!(app.count_rows("jobs").await, 1);
    if app.db_url.starts_with("postgres") {
        assert_eq!(app.count_rows("jobs_search").await, 1);
    } else {
        assert_eq!(app.count_rows("jobs_fts_keys").await, 1);
        assert_eq!(app.count_rows("jobs_fts").await, 1);
    }
}

/// A database made before search was keyed by integer (migrations up to 20261125000005) keeps
/// every job findable after the upgrade, by name, input and output.
#[tokio::test]
async fn an_older_database_is_searchable_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let old_migrations = dir.path().join("migrations");
    std::fs::create_dir(&old_migrations).unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.as_str() <= "20261125000005_search.sql" {
            std::fs::copy(&path, old_migrations.join(&name)).unwrap();
        }
    }
    let db = dir.path().join("old.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let migrator = sqlx::migrate::Migrator::new(old_migrations.as_path())
            .await
            .unwrap();
        migrator.run(&pool).await.unwrap();
        for (id, name, input, output) in [
            (
                "job_01HXDAAAAAAAAAAAAAAAAAAAAA",
                "capybara-brief",
                "hello",
                None,
            ),
            (
                "job_01HXDBBBBBBBBBBBBBBBBBBBBB",
                "other",
                "Tell me about the quokka.",
                Some("The marmot is the answer."),
            ),
        ] {
            let spec = respool::job::JobSpec::from_value(
                json!({"name": name, "model": "gpt-5", "input": input}),
                "#1",
            )
            .unwrap();
            let spec = serde_json::to_value(&spec).unwrap();
            sqlx::query(
                "INSERT INTO jobs (id, name, model, status, spec, spec_hash, created_at, \
                 updated_at, next_check_at, output_text) \
                 VALUES (?, ?, 'gpt-5', 'completed', ?, 'h', 1, 1, 1, ?)",
            )
            .bind(id)
            .bind(name)
            .bind(spec.to_string())
            .bind(output)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }

    let store = respool::store::Store::connect(&url).await.unwrap();
    let found = |words: &str| {
        let store = store.clone();
        let words = words.to_string();
        async move {
            let filter = respool::store::JobFilter {
                search: Some(words),
                limit: 10,
                ..respool::store::JobFilter::default()
            };
            let rows = store.list_jobs(&filter).await.unwrap();
            rows.into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(found("capybara").await, ["job_01HXDAAAAAAAAAAAAAAAAAAAAA"]);
    assert_eq!(found("quokka").await, ["job_01HXDBBBBBBBBBBBBBBBBBBBBB"]);
    assert_eq!(found("marmot").await, ["job_01HXDBBBBBBBBBBBBBBBBBBBBB"]);
    store.close().await;
}
