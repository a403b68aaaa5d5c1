//! Webhook deliveries: one row per `webhook-id`, which makes a duplicate delivery a no-op.
//! Deliveries for response ids no job knows yet are kept, unhandled, and attached when the
//! id appears.

use super::Backend;
use crate::store::sql;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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
    /// 1 while the time it is due at was booked for its next look-up by a [`LookPacer`]:
    /// it is looked up when due, without taking another time.
    #[sqlx(default)]
    #[serde(skip)]
    pub look_booked: i64,
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

/// Paces the look-ups of responses no job knows (a `GET` each, which upstream counts against
/// the organisation's request limits, as it does polls): at most `per_second` a second, after
/// a burst of [`LookPacer::BURST`]. A look-up that cannot start now is booked a later time
/// (the generic cell rate algorithm: the time the next one may start moves on by
/// `1 / per_second` for each one booked), so a flood of deliveries naming responses that are
/// not ours is looked up at a steady pace, and those booked later are out of the way of the
/// deliveries the hand-off gives to jobs.
#[derive(Debug, Clone)]
pub struct LookPacer {
    /// The theoretical time of the next look-up, in microseconds (0: none booked yet).
    next_us: i64,
    /// Look-ups a second at most.
    per_second: u32,
}

impl LookPacer {
    /// Look-ups that may start at once before the pace applies.
    pub const BURST: i64 = 8;
    /// Booked times are rounded up to this many milliseconds, so that a steady pace wakes the
    /// ledger worker a few times a second rather than at every look-up.
    pub const GRAIN_MS: i64 = 250;
    /// The largest pace: the pacer counts in microseconds.
    pub const MAX_PER_SECOND: u32 = crate::config::MAX_LOOKUPS_PER_SECOND;
    /// A look-up due again (its last one found nothing) waits while the look-ups booked ahead
    /// would keep it longer than this: first looks, such as an uncertain create's, go first.
    pub const REPEAT_YIELDS_AFTER_MS: i64 = 1_000;

    /// A pacer of `per_second` look-ups a second (1 to [`Self::MAX_PER_SECOND`]) whose first
    /// booking comes after `after_ms`, the latest time this database already has booked (0:
    /// none), so that a restart does not add a second pace to the first.
    pub fn new(per_second: u32, after_ms: i64) -> Self {
        let per_second = per_second.clamp(1, Self::MAX_PER_SECOND);
        // The burst's allowance is spent: the first one comes an interval after `after_ms`.
        let next_us = match after_ms > 0 {
            true => after_ms
                .saturating_mul(1_000)
                .saturating_add(Self::BURST * Self::interval_us(per_second)),
            false => 0,
        };
        Self {
            next_us,
            per_second,
        }
    }

    /// The pace it keeps.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    fn interval_us(per_second: u32) -> i64 {
        1_000_000 / i64::from(per_second.max(1))
    }

    /// Books one look-up at `now_ms` or later: the time it may start, in unix milliseconds;
    /// `now_ms` when it may start now.
    pub fn book(&mut self, now_ms: i64) -> i64 {
        let interval = Self::interval_us(self.per_second);
        let now_us = now_ms.saturating_mul(1_000);
        let start = now_us.max(self.next_us.saturating_sub((Self::BURST - 1) * interval));
        self.next_us = self.next_us.max(start).saturating_add(interval);
        if start <= now_us {
            return now_ms;
        }
        // Rounded up to the grain: never earlier than booked.
        let ceil = |n: i64, d: i64| n / d + i64::from(n % d > 0);
        ceil(ceil(start, 1_000), Self::GRAIN_MS).saturating_mul(Self::GRAIN_MS)
    }

    /// The time a look-up booked at `now_ms` would get, without booking it.
    pub fn free_at(&self, now_ms: i64) -> i64 {
        self.clone().book(now_ms)
    }

    /// Gives back `n` times booked but not used (their rows were not written): the pace
    /// moves back by as many intervals. Were others booked after them, those times may be
    /// given twice, briefly over the pace; never given back, failed writes would push every
    /// later booking further out, by up to a page for each failure.
    pub fn refund(&mut self, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let back = n.saturating_mul(Self::interval_us(self.per_second));
        self.next_us = self.next_us.saturating_sub(back).max(0);
    }
}

/// The [`LookPacer`] a store's receiver and hand-off share. The receiver books the look-up of
/// each delivery it records that names a response no job knows, in the batch that records it
/// (a row booked a time: `look_booked`), so the hand-off writes nothing for a flood of them
/// until their times come: its write transactions were what a receiver's batch waited behind.
/// None until the ledger worker sets one ([`Store::pace_looks`]) before its first hand-off:
/// deliveries are recorded unbooked until then, and the hand-off books them.
#[derive(Debug, Clone, Default)]
pub struct LookPace(Arc<Mutex<Option<LookPacer>>>);

