//! Live progress of `progress: stream` jobs: how far each job's event stream was read
//! (`jobs.progress_stream`, `jobs.progress_seq`), its milestones in the timeline, and the
//! timeline read after an event id for `GET /v1/jobs/{id}/events?follow=true`.
//!
//! Nothing here writes a job's status or result: the stream is a view of the run, and the
//! ledger's end always comes from a retrieve (`observations.rs`).

use crate::store::sql;
use sqlx::FromRow;

use super::events::add_event;
use super::{EventKind, EventRow, Store, StoreError};
use crate::job::{JobId, JobStatus, ResponseId};

/// Where a job's stream stands (`jobs.progress_stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Followed, or to be resumed after a restart.
    Live,
    /// Given up: polls and webhooks alone follow the job.
    Polling,
    /// Its terminal event was read.
    Done,
}

impl StreamState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Polling => "polling",
            Self::Done => "done",
        }
    }
}

/// A job whose stream is to be followed.
#[derive(Debug, Clone, FromRow)]
pub struct LiveStream {
    pub id: JobId,
    pub response_id: ResponseId,
    /// The last `sequence_number` recorded, if any.
    pub progress_seq: Option<i64>,
    /// The turn whose response the stream is.
    pub progress_turn: i64,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    /// When the create was answered (unix ms).
    pub submitted_at: Option<i64>,
}

/// One milestone for the timeline.
#[derive(Debug, Clone)]
pub struct Milestone {
    pub message: String,
    pub data: serde_json::Value,
}

impl Store {
    /// Marks a job's stream as followed, before its create is sent: a daemon that dies with
    /// the stream open finds the job to resume it.
    /// Each turn's stream is its own: `turn` starts it afresh (no sequence number read yet).
    pub async fn mark_stream_live(
        &self,
        id: &JobId,
        turn: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        sql::query(
            "UPDATE jobs SET progress_stream = 'live', progress_seq = NULL, progress_turn = ?, \
             updated_at = ? WHERE id = ? AND status IN ('pending', 'queued', 'in_progress')",
        )
        .bind(turn)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records milestones read from a job's stream up to `seq`, in one transaction, if the
    /// stream is still followed and was read up to `from` (compare and set: of two followers
    /// of one stream, say after a restart beside a daemon still reading it, only one writes each
    /// stretch, so no milestone is written twice). Returns false (nothing written) otherwise.
    pub async fn record_progress(
        &self,
        (id, turn): (&JobId, i64),
        from: Option<i64>,
        seq: i64,
        now: i64,
        milestones: &[Milestone],
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sql::query(
            "UPDATE jobs SET progress_seq = ? WHERE id = ? AND progress_stream = 'live' \
             AND COALESCE(progress_turn, 0) = ? AND COALESCE(progress_seq, -1) = ?",
        )
        .bind(seq)
        .bind(id)
        .bind(turn)
        .bind(from.unwrap_or(-1))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        for m in milestones {
            add_event(
                &mut tx,
                id,
                now,
                EventKind::Progress,
                &m.message,
                Some(&m.data),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Ends the following of a job's stream (`Polling` or `Done`), with a `stream` event
    /// saying why. Returns false when it had already ended.
    pub async fn end_stream(
        &self,
        (id, turn): (&JobId, i64),
        state: StreamState,
        now: i64,
        message: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sql::query(
            "UPDATE jobs SET progress_stream = ? WHERE id = ? AND progress_stream = 'live' \
             AND COALESCE(progress_turn, 0) = ?",
        )
        .bind(state.as_str())
        .bind(id)
        .bind(turn)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        add_event(&mut tx, id, now, EventKind::Stream, message, data).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The jobs whose streams are followed and whose responses still run.
    pub async fn live_streams(&self) -> Result<Vec<LiveStream>, StoreError> {
        Ok(sql::query_as::<LiveStream>(
            "SELECT id, response_id, progress_seq, COALESCE(progress_turn, 0) AS progress_turn, status, submitted_at FROM jobs \
             WHERE progress_stream = 'live' AND response_id IS NOT NULL \
             AND status IN ('queued', 'in_progress')",
        )
        .fetch_all(&self.reads)
        .await?)
    }

    /// A job's stream state and where it was read up to: `None` when the job is gone.
    pub async fn stream_of(
        &self,
        id: &JobId,
    ) -> Result<Option<(Option<String>, Option<i64>)>, StoreError> {
        Ok(sql::query_as::<(Option<String>, Option<i64>)>(
            "SELECT progress_stream, progress_seq FROM jobs WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The data of a job's last `progress` milestone, if any: where a resumed stream goes on.
    pub async fn last_progress(&self, id: &JobId) -> Result<Option<serde_json::Value>, StoreError> {
        let data: Option<Option<String>> = sql::query_scalar(
            "SELECT data FROM job_events WHERE job_id = ? AND kind = 'progress' \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(data.flatten().and_then(|d| serde_json::from_str(&d).ok()))
    }

    /// Up to `limit` of a job's timeline events after event `after` (all when `None`),
    /// oldest first.
    pub async fn events_after(
        &self,
        job_id: &JobId,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        Ok(sql::query_as::<EventRow>(
            "SELECT id, job_id, at, kind, message, data FROM job_events \
             WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(job_id)
        .bind(after.unwrap_or(0))
        .bind(limit)
        .fetch_all(&self.reads)
        .await?)
    }

    /// A job's status, or `None` when it is gone (a row that no longer decodes reads as its
    /// stored text, here not needed: `None` too).
    pub async fn status_of(&self, id: &JobId) -> Result<Option<JobStatus>, StoreError> {
        let s: Option<String> = sql::query_scalar("SELECT status FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reads)
            .await?;
        Ok(s.and_then(|s| JobStatus::try_from(s).ok()))
    }
}
