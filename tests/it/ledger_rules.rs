//! Issue 10, "every paid response reaches its owner": the ledger rules behind it, each shown
//! against a real SQLite file, through the real daemon and the in-process simulator where the
//! rule is about the daemon.
//!
//! - a row that does not decode is set aside (quarantined) and the other jobs go on, at the
//!   submit and at the poll stage;
//! - a 404 poll is confirmed before the job fails with `response_not_found`, and the response
//!   is cancelled;
//! - a response id only the create journal knows is adopted at the next start (no second create);
//! - a stale worker's `finish_unsubmitted` is fenced by the attempt;
//! - a start leaves a live submission lease alone and turns only an expired one uncertain;
//! - over random sequences of store operations, a terminal result is never rewritten, a
//!   revealed response is never dropped and a job never holds two.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use respool::job::{JobError, JobId, JobStatus, Observation, ResponseId};
use respool::orchestrator::journal::{self, Journal};
use respool::sim::{Faults, SimConfig};
use respool::store::{
    ApplyContext, ApplyOutcome, Attach, AttachContext, ClaimLimits, JobRow, Lease, NewDuplicate,
    ObservationWrite, OutboxEntry, Store, SubmitState, UncertainWait,
};
use serde_json::json;

use crate::helpers;
use crate::helpers::db;
use crate::helpers::ledger;

const DEADLINE: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn open_store(db: &Path) -> Store {
    Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap()
}

/// Inserts a plain job created at `now`; returns its id.
async fn insert_job(store: &Store, name: &str, now: i64) -> JobId {
    ledger::insert(store, helpers::job_body(name), name, now).await
}

fn no_limits(per_model: &BTreeMap<String, usize>) -> ClaimLimits<'_> {
    ledger::limits(1_000, per_model)
}

/// Writes `sql` (binding `id`) to the database file through a connection of its own, the way
/// a bad migration, a manual edit or a newer version's row would arrive.
async fn write_row(db: &Path, sql: &'static str, id: &str) {
    write_row_at(&format!("sqlite://{}", db.display()), sql, id).await;
}

/// [`write_row`] on the database at `url`, of either backend.
async fn write_row_at(url: &str, sql: &'static str, id: &str) {
    let mut conn = db::open(url).await;
    let n = sqlx::query(sql)
        .bind(id)
        .execute(&mut conn)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 1, "{sql}");
    db::close_any(conn).await;
}

/// A spec that is not even JSON any more.
const CORRUPT_SPEC: &str = "UPDATE jobs SET spec = '{\"model\": \"gpt-5\", \"inp' WHERE id = $1";

/// A few columns of a job, read directly (the API refuses a row that does not decode).
#[derive(Debug, sqlx::FromRow)]
struct RawJob {
    status: String,
    submit_state: String,
    attempt: i64,
    submissions: i64,
    polls: i64,
    quarantine: Option<String>,
}

async fn raw_job(db: &Path, id: &str) -> RawJob {
    raw_job_at(&format!("sqlite://{}", db.display()), id).await
}