impl LookPace {
    fn lock(&self) -> MutexGuard<'_, Option<LookPacer>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the pacer (None: none).
    pub fn set(&self, pacer: Option<LookPacer>) {
        *self.lock() = pacer;
    }

    /// The pace kept, if a pacer is set.
    pub fn per_second(&self) -> Option<u32> {
        self.lock().as_ref().map(LookPacer::per_second)
    }

    /// Books one look-up at `now_ms` ([`LookPacer::book`]): `now_ms` with no pacer.
    fn book(&self, now_ms: i64) -> i64 {
        self.lock().as_mut().map_or(now_ms, |p| p.book(now_ms))
    }

    /// The time a look-up booked at `now_ms` would get ([`LookPacer::free_at`]).
    fn free_at(&self, now_ms: i64) -> i64 {
        self.lock().as_ref().map_or(now_ms, |p| p.free_at(now_ms))
    }

    /// Gives back `n` times booked but not used ([`LookPacer::refund`]).
    fn refund(&self, n: usize) {
        if n > 0
            && let Some(p) = self.lock().as_mut()
        {
            p.refund(n);
        }
    }

    /// The look-ups `batch` needs, if a pacer is set: the response id each delivery names
    /// (None for one that names none). None when no pacer is set or no delivery names a
    /// response: nothing to book.
    fn wanted(&self, batch: &[(&Verified, i64)]) -> Option<Vec<Option<ResponseId>>> {
        self.per_second()?;
        let named: Vec<Option<ResponseId>> = batch
            .iter()
            .map(|(d, _)| named_response(d.event_type(), d.object_id()))
            .collect();
        named.iter().any(Option::is_some).then_some(named)
    }

    /// The time booked for the look-up of each delivery of `batch` whose response (in
    /// `named`, from [`Self::wanted`]) no job knows: None for the others, for a copy of one
    /// stored already, and for a webhook id met earlier in the batch (recorded once). Booked
    /// under one lock, so the batch's times are consecutive.
    fn book_batch(
        &self,
        batch: &[(&Verified, i64)],
        named: &[Option<ResponseId>],
        known: &Known,
    ) -> Vec<Option<i64>> {
        let mut pacer = self.lock();
        let Some(pacer) = pacer.as_mut() else {
            return vec![None; batch.len()];
        };
        let mut seen = HashSet::new();
        batch
            .iter()
            .zip(named)
            .map(|((d, received_at), named)| {
                let unknown = named.as_ref()?;
                let first = seen.insert(d.webhook_id()) && !known.stored.contains(d.webhook_id());
                (first && !known.responses.contains(unknown.as_str()))
                    .then(|| pacer.book(*received_at))
            })
            .collect()
    }
}

/// The response a delivery names: a `response.*` event's object id, if it can be one
/// (anything else needs no hand-off).
pub fn named_response(event_type: &str, object_id: Option<&str>) -> Option<ResponseId> {
    object_id
        .filter(|_| event_type.starts_with("response."))
        .and_then(|id| ResponseId::parse(id).ok())
}

/// The jobs that know the responses in `?1` (a JSON array of ids): each one's response id,
/// job id, and 1 if it is the job's current response (0: an earlier turn's).
fn known_responses(backend: Backend) -> &'static str {
    match backend {
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
    }
}

/// The query that reads which of the responses `named` (by the deliveries of `batch`) jobs
/// know, and which of those deliveries are stored already (a copy, sent again): rows of a
/// kind (0: a response id, 1: a webhook id) and an id.
fn known_among(
    backend: Backend,
    batch: &[(&Verified, i64)],
    named: &[Option<ResponseId>],
) -> Result<sql::Query, sqlx::Error> {
    let encode =
        |ids: Vec<&str>| serde_json::to_string(&ids).map_err(|e| sqlx::Error::Encode(Box::new(e)));
    let responses = encode(named.iter().flatten().map(ResponseId::as_str).collect())?;
    let webhooks = encode(
        batch
            .iter()
            .zip(named)
            .filter(|(_, named)| named.is_some())
            .map(|((d, _), _)| d.webhook_id())
            .collect(),
    )?;
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT CAST(0 AS BIGINT), response_id FROM jobs \
             WHERE response_id IN (SELECT value FROM json_each(?1)) \
             UNION ALL SELECT CAST(0 AS BIGINT), response_id FROM job_turns \
             WHERE response_id IN (SELECT value FROM json_each(?1)) \
             UNION ALL SELECT CAST(1 AS BIGINT), webhook_id FROM webhook_deliveries \
             WHERE webhook_id IN (SELECT value FROM json_each(?2))"
        }
        Backend::Postgres => {
            "SELECT CAST(0 AS BIGINT), response_id FROM jobs \
             WHERE response_id IN (SELECT jsonb_array_elements_text(CAST(?1 AS jsonb))) \
             UNION ALL SELECT CAST(0 AS BIGINT), response_id FROM job_turns \
             WHERE response_id IN (SELECT jsonb_array_elements_text(CAST(?1 AS jsonb))) \
             UNION ALL SELECT CAST(1 AS BIGINT), webhook_id FROM webhook_deliveries \
             WHERE webhook_id IN (SELECT jsonb_array_elements_text(CAST(?2 AS jsonb)))"
        }
    };
    Ok(sql::query(sql).bind(responses).bind(webhooks))
}

