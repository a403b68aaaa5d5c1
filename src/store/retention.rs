//! Keeping the database small and safe: pruning finished jobs (keeping a summary of each),
//! old summaries, schedule runs nothing needs any more, old webhook delivery records and
//! retired webhook secrets; online backups (`VACUUM INTO`) and `VACUUM`, and the counts
//! `/metrics` shows.

use crate::store::sql;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sqlx::{AssertSqlSafe, FromRow};

use super::tool_usage::TOOL_COLUMNS;
use super::{Store, StoreError};

/// A finished job old enough to prune, with what pricing it needs (its summary is copied from
/// the row itself when it is pruned).
#[derive(Debug, Clone, FromRow)]
pub struct PrunableJob {
    pub id: String,
    pub name: String,
    pub model: String,
    pub status: String,
    pub created_at: i64,
    pub submitted_at: Option<i64>,
    pub finished_at: i64,
    pub usage: Option<String>,
    pub error_code: Option<String>,
    /// Its tool usage and service tier.
    #[sqlx(flatten)]
    pub tools: super::ToolColumns,
}

/// Queue depths for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Jobs waiting to be submitted.
    pub pending: i64,
    /// Jobs held by a budget.
    pub held: i64,
    /// Jobs whose poll is due now.
    pub due_polls: i64,
    /// Notifications waiting to be delivered.
    pub outbox_pending: i64,
}

const TERMINAL: &str = "('completed', 'failed', 'incomplete', 'cancelled')";
/// SQL: the job (`jobs` row in scope) has no notification still to deliver. A job is pruned
/// only once each of its notifications is delivered or dead, so retention never drops one.
const NOTHING_TO_DELIVER: &str =
    "NOT EXISTS (SELECT 1 FROM notifications n WHERE n.job_id = jobs.id AND n.state = 'pending')";

