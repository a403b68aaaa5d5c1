//! Webhook deliveries: one row per `webhook-id`, which makes a duplicate delivery a no-op.
//! Deliveries for response ids no job knows yet are kept, unhandled, and attached when the
//! id appears.

use super::Backend;
use crate::store::sql;
use std::collections::HashMap;

use serde::Serialize;
use sqlx::{Any, FromRow, QueryBuilder};

use super::events::EventKind;
use super::write_turns::Writer;
use super::{Store, StoreError};
use crate::job::{JobId, ResponseId};
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
    /// How many times the response it names was looked up (it named no job's response).
    pub looks: i64,
}

/// A delivery naming a response no job knows is looked up this many times, then dropped as
/// not ours.
pub const MAX_LOOKS: i64 = 12;

/// The pause after the `looks`-th look-up: 0.5 s, doubling, at most 512 s (the twelve looks
/// span about 17 minutes: long enough for a create in flight, or a journal replay, to record
/// the id).
fn look_backoff_ms(looks: i64) -> i64 {
    500 * 2i64.pow(u32::try_from(looks.clamp(0, 10)).unwrap_or(10))
}

/// What [`Store::hand_off_deliveries`] leaves to the caller.
#[derive(Debug, Default)]
pub struct HandOff {
    /// Deliveries naming a response no job knows, due for a look-up now (already counted as
    /// looked at, and due again after a pause if this look finds nothing).
    pub look_up: Vec<(DeliveryRow, ResponseId)>,
    /// Deliveries given up after [`MAX_LOOKS`] look-ups: marked handled with no job.
    pub given_up: Vec<(DeliveryRow, ResponseId)>,
}

/// Rows per `INSERT` statement (7 bound values each, under SQLite's 32,766).
const MAX_ROWS_PER_INSERT: usize = 4_000;

/// Batches of verified deliveries (each with the time it was received) that the receiver
/// records one after another ([`Store::record_delivery_batches`]).
pub trait DeliveryBatches: Send + 'static {
    /// The batch to record now; empty when none waits.
    fn batch(&self) -> &[(Verified, i64)];
    /// The batch is durable: `new[i]` says whether its i-th delivery is new. The next batch
    /// is what queued meanwhile (never waited for).
    fn recorded(&mut self, new: Vec<bool>);
}

/// The statements that insert `batch`, returning the webhook ids that were new. SQLite takes
/// at most 32,766 bound values in a statement: 7 per row.
fn insert_deliveries<'a>(batch: impl Iterator<Item = (&'a Verified, i64)>) -> Vec<sql::Query> {
    let batch: Vec<(&Verified, i64)> = batch.collect();
    batch
        .chunks(MAX_ROWS_PER_INSERT)
        .map(|chunk| {
            let mut q = QueryBuilder::<Any>::new(
                "INSERT INTO webhook_deliveries \
                 (webhook_id, received_at, next_look_at, event_id, event_type, object_id, body) ",
            );
            q.push_values(chunk, |mut row, (d, received_at)| {
                row.push_bind(d.webhook_id())
                    .push_bind(*received_at)
                    .push_bind(*received_at)
                    .push_bind(d.event_id())
                    .push_bind(d.event_type())
                    .push_bind(d.object_id())
                    .push_bind(d.body());
            });
            q.push(" ON CONFLICT (webhook_id) DO NOTHING RETURNING webhook_id");
            sql::built(&mut q)
        })
        .collect()
}

