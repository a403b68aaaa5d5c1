//! Webhook deliveries: one row per `webhook-id`, which makes a duplicate delivery a no-op.
//! Deliveries for response ids no job knows yet are kept, unhandled, and attached when the
//! id appears.

use serde::Serialize;
use sqlx::{FromRow, QueryBuilder, Sqlite};

use super::{Store, StoreError};
use crate::job::JobId;
use crate::signing::Verified;

/// A recorded delivery.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct DeliveryRow {
    pub webhook_id: String,
    pub received_at: i64,
    pub event_id: Option<String>,
    pub event_type: String,
    pub object_id: Option<String>,
    pub job_id: Option<String>,
    pub handled_at: Option<i64>,
}

/// Rows per `INSERT` statement (6 bound values each, under SQLite's 32,766).
const MAX_ROWS_PER_INSERT: usize = 5_000;

impl Store {
    /// Records verified deliveries (each with the time it was received) in one transaction:
    /// one commit, so one fsync, for the whole batch (group commit, see `inbound::recorder`).
    /// Returns, for each delivery in order, whether it is new: false if its `webhook-id` was
    /// recorded before, or earlier in the same batch.
    pub async fn record_deliveries(
        &self,
        batch: &[(&Verified, i64)],
    ) -> Result<Vec<bool>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut inserted = std::collections::HashSet::new();
        // SQLite takes at most 32,766 bound values in a statement: 6 per row.
        for chunk in batch.chunks(MAX_ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO webhook_deliveries \
                 (webhook_id, received_at, event_id, event_type, object_id, body) ",
            );
            q.push_values(chunk, |mut row, (d, received_at)| {
                row.push_bind(d.webhook_id())
                    .push_bind(*received_at)
                    .push_bind(d.event_id())
                    .push_bind(d.event_type())
                    .push_bind(d.object_id())
                    .push_bind(d.body());
            });
            q.push(" ON CONFLICT (webhook_id) DO NOTHING RETURNING webhook_id");
            let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *tx).await?;
            inserted.extend(ids);
        }
        tx.commit().await?;
        // A webhook id inserted by this batch is new at its first place in it only.
        Ok(batch
            .iter()
            .map(|(d, _)| inserted.remove(d.webhook_id()))
            .collect())
    }

    /// Marks a delivery as handed to a job (or as needing no hand-off, with `job_id` None).
    pub async fn mark_delivery_handled(
        &self,
        webhook_id: &str,
        job_id: Option<&JobId>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET handled_at = ?, job_id = ? WHERE webhook_id = ?",
        )
        .bind(now)
        .bind(job_id)
        .bind(webhook_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deliveries not yet handed to a job, oldest first (to retry after a crash or once the
    /// response id they name appears).
    pub async fn unhandled_deliveries(&self, limit: i64) -> Result<Vec<DeliveryRow>, StoreError> {
        Ok(sqlx::query_as::<_, DeliveryRow>(
            "SELECT webhook_id, received_at, event_id, event_type, object_id, job_id, handled_at \
             FROM webhook_deliveries WHERE handled_at IS NULL ORDER BY received_at LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Counts deliveries (for tests and metrics).
    pub async fn count_deliveries(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Whether any verified delivery named this response id.
    pub async fn has_delivery_for(&self, object_id: &str) -> Result<bool, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE object_id = ?")
                .bind(object_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(n > 0)
    }

    /// The first verified delivery of `event_type` received at or after `since` that names no
    /// job's response: how `respool webhook test` learns that its test event arrived. (A real
    /// event for a response no job knows yet, such as an uncertain create's, arriving in the
    /// same seconds could be taken for it; the test only reports, it changes nothing.)
    pub async fn find_test_delivery(
        &self,
        event_type: &str,
        since: i64,
    ) -> Result<Option<DeliveryRow>, StoreError> {
        Ok(sqlx::query_as::<_, DeliveryRow>(
            "SELECT webhook_id, received_at, event_id, event_type, object_id, job_id, handled_at \
             FROM webhook_deliveries d WHERE event_type = ? AND received_at >= ? \
             AND (object_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.response_id = d.object_id)) \
             ORDER BY received_at LIMIT 1",
        )
        .bind(event_type)
        .bind(since)
        .fetch_optional(&self.pool)
        .await?)
    }
}