/// Webhook delivery records deleted per write transaction by [`Store::prune_deliveries`].
const DELIVERY_BATCH: i64 = 5_000;
impl Store {
    /// Up to `limit` finished jobs that ended before `cutoff` (unix ms) and have no
    /// notification left to deliver, oldest first.
    pub async fn prunable_jobs(
        &self,
        cutoff: i64,
        limit: i64,
    ) -> Result<Vec<PrunableJob>, StoreError> {
        Ok(sql::query_as::<PrunableJob>(AssertSqlSafe(format!(
            "SELECT id, name, model, status, created_at, submitted_at, finished_at, usage, error_code, \
             {TOOL_COLUMNS} FROM jobs WHERE status IN {TERMINAL} AND finished_at < ? AND {NOTHING_TO_DELIVER} \
             ORDER BY finished_at LIMIT ?"
        )))
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&self.reads)
        .await?)
    }

    /// Deletes finished jobs (still finished before `cutoff`, and still with no pending
    /// notification) with their timeline,
    /// notifications and webhook deliveries, in one transaction; with `summaries`, writes a
    /// summary row of each first (`cost_microusd` given per job). Returns how many were deleted.
    pub async fn prune_jobs(
        &self,
        jobs: &[(PrunableJob, Option<i64>)],
        summaries: bool,
        cutoff: i64,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut deleted = 0;
        let mut gone = Vec::new();
        for (job, cost_microusd) in jobs {
            // Checked again under the lock: a retried notification may be pending again.
            let still: Option<String> = sql::query_scalar(AssertSqlSafe(format!(
                "SELECT id FROM jobs WHERE id = ? AND status IN {TERMINAL} AND finished_at < ? \
                 AND {NOTHING_TO_DELIVER}"
            )))
            .bind(&job.id)
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await?;
            if still.is_none() {
                continue;
            }
            if summaries {
                // Copied from the row as it is under the lock, its token and tool columns with
                // its usage.
                sql::query(
                    "INSERT INTO job_summaries (id, name, model, status, created_at, submitted_at, \
                     finished_at, usage, input_tokens, cached_tokens, output_tokens, \
                     reasoning_tokens, total_tokens, web_search_calls, web_search_preview_calls, \
                     file_search_calls, code_containers, images, image_fee_microusd, service_tier, \
                     cost_microusd, error_code, pruned_at) \
                     SELECT id, name, model, status, created_at, submitted_at, finished_at, usage, \
                     input_tokens, cached_tokens, output_tokens, reasoning_tokens, total_tokens, \
                     web_search_calls, web_search_preview_calls, file_search_calls, code_containers, \
                     images, image_fee_microusd, service_tier, \
                     ?, error_code, ? FROM jobs WHERE id = ? ON CONFLICT (id) DO NOTHING",
                )
                .bind(cost_microusd)
                .bind(now)
                .bind(&job.id)
                .execute(&mut *tx)
                .await?;
            }
            // A job's turns and the actions they asked for go with it (they hold no cascade).
            for table in [
                "job_actions",
                "job_turns",
                "artifacts",
                "job_events",
                "notifications",
                "webhook_deliveries",
                "duplicate_responses",
            ] {
                sql::query(AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE job_id = ?"
                )))
                .bind(&job.id)
                .execute(&mut *tx)
                .await?;
            }
            let n = sql::query("DELETE FROM jobs WHERE id = ?")
                .bind(&job.id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            deleted += n;
            if n > 0
                && let Ok(id) = crate::job::JobId::parse(&job.id)
            {
                gone.push(id);
            }
        }
        tx.commit().await?;
        // Their artifacts' rows went with them (cascade); the files go now.
        self.remove_artifact_dirs(&gone).await;
        Ok(deleted)
    }

    /// Deletes webhook delivery records received before `before` (unix ms), in batches of
    /// [`DELIVERY_BATCH`]. Returns how many.
    pub async fn prune_deliveries(&self, before: i64) -> Result<u64, StoreError> {
        // Under the write lock, as every many-row delete here: on PostgreSQL, another daemon
        // pruning or handing off the same rows in another order would deadlock with it. In
        // batches, so that a week of deliveries (millions of rows under load) never holds the
        // lock every daemon's writes wait for past their timeout.
        let mut deleted = 0;
        loop {
            let n = self
                .execute_locked(
                    sql::query(
                        "DELETE FROM webhook_deliveries WHERE webhook_id IN \
                         (SELECT webhook_id FROM webhook_deliveries WHERE received_at < ? \
                          ORDER BY received_at LIMIT ?)",
                    )
                    .bind(before)
                    .bind(DELIVERY_BATCH),
                )
                .await?;
            deleted += n;
            if n < DELIVERY_BATCH as u64 {
                return Ok(deleted);
            }
        }
    }

    /// Deletes up to `limit` summaries of pruned jobs that ended before `before` (unix ms).
    /// Returns how many.
    pub async fn prune_summaries(&self, before: i64, limit: i64) -> Result<u64, StoreError> {
        self.execute_locked(
            sql::query(
                "DELETE FROM job_summaries WHERE id IN \
             (SELECT id FROM job_summaries WHERE finished_at < ? ORDER BY finished_at LIMIT ?)",
            )
            .bind(before)
            .bind(limit),
        )
        .await
    }

    /// Deletes the webhook secrets that stopped being accepted before `before` (unix ms):
    /// retired by a rotation, they verify nothing any more. Returns how many.
    pub async fn prune_retired_webhook_secrets(&self, before: i64) -> Result<u64, StoreError> {
        self.execute_locked(
            sql::query(
                "DELETE FROM webhook_secrets WHERE expires_at IS NOT NULL AND expires_at < ?",
            )
            .bind(before),
        )
        .await
    }

    /// Deletes up to `limit` schedule runs that nothing needs any more, in one transaction,
    /// and adds those that created a job to their schedule's `runs_pruned` (so its count of
    /// runs stays whole). Returns how many were deleted. A run is kept while any of these
    /// holds:
    ///
    /// - its tick is at or after `before` (unix ms);
    /// - it is one of the newest `keep_per_schedule` runs of its schedule (listings, and the
    ///   latest run they show);
    /// - its job still exists and is unfinished, or it waits for its turn: the overlap check
    ///   and the release of `overlap: queue` runs look for exactly those rows;
    /// - the schedule has not moved past its tick (`scheduled_for >= next_run_at`): the
    ///   unique (schedule, tick) row is what stops a tick from running twice, and only ticks
    ///   before `next_run_at` can never be planned again (a schedule that is changed or comes
    ///   back restarts at a future tick).
    pub async fn prune_schedule_runs(
        &self,
        before: i64,
        keep_per_schedule: i64,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let victims: Vec<(i64, String, i64)> = sql::query_as(AssertSqlSafe(format!(
            "SELECT r.id, r.schedule_name, CASE WHEN r.job_id IS NULL THEN 0 ELSE 1 END \
             FROM schedule_runs r \
             LEFT JOIN schedules s ON s.name = r.schedule_name \
             WHERE r.scheduled_for < ? AND r.waiting = 0 \
               AND (s.next_run_at IS NULL OR r.scheduled_for < s.next_run_at) \
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = r.job_id \
                               AND j.status NOT IN {TERMINAL}) \
               AND (? <= 0 OR r.scheduled_for < (SELECT k.scheduled_for FROM schedule_runs k \
                   WHERE k.schedule_name = r.schedule_name \
                   ORDER BY k.scheduled_for DESC LIMIT 1 OFFSET ?)) \
             ORDER BY r.scheduled_for LIMIT ?"
        )))
        .bind(before)
        .bind(keep_per_schedule)
        .bind((keep_per_schedule - 1).max(0))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut created: BTreeMap<&str, i64> = BTreeMap::new();
        for (id, schedule, had_job) in &victims {
            sql::query("DELETE FROM schedule_runs WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if *had_job != 0 {
                *created.entry(schedule).or_default() += 1;
            }
        }
        for (schedule, n) in created {
            sql::query("UPDATE schedules SET runs_pruned = runs_pruned + ? WHERE name = ?")
                .bind(n)
                .bind(schedule)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(victims.len() as u64)
    }

    /// Summaries of pruned jobs by status.
    pub async fn count_summaries_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sql::query_as(
            "SELECT status, COUNT(*) FROM job_summaries GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.reads)
        .await?)
    }

    /// How much work waits, by kind.
    pub async fn queue_depths(&self, now: i64) -> Result<QueueDepths, StoreError> {
        let (pending, held, due_polls, outbox_pending): (i64, i64, i64, i64) = sql::query_as(
            "SELECT \
               (SELECT COUNT(*) FROM jobs WHERE status = 'pending' AND submit_state = 'ready'), \
               (SELECT COUNT(*) FROM jobs WHERE status = 'held'), \
               (SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'queued', 'in_progress') \
                  AND response_id IS NOT NULL AND next_check_at <= ?), \
               (SELECT COUNT(*) FROM notifications WHERE state = 'pending')",
        )
        .bind(now)
        .fetch_one(&self.reads)
        .await?;
        Ok(QueueDepths {
            pending,
            held,
            due_polls,
            outbox_pending,
        })
    }

    /// The database file, if it is one (not in memory).
    pub async fn database_file(&self) -> Result<Option<PathBuf>, StoreError> {
        // A server's database is no file of ours: PostgreSQL is backed up with `pg_dump`.
        if self.backend() == super::Backend::Postgres {
            return Ok(None);
        }
        let rows: Vec<(i64, String, String)> = sql::query_as("PRAGMA database_list")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .find(|(_, name, _)| name == "main")
            .map(|(_, _, file)| file)
            .filter(|f| !f.is_empty())
            .map(PathBuf::from))
    }

    /// Writes a consistent copy of the whole database to `target` (which must not exist) while
    /// the daemon keeps working: `VACUUM INTO` reads one snapshot (WAL mode lets writers go on)
    /// and writes a compact, self-contained file.
    pub async fn backup_into(&self, target: &Path) -> Result<(), StoreError> {
        let target = target
            .to_str()
            .ok_or_else(|| StoreError::Corrupt("the backup path is not UTF-8".into()))?;
        // On a connection of the write pool, not the writer of `direct.rs`: it runs outside a
        // transaction, and long. It reads one snapshot, so it takes no writer's turn: the
        // writers carry on.
        let mut conn = self.pool.lend().await?;
        sql::query("VACUUM INTO ?")
            .bind(target)
            .execute(&mut *conn)
            .await?;
        conn.done();
        Ok(())
    }

    /// Rebuilds the database file to reclaim the space of deleted rows, then checkpoints the
    /// write-ahead log into it (and truncates the log). Writers wait while it runs (up to the
    /// busy timeout).
    pub async fn vacuum(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.lend_for_statements().await?;
        if self.backend() == super::Backend::Postgres {
            // Autovacuum keeps PostgreSQL's tables; an explicit one gives space back now.
            sql::query("VACUUM (ANALYZE)").execute(&mut *conn).await?;
            conn.done();
            return Ok(());
        }
        sql::query("VACUUM").execute(&mut *conn).await?;
        // Busy readers may keep part of the log: a partial checkpoint is fine.
        sql::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await?;
        conn.done();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, sql};

    /// Deliveries are pruned in batches: more than one batch's worth goes, those received
    /// since stay.
    #[tokio::test]
    async fn deliveries_past_retention_go_in_batches() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let pool = store.pool_for_tests();
        let old = super::DELIVERY_BATCH * 2 + 17;
        let rows = (0..old)
            .map(|i| (i, 100_i64))
            .chain((0..25).map(|i| (i, 10_000)));
        let rows: Vec<(i64, i64)> = rows.collect();
        for chunk in rows.chunks(1_000) {
            let mut b = sqlx::QueryBuilder::<sqlx::Any>::new(
                "INSERT INTO webhook_deliveries (webhook_id, received_at, event_type, body) ",
            );
            b.push_values(chunk, |mut row, &(i, received_at)| {
                row.push_bind(format!("wh_{received_at}_{i}"))
                    .push_bind(received_at)
                    .push_bind("response.completed")
                    .push_bind("{}");
            });
            sql::built(&mut b).execute(&pool).await.unwrap();
        }
        assert_eq!(store.prune_deliveries(5_000).await.unwrap(), old as u64);
        let left: i64 = sql::query_scalar("SELECT COUNT(*) FROM webhook_deliveries")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 25);
    }

    /// A finished job that used tool calls is pruned with its turns and actions (their rows
    /// hold no cascade: the job's delete failed on the foreign key before).
    #[tokio::test]
    async fn a_job_with_turns_and_actions_is_pruned_whole() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let store = Store::connect(&url).await.unwrap();
        let pool = store.pool_for_tests();
        let id = crate::job::JobId::generate();
        sql::query(
            "INSERT INTO jobs (id, name, model, status, spec, spec_hash, submit_state, \
             created_at, updated_at, finished_at) \
             VALUES (?, 'n', 'gpt-5', 'completed', '{}', 'h', 'done', 1, 1, 10)",
        )
        .bind(id.as_str())
        .execute(&pool)
        .await
        .unwrap();
        sql::query(
            "INSERT INTO job_turns (job_id, turn, response_id, response, finished_at) \
             VALUES (?, 0, 'resp_t0', '{}', 5)",
        )
        .bind(id.as_str())
        .execute(&pool)
        .await
        .unwrap();
        sql::query(
            "INSERT INTO job_actions (job_id, turn, item_id, kind, name, arguments, state) \
             VALUES (?, 0, 'call_1', 'function', 'get_weather', '{}', 'done')",
        )
        .bind(id.as_str())
        .execute(&pool)
        .await
        .unwrap();
        let prunable = store.prunable_jobs(100, 10).await.unwrap();
        assert_eq!(prunable.len(), 1);
        let jobs: Vec<_> = prunable.into_iter().map(|j| (j, None)).collect();
        assert_eq!(store.prune_jobs(&jobs, true, 100, 200).await.unwrap(), 1);
        for table in ["jobs", "job_turns", "job_actions"] {
            let n: i64 =
                sql::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!(n, 0, "{table} kept rows of the pruned job");
        }
        store.close().await;
    }

    /// The pools open the very file the path names, whatever it holds: `..`, spaces, `#`,
    /// non-ASCII (a URL's path would lose the `..`).
    #[tokio::test]
    async fn an_odd_database_path_opens_that_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let name = "we ird #ü.db";
        let url = format!("sqlite://{}/sub/../{name}", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        let id = crate::job::JobId::generate();
        sql::query(
            "INSERT INTO jobs (id, name, model, status, spec, spec_hash, submit_state, \
             created_at, updated_at) VALUES (?, 'n', 'gpt-5', 'pending', '{}', 'h', 'ready', 1, 1)",
        )
        .bind(id.as_str())
        .execute(&store.pool_for_tests())
        .await
        .unwrap();
        // The reads' pool sees the write: both opened the same file.
        let seen: i64 = sql::query_scalar("SELECT COUNT(*) FROM jobs WHERE id = ?")
            .bind(id.as_str())
            .fetch_one(&store.reads)
            .await
            .unwrap();
        assert_eq!(seen, 1);
        store.close().await;
        let files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".db"))
            .collect();
        assert_eq!(files, vec![name.to_string()]);
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            0
        );
    }
}