/// [`raw_job`] from the database at `url`, of either backend.
async fn raw_job_at(url: &str, id: &str) -> RawJob {
    let mut conn = db::open(url).await;
    let row = sqlx::query_as::<_, RawJob>(
        "SELECT status, submit_state, attempt, submissions, polls, quarantine FROM jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    db::close_any(conn).await;
    row
}

/// The kinds of a job's timeline, read from the file through a store of its own.
async fn event_kinds(db: &Path, id: &str) -> Vec<String> {
    let store = open_store(db).await;
    let kinds = store
        .list_events(&JobId::parse(id).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    store.close().await;
    kinds
}

/// `respool_quarantined_jobs_total{worker="…"}` from the daemon's `/metrics` (0 if absent).
async fn quarantined_metric(app: &helpers::TestApp, worker: &str) -> f64 {
    app.labelled_metric("respool_quarantined_jobs_total", "worker", worker)
        .await
        .unwrap_or(0.0)
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

async fn post(app: &helpers::TestApp, body: &serde_json::Value) -> String {
    let (status, job) = app.post_job(body).await;
    assert_eq!(status, 201, "{job}");
    job["id"].as_str().unwrap().to_string()
}

fn with_sim(name: &str, sim: &str) -> serde_json::Value {
    let mut body = helpers::job_body(name);
    body["metadata"] = json!({ "sim": sim });
    body
}

/// The oldest pending job's spec no longer decodes: the claim sets it aside (an event, the
/// metric) and goes on to the next job in the same pass, so the jobs behind it are submitted
/// and complete. The bad row is never claimed again and nothing was sent for it.
#[tokio::test]
async fn an_undecodable_job_is_quarantined_at_submit_and_the_others_complete() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let store = open_store(&db).await;
    let now = now_ms();
    // Oldest first: the bad row is the first one every claim looks at.
    let bad = insert_job(&store, "corrupt", now - 2).await;
    let good = insert_job(&store, "good", now - 1).await;
    let also_good = insert_job(&store, "also-good", now).await;
    store.close().await;
    write_row(&db, CORRUPT_SPEC, &bad).await;

    let path = db.display().to_string();
    let app = helpers::spawn_app_with(move |c| c.database = Some(path), helpers::fast_sim()).await;
    for id in [&good, &also_good] {
        let job = app.wait_terminal(id, DEADLINE).await;
        assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    }
    assert!(quarantined_metric(&app, "submit").await >= 1.0);
    for _ in 0..3 {
        app.orchestrator.run_once().await.unwrap();
    }
    let row = raw_job(&db, &bad).await;
    assert!(
        row.quarantine
            .as_deref()
            .is_some_and(|q| q.contains("does not decode")),
        "{row:?}"
    );
    // The claim was undone: no create counted, none sent, still pending.
    assert_eq!(
        (row.status.as_str(), row.submit_state.as_str()),
        ("pending", "ready"),
        "{row:?}"
    );
    assert_eq!((row.attempt, row.submissions), (0, 0), "{row:?}");
    assert!(app.sim.responses(Some(&bad)).is_empty());
    // The API still lists the other jobs (the bad row is left out) and shows the bad job's
    // timeline, where the reason is.
    let (status, list) = app.get("/v1/jobs").await;
    assert_eq!(status, 200, "{list}");
    let listed: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&good.as_str()) && listed.contains(&also_good.as_str()));
    assert!(!listed.contains(&bad.as_str()), "{listed:?}");
    assert_eq!(app.count_events(&bad, "quarantined").await, 1);
    // The job itself answers with an error that says what is wrong and where to look.
    let (status, one) = app.get(&format!("/v1/jobs/{bad}")).await;
    assert_eq!(status, 500, "{one}");
    let message = one["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("does not decode") && message.contains("/events"),
        "{one}"
    );
    let kinds = event_kinds(&db, &bad).await;
    assert_eq!(count(&kinds, "quarantined"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "submitting"), 0, "{kinds:?}");
    app.stop().await;
}

/// A job in flight whose row stops decoding is quarantined by the poll worker (which reads the
/// row to apply what it saw); it is not polled again, and the other jobs are polled to the end.
#[tokio::test]
async fn a_job_in_flight_whose_row_stops_decoding_is_quarantined_at_poll() {
    let app = helpers::spawn_app().await;
    let db = app.db_url.clone();
    let bad = post(&app, &with_sim("breaks", "run=20s;webhook=drop")).await;
    app.wait_for(&bad, DEADLINE, |j| j.response_id.is_some())
        .await;
    write_row_at(&db, CORRUPT_SPEC, &bad).await;
    let good = post(&app, &with_sim("fine", "run=1s;webhook=drop")).await;

    let deadline = tokio::time::Instant::now() + DEADLINE;
    while raw_job_at(&db, &bad).await.quarantine.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "never quarantined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = app.wait_terminal(&good, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert!(quarantined_metric(&app, "poll").await >= 1.0);

    let before = raw_job_at(&db, &bad).await;
    app.clock.advance(Duration::from_secs(60));
    for _ in 0..3 {
        app.orchestrator.run_once().await.unwrap();
    }
    let after = raw_job_at(&db, &bad).await;
    assert_eq!(after.polls, before.polls, "a quarantined job is not polled");
    assert_eq!(after.status, before.status);
    let kinds = app.event_kinds(&bad).await;
    assert_eq!(count(&kinds, "quarantined"), 1, "{kinds:?}");
    app.stop().await;
}

/// One 404 (a read that lags, a misrouted request) is not proof the response is gone: the job
/// is polled again and completes with its result, and nothing is cancelled.
#[tokio::test]
async fn a_single_404_poll_does_not_fail_the_job() {
    let app = helpers::spawn_app().await;
    let id = post(&app, &with_sim("lagging", "run=2s;webhook=drop")).await;
    app.wait_for(&id, DEADLINE, |j| j.response_id.is_some())
        .await;
    app.sim.set_faults(Faults {
        not_found_next: 1,
        webhook_drop: 1.0,
        ..Faults::default()
    });
    app.wait_until("a poll answered 404", DEADLINE, async || {
        app.count_events(&id, "poll_not_found").await == 1
    })
    .await;
    // The confirming poll is due 5 s later on the daemon's clock.
    app.clock.advance(Duration::from_secs(6));
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert!(job.error.is_none(), "{job:?}");
    assert_eq!(app.count_events(&id, "poll_not_found").await, 1);
    assert_eq!(app.sim.stats().cancels, 0);
    app.stop().await;
}

