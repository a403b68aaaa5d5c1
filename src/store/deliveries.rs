//! Webhook deliveries: one row per `webhook-id`, which makes a duplicate delivery a no-op.
//! Deliveries for response ids no job knows yet are kept, unhandled, and attached when the
//! id appears.

use serde::Serialize;
use sqlx::FromRow;

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

impl Store {
    /// Records a verified delivery. Returns false if this `webhook-id` was seen before.
    pub async fn record_delivery(
        &self,
        d: &Verified,
        received_at: i64,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "INSERT INTO webhook_deliveries (webhook_id, received_at, event_id, event_type, object_id, body) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (webhook_id) DO NOTHING",
        )
        .bind(d.webhook_id())
        .bind(received_at)
        .bind(d.event_id())
        .bind(d.event_type())
        .bind(d.object_id())
        .bind(d.body())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
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
