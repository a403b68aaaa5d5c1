//! The job timeline: every event in a job's life, append-only.

use serde::Serialize;
use sqlx::{FromRow, SqliteConnection};

use super::{Store, StoreError};

/// One timeline entry.
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct EventRow {
    pub id: i64,
    pub job_id: String,
    /// Unix milliseconds.
    pub at: i64,
    pub kind: String,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    #[sqlx(json(nullable))]
    pub data: Option<serde_json::Value>,
}

/// Appends an event to a job's timeline inside the caller's transaction.
pub(super) async fn add_event(
    conn: &mut SqliteConnection,
    job_id: &str,
    at: i64,
    kind: &str,
    message: &str,
    data: Option<&serde_json::Value>,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO job_events (job_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)")
        .bind(job_id)
        .bind(at)
        .bind(kind)
        .bind(message)
        .bind(data.map(ToString::to_string))
        .execute(conn)
        .await?;
    Ok(())
}

impl Store {
    /// Appends an event to a job's timeline.
    pub async fn record_event(
        &self,
        job_id: &str,
        at: i64,
        kind: &str,
        message: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        add_event(&mut conn, job_id, at, kind, message, data).await
    }

    /// A job's timeline, oldest first.
    pub async fn list_events(&self, job_id: &str) -> Result<Vec<EventRow>, StoreError> {
        Ok(sqlx::query_as::<_, EventRow>(
            "SELECT id, job_id, at, kind, message, data FROM job_events WHERE job_id = ? ORDER BY id",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
