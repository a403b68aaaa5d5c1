//! What holds submissions back, in SQL: the in-flight limits checked inside the submit claim,
//! and the deferral of a model's creates until its rate-limit window resets.

use super::lending::Conn;
use crate::store::sql;
use std::collections::{BTreeMap, HashMap};

use super::events::{EventKind, add_event};
use super::{Store, StoreError};
use crate::pricing::ModelPrice;
use crate::pricing::{longest_prefix, price_for};

/// The limits a submit claim respects.
#[derive(Debug, Clone, Copy)]
pub struct ClaimLimits<'a> {
    /// Jobs in flight at most: submitted and unfinished, or being submitted.
    pub max_in_flight: i64,
    /// Jobs in flight per model: a model counts towards its own entry or its longest
    /// configured prefix, and all models of one entry share its limit.
    pub per_model: &'a BTreeMap<String, usize>,
    /// Set while a budget is reached: jobs of the models priced here are not claimed (unless
    /// `budget_exempt`); they are about to be held.
    pub over_budget: Option<&'a BTreeMap<String, ModelPrice>>,
}

/// Models a claim skips: all their jobs, or only those not `budget_exempt`.
#[derive(Debug, Default)]
pub(super) struct Skip {
    pub models: Vec<String>,
    pub unless_exempt: Vec<String>,
}

/// The jobs "in flight": running upstream, or past `ready` in their create (submitting,
/// uncertain; a follower `waiting` for its turn is not), read from their own small index
/// (`INDEXED BY`: SQLite would rather take a status index and read the table). The claims read `in_flight_counts` instead; the test
/// below checks that its counts are always this query's.
#[cfg(test)]
pub(super) const IN_FLIGHT: &str = "jobs INDEXED BY jobs_in_flight WHERE \
     (status IN ('queued', 'in_progress') OR (status = 'pending' AND submit_state <> 'ready')) \
     AND (status IN ('queued', 'in_progress') OR (status = 'pending' AND submit_state NOT IN ('ready', 'waiting')))";

/// The jobs in flight by model, from the counts the triggers of `in_flight_counts` keep
/// (migration `20261205000014`): a row per model, not a walk of every job in flight.
pub(super) const IN_FLIGHT_BY_MODEL: &str =
    "SELECT model, n FROM in_flight_counts WHERE n > 0 ORDER BY model";