/// A response deleted upstream answers 404 to every poll: the job fails with
/// `response_not_found` only after the confirmations (`poll_not_found` events first), and a
/// cancel is sent in case it still runs somewhere.
#[tokio::test]
async fn a_response_gone_for_good_fails_the_job_after_confirmations_and_a_cancel() {
    let app = helpers::spawn_app().await;
    let id = post(&app, &with_sim("deleted", "run=60s;webhook=drop")).await;
    let rid = app
        .wait_for(&id, DEADLINE, |j| j.response_id.is_some())
        .await
        .response_id
        .unwrap();
    let r = reqwest::Client::new()
        .delete(format!("{}/responses/{rid}", app.sim.base_url()))
        .bearer_auth("sk-test-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let deadline = tokio::time::Instant::now() + DEADLINE;
    let job = loop {
        let job = app.job(&id).await;
        if job.status.is_terminal() {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "{job:?}");
        // Each confirming poll waits 5 s on the daemon's clock.
        if app.count_events(&id, "poll_not_found").await > 0 {
            app.clock.advance(Duration::from_secs(1));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.unwrap();
    assert_eq!(error.code, "response_not_found");
    assert!(
        error.message.contains("3 polls in a row"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("a cancel found nothing either"),
        "{}",
        error.message
    );
    assert_eq!(job.response_id.as_deref(), Some(rid.as_str()));
    let kinds = app.event_kinds(&id).await;
    assert_eq!(count(&kinds, "poll_not_found"), 2, "{kinds:?}");
    let failed_at = kinds.iter().rposition(|k| k == "status").unwrap();
    let confirmed_at = kinds.iter().rposition(|k| k == "poll_not_found").unwrap();
    assert!(confirmed_at < failed_at, "{kinds:?}");
    assert!(app.sim.stats().cancels >= 1, "a cancel was attempted");
    app.stop().await;
}

/// A daemon received a create's answer and wrote its id to its journal, then died before the
/// ledger write: the job is still `submitting` under a lease that runs for minutes. The next
/// daemon replays the journal at start and the job adopts that response: no second create.
#[tokio::test]
async fn a_response_id_only_the_journal_knows_is_adopted_at_the_next_start() {
    let sim = respool::sim::spawn(helpers::fast_sim()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let store = open_store(&db).await;
    let id = insert_job(&store, "journaled", now_ms()).await;
    let per_model = BTreeMap::new();
    let claim = store
        .claim_submission(now_ms(), Lease::unowned(600_000), &no_limits(&per_model))
        .await
        .unwrap()
        .claim
        .unwrap();
    assert_eq!(claim.id, id);
    // The create the dead daemon sent, as it sent it.
    let body = claim.spec.create_body(&id);
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/responses", sim.base_url()))
        .bearer_auth("sk-test-key")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rid = ResponseId::parse(created["id"].as_str().unwrap()).unwrap();
    // Its journal: written, synced, and its lock released when the daemon died.
    let dead = Journal::open(&journal::dir_for(&db)).unwrap();
    dead.append(&journal::Entry {
        job_id: id.clone(),
        response_id: rid.clone(),
        at: now_ms(),
    })
    .unwrap();
    drop(dead);
    store.close().await;

    let (path, upstream) = (db.display().to_string(), sim.base_url());
    let app = helpers::spawn_app_with(
        move |c| {
            c.database = Some(path);
            c.upstream.base_url = upstream;
        },
        SimConfig::default(),
    )
    .await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(job.response_id.as_deref(), Some(rid.as_str()));
    let responses = sim.responses(Some(&id));
    assert_eq!(responses.len(), 1, "{responses:?}");
    let kinds = app.event_kinds(&id).await;
    assert_eq!(count(&kinds, "adopted"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "submitting"), 1, "{kinds:?}");
    // The dead daemon's file is replayed and removed; the live daemon's own file remains.
    let files = std::fs::read_dir(journal::dir_for(&db)).unwrap().count();
    assert_eq!(files, 1);
    app.stop().await;
    sim.shutdown().await;
}

/// A worker whose claim was superseded (the job was put back and claimed again, or its lease
/// was expired) cannot end the job: `finish_unsubmitted` with its old attempt changes nothing;
/// with the current attempt it works.
#[tokio::test]
async fn a_stale_finish_unsubmitted_is_fenced_by_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let store = open_store(&db).await;
    let per_model = BTreeMap::new();
    let limits = no_limits(&per_model);
    let now = now_ms();
    let refused = JobError {
        code: "invalid_request_error".into(),
        message: "refused".into(),
    };

    // Claimed, put back (a rate limit), claimed again.
    let id = insert_job(&store, "reclaimed", now).await;
    let first = store
        .claim_submission(now, Lease::unowned(60_000), &limits)
        .await
        .unwrap()
        .claim
        .unwrap();
    assert!(
        store
            .reschedule_submission(&id, first.attempt, now, now, "rate limited")
            .await
            .unwrap()
    );
    let second = store
        .claim_submission(now + 1, Lease::unowned(60_000), &limits)
        .await
        .unwrap()
        .claim
        .unwrap();
    assert_eq!(second.attempt, first.attempt + 1);
    let stale = store
        .finish_unsubmitted(
            &id,
            first.attempt,
            JobStatus::Failed,
            &refused,
            now + 2,
            &[],
        )
        .await
        .unwrap();
    assert!(!stale, "a stale attempt ended the job");
    let row = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::Pending);
    assert_eq!(row.submit_state, SubmitState::Submitting);
    assert!(row.error_code.is_none() && row.finished_at.is_none());
    assert!(
        store
            .finish_unsubmitted(
                &id,
                second.attempt,
                JobStatus::Failed,
                &refused,
                now + 3,
                &[]
            )
            .await
            .unwrap()
    );
    let row = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::Failed);
    assert_eq!(row.error_code.as_deref(), Some("invalid_request_error"));

    // Claimed, and its lease expired (the worker was presumed dead) while the worker still ran.
    let id = insert_job(&store, "expired", now + 10).await;
    let claim = store
        .claim_submission(now + 10, Lease::unowned(1_000), &limits)
        .await
        .unwrap()
        .claim
        .unwrap();
    let expired = store
        .expire_submission_leases(now + 5_000, UncertainWait::none(now + 5_000))
        .await
        .unwrap();
    assert_eq!(expired, vec![id.clone()]);
    assert!(
        !store
            .finish_unsubmitted(
                &id,
                claim.attempt,
                JobStatus::Failed,
                &refused,
                now + 6_000,
                &[]
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_uncertain(
                &id,
                claim.attempt,
                UncertainWait::none(now),
                now + 6_000,
                "late"
            )
            .await
            .unwrap()
    );
    let row = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::Pending);
    assert_eq!(row.submit_state, SubmitState::Uncertain);
    store.close().await;
}

/// The daemon on `db`, uncertain creates resolved (under `fail`) as soon as they are seen.
async fn start_without_uncertain_wait(db: &Path) -> helpers::TestApp {
    let path = db.display().to_string();
    helpers::spawn_app_with(
        move |c| {
            c.database = Some(path);
            c.upstream.uncertain_create_wait = Some(Duration::ZERO);
        },
        helpers::fast_sim(),
    )
    .await
}

async fn assert_failed_uncertain(app: &helpers::TestApp, id: &JobId) {
    let job = app.wait_terminal(id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().code, "submit_uncertain");
}

/// Another daemon is sending a create (its lease runs for minutes); a second one's lease ran
/// out (its worker died). Expiring leases now turns only the second uncertain, and a daemon
/// that starts on the file leaves the first alone: no uncertain event, no new attempt, no
/// create of its own. (A start used to expire every lease, live ones included.)
#[tokio::test]
async fn a_start_leaves_a_live_lease_alone_and_expires_only_a_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let store = open_store(&db).await;
    let per_model = BTreeMap::new();
    let limits = no_limits(&per_model);
    let now = now_ms();
    let dead = insert_job(&store, "dead-worker", now - 20_000).await;
    let live = insert_job(&store, "live-worker", now - 10_000).await;
    let d = store
        .claim_submission(now - 20_000, Lease::unowned(1_000), &limits)
        .await
        .unwrap()
        .claim
        .unwrap();
    assert_eq!(d.id, dead);
    let l = store
        .claim_submission(now, Lease::unowned(600_000), &limits)
        .await
        .unwrap()
        .claim
        .unwrap();
    assert_eq!(l.id, live);
    let held = store.get_job(&live).await.unwrap().unwrap();

    let expired = store
        .expire_submission_leases(now, UncertainWait::none(now))
        .await
        .unwrap();
    assert_eq!(expired, vec![dead.clone()]);
    let row = store.get_job(&live).await.unwrap().unwrap();
    assert_eq!(row.submit_state, SubmitState::Submitting);
    assert_eq!(
        (row.attempt, row.lease_until),
        (held.attempt, held.lease_until)
    );
    store.close().await;

    let app = start_without_uncertain_wait(&db).await;
    // The dead one's uncertainty is resolved by the policy (`fail`): proof passes ran.
    assert_failed_uncertain(&app, &dead).await;
    for _ in 0..3 {
        app.orchestrator.run_once().await.unwrap();
    }
    let store = open_store(&db).await;
    let row = store.get_job(&live).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::Pending);
    assert_eq!(row.submit_state, SubmitState::Submitting);
    assert_eq!(
        (row.attempt, row.lease_until),
        (held.attempt, held.lease_until)
    );
    let kinds: Vec<String> = store
        .list_events(&live)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(count(&kinds, "submit_uncertain"), 0, "{kinds:?}");
    assert!(app.sim.responses(Some(&live)).is_empty());
    store.close().await;
    app.stop().await;
}

