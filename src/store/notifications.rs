//! The notification outbox: one row per (job, sink, event), written in the same transaction
//! as the status change that causes it, then delivered by the notifier with retries.
//!
//! Every claim bumps the row's `claim` counter (never reset, unlike `attempts`, which a manual
//! retry resets) and returns it; the closing writes ([`Store::mark_notification_delivered`],
//! [`Store::mark_notification_failed`]) apply only while the row is still `pending` under that
//! same claim. A worker whose lease ran out and whose row another worker claimed again, or a
//! late failure after a delivery, changes nothing.

use super::lending::Conn;
use crate::store::sql;
use serde::Serialize;
use sqlx::FromRow;

use sqlx::{Any, QueryBuilder};

use super::events::{EventKind, add_event};
use super::{Backend, Store, StoreError};
use crate::job::{JobId, JobStatus};

/// A sink that should hear about a terminal status.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub sink: String,
    /// The statuses this sink wants (a job's `notify: [{sink, on}]`).
    pub on: Vec<JobStatus>,
}

/// A row of the outbox. `state` is `pending`, `delivered` or `dead`; times are unix ms.
#[derive(Debug, Clone, FromRow, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NotificationRow {
    pub id: i64,
    #[schema(value_type = String)]
    pub job_id: JobId,
    pub sink: String,
    pub event: String,
    pub state: String,
    pub attempts: i64,
    /// How many times the row was claimed: the fencing token of the latest claim (never
    /// reset, unlike `attempts`).
    #[serde(default)]
    pub claim: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// Inserts the outbox rows a terminal status causes, inside the caller's transaction.