/// What [`known_among`] read.
#[derive(Debug, Default)]
struct Known {
    /// Response ids jobs know.
    responses: HashSet<String>,
    /// Webhook ids stored already.
    stored: HashSet<String>,
}

impl Known {
    fn read(rows: &[sqlx::any::AnyRow]) -> Result<Self, sqlx::Error> {
        let mut known = Self::default();
        for row in rows {
            let id = sqlx::Row::try_get::<String, _>(row, 1)?;
            match sqlx::Row::try_get::<i64, _>(row, 0)? {
                0 => known.responses.insert(id),
                _ => known.stored.insert(id),
            };
        }
        Ok(known)
    }
}

/// What [`Store::hand_off_deliveries`] leaves to the caller.
#[derive(Debug, Default)]
pub struct HandOff {
    /// Deliveries naming a response no job knows, due for a look-up now (already counted as
    /// looked at, and due again after a pause if this look finds nothing).
    pub look_up: Vec<(DeliveryRow, ResponseId)>,
    /// Deliveries given up after [`MAX_LOOKS`] look-ups: marked handled with no job.
    pub given_up: Vec<(DeliveryRow, ResponseId)>,
    /// Deliveries this hand-off booked a later time for their look-up (over the pace); the
    /// receiver books most of them as it records them (see [`LookPace`]).
    pub booked: usize,
}

/// Rows per `INSERT` statement (8 bound values each, under SQLite's 32,766).
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