/// A daemon died while its create hung (its lease runs for ten more minutes); another daemon
/// on the same file is alive and sending a create of its own. A daemon that starts finds the
/// first one's journal orphaned and ends only the dead daemon's lease, at once: that job is
/// uncertain (and, under `fail`, failed) without waiting the lease out; the live daemon's
/// claim and journal are untouched.
#[tokio::test]
async fn a_start_ends_at_once_only_the_leases_of_a_daemon_that_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let store = open_store(&db).await;
    let per_model = BTreeMap::new();
    let limits = no_limits(&per_model);
    let now = now_ms();
    let gone = Journal::open(&journal::dir_for(&db)).unwrap();
    let alive = Journal::open(&journal::dir_for(&db)).unwrap();
    let orphaned = insert_job(&store, "owner-gone", now - 2_000).await;
    let held = insert_job(&store, "owner-alive", now - 1_000).await;
    for (id, owner) in [(&orphaned, &gone), (&held, &alive)] {
        let lease = Lease {
            ms: 600_000,
            owner: Some(owner.instance()),
        };
        let claim = store.claim_submission(now, lease, &limits).await.unwrap();
        assert_eq!(&claim.claim.unwrap().id, id);
    }
    // The store on its own: only the named owner's lease ends.
    let other = store
        .expire_leases_of("01ARZ3NDEKTSV4RRFFQ69G5FAV", now, UncertainWait::none(now))
        .await
        .unwrap();
    assert!(other.is_empty(), "{other:?}");
    let before = store.get_job(&held).await.unwrap().unwrap();
    store.close().await;
    drop(gone);

    let app = start_without_uncertain_wait(&db).await;
    assert_failed_uncertain(&app, &orphaned).await;
    let events = app
        .orchestrator
        .store()
        .list_events(&orphaned)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "submit_uncertain" && e.message.contains("is gone")),
        "{events:?}"
    );
    for _ in 0..3 {
        app.orchestrator.run_once().await.unwrap();
    }
    let row = app
        .orchestrator
        .store()
        .get_job(&held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.submit_state, SubmitState::Submitting);
    assert_eq!(
        (row.attempt, row.lease_until),
        (before.attempt, before.lease_until)
    );
    let files: Vec<String> = std::fs::read_dir(journal::dir_for(&db))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.contains(&format!("{}.jsonl", alive.instance())),
        "the live daemon's journal went: {files:?}"
    );
    assert!(app.sim.responses(Some(&orphaned)).is_empty());
    app.stop().await;
}