/// Whether each delivery of a batch is new, from the webhook ids its inserts returned: one
/// inserted by the batch is new at its first place in it only.
fn new_deliveries<'a>(
    batch: impl Iterator<Item = &'a Verified>,
    rows: &[Vec<sqlx::any::AnyRow>],
) -> Result<Vec<bool>, sqlx::Error> {
    let mut inserted = std::collections::HashSet::new();
    for row in rows.iter().flatten() {
        inserted.insert(sqlx::Row::try_get::<String, _>(row, 0)?);
    }
    Ok(batch.map(|d| inserted.remove(d.webhook_id())).collect())
}

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
        let statements = insert_deliveries(batch.iter().copied());
        // The senders wait for their `200`. The inserts and the commit run together, off the
        // runtime's threads on SQLite (the requests of the next batch go on meanwhile).
        let tx = self.begin_write_as(Writer::Foreground).await?;
        let rows = tx.fetch_all_then_commit(statements).await?;
        Ok(new_deliveries(batch.iter().map(|(d, _)| *d), &rows)?)
    }

    /// Records `batches` one after another, each in a transaction of its own (one commit, one
    /// fsync), as long as one waits and no other writer of this process waits for its turn
    /// (group commit, see `inbound::recorder`). On SQLite they run on a blocking thread in one
    /// writer's turn, so the next batch begins as soon as the last one is durable, with no
    /// round trip through the runtime's threads. Returns `batches` (with the batch not yet
    /// recorded, if any) and the error of the batch that failed, which ended the run (rolled
    /// back: nothing of it is stored). On SQLite an error of its own (no turn, no connection)
    /// loses the batch under way; elsewhere it is that batch's error.
    pub async fn record_delivery_batches<B: DeliveryBatches>(
        &self,
        mut batches: B,
    ) -> Result<(B, Option<StoreError>), StoreError> {
        let Some(direct) = self.pool.direct() else {
            while !batches.batch().is_empty() {
                let rows: Vec<(&Verified, i64)> =
                    batches.batch().iter().map(|(d, at)| (d, *at)).collect();
                match self.record_deliveries(&rows).await {
                    Ok(new) => batches.recorded(new),
                    Err(e) => return Ok((batches, Some(e))),
                }
            }
            return Ok((batches, None));
        };
        let turns = self.write_turns.clone();
        let turn = match &turns {
            Some(t) => Some(t.take(Writer::Foreground, super::BUSY_TIMEOUT).await?),
            None => None,
        };
        let mut conn = super::direct::DirectConn::acquire(direct).await?;
        struct Run<B> {
            batches: B,
            first: bool,
            failed: Option<sqlx::Error>,
        }
        let run = Run {
            batches,
            first: true,
            failed: None,
        };
        let (run, panicked) = conn
            .each_then_commit(
                run,
                move |run: &mut Run<B>| {
                    let others_wait = turns.as_ref().is_some_and(|t| t.others_wait());
                    // A batch that failed, even after its commit, ends the run with its error.
                    if run.failed.is_some()
                        || run.batches.batch().is_empty()
                        || (!run.first && others_wait)
                    {
                        return None;
                    }
                    run.first = false;
                    let statements =
                        insert_deliveries(run.batches.batch().iter().map(|(d, at)| (d, *at)))
                            .into_iter()
                            .map(sql::Query::into_direct)
                            .collect::<Result<Vec<_>, _>>();
                    match statements {
                        Ok(statements) => Some(statements),
                        Err(e) => {
                            run.failed = Some(e);
                            None
                        }
                    }
                },
                |run: &mut Run<B>, rows| {
                    let new = rows.and_then(|rows| {
                        new_deliveries(run.batches.batch().iter().map(|(d, _)| d), &rows)
                    });
                    match new {
                        Ok(new) => run.batches.recorded(new),
                        Err(e) => run.failed = Some(e),
                    }
                },
            )
            .await?;
        // The connection goes back before the turn is given up (see `WriteTx`).
        drop(conn);
        drop(turn);
        if panicked {
            return Err(StoreError::BatchFailed(
                "recording a batch of webhook deliveries panicked".into(),
            ));
        }
        Ok((run.batches, run.failed.map(StoreError::from)))
    }

    /// Hands recorded deliveries to the jobs whose response they name, in one transaction:
    /// each known response's job is hinted to poll now (if unfinished), the delivery is
    /// marked handed to it and the job's timeline notes the webhook. A delivery that names no
    /// response is marked handled with no job. A delivery whose response no job knows is
    /// counted as looked at and made due again after a pause, and comes back to be looked up
    /// (see `orchestrator::maintenance`); after [`MAX_LOOKS`] it is given up.
    pub async fn hand_off_deliveries(
        &self,
        deliveries: Vec<(DeliveryRow, Option<ResponseId>)>,
        now: i64,
    ) -> Result<HandOff, StoreError> {
        let mut out = HandOff::default();
        if deliveries.is_empty() {
            return Ok(out);
        }
        // A page is handed off in a few set-wise statements, not a few per delivery: the
        // write lock is held for as long as the statements take, and a receiver's batch of
        // deliveries waits behind it. The rows go in as JSON arrays (`json_each`).
        let mut tx = self.begin_write().await?;
        let named: Vec<&str> = deliveries
            .iter()
            .filter_map(|(_, r)| r.as_ref().map(ResponseId::as_str))
            .collect();
        // The job each named response belongs to, and whether it is the job's current one (an
        // earlier turn's is handed to its job without waking it: nothing is due for it).
        let jobs: HashMap<ResponseId, (JobId, bool)> = if named.is_empty() {
            HashMap::new()
        } else {
            sql::query_as::<(ResponseId, JobId, i64)>(match self.backend() {
                Backend::Sqlite => {
                    "SELECT response_id, id, 1 FROM jobs \
                     WHERE response_id IN (SELECT value FROM json_each(?1)) \
                     UNION ALL SELECT response_id, job_id, 0 FROM job_turns \
                     WHERE response_id IN (SELECT value FROM json_each(?1))"
                }
                Backend::Postgres => {
                    "SELECT response_id, id, 1 FROM jobs \
                     WHERE response_id IN (SELECT jsonb_array_elements_text(CAST(?1 AS jsonb))) \
                     UNION ALL SELECT response_id, job_id, 0 FROM job_turns \
                     WHERE response_id IN (SELECT jsonb_array_elements_text(CAST(?1 AS jsonb)))"
                }
            })
            .bind(json_text(&named)?)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|(r, j, current)| (r, (j, current != 0)))
            .collect()
        };
        // [webhook id, job id or null], [job id, event message], [webhook id, next look].
        let mut handled: Vec<(&str, Option<&str>)> = Vec::new();
        let mut events: Vec<(&str, String)> = Vec::new();
        let mut looks: Vec<(&str, i64)> = Vec::new();
        for (d, response_id) in &deliveries {
            let Some(response_id) = response_id else {
                handled.push((&d.webhook_id, None));
                continue;
            };
            match jobs.get(response_id) {
                Some((job, true)) => {
                    handled.push((&d.webhook_id, Some(job.as_str())));
                    events.push((
                        job.as_str(),
                        format!("webhook {} ({})", d.event_type, d.webhook_id),
                    ));
                }
                Some((job, false)) => handled.push((&d.webhook_id, Some(job.as_str()))),
                None if d.looks >= MAX_LOOKS => handled.push((&d.webhook_id, None)),
                None => looks.push((&d.webhook_id, now.saturating_add(look_backoff_ms(d.looks)))),
            }
        }
        if !events.is_empty() {
            let woken: Vec<&str> = events.iter().map(|(job, _)| *job).collect();
            sql::query(match self.backend() {
                Backend::Sqlite => {
                    "UPDATE jobs SET next_check_at = ?, wake_pending = 1, updated_at = ? \
                     WHERE id IN (SELECT value FROM json_each(?)) \
                     AND status IN ('pending', 'queued', 'in_progress')"
                }
                Backend::Postgres => {
                    "UPDATE jobs SET next_check_at = ?, wake_pending = 1, updated_at = ? \
                     WHERE id IN (SELECT jsonb_array_elements_text(CAST(? AS jsonb))) \
                     AND status IN ('pending', 'queued', 'in_progress')"
                }
            })
            .bind(now)
            .bind(now)
            .bind(json_text(&woken)?)
            .execute(&mut *tx)
            .await?;
            // `json_each` walks the array in order, so the events keep the deliveries' order.
            sql::query(match self.backend() {
                Backend::Sqlite => {
                    "INSERT INTO job_events (job_id, at, kind, message, data) \
                     SELECT value ->> 0, ?, ?, value ->> 1, NULL FROM json_each(?) ORDER BY key"
                }
                Backend::Postgres => {
                    "INSERT INTO job_events (job_id, at, kind, message, data) \
                     SELECT e.value ->> 0, ?, ?, e.value ->> 1, NULL \
                     FROM jsonb_array_elements(CAST(? AS jsonb)) WITH ORDINALITY AS e(value, key) \
                     ORDER BY e.key"
                }
            })
            .bind(now)
            .bind(EventKind::Webhook.as_str())
            .bind(json_text(&events)?)
            .execute(&mut *tx)
            .await?;
        }
        if !handled.is_empty() {
            sql::query(match self.backend() {
                Backend::Sqlite => {
                    "UPDATE webhook_deliveries SET handled_at = ?, job_id = h.value ->> 1 \
                     FROM json_each(?) AS h WHERE webhook_deliveries.webhook_id = h.value ->> 0"
                }
                Backend::Postgres => {
                    "UPDATE webhook_deliveries SET handled_at = ?, job_id = h.value ->> 1 \
                     FROM jsonb_array_elements(CAST(? AS jsonb)) AS h(value) \
                     WHERE webhook_deliveries.webhook_id = h.value ->> 0"
                }
            })
            .bind(now)
            .bind(json_text(&handled)?)
            .execute(&mut *tx)
            .await?;
        }
        if !looks.is_empty() {
            sql::query(match self.backend() {
                Backend::Sqlite => {
                    "UPDATE webhook_deliveries SET looks = looks + 1, next_look_at = l.value ->> 1 \
                     FROM json_each(?) AS l WHERE webhook_deliveries.webhook_id = l.value ->> 0"
                }
                Backend::Postgres => {
                    "UPDATE webhook_deliveries SET looks = looks + 1, \
                     next_look_at = CAST(l.value ->> 1 AS BIGINT) \
                     FROM jsonb_array_elements(CAST(? AS jsonb)) AS l(value) \
                     WHERE webhook_deliveries.webhook_id = l.value ->> 0"
                }
            })
            .bind(json_text(&looks)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        for (d, response_id) in deliveries {
            let Some(response_id) = response_id else {
                continue;
            };
            if jobs.contains_key(&response_id) {
                continue;
            }
            if d.looks >= MAX_LOOKS {
                out.given_up.push((d, response_id));
            } else {
                out.look_up.push((d, response_id));
            }
        }
        Ok(out)
    }

    /// Marks a delivery as handed to a job (or as needing no hand-off, with `job_id` None).
    pub async fn mark_delivery_handled(
        &self,
        webhook_id: &str,
        job_id: Option<&JobId>,
        now: i64,
    ) -> Result<(), StoreError> {
        mark_handled(webhook_id, job_id, now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deliveries not yet handed to a job and due now, oldest due first (new ones, those left
    /// by a crash, and those whose response is due for another look-up), but for those in
    /// `busy` (their look-up waits for its turn): a page full of those would hide every other.
    pub async fn unhandled_deliveries(
        &self,
        now: i64,
        limit: i64,
        busy: &[String],
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        Ok(sql::query_as::<DeliveryRow>(match self.backend() {
            Backend::Sqlite => "SELECT webhook_id, received_at, event_id, event_type, object_id, job_id, handled_at, looks \
             FROM webhook_deliveries INDEXED BY webhook_deliveries_due \
             WHERE handled_at IS NULL AND next_look_at <= ? \
             AND webhook_id NOT IN (SELECT value FROM json_each(?)) \
             ORDER BY next_look_at LIMIT ?",
            Backend::Postgres => "SELECT webhook_id, received_at, event_id, event_type, object_id, job_id, handled_at, looks \
             FROM webhook_deliveries INDEXED BY webhook_deliveries_due \
             WHERE handled_at IS NULL AND next_look_at <= ? \
             AND webhook_id NOT IN (SELECT jsonb_array_elements_text(CAST(? AS jsonb))) \
             ORDER BY next_look_at LIMIT ?",
        })
        .bind(now)
        .bind(json_text(&busy)?)
        .bind(limit)
        .fetch_all(&self.reads)
        .await?)
    }

    /// The earliest time after `now` at which an unhandled delivery is due for another
    /// look-up: when the ledger worker must look again.
    pub async fn next_delivery_look_after(&self, now: i64) -> Result<Option<i64>, StoreError> {
        Ok(sql::query_scalar(
            "SELECT MIN(next_look_at) FROM webhook_deliveries INDEXED BY webhook_deliveries_due \
             WHERE handled_at IS NULL AND next_look_at > ?",
        )
        .bind(now)
        .fetch_one(self.reads.quick())
        .await?)
    }

    /// Counts deliveries (for tests and metrics).
    pub async fn count_deliveries(&self) -> Result<i64, StoreError> {
        Ok(sql::query_scalar("SELECT COUNT(*) FROM webhook_deliveries")
            .fetch_one(&self.reads)
            .await?)
    }

    /// Whether any verified delivery named this response id.
    pub async fn has_delivery_for(&self, object_id: &str) -> Result<bool, StoreError> {
        let n: i64 =
            sql::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE object_id = ?")
                .bind(object_id)
                .fetch_one(&self.reads)
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
        Ok(sql::query_as::<DeliveryRow>(
            "SELECT webhook_id, received_at, event_id, event_type, object_id, job_id, handled_at, looks \
             FROM webhook_deliveries d WHERE event_type = ? AND received_at >= ? \
             AND (object_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.response_id = d.object_id)) \
             ORDER BY received_at LIMIT 1",
        )
        .bind(event_type)
        .bind(since)
        .fetch_optional(&self.reads)
        .await?)
    }
}

/// `rows` as a JSON array, the parameter of a statement that reads it with `json_each`.
fn json_text<T: Serialize>(rows: &T) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| StoreError::Corrupt(format!("cannot encode rows: {e}")))
}

fn mark_handled(webhook_id: &str, job_id: Option<&JobId>, now: i64) -> sql::Query {
    sql::query("UPDATE webhook_deliveries SET handled_at = ?, job_id = ? WHERE webhook_id = ?")
        .bind(now)
        .bind(job_id)
        .bind(webhook_id)
}
