//! The claims' query plans: each walks an index in the order it takes rows and stops at the
//! first it may take, so a claim costs the same with 10 jobs waiting or 100,000. A plan that
//! sorts (`USE TEMP B-TREE FOR ORDER BY`) or scans the table fails here, before a backlog
//! makes it quadratic in production.

use crate::store::sql;
use sqlx::AnyPool;

use super::limits::Skip;
use super::notifications::{SinkFilter, notification_claim_query};
use super::observations::{CANCELLABLE_UNSUBMITTED, CLAIM_HINTED_POLLS, CLAIM_POLLS, DUE_TIMEOUTS};
use super::submissions::submit_claim_query;
use super::{Lease, Store};

/// `EXPLAIN QUERY PLAN` of `sql` with `binds` NULLs, as one text: each step's detail.
async fn plan(pool: &AnyPool, sql: &str) -> String {
    let rows: Vec<(i64, i64, i64, String)> = sql::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let store = Store::connect(&url).await.unwrap();
    (dir, store)
}

fn assert_walks(plan: &str, index: &str) {
    assert!(!plan.contains("TEMP B-TREE"), "the claim sorts:\n{plan}");
    assert!(
        plan.contains(index),
        "the claim does not walk {index}:\n{plan}"
    );
}

/// The text of a built query, with its placeholders (bound values do not change a plan's
/// shape; `EXPLAIN QUERY PLAN` takes them as NULL).
fn sql(q: &mut sqlx::QueryBuilder<sqlx::Any>) -> String {
    q.sql().as_str().to_owned()
}

#[tokio::test]
async fn the_submit_claim_walks_its_index_in_order() {
    let (_dir, store) = store().await;
    let pool = store.pool_for_tests();
    let none = Skip::default();
    let some = Skip {
        models: vec!["o3".into(), "gpt-5".into()],
        unless_exempt: vec!["o4-mini".into()],
    };
    for skip in [&none, &some] {
        let text = sql(&mut submit_claim_query(
            "EXPLAIN QUERY PLAN ",
            0,
            Lease::unowned(0),
            skip,
        ));
        assert_walks(&plan(&pool, &text).await, "jobs_submit_order");
        let text = sql(&mut super::submissions::submit_claim_query_for(
            super::submissions::ClaimPhase::NextTurn,
            "EXPLAIN QUERY PLAN ",
            0,
            Lease::unowned(0),
            skip,
        ));
        assert_walks(&plan(&pool, &text).await, "jobs_turn_order");
    }
    store.close().await;
}

#[tokio::test]
async fn the_outbox_claim_walks_its_index_in_order() {
    let (_dir, store) = store().await;
    let pool = store.pool_for_tests();
    let names = vec!["mail".to_owned(), "hook".to_owned()];
    for (filter, index) in [
        (SinkFilter::Only("mail"), "notifications_sink_due"),
        (SinkFilter::Any, "notifications_due"),
        (SinkFilter::NoneOf(&names), "notifications_due"),
    ] {
        let text = sql(&mut notification_claim_query(
            "EXPLAIN QUERY PLAN ",
            0,
            0,
            1,
            filter,
            false,
        ));
        assert_walks(&plan(&pool, &text).await, index);
    }
    store.close().await;
}

#[tokio::test]
async fn the_poll_claim_walks_its_index_in_order() {
    let (_dir, store) = store().await;
    let pool = store.pool_for_tests();
    let text = format!("EXPLAIN QUERY PLAN {CLAIM_POLLS}");
    assert_walks(&plan(&pool, &text).await, "jobs_poll_due");
    let text = format!("EXPLAIN QUERY PLAN {CLAIM_HINTED_POLLS}");
    assert_walks(&plan(&pool, &text).await, "jobs_poll_hinted");
    store.close().await;
}

/// The housekeeping's checks run several times a second: each walks an index of only the rows
/// it may take, not every unfinished job (they once read 10,000 rows each, most of the
/// daemon's idle CPU).
#[tokio::test]
async fn the_housekeeping_checks_walk_their_own_indexes() {
    let (_dir, store) = store().await;
    let pool = store.pool_for_tests();
    for (statement, index) in [
        (DUE_TIMEOUTS, "jobs_deadline_due"),
        (CANCELLABLE_UNSUBMITTED, "jobs_cancel_unsent"),
    ] {
        let text = format!("EXPLAIN QUERY PLAN {statement}");
        assert_walks(&plan(&pool, &text).await, index);
    }
    store.close().await;
}

/// The chains' statements walk their own indexes: a waiting backlog, or thousands of jobs on
/// one conversation, cost a claim nothing.
#[tokio::test]
async fn the_chain_statements_walk_their_own_indexes() {
    use super::chains::{CONVERSATION_HEAD, DUE_WAITING, NEXT_SEQ, WAITING_CANCELS};
    let (_dir, store) = store().await;
    let pool = store.pool_for_tests();
    for (statement, index) in [
        (DUE_WAITING, "jobs_waiting_due"),
        (WAITING_CANCELS, "jobs_waiting_cancel"),
        (CONVERSATION_HEAD, "jobs_conversation_order"),
        (NEXT_SEQ, "jobs_conversation_order"),
    ] {
        let text = format!("EXPLAIN QUERY PLAN {statement}");
        assert_walks(&plan(&pool, &text).await, index);
    }
    store.due_waiting(0, 10).await.unwrap();
    store.waiting_cancels().await.unwrap();
    store.claim_conversation(0, 1).await.unwrap();
    store.next_conversation_after(0).await.unwrap();
    store
        .chain_members("job_01K00000000000000000000000")
        .await
        .unwrap();
    store.close().await;
}

/// Every statement that names its index (`INDEXED BY`) runs: SQLite refuses one whose index
/// cannot serve it ("no query solution"), which would fail the worker's every pass.
#[tokio::test]
async fn every_indexed_statement_runs() {
    let (_dir, store) = store().await;
    store.next_ledger_check_after(0).await.unwrap();
    store.next_submit_after(0).await.unwrap();
    store.next_notification_after(0).await.unwrap();
    store.next_delivery_look_after(0).await.unwrap();
    store.unhandled_deliveries(0, 10, &[]).await.unwrap();
    store
        .unhandled_deliveries(0, 10, &["wh_1".to_owned()])
        .await
        .unwrap();
    store.due_notification_sinks(0).await.unwrap();
    store.count_in_flight().await.unwrap();
    store.count_in_flight_by_model().await.unwrap();
    store.claim_polls(0, 0, 1).await.unwrap();
    store.due_timeouts(0).await.unwrap();
    store.cancellable_unsubmitted().await.unwrap();
    store.close().await;
}