/// Poll results written as one batch (one transaction) answer each as if written alone: a
/// row that no longer decodes fails only its own write, a job that is gone is `Missing`, a
/// finished job is `Final`, and the others are applied with their outputs (ASCII, non-ASCII,
/// empty, a 1 MiB line and many short lines) and their outbox rows.
#[tokio::test]
async fn a_batch_of_poll_results_answers_each_as_if_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let store = open_store(&db).await;
    let now = now_ms();
    let outputs = [
        "plain ASCII".to_string(),
        "Größe, naïve, 日本語 ✅".to_string(),
        String::new(),
        "x".repeat(1 << 20),
        "short line\n".repeat(5_000),
    ];
    let mut ids = Vec::new();
    for i in 0..outputs.len() {
        ids.push(insert_job(&store, &format!("batched-{i}"), now).await);
    }
    let broken = insert_job(&store, "broken", now).await;
    // Each holds the response it is observed with (an observation moves only its own job's).
    for id in ids.iter().chain([&broken]) {
        let rid = ResponseId::parse(&format!("resp_{}", id.as_str().to_lowercase())).unwrap();
        let ctx = ledger::attach_ctx(now);
        store.attach_response(id, &rid, &ctx).await.unwrap();
    }
    let finished = ids[0].clone();
    let gone = JobId::generate();
    let write = |id: &JobId, output: &str| ObservationWrite {
        id: id.clone(),
        obs: Observation {
            response_id: ResponseId::parse(&format!("resp_{}", id.as_str().to_lowercase()))
                .unwrap(),
            status: JobStatus::Completed,
            output_text: Some(output.to_string()),
            usage: Some(json!({"input_tokens": 3, "output_tokens": 5, "total_tokens": 8})),
            error: None,
            raw: json!({"id": "resp_x", "status": "completed"}),
        },
        now,
        next_poll_at: now + 1_000,
        poll_interval_ms: 1_000,
        cancel_reason: None,
        outbox: vec![OutboxEntry {
            sink: "console".into(),
            on: vec![JobStatus::Completed],
        }],
        source: "poll".into(),
        request_id: Some("req_1".into()),
        artifacts: Vec::new(),
        image_prices: Default::default(),
    };
    write_row(&db, CORRUPT_SPEC, broken.as_str()).await;
    let mut batch: Vec<ObservationWrite> = ids
        .iter()
        .zip(&outputs)
        .map(|(id, out)| write(id, out))
        .collect();
    batch.push(write(&broken, "never"));
    batch.push(write(&gone, "never"));
    batch.push(write(&finished, "a second look"));
    let out = store.apply_observations(&batch).await;
    assert_eq!(out.len(), batch.len());
    for (i, id) in ids.iter().enumerate() {
        assert!(
            matches!(
                out[i],
                Ok(ApplyOutcome::Applied {
                    to: JobStatus::Completed,
                    ..
                })
            ),
            "{id}: {:?}",
            out[i]
        );
        let row = store.get_job(id).await.unwrap().unwrap();
        assert_eq!(row.status, JobStatus::Completed);
        assert_eq!(row.output_text.as_deref(), Some(outputs[i].as_str()));
    }
    assert!(out[ids.len()].is_err(), "{:?}", out[ids.len()]);
    assert!(matches!(out[ids.len() + 1], Ok(ApplyOutcome::Missing)));
    assert!(
        matches!(
            out[ids.len() + 2],
            Ok(ApplyOutcome::Final(JobStatus::Completed))
        ),
        "{:?}",
        out[ids.len() + 2]
    );
    let first = store.get_job(&finished).await.unwrap().unwrap();
    assert_eq!(first.output_text.as_deref(), Some(outputs[0].as_str()));
    let broken_row = raw_job(&db, broken.as_str()).await;
    assert_eq!(broken_row.status, "pending");
    let outbox: i64 = {
        let mut conn = db::read_only(&db).await;
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        db::close(conn).await;
        n
    };
    assert_eq!(outbox, ids.len() as i64, "one notification per job applied");
    store.close().await;
}