/// The statements that insert `batch`, returning the webhook ids that were new: each due
/// when received, or at the time `booked` for its look-up (none: all due when received).
/// SQLite takes at most 32,766 bound values in a statement: 8 per row.
fn insert_deliveries(batch: &[(&Verified, i64)], booked: &[Option<i64>]) -> Vec<sql::Query> {
    let rows: Vec<(&Verified, i64, Option<i64>)> = batch
        .iter()
        .enumerate()
        .map(|(i, (d, at))| (*d, *at, booked.get(i).copied().flatten()))
        .collect();
    rows.chunks(MAX_ROWS_PER_INSERT)
        .map(|chunk| {
            let mut q = QueryBuilder::<Any>::new(
                "INSERT INTO webhook_deliveries \
                 (webhook_id, received_at, next_look_at, look_booked, event_id, event_type, \
                 object_id, body) ",
            );
            q.push_values(chunk, |mut row, (d, received_at, booked)| {
                row.push_bind(d.webhook_id())
                    .push_bind(*received_at)
                    .push_bind(booked.unwrap_or(*received_at))
                    .push_bind(i64::from(booked.is_some()))
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

impl LookPace {
    /// Settles the times booked for `batch` once it is recorded (`new`: which deliveries were
    /// new) or not (None): those of deliveries not written (a duplicate, a failed batch) are
    /// given back, and the new ones booked later than now are counted on `/metrics` (those
    /// booked now count as started when the hand-off starts them).
    fn settle(&self, batch: &[(&Verified, i64)], booked: &[Option<i64>], new: Option<&[bool]>) {
        let (mut unused, mut later) = (0, 0);
        for (i, ((_, at), booked)) in batch.iter().zip(booked).enumerate() {
            let Some(booked) = booked else {
                continue;
            };
            match new.and_then(|n| n.get(i)) {
                Some(true) => later += usize::from(booked > at),
                _ => unused += 1,
            }
        }
        self.refund(unused);
        crate::telemetry::webhook_lookups(0, later, 0);
    }
}

/// Logs that the look-ups of a batch could not be booked as it was recorded: the hand-off
/// books them (the batch is recorded unbooked).
fn warn_unbooked(e: &dyn std::error::Error) {
    tracing::warn!(
        error = %crate::telemetry::chain(e),
        "cannot read which responses jobs know; the look-ups of the batch's deliveries are booked by the hand-off"
    );
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
    /// The look-up of each that names a response no job knows is booked at the pace (see
    /// [`LookPace`]). Returns, for each delivery in order, whether it is new: false if its
    /// `webhook-id` was recorded before, or earlier in the same batch.
    pub async fn record_deliveries(
        &self,
        batch: &[(&Verified, i64)],
    ) -> Result<Vec<bool>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Which responses jobs know is read just before the batch's transaction (a failed
        // read only leaves the bookings to the hand-off).
        let booked = match self.look_pace.wanted(batch) {
            Some(named) => {
                let read = async {
                    let rows = known_among(self.backend(), batch, &named)?
                        .fetch_all(&self.reads)
                        .await?;
                    Known::read(&rows)
                };
                match read.await {
                    Ok(known) => self.look_pace.book_batch(batch, &named, &known),
                    Err(e) => {
                        warn_unbooked(&e);
                        Vec::new()
                    }
                }
            }
            None => Vec::new(),
        };
        // The senders wait for their `200`. The inserts and the commit run together, off the
        // runtime's threads on SQLite (the requests of the next batch go on meanwhile).
        let recorded = async {
            let tx = self.begin_write_as(Writer::Foreground).await?;
            let rows = tx
                .fetch_all_then_commit(insert_deliveries(batch, &booked))
                .await?;
            new_deliveries(batch.iter().map(|(d, _)| *d), &rows)
        };
        match recorded.await {
            Ok(new) => {
                self.look_pace.settle(batch, &booked, Some(&new));
                Ok(new)
            }
            Err(e) => {
                self.look_pace.settle(batch, &booked, None);
                Err(e.into())
            }
        }
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
            /// The times booked for the look-ups of the batch under way (see [`LookPace`]).
            booked: Vec<Option<i64>>,
        }
        let run = Run {
            batches,
            first: true,
            failed: None,
            booked: Vec::new(),
        };
        let (pace, settle, backend) = (
            self.look_pace.clone(),
            self.look_pace.clone(),
            self.backend(),
        );
        let (run, panicked) = conn
            .each_then_commit(
                run,
                move |run: &mut Run<B>, peek| {
                    let others_wait = turns.as_ref().is_some_and(|t| t.others_wait());
                    // A batch that failed, even after its commit, ends the run with its error.
                    if run.failed.is_some()
                        || run.batches.batch().is_empty()
                        || (!run.first && others_wait)
                    {
                        return None;
                    }
                    run.first = false;
                    let batch: Vec<(&Verified, i64)> =
                        run.batches.batch().iter().map(|(d, at)| (d, *at)).collect();
                    // Which of the responses named are jobs' is read just before the batch's
                    // transaction: a job that records one in between finds its delivery
                    // booked, and handed to it when the time booked comes (now, unless a
                    // flood is paced).
                    let booked = match pace.wanted(&batch) {
                        Some(named) => match known_among(backend, &batch, &named)
                            .and_then(|q| peek.fetch_all(q))
                            .and_then(|rows| Known::read(&rows))
                        {
                            Ok(known) => pace.book_batch(&batch, &named, &known),
                            Err(e) => {
                                warn_unbooked(&e);
                                Vec::new()
                            }
                        },
                        None => Vec::new(),
                    };
                    let statements = insert_deliveries(&batch, &booked)
                        .into_iter()
                        .map(sql::Query::into_direct)
                        .collect::<Result<Vec<_>, _>>();
                    match statements {
                        Ok(statements) => {
                            run.booked = booked;
                            Some(statements)
                        }
                        Err(e) => {
                            pace.settle(&batch, &booked, None);
                            run.failed = Some(e);
                            None
                        }
                    }
                },
                move |run: &mut Run<B>, rows| {
                    let batch: Vec<(&Verified, i64)> =
                        run.batches.batch().iter().map(|(d, at)| (d, *at)).collect();
                    let new =
                        rows.and_then(|rows| new_deliveries(batch.iter().map(|(d, _)| *d), &rows));
                    let booked = std::mem::take(&mut run.booked);
                    match new {
                        Ok(new) => {
                            settle.settle(&batch, &booked, Some(&new));
                            run.batches.recorded(new);
                        }
                        Err(e) => {
                            settle.settle(&batch, &booked, None);
                            run.failed = Some(e);
                        }
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
    /// looked up if the store's pacer ([`LookPace`]) lets it start now (at most
    /// `lookups_per_second`) or the time it is due at was booked for it: it is counted as looked at, made due again after a pause and
    /// returned to be looked up (see `orchestrator::maintenance`). Otherwise it is booked the
    /// time the pacer gives it and waits, out of the way, until then. After [`MAX_LOOKS`] it
    /// is given up.
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
            sql::query_as::<(ResponseId, JobId, i64)>(known_responses(self.backend()))
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
        // [webhook id, the time booked for its look-up]; `later[i]`: the i-th is one of them.
        let mut booked: Vec<(&str, i64)> = Vec::new();
        // [webhook id, when it is due again], not booked: looks due again, behind first looks.
        let mut waiting: Vec<(&str, i64)> = Vec::new();
        let mut later = vec![false; deliveries.len()];
        // How many times this pass took from the pacer.
        let mut taken = 0;
        for (i, (d, response_id)) in deliveries.iter().enumerate() {
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
                None => {
                    // A time booked earlier is this look-up's. A look due again waits, unbooked,
                    // while first looks are booked more than a second ahead; otherwise it
                    // takes the next time.
                    let free_at = self.look_pace.free_at(now);
                    if d.look_booked == 0
                        && d.looks > 0
                        && free_at > now.saturating_add(LookPacer::REPEAT_YIELDS_AFTER_MS)
                    {
                        waiting.push((&d.webhook_id, free_at));
                        later[i] = true;
                        continue;
                    }
                    let at = match d.look_booked != 0 {
                        true => now,
                        false => {
                            taken += 1;
                            self.look_pace.book(now)
                        }
                    };
                    if at <= now {
                        looks.push((&d.webhook_id, now.saturating_add(look_backoff_ms(d.looks))));
                    } else {
                        booked.push((&d.webhook_id, at));
                        later[i] = true;
                    }
                }
            }
        }
        // Times taken but not used (nothing written) are given back.
        let written = async {
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
                        "UPDATE webhook_deliveries SET looks = looks + 1, next_look_at = l.value ->> 1, \
                         look_booked = 0 \
                         FROM json_each(?) AS l WHERE webhook_deliveries.webhook_id = l.value ->> 0"
                    }
                    Backend::Postgres => {
                        "UPDATE webhook_deliveries SET looks = looks + 1, \
                         next_look_at = CAST(l.value ->> 1 AS BIGINT), look_booked = 0 \
                         FROM jsonb_array_elements(CAST(? AS jsonb)) AS l(value) \
                         WHERE webhook_deliveries.webhook_id = l.value ->> 0"
                    }
                })
                .bind(json_text(&looks)?)
                .execute(&mut *tx)
                .await?;
            }
            for (rows, flag) in [(&booked, 1_i64), (&waiting, 0)] {
                if rows.is_empty() {
                    continue;
                }
                sql::query(match self.backend() {
                    Backend::Sqlite => {
                        "UPDATE webhook_deliveries SET next_look_at = b.value ->> 1, look_booked = ? \
                         FROM json_each(?) AS b WHERE webhook_deliveries.webhook_id = b.value ->> 0"
                    }
                    Backend::Postgres => {
                        "UPDATE webhook_deliveries SET next_look_at = CAST(b.value ->> 1 AS BIGINT), \
                         look_booked = ? \
                         FROM jsonb_array_elements(CAST(? AS jsonb)) AS b(value) \
                         WHERE webhook_deliveries.webhook_id = b.value ->> 0"
                    }
                })
                .bind(flag)
                .bind(json_text(rows)?)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<(), StoreError>(())
        };
        if let Err(e) = written.await {
            self.look_pace.refund(taken);
            return Err(e);
        }
        out.booked = booked.len();
        for ((d, response_id), later) in deliveries.into_iter().zip(later) {
            let Some(response_id) = response_id else {
                continue;
            };
            if later || jobs.contains_key(&response_id) {
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

    /// Sets the pace of look-ups of responses no job knows ([`LookPace`]), unless it is kept
    /// already. On the first call (a start), the times booked before that are due are let go
    /// (they are booked again at the pace, not looked up at once), and the pacer books after
    /// the others. A new pace (a reload) lets go of every time booked at the old one. Returns
    /// how many times were let go, None if the pace was kept already.
    pub async fn pace_looks(&self, per_second: u32, now: i64) -> Result<Option<u64>, StoreError> {
        if self.look_pace.per_second() == Some(per_second) {
            return Ok(None);
        }
        // Meanwhile the receiver records deliveries unbooked: the hand-off books them.
        let old = self.look_pace.lock().take();
        let set = async {
            let unbooked = self.unbook_looks(now, old.is_some()).await?;
            // A new pace starts now: every booking was let go (but those of a batch booked at
            // the old pace and committed since, which must not hold the new one back).
            let after = match old {
                Some(_) => 0,
                None => self.latest_booked_look().await?.unwrap_or(0),
            };
            Ok::<_, StoreError>((unbooked, after))
        };
        match set.await {
            Ok((unbooked, after)) => {
                self.look_pace.set(Some(LookPacer::new(per_second, after)));
                Ok(Some(unbooked))
            }
            Err(e) => {
                // Tried again at the next pass, from where it was.
                self.look_pace.set(old);
                Err(e)
            }
        }
    }

    /// The pace shared by the receiver and the hand-off.
    pub fn look_pace(&self) -> &LookPace {
        &self.look_pace
    }

    /// Lets go of the times booked for look-ups: those already due (`all` false: the pacer
    /// that booked them is gone, after a restart, and they take times at the new one's pace
    /// rather than all at once), or all of them, made due now (`all`: the pace changed).
    /// Returns how many.
    pub async fn unbook_looks(&self, now: i64, all: bool) -> Result<u64, StoreError> {
        let q = match all {
            true => sql::query(
                "UPDATE webhook_deliveries SET look_booked = 0, \
                 next_look_at = CASE WHEN next_look_at > ? THEN ? ELSE next_look_at END \
                 WHERE handled_at IS NULL AND look_booked = 1",
            )
            .bind(now)
            .bind(now),
            false => sql::query(
                "UPDATE webhook_deliveries SET look_booked = 0 \
                 WHERE handled_at IS NULL AND look_booked = 1 AND next_look_at <= ?",
            )
            .bind(now),
        };
        Ok(q.execute(&self.pool).await?.rows_affected())
    }

    /// The latest time booked for a look-up (see [`LookPacer::new`]), if any.
    pub async fn latest_booked_look(&self) -> Result<Option<i64>, StoreError> {
        Ok(sql::query_scalar(
            "SELECT MAX(next_look_at) FROM webhook_deliveries INDEXED BY webhook_deliveries_due \
             WHERE handled_at IS NULL AND look_booked = 1",
        )
        .fetch_one(&self.reads)
        .await?)
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
            Backend::Sqlite => "SELECT webhook_id, received_at, event_id, event_type, object_id, job_id, handled_at, looks, \
             look_booked FROM webhook_deliveries INDEXED BY webhook_deliveries_due \
             WHERE handled_at IS NULL AND next_look_at <= ? \
             AND webhook_id NOT IN (SELECT value FROM json_each(?)) \
             ORDER BY next_look_at LIMIT ?",
            Backend::Postgres => "SELECT webhook_id, received_at, event_id, event_type, object_id, job_id, handled_at, looks, \
             look_booked FROM webhook_deliveries INDEXED BY webhook_deliveries_due \
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

#[cfg(test)]
pub(crate) mod tests {
    use super::{DeliveryRow, LookPacer};
    use crate::store::{Store, sql};
    use proptest::prelude::*;

    /// Inserts deliveries naming `object_ids`, received (and due) at `at`.
    async fn receive(store: &Store, object_ids: &[String], at: i64) {
        for id in object_ids {
            sql::query(
                "INSERT INTO webhook_deliveries \
                 (webhook_id, received_at, next_look_at, event_type, object_id, body) \
                 VALUES (?, ?, ?, 'response.completed', ?, '{}')",
            )
            .bind(format!("wh_{id}"))
            .bind(at)
            .bind(at)
            .bind(id)
            .execute(&store.pool_for_tests())
            .await
            .unwrap();
        }
    }

    /// One hand-off pass at `now`: the webhook ids returned to be looked up now.
    async fn pass(store: &Store, now: i64) -> Vec<String> {
        let handed = hand_off_due(store, now).await;
        assert!(handed.given_up.is_empty());
        handed
            .look_up
            .into_iter()
            .map(|(d, _)| d.webhook_id)
            .collect()
    }

    /// One hand-off of the deliveries due at `now` (a page of 128), as the ledger worker's.
    pub(crate) async fn hand_off_due(store: &Store, now: i64) -> super::HandOff {
        let due = store.unhandled_deliveries(now, 128, &[]).await.unwrap();
        let named = due
            .into_iter()
            .map(|d: DeliveryRow| {
                let id = super::named_response(&d.event_type, d.object_id.as_deref());
                (d, id)
            })
            .collect();
        store.hand_off_deliveries(named, now).await.unwrap()
    }

    /// A job whose response is `response_id` (`in_progress`), or, with none, one whose create
    /// is under way (`pending`).
    pub(crate) async fn job_with(store: &Store, response_id: Option<&str>) -> crate::job::JobId {
        let job = crate::job::JobId::generate();
        let (status, submit_state) = match response_id {
            Some(_) => ("in_progress", "done"),
            None => ("pending", "submitting"),
        };
        sql::query(
            "INSERT INTO jobs (id, name, model, status, spec, spec_hash, submit_state, \
             created_at, updated_at, response_id) \
             VALUES (?, 'n', 'gpt-5', ?, '{}', 'h', ?, 1, 1, ?)",
        )
        .bind(job.as_str())
        .bind(status)
        .bind(submit_state)
        .bind(response_id)
        .execute(&store.pool_for_tests())
        .await
        .unwrap();
        job
    }

    /// `SELECT COUNT(*) FROM webhook_deliveries WHERE {filter}`, with `at` bound to its `?`.
    async fn count(store: &Store, filter: &str, at: i64) -> i64 {
        let text = format!("SELECT COUNT(*) FROM webhook_deliveries WHERE {filter}");
        sql::query_scalar(sqlx::AssertSqlSafe(text))
            .bind(at)
            .fetch_one(&store.pool_for_tests())
            .await
            .unwrap()
    }

    async fn row(store: &Store, webhook_id: &str) -> (i64, i64, i64) {
        sql::query_as(
            "SELECT looks, look_booked, next_look_at FROM webhook_deliveries WHERE webhook_id = ?",
        )
        .bind(webhook_id)
        .fetch_one(&store.pool_for_tests())
        .await
        .unwrap()
    }

    /// 40 deliveries naming unknown responses at 4 look-ups a second: a burst of 8 is looked
    /// up at once, the others are booked times a quarter-second grain apart, at most 4 a
    /// second, and each is looked up when its time comes (not booked again); a delivery for a
    /// known job received meanwhile is handed to it in the next pass, not held behind them.
    #[tokio::test]
    async fn look_ups_over_the_pace_wait_for_the_times_booked_for_them() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let now = 1_700_000_000_000;
        let ids: Vec<String> = (0..40).map(|i| format!("resp_unknown{i:03}")).collect();
        receive(&store, &ids, now).await;
        store.look_pace().set(Some(LookPacer::new(4, 0)));
        let first = pass(&store, now).await;
        assert_eq!(first.len(), LookPacer::BURST as usize, "{first:?}");
        for id in &first {
            let (looks, booked, next) = row(&store, id).await;
            assert_eq!((looks, booked), (1, 0));
            assert_eq!(next, now + 500, "due again after the first pause");
        }
        // The 32 others are booked, none now, at most 4 a second, each grain-aligned.
        let booked: Vec<i64> =
            sql::query_scalar("SELECT next_look_at FROM webhook_deliveries WHERE look_booked = 1 ORDER BY next_look_at")
                .fetch_all(&store.pool_for_tests())
                .await
                .unwrap();
        assert_eq!(booked.len(), 32);
        assert!(
            booked
                .iter()
                .all(|&t| t > now && t % LookPacer::GRAIN_MS == 0)
        );
        for (i, &t) in booked.iter().enumerate() {
            let in_a_second = booked[i..].iter().take_while(|&&u| u < t + 1_000).count();
            assert!(
                in_a_second <= 4,
                "{in_a_second} booked within 1 s of {t}: {booked:?}"
            );
        }
        let last = *booked.last().unwrap();
        assert!(
            last <= now + 8_000 + LookPacer::GRAIN_MS,
            "32 at 4/s end by 8 s: {last}"
        );

        // A job's response: its delivery, received after them, goes to the job at once.
        let job = job_with(&store, Some("resp_ours")).await;
        receive(&store, &["resp_ours".to_string()], now + 100).await;
        assert!(pass(&store, now + 100).await.is_empty());
        let handed: Option<String> = sql::query_scalar(
            "SELECT job_id FROM webhook_deliveries WHERE webhook_id = 'wh_resp_ours'",
        )
        .fetch_one(&store.pool_for_tests())
        .await
        .unwrap();
        assert_eq!(handed.as_deref(), Some(job.as_str()));

        // Each booked one is looked up at its time, once, and not booked again; the first 8,
        // due again after their pause, take times after the last booked.
        let mut looked = first.len();
        let mut t = now + 100;
        while t <= last {
            t += LookPacer::GRAIN_MS;
            let now_looked = pass(&store, t).await;
            for id in &now_looked {
                let (looks, booked, _) = row(&store, id).await;
                assert_eq!((looks, booked), (1, 0), "{id} at {t}");
            }
            looked += now_looked.len();
        }
        assert_eq!(looked, 40, "each looked up once by the last booked time");
        // Due again while first looks were booked seconds ahead, it waited for them,
        // unbooked, and takes its time when they are done.
        let (looks, booked, next) = row(&store, &first[0]).await;
        assert_eq!((looks, booked), (1, 0), "not booked while first looks wait");
        assert!(next >= last, "{next} after {last}");
        // Then they go at the pace too: one now, some booked within a second, the others
        // waiting again behind those.
        let again = pass(&store, next).await;
        assert_eq!(again.len(), 1, "{again:?}");
        let (n, latest): (i64, i64) = sql::query_as(
            "SELECT COUNT(*), MAX(next_look_at) FROM webhook_deliveries WHERE look_booked = 1",
        )
        .fetch_one(&store.pool_for_tests())
        .await
        .unwrap();
        assert!((1..=7).contains(&n), "{n}");
        assert!(
            latest <= next + 1_000 + LookPacer::GRAIN_MS,
            "at 4/s: {latest}"
        );
        let left = count(&store, "looks = 1 AND next_look_at > ?", next).await;
        assert_eq!(left, 39, "the 7 and the 32 looked up once, due again later");
    }

    /// A pacer built from the latest booked time books after it (a restart keeps the pace);
    /// the times booked by the pacer before the restart that are already due are let go and
    /// booked again at the pace, not looked up all at once; a new pace lets go of every time
    /// booked, and the deliveries are due now to be booked at it.
    #[tokio::test]
    async fn the_pace_goes_on_after_a_restart_and_follows_a_new_setting() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let now = 1_700_000_000_000;
        assert_eq!(store.latest_booked_look().await.unwrap(), None);
        let ids: Vec<String> = (0..20).map(|i| format!("resp_unknown{i:03}")).collect();
        receive(&store, &ids, now).await;
        store.look_pace().set(Some(LookPacer::new(2, 0)));
        assert_eq!(pass(&store, now).await.len(), 8);
        let latest = store.latest_booked_look().await.unwrap().unwrap();
        assert!(latest >= now + 5_000, "12 at 2/s: {latest}");
        let at = LookPacer::new(2, latest).book(now);
        assert!(at > latest, "{at} after {latest}");

        // Down for 3 s: the 6 booked up to then are let go, and booked again at the pace.
        let later = now + 3_000;
        let due = count(&store, "look_booked = 1 AND next_look_at <= ?", later).await;
        assert!(due >= 5, "{due}");
        assert_eq!(store.unbook_looks(later, false).await.unwrap(), due as u64);
        let latest = store.latest_booked_look().await.unwrap().unwrap();
        store.look_pace().set(Some(LookPacer::new(2, latest)));
        let looked = pass(&store, later).await;
        // The first 8, due again at +500 ms, wait behind first looks; the overdue ones are
        // booked after the latest, none looked up now.
        assert!(looked.is_empty(), "{looked:?}");
        let (n, earliest): (i64, i64) = sql::query_as(
            "SELECT COUNT(*), MIN(next_look_at) FROM webhook_deliveries WHERE look_booked = 1",
        )
        .fetch_one(&store.pool_for_tests())
        .await
        .unwrap();
        assert_eq!(n, 12);
        assert!(earliest > later, "{earliest}");

        // A new pace: every booking goes, all due now.
        assert_eq!(store.unbook_looks(later, true).await.unwrap(), 12);
        let booked = count(
            &store,
            "look_booked = 1 OR (looks = 0 AND next_look_at > ?)",
            later,
        )
        .await;
        assert_eq!(booked, 0);
        store.look_pace().set(Some(LookPacer::new(100, 0)));
        let looked = pass(&store, later).await;
        assert_eq!(
            looked.len(),
            8,
            "a burst at once, the rest within the second"
        );
        // Nothing lost: every delivery is still unhandled.
        let n: i64 =
            sql::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE handled_at IS NULL")
                .fetch_one(&store.pool_for_tests())
                .await
                .unwrap();
        assert_eq!(n, 20);
    }

    /// Times given back are booked again, in the same order; never before now.
    #[test]
    fn times_given_back_are_booked_again() {
        let now = 1_700_000_000_000;
        let mut pacer = LookPacer::new(4, 0);
        let first: Vec<i64> = (0..20).map(|_| pacer.book(now)).collect();
        pacer.refund(12);
        let again: Vec<i64> = (0..12).map(|_| pacer.book(now)).collect();
        assert_eq!(again, first[8..]);
        pacer.refund(1_000);
        assert_eq!(pacer.book(now + 1), now + 1);
    }

    proptest! {
        /// Whatever the times asked at (never going back) and the pace: a booked time is never
        /// before its request, a later request is not booked a grain or more earlier, and in
        /// any second at most `rate` plus the burst (and a grain's worth, for the rounding) are
        /// booked.
        #[test]
        fn bookings_keep_the_pace(
            rate in 1u32..200,
            steps in proptest::collection::vec((0i64..400, 1usize..30), 1..60),
        ) {
            let mut pacer = LookPacer::new(rate, 0);
            let mut now = 1_700_000_000_000i64;
            let mut times = Vec::new();
            for (gap, n) in steps {
                now += gap;
                for _ in 0..n {
                    let at = pacer.book(now);
                    prop_assert!(at >= now);
                    // Only the rounding up to the grain lets a later one start earlier.
                    if let Some(&prev) = times.last() {
                        prop_assert!(at > prev - LookPacer::GRAIN_MS, "{at} long before {prev}");
                    }
                    times.push(at);
                }
            }
            let per_grain = f64::from(rate) * LookPacer::GRAIN_MS as f64 / 1_000.0;
            let bound = LookPacer::BURST as f64 + f64::from(rate) + per_grain + 1.0;
            for (i, &t) in times.iter().enumerate() {
                let n = times[i..].iter().take_while(|&&u| u < t + 1_000).count();
                prop_assert!(n as f64 <= bound, "{n} in the second from {t} at {rate}/s");
            }
        }
    }
}
