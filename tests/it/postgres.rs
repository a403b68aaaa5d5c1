//! Issue 15, "Growing past one machine": the store on PostgreSQL. Each test makes a fresh
//! database on the server `RESPOOL_TEST_POSTGRES` names (`.ci/run` starts a throwaway one
//! with `.ci/postgres`); the same statements the SQLite suite proves run here.
//!
//! Without the variable there is no server to run against: each test says so and returns,
//! unless `RESPOOL_REQUIRE_POSTGRES=1` (as in `.ci/run`), where that is a failure.

use std::collections::BTreeMap;

use respool::job::{JobId, JobStatus, Observation, ResponseId};
use respool::store::{
    ApplyContext, ApplyOutcome, Attach, Backend, ClaimLimits, JobFilter, Lease, Store,
};
use serde_json::json;

use crate::helpers::{ledger, postgres};

/// A store on a fresh PostgreSQL database, or `None` when the run has no server.
async fn store() -> Option<(String, Store)> {
    let Some(server) = postgres::server() else {
        assert!(
            std::env::var("RESPOOL_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "RESPOOL_REQUIRE_POSTGRES=1 but RESPOOL_TEST_POSTGRES is not set"
        );
        eprintln!("no RESPOOL_TEST_POSTGRES: nothing to run this PostgreSQL test against");
        return None;
    };
    let url = postgres::fresh_database(&server).await;
    let store = Store::connect(&url).await.unwrap();
    Some((url, store))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn insert(store: &Store, name: &str, input: &str, now: i64) -> JobId {
    ledger::insert(
        store,
        json!({"name": name, "model": "gpt-5", "input": input}),
        name,
        now,
    )
    .await
}

#[tokio::test]
async fn an_empty_database_is_migrated_once_and_takes_writes() {
    let Some((url, store)) = store().await else {
        return;
    };
    assert_eq!(store.backend(), Backend::Postgres);
    store.check_writable(now_ms()).await.unwrap();
    store.close().await;
    // A second start finds every migration applied and changes nothing.
    let again = Store::connect(&url).await.unwrap();
    again.check_writable(now_ms()).await.unwrap();
    again.close().await;
}

/// A job is taken in, claimed, sent, and ends completed, with its text (non-ASCII and
/// ASCII, one long line) and usage kept exactly: the ledger's statements on PostgreSQL.
#[tokio::test]
async fn a_job_goes_through_the_ledger() {
    let Some((_url, store)) = store().await else {
        return;
    };
    let now = now_ms();
    let id = insert(&store, "zürich-report", "Écris sur Zürich.", now).await;
    let other = insert(&store, "plain", "Write about walruses.", now + 1).await;
    let per_model = BTreeMap::new();
    let limits = ClaimLimits {
        max_in_flight: 10,
        per_model: &per_model,
        over_budget: None,
    };
    let claim = store
        .claim_submission(now + 2, Lease::unowned(60_000), &limits)
        .await
        .unwrap()
        .claim
        .expect("a job is claimed");
    assert_eq!(claim.id, id, "the older job goes first");
    let rid = ResponseId::parse("resp_pg1").unwrap();
    let ctx = ledger::attach_ctx(now + 3);
    let attached = store.attach_response(&id, &rid, &ctx).await.unwrap();
    assert!(matches!(attached, Attach::Attached { .. }), "{attached:?}");
    let text = format!("Zürich – {}", "long line ".repeat(20_000));
    let usage = json!({"input_tokens": 12, "input_tokens_details": {"cached_tokens": 2},
                       "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 5},
                       "total_tokens": 42});
    let obs = Observation {
        response_id: rid.clone(),
        status: JobStatus::Completed,
        output_text: Some(text.clone()),
        usage: Some(usage.clone()),
        error: None,
        raw: json!({"id": "resp_pg1", "status": "completed", "output": [], "usage": usage}),
    };
    let apply = ApplyContext {
        now: now + 4,
        next_poll_at: now + 5,
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
    let row = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::Completed);
    assert_eq!(row.output_text.as_deref(), Some(text.as_str()));
    assert_eq!(row.usage, Some(usage));
    assert_eq!(row.response_id.as_ref(), Some(&rid));
    // The same observation again moves nothing.
    let again = store.apply_observation(&id, &obs, &apply).await.unwrap();
    assert!(
        !matches!(again, ApplyOutcome::Applied { from, .. } if from != JobStatus::Completed),
        "{again:?}"
    );
    let listed = store
        .list_jobs(&JobFilter {
            limit: 10,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = listed.iter().map(|j| j.id.clone()).collect();
    assert_eq!(ids, vec![other.clone(), id.clone()], "newest first");
    let events = store.list_events(&id).await.unwrap();
    assert!(events.len() >= 3, "{events:?}");
}

/// A daemon on PostgreSQL keeps its create journal in the state directory (there is no
/// database file to keep it beside): a response id whose ledger write failed is not held in
/// memory only.
#[tokio::test]
async fn the_create_journal_is_kept_in_the_state_directory() {
    if postgres::server().is_none() {
        assert!(
            std::env::var("RESPOOL_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "RESPOOL_REQUIRE_POSTGRES=1 but RESPOOL_TEST_POSTGRES is not set"
        );
        eprintln!("no RESPOOL_TEST_POSTGRES: nothing to run this PostgreSQL test against");
        return;
    }
    let server = postgres::server().unwrap();
    let url = postgres::fresh_database(&server).await;
    let app =
        crate::helpers::spawn_app_with(move |c| c.database = Some(url), crate::helpers::fast_sim())
            .await;
    let id = app.submit(&crate::helpers::job_body("journaled")).await;
    let job = app
        .wait_terminal(&id, std::time::Duration::from_secs(30))
        .await;
    assert_eq!(job.status, JobStatus::Completed);
    let journal = app.dir.path().join("respool.created");
    assert!(journal.is_dir(), "no journal in the state directory");
    assert!(
        std::fs::read_dir(&journal).unwrap().count() >= 1,
        "the daemon's journal file is missing"
    );
    app.stop().await;
}

/// Daemons on one database wake each other (`LISTEN`/`NOTIFY`): a daemon hears another's
/// wake-up at once, and not its own.
#[tokio::test]
async fn daemons_hear_each_others_wake_ups_and_not_their_own() {
    let Some((url, a)) = store().await else {
        return;
    };
    let b = Store::connect(&url).await.unwrap();
    let mut heard_by_a = a
        .listen_to_peers("daemon-a")
        .await
        .unwrap()
        .expect("PostgreSQL listens");
    // Its own wake-up: nothing heard.
    a.notify_peers("daemon-a").await.unwrap();
    let own = tokio::time::timeout(std::time::Duration::from_millis(500), heard_by_a.next()).await;
    assert!(own.is_err(), "a daemon heard its own wake-up");
    // Another's: heard (and one that came meanwhile is not lost behind the skipped one).
    b.notify_peers("daemon-b").await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), heard_by_a.next())
        .await
        .expect("daemon a hears daemon b within 10 s")
        .unwrap();
    // Several in a burst: each one heard.
    for _ in 0..3 {
        b.notify_peers("daemon-b").await.unwrap();
    }
    for _ in 0..3 {
        tokio::time::timeout(std::time::Duration::from_secs(10), heard_by_a.next())
            .await
            .expect("every wake-up of a burst is heard")
            .unwrap();
    }
}

/// The writes whose condition reads rows they do not change (a cancel, a job given a file),
/// or that change many rows at once, are made under the write lock, as on SQLite: while
/// another session holds it none of them gets through, and each does once it is let go.
/// Before, they ran beside it: under READ COMMITTED a handler could start for a job another
/// daemon was cancelling, a file be deleted while a job was given it, and a many-row update
/// deadlock with another daemon's transaction.
#[tokio::test]
async fn writes_that_read_other_rows_wait_for_the_write_lock() {
    use sqlx::Connection;

    let Some((url, store)) = store().await else {
        return;
    };
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(respool::store::WRITE_LOCK)
        .execute(&mut holder)
        .await
        .unwrap();
    let now = now_ms();
    let id = JobId::generate();
    let upload = respool::store::StaleUpload {
        sha256: "00".repeat(32),
        purpose: "user_data".into(),
        file_id: "file_stale".into(),
    };
    let mut writes = tokio::task::JoinSet::new();
    let mut spawn = |name: &'static str, write: futures::future::BoxFuture<'static, u64>| {
        writes.spawn(async move { (name, write.await) });
    };
    let s = store.clone();
    let job = id.clone();
    spawn(
        "start_action",
        Box::pin(async move { u64::from(s.start_action(&job, 1, "fc_1", now).await.unwrap()) }),
    );
    let s = store.clone();
    spawn(
        "take_stale_upload",
        Box::pin(async move { u64::from(s.take_stale_upload(&upload, now).await.unwrap()) }),
    );
    let s = store.clone();
    spawn(
        "pull_in_polls",
        Box::pin(async move { s.pull_in_polls(now, 1_000).await.unwrap() }),
    );
    let s = store.clone();
    spawn(
        "prune_deliveries",
        Box::pin(async move { s.prune_deliveries(now).await.unwrap() }),
    );
    let s = store.clone();
    spawn(
        "prune_attachments",
        Box::pin(async move { s.prune_attachments(now).await.unwrap() }),
    );
    // Proving that nothing happens takes a wait: long enough for a statement that does not
    // wait for the lock to have run many times over.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    if let Some(done) = writes.try_join_next() {
        panic!(
            "{} ran while another session held the write lock",
            done.unwrap().0
        );
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(respool::store::WRITE_LOCK)
        .execute(&mut holder)
        .await
        .unwrap();
    let mut done = Vec::new();
    while let Some(w) = tokio::time::timeout(std::time::Duration::from_secs(10), writes.join_next())
        .await
        .expect("the writes go on once the lock is let go")
    {
        done.push(w.unwrap());
    }
    assert_eq!(done.len(), 5);
    assert!(
        done.iter().all(|(_, n)| *n == 0),
        "nothing to change: {done:?}"
    );
    store.close().await;
}

/// `/readyz`'s probe takes the same write lock as every write transaction (one helper takes it
/// for both), waiting only its short timeout: while another session holds the lock it answers
/// "locked" within seconds, and once the lock is let go the database takes its write again.
#[tokio::test]
async fn readiness_says_locked_while_another_session_holds_the_write_lock() {
    use sqlx::Connection;

    let Some((url, store)) = store().await else {
        return;
    };
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(respool::store::WRITE_LOCK)
        .execute(&mut holder)
        .await
        .unwrap();
    let asked = std::time::Instant::now();
    let err = store.check_writable(now_ms()).await.unwrap_err();
    assert!(
        matches!(err, respool::store::NotWritable::Locked(_)),
        "{err:?}"
    );
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(5),
        "the probe waited {:?}, not its short timeout",
        asked.elapsed()
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(respool::store::WRITE_LOCK)
        .execute(&mut holder)
        .await
        .unwrap();
    store.check_writable(now_ms()).await.unwrap();
    store.close().await;
}

/// Two daemons claim polls and notifications side by side without the write lock (`FOR
/// UPDATE SKIP LOCKED`): while another session holds that lock both still claim, and no row
/// is claimed by both (a notification claimed twice would be sent twice).
#[tokio::test]
async fn daemons_claim_polls_and_notifications_side_by_side_never_the_same_row() {
    use sqlx::Connection;

    let Some((url, a)) = store().await else {
        return;
    };
    let b = Store::connect(&url).await.unwrap();
    let now = now_ms();
    let per_model = BTreeMap::new();
    let limits = ledger::limits(1_000, &per_model);
    const JOBS: usize = 60;
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..JOBS {
        let id = insert(&a, &format!("job-{i}"), "poll me", now).await;
        let claim = a
            .claim_submission(now, Lease::unowned(60_000), &limits)
            .await
            .unwrap()
            .claim
            .expect("claimed");
        let rid = ResponseId::parse(&format!("resp_skip{i}")).unwrap();
        a.attach_response(&claim.id, &rid, &ledger::attach_ctx(now))
            .await
            .unwrap();
        ids.insert(id.to_string());
    }
    let mut plant = sqlx::PgConnection::connect(&url).await.unwrap();
    for id in &ids {
        sqlx::query(
            "INSERT INTO notifications (job_id, sink, event, state, next_attempt_at, created_at) \
             VALUES ($1, 'hook', 'job.completed', 'pending', $2, $2)",
        )
        .bind(id)
        .bind(now)
        .execute(&mut plant)
        .await
        .unwrap();
    }
    // Another session holds the write lock all along.
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(respool::store::WRITE_LOCK)
        .execute(&mut plant)
        .await
        .unwrap();

    let claim_all = |store: Store| async move {
        let (mut polls, mut notes) = (Vec::new(), Vec::new());
        loop {
            let p = store.claim_polls(now + 10, 60_000, 3).await.unwrap();
            let n = store
                .claim_notifications(now + 10, 60_000, 3)
                .await
                .unwrap();
            if p.is_empty() && n.is_empty() {
                return (polls, notes);
            }
            polls.extend(p.into_iter().map(|c| c.id.to_string()));
            notes.extend(n.into_iter().map(|r| r.job_id.to_string()));
        }
    };
    let within = std::time::Duration::from_secs(60);
    let (from_a, from_b) = tokio::time::timeout(
        within,
        futures::future::join(claim_all(a.clone()), claim_all(b.clone())),
    )
    .await
    .expect("claims do not wait for the write lock");
    for (what, of_a, of_b) in [
        ("poll", &from_a.0, &from_b.0),
        ("notification", &from_a.1, &from_b.1),
    ] {
        let mut all: Vec<&String> = of_a.iter().chain(of_b).collect();
        all.sort();
        let claimed = all.len();
        all.dedup();
        assert_eq!(claimed, all.len(), "a {what} was claimed twice");
        assert_eq!(
            all.into_iter()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>(),
            ids,
            "every {what} is claimed once"
        );
    }
    let _ = plant.close().await;
    a.close().await;
    b.close().await;
}
