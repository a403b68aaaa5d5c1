//! The job timeline: every event in a job's life, append-only.

use super::lending::Conn;
use crate::store::sql;
use serde::Serialize;
use sqlx::FromRow;

use super::{Store, StoreError};
use crate::job::JobId;

/// What a timeline event records. Stored (and shown) as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The job entered the ledger (from a jobs file, the API, a schedule, or as a retry).
    Accepted,
    /// Its spec has a field OpenAI's create-request schema does not name; sent as it is.
    SpecWarning,
    /// A worker claimed it and is sending the create.
    Submitting,
    /// One of its attachments was uploaded, found uploaded, or could not be.
    Attachment,
    /// The create answered with a response id.
    Submitted,
    /// A response our create started was found another way (webhook, create journal) and taken.
    Adopted,
    /// The create failed before anything was created; sent again later.
    SubmitRetry,
    /// The create may or may not have reached OpenAI.
    SubmitUncertain,
    /// An uncertain create's wait ended with nothing revealed; sent again (policy `resubmit`).
    Resubmit,
    /// The status moved (`from → to`, and what told us).
    Status,
    /// What the finished response made (images, container files) was kept, or could not be.
    Artifacts,
    /// A turn's response asked for function outputs or MCP approvals (`data.actions`).
    Actions,
    /// One of those was answered (a handler, a policy, a person) or could not be.
    Action,
    /// Every action of a turn is answered: the next turn is sent.
    Turn,
    /// A webhook about its response arrived.
    Webhook,
    /// A scheduled run waits for the previous run (`overlap: queue`).
    Waiting,
    /// Held by a budget.
    Held,
    /// Released from a hold or a wait.
    Released,
    /// Its conversation (`conversation: new`) was created, or a create of it was sent.
    Conversation,
    /// Waiting for a model's rate-limit window.
    RateLimitWait,
    /// Something went wrong that the timeline should show (the message says what).
    Error,
    /// A poll answered 404.
    PollNotFound,
    /// A cancel was asked for (a user, a timeout).
    CancelRequested,
    /// The cancel reached OpenAI.
    CancelSent,
    /// A second response exists for the job (a paid duplicate).
    Duplicate,
    /// The row does not decode; it was set aside.
    Quarantined,
    /// A response revealed after the job ended without one reopened it.
    Reopened,
    /// A new job retries this one.
    Retried,
    /// A sink was told.
    Notified,
    /// A sink could not be told (for good, or this attempt).
    NotifyFailed,
    /// A notification was queued again by hand.
    NotifyRetry,
    /// A milestone read from the response's event stream (`progress: stream`).
    Progress,
    /// The event stream was resumed, given up for polls, or found stuck.
    Stream,
}

impl EventKind {
    /// Every kind, in the order of a job's life.
    pub const ALL: &[EventKind] = &[
        Self::Accepted,
        Self::SpecWarning,
        Self::Submitting,
        Self::Attachment,
        Self::Submitted,
        Self::Adopted,
        Self::SubmitRetry,
        Self::SubmitUncertain,
        Self::Resubmit,
        Self::Status,
        Self::Artifacts,
        Self::Actions,
        Self::Action,
        Self::Turn,
        Self::Webhook,
        Self::Waiting,
        Self::Held,
        Self::Released,
        Self::Conversation,
        Self::RateLimitWait,
        Self::Error,
        Self::PollNotFound,
        Self::CancelRequested,
        Self::CancelSent,
        Self::Duplicate,
        Self::Quarantined,
        Self::Reopened,
        Self::Retried,
        Self::Notified,
        Self::NotifyFailed,
        Self::NotifyRetry,
        Self::Progress,
        Self::Stream,
    ];