/// One store operation on the job under test, as the workers make them in some order.
#[derive(Debug, Clone)]
enum Op {
    Claim,
    Reschedule,
    MarkUncertain,
    /// Expire leases at now (`false`) or far past every lease (`true`).
    Expire(bool),
    /// A response revealed for the job: ours, or one of two others.
    Attach(u8),
    /// What a poll of the held response showed.
    Observe(JobStatus),
    /// End the job unsubmitted with the current attempt, or a stale one.
    Finish {
        stale: bool,
        status: JobStatus,
    },
    NotFound,
}

fn op() -> impl Strategy<Value = Op> {
    let observed = proptest::sample::select(vec![
        JobStatus::Queued,
        JobStatus::InProgress,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Incomplete,
        JobStatus::Cancelled,
    ]);
    let ended = proptest::sample::select(vec![JobStatus::Failed, JobStatus::Cancelled]);
    prop_oneof![
        3 => Just(Op::Claim),
        1 => Just(Op::Reschedule),
        1 => Just(Op::MarkUncertain),
        1 => any::<bool>().prop_map(Op::Expire),
        3 => (0u8..3).prop_map(Op::Attach),
        3 => observed.prop_map(Op::Observe),
        2 => (any::<bool>(), ended).prop_map(|(stale, status)| Op::Finish { stale, status }),
        1 => Just(Op::NotFound),
    ]
}

/// What must hold after every step, given the row before and after it.
fn check_step(
    before: &JobRow,
    after: &JobRow,
    revealed: &[ResponseId],
    duplicates: &[ResponseId],
) -> Result<(), TestCaseError> {
    // A held response is never dropped nor replaced: a job holds one response, for good.
    if let Some(held) = &before.response_id {
        prop_assert_eq!(after.response_id.as_ref(), Some(held));
    }
    // A terminal status with a response is final: nothing about its result is rewritten.
    if before.status.is_terminal() && before.response_id.is_some() {
        prop_assert_eq!(after.status, before.status);
        prop_assert_eq!(after.finished_at, before.finished_at);
        prop_assert_eq!(&after.error_code, &before.error_code);
        prop_assert_eq!(&after.output_text, &before.output_text);
    }
    // Every response revealed for the job is the one it holds or a recorded duplicate.
    for r in revealed {
        prop_assert!(
            after.response_id.as_ref() == Some(r) || duplicates.contains(r),
            "{} was dropped: the job holds {:?}, duplicates {:?}",
            r,
            after.response_id,
            duplicates
        );
    }
    Ok(())
}