/// Inside a claim's transaction: `None` when nothing may be claimed (`max_in_flight` reached),
/// else the models of due jobs to skip (those at their per-model limit, and, while a budget is
/// reached, the priced ones unless exempt) and how many more jobs may go in flight.
pub(super) async fn models_at_limit(
    conn: &mut Conn,
    now: i64,
    limits: &ClaimLimits<'_>,
) -> Result<Option<(Skip, i64)>, StoreError> {
    let in_flight: Vec<(String, i64)> = sql::query_as(IN_FLIGHT_BY_MODEL)
        .fetch_all(&mut *conn)
        .await?;
    let room = limits.max_in_flight - in_flight.iter().map(|(_, n)| n).sum::<i64>();
    if room <= 0 {
        return Ok(None);
    }
    if limits.per_model.is_empty() && limits.over_budget.is_none() {
        return Ok(Some((Skip::default(), room)));
    }
    let mut by_key: HashMap<&str, i64> = HashMap::new();
    for (model, n) in &in_flight {
        if let Some((key, _)) = longest_prefix(limits.per_model, model) {
            *by_key.entry(key).or_default() += n;
        }
    }
    let due: Vec<String> = sql::query_scalar(
        "SELECT DISTINCT model FROM jobs WHERE status = 'pending' AND submit_state = 'ready' \
         AND cancel_requested = 0 AND (next_check_at IS NULL OR next_check_at <= ?)",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let mut skip = Skip::default();
    for m in due {
        let at_limit = longest_prefix(limits.per_model, &m)
            .is_some_and(|(key, limit)| by_key.get(key).copied().unwrap_or(0) >= *limit as i64);
        if at_limit {
            skip.models.push(m);
        } else if limits
            .over_budget
            .is_some_and(|prices| price_for(prices, &m).is_some())
        {
            skip.unless_exempt.push(m);
        }
    }
    Ok(Some((skip, room)))
}

/// Sets the counts of jobs in flight to the table's, at start: the triggers keep them, but a
/// count that drifted (a hand edit, a restored copy of the table without its triggers)
/// would hold back submissions for good, or let too many go.
pub(super) async fn repair_in_flight_counts(store: &super::Store) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    let counted: Vec<(String, i64)> = sql::query_as(
        "SELECT model, COUNT(*) FROM jobs INDEXED BY jobs_in_flight WHERE (status IN ('queued', 'in_progress') \
         OR (status = 'pending' AND submit_state <> 'ready')) \
         AND (status IN ('queued', 'in_progress') OR (status = 'pending' AND submit_state NOT IN ('ready', 'waiting'))) \
         GROUP BY model ORDER BY model",
    )
    .fetch_all(&mut *tx)
    .await?;
    let kept: Vec<(String, i64)> = sql::query_as(IN_FLIGHT_BY_MODEL)
        .fetch_all(&mut *tx)
        .await?;
    if kept != counted {
        tracing::warn!(
            ?kept,
            ?counted,
            "the counts of jobs in flight had drifted; set to the table's"
        );
        sql::query("DELETE FROM in_flight_counts")
            .execute(&mut *tx)
            .await?;
        for (model, n) in &counted {
            sql::query("INSERT INTO in_flight_counts (model, n) VALUES (?, ?)")
                .bind(model)
                .bind(n)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

impl Store {
    /// Moves every poll due later than `now + window` to a random time within the next
    /// `window` ms (webhooks turned unhealthy: the safety net's spread is too thin). Returns
    /// how many moved.
    pub async fn pull_in_polls(&self, now: i64, window: i64) -> Result<u64, StoreError> {
        let window = window.max(1);
        // Under the write lock: it moves many jobs at once, which on PostgreSQL would deadlock
        // with another daemon's transaction taking the same rows in another order.
        let statement = sql::query(match self.backend() {
            super::Backend::Sqlite => {
                "UPDATE jobs SET next_check_at = ? + abs(random() % ?) \
                 WHERE status IN ('pending', 'queued', 'in_progress') AND response_id IS NOT NULL \
                 AND next_check_at > ?"
            }
            super::Backend::Postgres => {
                "UPDATE jobs SET next_check_at = ? + CAST(floor(random() * ?) AS BIGINT) \
                 WHERE status IN ('pending', 'queued', 'in_progress') AND response_id IS NOT NULL \
                 AND next_check_at > ?"
            }
        })
        .bind(now)
        .bind(window)
        .bind(now.saturating_add(window));
        self.execute_locked(statement).await
    }

    /// Jobs in flight by model (for `respool budget`-style views and tests).
    pub async fn count_in_flight_by_model(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sql::query_as(IN_FLIGHT_BY_MODEL)
            .fetch_all(&self.reads)
            .await?)
    }

    /// Makes the due, not yet submitted jobs of `model` wait until `until`: its rate-limit
    /// window is nearly used up. Each job's timeline says so once per wait (a job whose latest
    /// event already is such a wait is not told again). Returns the ids deferred.
    pub async fn defer_submissions(
        &self,
        model: &str,
        until: i64,
        now: i64,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        let ids: Vec<String> = sql::query_scalar(
            "UPDATE jobs SET next_check_at = ?, updated_at = ? \
             WHERE status = 'pending' AND submit_state = 'ready' AND cancel_requested = 0 \
             AND model = ? AND (next_check_at IS NULL OR next_check_at <= ?) RETURNING id",
        )
        .bind(until)
        .bind(now)
        .bind(model)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let data = serde_json::json!({"model": model, "until": until});
        for id in &ids {
            let last: Option<String> = sql::query_scalar(
                "SELECT kind FROM job_events WHERE job_id = ? ORDER BY id DESC LIMIT 1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if last.as_deref() != Some(EventKind::RateLimitWait.as_str()) {
                add_event(
                    &mut tx,
                    id,
                    now,
                    EventKind::RateLimitWait,
                    reason,
                    Some(&data),
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    //! The counts of jobs in flight that the claims read are those of the table, whatever
    //! sequence of writes made them: generated inserts, status, create-state and model
    //! changes, deletes (retention), one by one and several rows in one statement.

    use proptest::prelude::*;

    use super::*;

    const STATUSES: [&str; 7] = [
        "pending",
        "held",
        "queued",
        "in_progress",
        "completed",
        "failed",
        "cancelled",
    ];
    // `waiting` (a follower, migration 20261206000022) is not in flight.
    const STATES: [&str; 5] = ["ready", "submitting", "uncertain", "done", "waiting"];
    const MODELS: [&str; 3] = ["gpt-5", "o3-deep-research", "gpt-5-mini"];

    #[derive(Debug, Clone)]
    enum Write {
        Insert {
            status: usize,
            state: usize,
            model: usize,
        },
        Status {
            job: usize,
            status: usize,
        },
        State {
            job: usize,
            state: usize,
        },
        Model {
            job: usize,
            model: usize,
        },
        StatusAndState {
            job: usize,
            status: usize,
            state: usize,
        },
        /// One statement moving every job of a status (as the timeout sweep does).
        AllOf {
            from: usize,
            to: usize,
        },
        Delete {
            job: usize,
        },
    }

    fn write() -> impl Strategy<Value = Write> {
        prop_oneof![
            3 => (0..7usize, 0..5usize, 0..3usize)
                .prop_map(|(status, state, model)| Write::Insert { status, state, model }),
            3 => (0..40usize, 0..7usize).prop_map(|(job, status)| Write::Status { job, status }),
            2 => (0..40usize, 0..5usize).prop_map(|(job, state)| Write::State { job, state }),
            1 => (0..40usize, 0..3usize).prop_map(|(job, model)| Write::Model { job, model }),
            2 => (0..40usize, 0..7usize, 0..5usize)
                .prop_map(|(job, status, state)| Write::StatusAndState { job, status, state }),
            1 => (0..7usize, 0..7usize).prop_map(|(from, to)| Write::AllOf { from, to }),
            1 => (0..40usize).prop_map(|job| Write::Delete { job }),
        ]
    }

    fn job_id(n: usize) -> String {
        format!("job_01K0000000000000000000{n:04}")
    }

    async fn apply(pool: &sqlx::AnyPool, w: &Write, next: &mut usize) {
        let q = match w {
            Write::Insert {
                status,
                state,
                model,
            } => {
                *next += 1;
                sql::query(
                    "INSERT INTO jobs (id, name, model, status, spec, spec_hash, submit_state, \
                     created_at, updated_at) VALUES (?, 'n', ?, ?, '{}', 'h', ?, 0, 0)",
                )
                .bind(job_id(*next))
                .bind(MODELS[*model])
                .bind(STATUSES[*status])
                .bind(STATES[*state])
            }
            Write::Status { job, status } => sql::query("UPDATE jobs SET status = ? WHERE id = ?")
                .bind(STATUSES[*status])
                .bind(job_id(*job)),
            Write::State { job, state } => {
                sql::query("UPDATE jobs SET submit_state = ? WHERE id = ?")
                    .bind(STATES[*state])
                    .bind(job_id(*job))
            }
            Write::Model { job, model } => sql::query("UPDATE jobs SET model = ? WHERE id = ?")
                .bind(MODELS[*model])
                .bind(job_id(*job)),
            Write::StatusAndState { job, status, state } => {
                sql::query("UPDATE jobs SET status = ?, submit_state = ? WHERE id = ?")
                    .bind(STATUSES[*status])
                    .bind(STATES[*state])
                    .bind(job_id(*job))
            }
            Write::AllOf { from, to } => sql::query("UPDATE jobs SET status = ? WHERE status = ?")
                .bind(STATUSES[*to])
                .bind(STATUSES[*from]),
            Write::Delete { job } => sql::query("DELETE FROM jobs WHERE id = ?").bind(job_id(*job)),
        };
        q.execute(pool).await.unwrap();
    }

    /// Webhooks turned unhealthy: polls spread far apart come within the window; those
    /// already due sooner, finished jobs and jobs without a response stay as they are.
    #[tokio::test]
    async fn pulling_in_polls_moves_only_far_polls_of_unfinished_jobs() {
        let store = crate::store::Store::connect("sqlite::memory:")
            .await
            .unwrap();
        let pool = store.pool_for_tests();
        let rows = [
            (1, "in_progress", Some("resp_1"), 5_000_000),
            (2, "queued", Some("resp_2"), 1_000_500),
            (3, "completed", Some("resp_3"), 5_000_000),
            (4, "pending", None, 5_000_000),
            (5, "pending", Some("resp_5"), 9_000_000),
        ];
        for (n, status, rid, next) in rows {
            sql::query(
                "INSERT INTO jobs (id, name, model, status, spec, spec_hash, response_id, \
                 submit_state, next_check_at, created_at, updated_at) \
                 VALUES (?, 'n', 'gpt-5', ?, '{}', 'h', ?, 'done', ?, 0, 0)",
            )
            .bind(job_id(n))
            .bind(status)
            .bind(rid)
            .bind(next)
            .execute(&pool)
            .await
            .unwrap();
        }
        assert_eq!(store.pull_in_polls(1_000_000, 1_000).await.unwrap(), 2);
        for (n, within) in [(1, true), (2, true), (3, false), (4, false), (5, true)] {
            let next: i64 = sql::query_scalar("SELECT next_check_at FROM jobs WHERE id = ?")
                .bind(job_id(n))
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(
                (1_000_000..1_001_000).contains(&next),
                within,
                "job {n}: {next}"
            );
        }
        store.close().await;
    }

    /// Counts that drifted are set back to the table's when the store opens.
    #[tokio::test]
    async fn drifted_counts_are_repaired_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = crate::store::Store::connect(&url).await.unwrap();
        let pool = store.pool_for_tests();
        sql::query(
            "INSERT INTO jobs (id, name, model, status, spec, spec_hash, submit_state, created_at, updated_at) \
             VALUES (?, 'n', 'gpt-5', 'queued', '{}', 'h', 'done', 0, 0)",
        )
        .bind(job_id(1))
        .execute(&pool)
        .await
        .unwrap();
        sql::query("UPDATE in_flight_counts SET n = 40")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(store.count_in_flight().await.unwrap(), 40);
        store.close().await;
        let store = crate::store::Store::connect(&url).await.unwrap();
        assert_eq!(store.count_in_flight().await.unwrap(), 1);
        store.close().await;
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_counts_of_jobs_in_flight_are_always_the_tables(
            writes in proptest::collection::vec(write(), 1..80),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let store = crate::store::Store::connect("sqlite::memory:").await.unwrap();
                let pool = store.pool_for_tests();
                let mut next = 0;
                for w in &writes {
                    apply(&pool, w, &mut next).await;
                    let counted: Vec<(String, i64)> = sql::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT model, COUNT(*) FROM {IN_FLIGHT} GROUP BY model ORDER BY model"
                    )))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                    assert_eq!(store.count_in_flight_by_model().await.unwrap(), counted, "after {w:?}");
                    let total: i64 = counted.iter().map(|(_, n)| n).sum();
                    assert_eq!(store.count_in_flight().await.unwrap(), total, "after {w:?}");
                }
                store.close().await;
            });
        }
    }
}