    /// The name stored in `job_events.kind` and shown by the API, the CLI and the pages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::SpecWarning => "spec_warning",
            Self::Submitting => "submitting",
            Self::Attachment => "attachment",
            Self::Submitted => "submitted",
            Self::Adopted => "adopted",
            Self::SubmitRetry => "submit_retry",
            Self::SubmitUncertain => "submit_uncertain",
            Self::Resubmit => "resubmit",
            Self::Status => "status",
            Self::Artifacts => "artifacts",
            Self::Actions => "actions",
            Self::Action => "action",
            Self::Turn => "turn",
            Self::Webhook => "webhook",
            Self::Waiting => "waiting",
            Self::Held => "held",
            Self::Released => "released",
            Self::Conversation => "conversation",
            Self::RateLimitWait => "rate_limit_wait",
            Self::Error => "error",
            Self::PollNotFound => "poll_not_found",
            Self::CancelRequested => "cancel_requested",
            Self::CancelSent => "cancel_sent",
            Self::Duplicate => "duplicate",
            Self::Quarantined => "quarantined",
            Self::Reopened => "reopened",
            Self::Retried => "retried",
            Self::Notified => "notified",
            Self::NotifyFailed => "notify_failed",
            Self::NotifyRetry => "notify_retry",
            Self::Progress => "progress",
            Self::Stream => "stream",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One timeline entry. `kind` is an [`EventKind`]'s name (kept as text: a timeline written
/// by a newer respool still reads).
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct EventRow {
    pub id: i64,
    #[schema(value_type = String)]
    pub job_id: JobId,
    /// Unix milliseconds.
    pub at: i64,
    pub kind: String,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    #[sqlx(try_from = "crate::store::sql::NullableJson")]
    pub data: Option<serde_json::Value>,
}

/// Appends an event to a job's timeline inside the caller's transaction.
pub(super) async fn add_event(
    conn: &mut Conn,
    job_id: &str,
    at: i64,
    kind: EventKind,
    message: &str,
    data: Option<&serde_json::Value>,
) -> Result<(), StoreError> {
    sql::query("INSERT INTO job_events (job_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)")
        .bind(job_id)
        .bind(at)
        .bind(kind.as_str())
        .bind(message)
        .bind(data.map(ToString::to_string))
        .execute(conn)
        .await?;
    // A hint for followers of timelines (`?follow=true`): the row may not be committed yet,
    // so they read again a moment later, and on their own every second.
    EVENTS_WRITTEN.send_modify(|n| *n = n.wrapping_add(1));
    Ok(())
}

/// At most this many events go into one statement (SQLite takes at most 32,766 bound values
/// in a statement: 5 per row).
const MAX_EVENTS_PER_INSERT: usize = 1_000;

/// An event to append with [`add_events`].
pub(super) struct NewEvent<'a> {
    pub job_id: &'a str,
    pub at: i64,
    pub kind: EventKind,
    pub message: &'a str,
    pub data: Option<&'a serde_json::Value>,
}

/// Appends several events (to one job's timeline or several) inside the caller's transaction,
/// in one statement: their ids follow their order.
pub(super) async fn add_events(conn: &mut Conn, events: &[NewEvent<'_>]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    for chunk in events.chunks(MAX_EVENTS_PER_INSERT) {
        let mut q = sqlx::QueryBuilder::<sqlx::Any>::new(
            "INSERT INTO job_events (job_id, at, kind, message, data) ",
        );
        q.push_values(chunk, |mut row, e| {
            row.push_bind(e.job_id)
                .push_bind(e.at)
                .push_bind(e.kind.as_str())
                .push_bind(e.message)
                .push_bind(e.data.map(ToString::to_string));
        });
        sql::built(&mut q).execute(&mut *conn).await?;
    }
    EVENTS_WRITTEN.send_modify(|n| *n = n.wrapping_add(1));
    Ok(())
}

/// Counts the timeline events this process wrote: a wake-up for the followers of timelines,
/// never a source of truth (another daemon's writes do not show here; followers read the
/// table again every second too). One per process: every `Store` of it shares the counter,
/// which at worst wakes a follower for nothing.
static EVENTS_WRITTEN: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// A receiver that changes when this process writes a timeline event.
pub fn events_written() -> tokio::sync::watch::Receiver<u64> {
    EVENTS_WRITTEN.subscribe()
}

impl Store {
    /// Appends an event to a job's timeline.
    pub async fn record_event(
        &self,
        job_id: &JobId,
        at: i64,
        kind: EventKind,
        message: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        // Under the write lock, as every other event: on PostgreSQL an event's id is taken
        // when it is inserted, so an insert outside the lock could commit a later id before
        // an earlier one, and a follower reading `id > last` would skip the earlier one.
        let mut tx = self.begin_write().await?;
        add_event(&mut tx, job_id, at, kind, message, data).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A job's timeline, oldest first.
    pub async fn list_events(&self, job_id: &JobId) -> Result<Vec<EventRow>, StoreError> {
        Ok(sql::query_as::<EventRow>(
            "SELECT id, job_id, at, kind, message, data FROM job_events WHERE job_id = ? ORDER BY id",
        )
        .bind(job_id)
        .fetch_all(&self.reads)
        .await?)
    }
}

#[cfg(test)]
mod kind_tests {
    use super::EventKind;

    #[test]
    fn kind_names_are_distinct_snake_case() {
        let names: std::collections::BTreeSet<&str> =
            EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), EventKind::ALL.len());
        for n in names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
        }
    }
}