async fn run_ops(store: &Store, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let per_model = BTreeMap::new();
    let limits = no_limits(&per_model);
    let mut now = now_ms();
    let id = insert_job(store, "prop", now).await;
    let tag = id.to_lowercase();
    let mut revealed: Vec<ResponseId> = Vec::new();
    for op in ops {
        now += 1_000;
        let before = store.get_job(&id).await.unwrap().unwrap();
        match &op {
            Op::Claim => {
                store
                    .claim_submission(now, Lease::unowned(5_000), &limits)
                    .await
                    .unwrap();
            }
            Op::Reschedule => {
                store
                    .reschedule_submission(&id, before.attempt, now, now, "retry")
                    .await
                    .unwrap();
            }
            Op::MarkUncertain => {
                store
                    .mark_uncertain(&id, before.attempt, UncertainWait::none(now), now, "?")
                    .await
                    .unwrap();
            }
            Op::Expire(past) => {
                let at = if *past { now + 3_600_000 } else { now };
                store
                    .expire_submission_leases(at, UncertainWait::none(at))
                    .await
                    .unwrap();
            }
            Op::Attach(n) => {
                let rid = ResponseId::parse(&format!("resp_{tag}_{n}")).unwrap();
                let ctx = AttachContext {
                    now,
                    first_poll_at: now,
                    poll_interval_ms: 1_000,
                    kind: respool::store::EventKind::Adopted,
                    how: "test",
                    request_id: None,
                    turn: None,
                };
                let attach = store.attach_response(&id, &rid, &ctx).await.unwrap();
                match (&attach, &before.response_id) {
                    (Attach::Attached { reopened_from }, None) => {
                        let ended = before.status.is_terminal().then_some(before.status);
                        prop_assert_eq!(*reopened_from, ended);
                    }
                    (Attach::Already, Some(h)) => prop_assert_eq!(h, &rid),
                    (Attach::Duplicate { held }, Some(h)) => {
                        prop_assert_eq!(held, h);
                        prop_assert_ne!(held, &rid);
                        // As the orchestrator does: cancel it and keep it as a paid duplicate.
                        store
                            .record_duplicate(&NewDuplicate {
                                job_id: &id,
                                response_id: &rid,
                                status: "cancelled",
                                usage: None,
                                raw: None,
                                found_by: "webhook",
                                now,
                                next_check_at: None,
                                image_prices: Default::default(),
                            })
                            .await
                            .unwrap();
                    }
                    other => prop_assert!(false, "attach answered {:?}", other),
                }
                if !revealed.contains(&rid) {
                    revealed.push(rid);
                }
            }
            Op::Observe(status) => {
                let Some(rid) = &before.response_id else {
                    continue; // nothing to poll
                };
                let obs = Observation {
                    response_id: ResponseId::parse(rid).unwrap(),
                    status: *status,
                    output_text: Some(format!("out at {now}")),
                    usage: None,
                    error: (*status == JobStatus::Failed).then(|| JobError {
                        code: "server_error".into(),
                        message: format!("failed at {now}"),
                    }),
                    raw: json!({"id": rid, "status": status.as_str()}),
                };
                let ctx = ApplyContext {
                    now,
                    next_poll_at: now + 1_000,
                    poll_interval_ms: 1_000,
                    cancel_reason: None,
                    outbox: &[],
                    source: "poll",
                    request_id: None,
                    artifacts: &[],
                    image_prices: Default::default(),
                };
                store.apply_observation(&id, &obs, &ctx).await.unwrap();
            }
            Op::Finish { stale, status } => {
                let attempt = if *stale {
                    before.attempt - 1
                } else {
                    before.attempt
                };
                let error = JobError {
                    code: "submit_uncertain".into(),
                    message: "ended".into(),
                };
                let done = store
                    .finish_unsubmitted(&id, attempt, *status, &error, now, &[])
                    .await
                    .unwrap();
                if *stale {
                    prop_assert!(!done, "a stale attempt ended the job");
                }
                if done {
                    prop_assert!(before.response_id.is_none());
                }
            }
            Op::NotFound => {
                store.record_poll_not_found(&id, now, now).await.unwrap();
            }
        }
        let after = store.get_job(&id).await.unwrap().unwrap();
        let duplicates: Vec<ResponseId> = store
            .duplicates_of(&id)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.response_id)
            .collect();
        check_step(&before, &after, &revealed, &duplicates)
            .map_err(|e| TestCaseError::fail(format!("after {op:?}: {e}")))?;
    }
    Ok(())
}

/// What a property test over store files needs: a runtime to run each case on, a folder for
/// the files, and a counter to name one file per case (a claim takes any due job, so cases
/// must not share one).
fn property_setup() -> (
    tokio::runtime::Runtime,
    tempfile::TempDir,
    std::sync::atomic::AtomicUsize,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (
        rt,
        tempfile::tempdir().unwrap(),
        std::sync::atomic::AtomicUsize::new(0),
    )
}

/// Random sequences of the store's writes on one job (claims, reschedules, uncertain marks,
/// lease expiry, responses revealed, polls observed, unsubmitted ends with current and stale
/// attempts): the ledger's promises hold after every step.
#[test]
fn random_store_operations_keep_every_revealed_response() {
    let (rt, dir, n) = property_setup();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(&proptest::collection::vec(op(), 1..40), |ops| {
            // A fresh file per case: a claim takes any due job, so cases must not share one.
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let db: PathBuf = dir.path().join(format!("case-{i}.db"));
            rt.block_on(async {
                let store = open_store(&db).await;
                let r = run_ops(&store, ops).await;
                store.close().await;
                r
            })
        })
        .unwrap();
}