pub(super) async fn insert_outbox(
    conn: &mut Conn,
    job_id: &str,
    status: JobStatus,
    entries: &[OutboxEntry],
    now: i64,
) -> Result<(), StoreError> {
    let event = format!("job.{status}");
    for e in entries.iter().filter(|e| e.on.contains(&status)) {
        sql::query(
            "INSERT INTO notifications (job_id, sink, event, state, next_attempt_at, created_at) \
             VALUES (?, ?, ?, 'pending', ?, ?) ON CONFLICT (job_id, sink, event) DO NOTHING",
        )
        .bind(job_id)
        .bind(&e.sink)
        .bind(&event)
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Which sinks' notifications a claim takes.
#[derive(Debug, Clone, Copy)]
pub enum SinkFilter<'a> {
    Any,
    /// One sink's.
    Only(&'a str),
    /// Those of sinks not named here (sinks no longer configured: their rows are claimed so
    /// they can end, rather than wait for ever).
    NoneOf(&'a [String]),
}

impl Store {
    /// Claims up to `limit` due notifications of any sink, leasing them for `lease_ms`.
    pub async fn claim_notifications(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        self.claim_notifications_of(now, lease_ms, limit, SinkFilter::Any)
            .await
    }

    /// Claims up to `limit` due notifications of the sinks `sinks` says, oldest due first,
    /// leasing them for `lease_ms`. Index-ordered: no sort of the backlog.
    pub async fn claim_notifications_of(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
        sinks: SinkFilter<'_>,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let skip_locked = self.backend() == Backend::Postgres;
        let mut q = notification_claim_query("", now, lease_ms, limit, sinks, skip_locked);
        match self.backend() {
            Backend::Sqlite => {
                let mut tx = self.begin_write().await?;
                let rows = sql::built_as::<NotificationRow>(&mut q)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(rows)
            }
            // Without the write lock: the subquery takes only rows no other transaction holds
            // (`FOR UPDATE SKIP LOCKED`), so several daemons' outboxes claim side by side and
            // never the same row (one committed meanwhile is re-checked as it now is: its due
            // time has moved past the lease).
            Backend::Postgres => Ok(sql::built_as::<NotificationRow>(&mut q)
                .fetch_all(&self.pool)
                .await?),
        }
    }

    /// The sinks with notifications due at `now` (a read: the outbox claims only for these).
    pub async fn due_notification_sinks(&self, now: i64) -> Result<Vec<String>, StoreError> {
        Ok(sql::query_scalar(
            "SELECT DISTINCT sink FROM notifications WHERE state = 'pending' AND next_attempt_at <= ?",
        )
        .bind(now)
        .fetch_all(&self.reads)
        .await?)
    }

    /// The earliest time after `now` at which a pending notification is due (a retry's
    /// backoff, a lease running out): when the outbox worker must look again.
    pub async fn next_notification_after(&self, now: i64) -> Result<Option<i64>, StoreError> {
        Ok(sql::query_scalar(
            "SELECT MIN(next_attempt_at) FROM notifications WHERE state = 'pending' AND next_attempt_at > ?",
        )
        .bind(now)
        .fetch_one(self.reads.quick())
        .await?)
    }

    /// Records a delivered notification and notes it in the job's timeline, if the row is
    /// still `pending` under the claim `n` was delivered on. Returns whether it applied: `false`
    /// means the claim is stale (the lease ran out and the row was claimed again, retried by
    /// hand, or closed already) and nothing was written.
    pub async fn mark_notification_delivered(
        &self,
        n: &NotificationRow,
        now: i64,
    ) -> Result<bool, StoreError> {
        let close = Close::Delivered {
            row: n.clone(),
            now,
        };
        self.close_in_one(std::slice::from_ref(&close))
            .await
            .map(|applied| applied[0])
    }

    /// Records a failed delivery: retried at `retry_at`, or a dead letter when `None`; only
    /// while the row is still `pending` under the claim `n` was tried on (a late failure never
    /// undoes a delivery). Returns whether it applied.
    pub async fn mark_notification_failed(
        &self,
        n: &NotificationRow,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let close = Close::Failed {
            row: n.clone(),
            error: error.to_owned(),
            retry_at,
            now,
        };
        self.close_in_one(std::slice::from_ref(&close))
            .await
            .map(|applied| applied[0])
    }

    /// Closes many deliveries in one transaction (one fsync), each as
    /// [`Store::mark_notification_delivered`] or [`Store::mark_notification_failed`] would;
    /// one answer per close, in order. When the transaction fails, each is tried on its own, so
    /// only a close that cannot be written by itself gets an error.
    pub async fn close_notifications(&self, closes: &[Close]) -> Vec<Result<bool, StoreError>> {
        match self.close_in_one(closes).await {
            Ok(applied) => applied.into_iter().map(Ok).collect(),
            Err(e) if closes.len() == 1 => vec![Err(e)],
            Err(_) => {
                let mut out = Vec::with_capacity(closes.len());
                for close in closes {
                    out.push(
                        self.close_in_one(std::slice::from_ref(close))
                            .await
                            .map(|applied| applied[0]),
                    );
                }
                out
            }
        }
    }

    async fn close_in_one(&self, closes: &[Close]) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut applied = Vec::with_capacity(closes.len());
        for close in closes {
            applied.push(close_in(&mut tx, close).await?);
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// Notifications, newest first, by state and/or job.
    pub async fn list_notifications(
        &self,
        state: Option<&str>,
        job_id: Option<&JobId>,
        limit: i64,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        Ok(sql::query_as::<NotificationRow>(
            "SELECT id, job_id, sink, event, state, attempts, claim, next_attempt_at, last_error, created_at, delivered_at \
             FROM notifications WHERE (? IS NULL OR state = ?) AND (? IS NULL OR job_id = ?) \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(state)
        .bind(state)
        .bind(job_id)
        .bind(job_id)
        .bind(limit)
        .fetch_all(&self.reads)
        .await?)
    }

    /// Sends a notification again: back to `pending`, tries counted afresh, due now. Returns
    /// the row after, or `None` if there is no such notification.
    pub async fn retry_notification(
        &self,
        id: i64,
        now: i64,
    ) -> Result<Option<NotificationRow>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sql::query_as::<NotificationRow>(
            "UPDATE notifications SET state = 'pending', attempts = 0, next_attempt_at = ?, delivered_at = NULL \
             WHERE id = ? RETURNING id, job_id, sink, event, state, attempts, claim, next_attempt_at, last_error, \
             created_at, delivered_at",
        )
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(n) = &row {
            add_event(
                &mut tx,
                &n.job_id,
                now,
                EventKind::NotifyRetry,
                &format!("{} to sink `{}` queued again", n.event, n.sink),
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(row)
    }
}

/// The outbox claim's statement, after `prefix` (`EXPLAIN QUERY PLAN ` in the test that keeps
/// it index-ordered).
pub(super) fn notification_claim_query(
    prefix: &str,
    now: i64,
    lease_ms: i64,
    limit: i64,
    sinks: SinkFilter<'_>,
    skip_locked: bool,
) -> QueryBuilder<Any> {
    let mut q = QueryBuilder::<Any>::new(format!(
        "{prefix}UPDATE notifications SET attempts = attempts + 1, claim = claim + 1, next_attempt_at = "
    ));
    // On PostgreSQL as the poll claims (see `observations::skip_locked`): the subquery read
    // once into an array, its rows taken with `FOR NO KEY UPDATE SKIP LOCKED`.
    q.push_bind(now + lease_ms)
        .push(if skip_locked {
            " WHERE id = ANY(ARRAY(SELECT id FROM notifications WHERE state = 'pending' AND next_attempt_at <= "
        } else {
            " WHERE id IN (SELECT id FROM notifications WHERE state = 'pending' AND next_attempt_at <= "
        })
        .push_bind(now);
    match sinks {
        SinkFilter::Any => {}
        SinkFilter::Only(sink) => {
            q.push(" AND sink = ").push_bind(sink);
        }
        SinkFilter::NoneOf([]) => {}
        SinkFilter::NoneOf(names) => {
            q.push(" AND sink NOT IN (");
            let mut list = q.separated(", ");
            for name in names {
                list.push_bind(name);
            }
            q.push(")");
        }
    }
    q.push(" ORDER BY next_attempt_at LIMIT ").push_bind(limit);
    if skip_locked {
        q.push(" FOR NO KEY UPDATE SKIP LOCKED)");
    }
    q.push(
        ") RETURNING id, job_id, sink, event, state, attempts, claim, next_attempt_at, \
             last_error, created_at, delivered_at",
    );
    q
}

/// How a delivery ended: what [`Store::close_notifications`] writes.
#[derive(Debug, Clone)]
pub enum Close {
    Delivered {
        row: NotificationRow,
        now: i64,
    },
    /// Retried at `retry_at`, or a dead letter when `None`.
    Failed {
        row: NotificationRow,
        error: String,
        retry_at: Option<i64>,
        now: i64,
    },
}

/// Writes one close inside the caller's transaction, if the row is still `pending` under the
/// claim it was tried on; returns whether it applied.
async fn close_in(tx: &mut Conn, close: &Close) -> Result<bool, StoreError> {
    match close {
        Close::Delivered { row: n, now } => {
            let applied = sql::query(
                "UPDATE notifications SET state = 'delivered', delivered_at = ?, last_error = NULL \
                 WHERE id = ? AND state = 'pending' AND claim = ?",
            )
            .bind(now)
            .bind(n.id)
            .bind(n.claim)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if applied {
                add_event(
                    tx,
                    &n.job_id,
                    *now,
                    EventKind::Notified,
                    &format!("{} sent to sink `{}`", n.event, n.sink),
                    None,
                )
                .await?;
            }
            Ok(applied)
        }
        Close::Failed {
            row: n,
            error,
            retry_at,
            now,
        } => {
            let applied = sql::query(
                "UPDATE notifications SET state = ?, next_attempt_at = ?, last_error = ? \
                 WHERE id = ? AND state = 'pending' AND claim = ?",
            )
            .bind(if retry_at.is_some() {
                "pending"
            } else {
                "dead"
            })
            .bind(retry_at.unwrap_or(*now))
            .bind(error)
            .bind(n.id)
            .bind(n.claim)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if applied && retry_at.is_none() {
                add_event(
                    tx,
                    &n.job_id,
                    *now,
                    EventKind::NotifyFailed,
                    &format!(
                        "{} to sink `{}` gave up after {} tries: {error}",
                        n.event, n.sink, n.attempts
                    ),
                    None,
                )
                .await?;
            }
            Ok(applied)
        }
    }
}