/// Regression: when the ledger write after a successful create failed (another writer held
/// the lock past `busy_timeout`: a VACUUM, a backup tool), the id was only logged, and the job
/// later became uncertain although the id had been in hand. Now the write is retried, so the
/// job takes its response as soon as the lock goes, without ever being uncertain.
#[tokio::test]
async fn a_response_id_survives_a_lock_held_past_busy_timeout() {
    let app = helpers::spawn_app().await;
    if app.db_url.starts_with("postgres") {
        eprintln!("SQLite's file lock: no such lock on PostgreSQL (writers queue on a lock there)");
        app.stop().await;
        return;
    }
    let db = app.db_path();
    // The create's answer comes a second after its claim, while the lock is held; no webhook
    // will ever name the response.
    let id = post(&app, &with_sim("locked-out", "hang=1s;run=1s;webhook=drop")).await;
    app.wait_until("the create is claimed", DEADLINE, async || {
        app.count_events(&id, "submitting").await == 1
    })
    .await;
    let mut locker = db::writer(&db).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .unwrap();
    // Longer than the daemon's 10 s busy timeout: its first write of the id fails.
    tokio::time::sleep(Duration::from_secs(12)).await;
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    db::close(locker).await;
    let job = app.wait_terminal(&id, DEADLINE).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(app.sim.stats().creates_by_job_id.get(&id), Some(&1));
    assert_eq!(app.count_events(&id, "submit_uncertain").await, 0);
    // Taken by the create's retried write: with its webhook dropped, nothing else could.
    assert_eq!(app.count_events(&id, "submitted").await, 1);
    app.stop().await;
}

/// What the claims left on a database: each job's row (by name) and its `submitting` events.
async fn claim_state(db: &Path) -> Vec<(String, String, String, i64, i64, i64)> {
    let mut conn = db::open(&format!("sqlite://{}", db.display())).await;
    let rows = sqlx::query_as(
        "SELECT name, status, submit_state, attempt, submissions, \
         (SELECT COUNT(*) FROM job_events e WHERE e.job_id = jobs.id AND e.kind = 'submitting') \
         FROM jobs ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    db::close_any(conn).await;
    rows
}

/// Claiming several submissions in one transaction claims what as many claims of one in a row
/// would: the same jobs in the same order (later turns, then priority and age), within the
/// same overall and per-model limits, with the same rows and timelines after. Random jobs
/// (models, priorities), jobs already in flight, limits and batch sizes.
#[test]
fn a_batch_of_claims_is_as_many_claims_in_a_row() {
    let (rt, dir, n) = property_setup();
    const MODELS: [&str; 3] = ["gpt-5", "gpt-5-mini", "o3"];
    let case = (
        proptest::collection::vec((0..3_usize, -1..=2_i64), 1..16),
        0..4_usize,
        // Half the cases with no per-model limit (the overall one alone).
        prop_oneof![
            Just(vec![None; 3]),
            proptest::collection::vec(proptest::option::of(1..4_usize), 3),
        ],
        1..12_i64,
        1..10_usize,
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(&case, |(jobs, before, per_model, max_in_flight, batch)| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let per_model: BTreeMap<String, usize> = MODELS
                .iter()
                .zip(&per_model)
                .filter_map(|(m, l)| l.map(|l| (m.to_string(), l)))
                .collect();
            let limits = ledger::limits(max_in_flight, &per_model);
            let now = now_ms();
            rt.block_on(async {
                let mut claimed: Vec<Vec<String>> = Vec::new();
                let mut states = Vec::new();
                for batched in [true, false] {
                    let db: PathBuf = dir.path().join(format!("case-{i}-{batched}.db"));
                    let store = open_store(&db).await;
                    let mut names = std::collections::HashMap::new();
                    // Created a millisecond apart, so the order never rests on the random ids.
                    for (k, (model, priority)) in jobs.iter().enumerate() {
                        let name = format!("j{k:02}");
                        let body = json!({
                            "name": name, "model": MODELS[*model], "input": "x",
                            "priority": priority,
                        });
                        let id = ledger::insert(&store, body, &name, now + k as i64).await;
                        names.insert(id.to_string(), name);
                    }
                    let lease = Lease::unowned(60_000);
                    let at = now + 1_000;
                    // Some in flight already, claimed one by one on both.
                    for _ in 0..before {
                        store.claim_submission(at, lease, &limits).await.unwrap();
                    }
                    let got: Vec<String> = if batched {
                        let many = store
                            .claim_submissions(at + 1, lease, &limits, batch)
                            .await
                            .unwrap();
                        prop_assert!(many.claims.len() <= batch);
                        many.claims
                            .iter()
                            .map(|c| names[c.id.as_str()].clone())
                            .collect()
                    } else {
                        let mut got = Vec::new();
                        while got.len() < batch {
                            match store
                                .claim_submission(at + 1, lease, &limits)
                                .await
                                .unwrap()
                                .claim
                            {
                                Some(c) => got.push(names[c.id.as_str()].clone()),
                                None => break,
                            }
                        }
                        got
                    };
                    store.close().await;
                    claimed.push(got);
                    states.push(claim_state(&db).await);
                }
                prop_assert_eq!(&claimed[0], &claimed[1]);
                prop_assert_eq!(&states[0], &states[1]);
                Ok(())
            })
        })
        .unwrap();
}
