//! Group commit for webhook deliveries: the receiver's requests hand their verified delivery
//! to one writer task, which records whatever has queued up meanwhile in one transaction (one
//! commit, one fsync) and then answers each request. A request is answered `200` only after
//! the batch holding its delivery is durable; if the batch fails, every request in it gets
//! the error (and the sender retries).
//!
//! Why one writer: SQLite has one write lock. A transaction per delivery makes every request
//! wait for its own fsync and for the lock behind the others, so the fsyncs, not the work,
//! set the rate. With one writer, the deliveries that arrive while a batch commits make up the
//! next batch: under load the batches grow and the cost per delivery falls, with no timer
//! that would delay a lone delivery.
//!
//! Batch after batch in one turn: once it has its turn, the writer records the next batch as
//! soon as the last one is durable, for as long as deliveries keep queuing and no other writer
//! waits (`Store::record_delivery_batches`). On SQLite that loop runs on a blocking thread, so
//! a batch's commit does not wait for the runtime's thread (busy with the requests) to start
//! the next one; a writer that comes meanwhile waits for one batch at most. (The generic
//! `batch::Batcher`, which the other group commits use, goes back to its task between
//! batches.)

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::signing::Verified;
use crate::store::{DeliveryBatches, Store, StoreError};
use crate::telemetry::chain;

/// At most this many deliveries go into one transaction.
pub const MAX_BATCH: usize = 1024;

/// Why a delivery was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The transaction failed (logged by the writer, with its cause).
    #[error("the delivery could not be recorded")]
    Failed,
    /// The writer has stopped (the daemon is shutting down).
    #[error("the daemon is stopping")]
    Stopped,
}

type Answer = oneshot::Sender<Result<bool, RecordError>>;
type Pending = ((Verified, i64), Answer);

/// The handle requests use to record a delivery. Cheap to clone; the writer stops when every
/// handle is dropped, after recording what was queued.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pending>,
}

impl Recorder {
    /// Starts the writer task on the current runtime. At most `4 × MAX_BATCH` deliveries
    /// wait; requests beyond that wait to queue.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write(store, rx));
        Self { tx }
    }

    /// Records `delivery`, received now; returns whether it is new (false: its `webhook-id`
    /// was recorded before). Returns once the delivery is durable, or with the error that
    /// kept it from being so.
    pub async fn record(&self, delivery: Verified, received_at: i64) -> Result<bool, RecordError> {
        let (answer, reply) = oneshot::channel();
        if self
            .tx
            .send(((delivery, received_at), answer))
            .await
            .is_err()
        {
            return Err(RecordError::Stopped);
        }
        // An answer dropped unsent: the writer lost its batch (logged there).
        reply.await.unwrap_or(Err(RecordError::Failed))
    }
}

/// The writer: waits for a delivery, then records batch after batch of what queued meanwhile
/// until none waits (`Store::record_delivery_batches`).
async fn write(store: Store, rx: mpsc::Receiver<Pending>) {
    // Shared with the batches, which take what queued from it on the store's blocking
    // thread: a batch lost with an error leaves the queue here.
    let rx = Arc::new(Mutex::new(rx));
    loop {
        let mut queue = Queue {
            rx: Arc::clone(&rx),
            batch: Vec::new(),
            answers: Vec::new(),
        };
        let mut first = Vec::new();
        if rx.lock().await.recv_many(&mut first, MAX_BATCH).await == 0 {
            return;
        }
        queue.push(first);
        while !queue.batch.is_empty() {
            let store = &store;
            // A panic in one batch must not leave every later request without a writer.
            let recorded = AssertUnwindSafe(async move {
                match store.record_delivery_batches(queue).await {
                    Ok((queue, None)) => Ok(queue),
                    Ok((mut queue, Some(e))) => {
                        record_one_by_one(store, &mut queue, &e).await;
                        Ok(queue)
                    }
                    Err(e) => Err(e),
                }
            })
            .catch_unwind()
            .await;
            queue = match recorded {
                Ok(Ok(queue)) => queue,
                Ok(Err(e)) => {
                    tracing::error!(error = %chain(&e), "cannot record a batch of webhook deliveries; answered 500, the senders will send them again");
                    break;
                }
                Err(_) => {
                    tracing::error!(
                        "recording a batch of webhook deliveries panicked; answered 500, the senders will send them again"
                    );
                    break;
                }
            };
        }
    }
}

/// The deliveries of the batch under way, and the requests waiting for them.
struct Queue {
    rx: Arc<Mutex<mpsc::Receiver<Pending>>>,
    batch: Vec<(Verified, i64)>,
    answers: Vec<Answer>,
}

impl Queue {
    fn push(&mut self, pending: Vec<Pending>) {
        crate::telemetry::webhook_batch(pending.len());
        (self.batch, self.answers) = pending.into_iter().unzip();
    }

    /// Makes what queued meanwhile the next batch (never waits).
    fn take_queued(&mut self) {
        // Only the writer takes from the queue, one batch at a time: it is never locked here.
        let Ok(mut rx) = self.rx.try_lock() else {
            return;
        };
        let mut pending = Vec::new();
        while pending.len() < MAX_BATCH
            && let Ok(p) = rx.try_recv()
        {
            pending.push(p);
        }
        drop(rx);
        if !pending.is_empty() {
            self.push(pending);
        }
    }
}

impl DeliveryBatches for Queue {
    fn batch(&self) -> &[(Verified, i64)] {
        &self.batch
    }

    fn recorded(&mut self, new: Vec<bool>) {
        // A request whose client hung up is recorded all the same.
        for (answer, new) in self.answers.drain(..).zip(new) {
            let _ = answer.send(Ok(new));
        }
        self.batch.clear();
        self.take_queued();
    }
}

/// A batch failed as one (it was rolled back). One delivery may be at fault: each is recorded
/// alone, so only what cannot be recorded by itself is refused.
async fn record_one_by_one(store: &Store, queue: &mut Queue, error: &StoreError) {
    let refused = |e: &StoreError, d: &Verified| {
        tracing::error!(error = %chain(e), webhook_id = d.webhook_id(), "cannot record a webhook delivery; answered 500, the sender will send it again");
        Err(RecordError::Failed)
    };
    let batch = std::mem::take(&mut queue.batch);
    let answers = std::mem::take(&mut queue.answers);
    if let [(d, _)] = batch.as_slice() {
        let result = refused(error, d);
        for answer in answers {
            let _ = answer.send(result);
        }
    } else if error.is_lock_wait() {
        // Another writer held the lock too long: no delivery is at fault, and one by one
        // each would wait as long.
        tracing::error!(
            error = %chain(error),
            deliveries = batch.len(),
            "cannot record a batch of webhook deliveries (the database stayed locked); answered 500, the senders will send them again"
        );
        for answer in answers {
            let _ = answer.send(Err(RecordError::Failed));
        }
    } else {
        tracing::warn!(
            error = %chain(error),
            deliveries = batch.len(),
            "cannot record a batch of webhook deliveries; recording them one by one"
        );
        for ((d, at), answer) in batch.iter().zip(answers) {
            let result = match store.record_deliveries(&[(d, *at)]).await {
                Ok(new) => Ok(new.first().copied().unwrap_or(false)),
                Err(e) => refused(&e, d),
            };
            let _ = answer.send(result);
        }
    }
    queue.take_queued();
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::*;
    use crate::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Keys};

    const SECRET: &str = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c=";

    /// A delivery as `Keys::verify` makes it (the only way to get one).
    fn verified(webhook_id: &str, body: &str) -> Verified {
        let hook = standardwebhooks::Webhook::new(SECRET).unwrap();
        let ts = chrono::Utc::now().timestamp();
        let sig = hook.sign(webhook_id, ts, body.as_bytes()).unwrap();
        let mut h = HeaderMap::new();
        h.insert(HEADER_ID, webhook_id.parse().unwrap());
        h.insert(HEADER_TIMESTAMP, ts.to_string().parse().unwrap());
        h.insert(HEADER_SIGNATURE, sig.parse().unwrap());
        Keys::new(&[SECRET.to_owned().into()])
            .verify(body.as_bytes(), &h)
            .unwrap()
    }

    /// Bodies of every shape: ASCII, non-ASCII, a long single line, many short lines, huge.
    fn body(i: usize) -> String {
        let text = match i % 5 {
            0 => "done".to_owned(),
            1 => "Größe – 完了 ✅ \u{1F600}".to_owned(),
            2 => "x".repeat(100_000),
            3 => "line\n".repeat(2_000),
            _ => String::new(),
        };
        serde_json::json!({
            "id": format!("evt_{i}"),
            "type": "response.completed",
            "created_at": 1,
            "data": {"id": format!("resp_{i:04}"), "note": text},
        })
        .to_string()
    }

    async fn store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        Store::connect(&url).await.unwrap()
    }

    /// One batch: a webhook id seen before, and one twice in the batch, are duplicates; each
    /// new one is new once; every body is stored byte for byte.
    #[tokio::test]
    async fn a_batch_tells_new_from_duplicate_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let before = verified("wh_0", &body(0));
        assert_eq!(
            store.record_deliveries(&[(&before, 1)]).await.unwrap(),
            [true]
        );
        assert!(store.record_deliveries(&[]).await.unwrap().is_empty());
        let ds: Vec<Verified> = ["wh_1", "wh_0", "wh_2", "wh_1", "wh_3"]
            .iter()
            .enumerate()
            .map(|(i, id)| verified(id, &body(i + 1)))
            .collect();
        let rows: Vec<(&Verified, i64)> = ds.iter().map(|d| (d, 2)).collect();
        assert_eq!(
            store.record_deliveries(&rows).await.unwrap(),
            [true, false, true, false, true]
        );
        assert_eq!(store.count_deliveries().await.unwrap(), 4);
        for d in [&before, &ds[0], &ds[2], &ds[4]] {
            let stored: String =
                sqlx::query_scalar("SELECT body FROM webhook_deliveries WHERE webhook_id = ?")
                    .bind(d.webhook_id())
                    .fetch_one(&store.pool_for_tests())
                    .await
                    .unwrap();
            assert_eq!(stored, d.body());
        }
        store.close().await;
    }

    /// Many requests at once through the writer: each gets its own answer (new exactly once
    /// per webhook id, however the requests fall into batches), and every one answered is
    /// stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_each_get_their_own_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let recorder = Recorder::start(store.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..600 {
            // 300 distinct ids, each sent twice, the copies far apart in the order.
            let id = format!("wh_{}", i % 300);
            let d = verified(&id, &body(i % 300));
            let r = recorder.clone();
            tasks.spawn(async move { (id, r.record(d, 7).await.unwrap()) });
        }
        let mut new = std::collections::HashMap::<String, u32>::new();
        while let Some(done) = tasks.join_next().await {
            let (id, is_new) = done.unwrap();
            *new.entry(id).or_default() += u32::from(is_new);
        }
        assert_eq!(new.len(), 300);
        assert!(new.values().all(|&n| n == 1), "{new:?}");
        assert_eq!(store.count_deliveries().await.unwrap(), 300);
        drop(recorder);
        store.close().await;
    }

    /// Batch after batch in one turn gives the turn up to a writer that waits: while
    /// deliveries keep coming from 64 requests at a time, a worker's write gets its turn
    /// (it would time out if the recorder kept the turn as long as deliveries queue), and
    /// the deliveries go on after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_waiting_for_its_turn_gets_it_while_deliveries_keep_coming() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let recorder = Recorder::start(store.clone());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut senders = tokio::task::JoinSet::new();
        for t in 0..64 {
            let (r, stop) = (recorder.clone(), stop.clone());
            senders.spawn(async move {
                let mut i = 0_usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Every shape of body but the 100 KB one.
                    let d = verified(
                        &format!("wh_{t}_{i}"),
                        &body(if i % 5 == 2 { 1 } else { i }),
                    );
                    assert_eq!(r.record(d, 1).await, Ok(true));
                    i += 1;
                }
                i
            });
        }
        while store.count_deliveries().await.unwrap() < 500 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut tx = tokio::time::timeout(std::time::Duration::from_secs(30), store.begin_write())
            .await
            .expect("the worker's write got its turn")
            .unwrap();
        crate::store::sql::query("UPDATE health SET checked_at = 1 WHERE id = 1")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let at_its_turn = store.count_deliveries().await.unwrap();
        while store.count_deliveries().await.unwrap() < at_its_turn + 500 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut sent = 0_i64;
        while let Some(n) = senders.join_next().await {
            sent += i64::try_from(n.unwrap()).unwrap();
        }
        assert_eq!(store.count_deliveries().await.unwrap(), sent);
        drop(recorder);
        store.close().await;
    }

    /// Batches that never stop coming: the run of them gives the turn up to a writer that
    /// waits for it after one more batch, and hands back the batch it has not recorded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endless_batches_give_the_turn_up_to_a_writer_that_waits() {
        struct Endless {
            batch: Vec<(Verified, i64)>,
            next: usize,
            since: std::time::Instant,
            recorded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        }
        impl Endless {
            fn refill(&mut self) {
                // Endless for long enough: a run that kept the turn fails the test, not hangs it.
                if self.since.elapsed() > std::time::Duration::from_secs(20) {
                    self.batch.clear();
                    return;
                }
                self.batch = (0..10)
                    .map(|_| {
                        self.next += 1;
                        (
                            verified(&format!("wh_{}", self.next), &body(self.next % 2)),
                            1,
                        )
                    })
                    .collect();
            }
        }
        impl DeliveryBatches for Endless {
            fn batch(&self) -> &[(Verified, i64)] {
                &self.batch
            }
            fn recorded(&mut self, new: Vec<bool>) {
                assert_eq!(new, [true; 10]);
                self.recorded
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.refill();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let recorded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut endless = Endless {
            batch: Vec::new(),
            next: 0,
            since: std::time::Instant::now(),
            recorded: recorded.clone(),
        };
        endless.refill();
        let run = {
            let store = store.clone();
            tokio::spawn(async move { store.record_delivery_batches(endless).await })
        };
        while recorded.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        // The store's own limit (10 s) would fail this if the run never gave the turn up.
        let tx = store
            .begin_write()
            .await
            .expect("the waiting writer got its turn");
        let (left, failed) = run.await.unwrap().unwrap();
        assert!(failed.is_none());
        assert_eq!(
            left.batch().len(),
            10,
            "the batch not recorded is handed back"
        );
        tx.commit().await.unwrap();
        let batches = recorded.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            store.count_deliveries().await.unwrap(),
            i64::try_from(batches * 10).unwrap()
        );
        store.close().await;
    }

    /// A batch that cannot be written answers every request in it with the error (so each is
    /// answered 500 and sent again), and the writer goes on with the next batch.
    #[tokio::test]
    async fn a_failed_batch_answers_each_request_with_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let recorder = Recorder::start(store.clone());
        sqlx::query("ALTER TABLE webhook_deliveries RENAME TO gone")
            .execute(&store.pool_for_tests())
            .await
            .unwrap();
        assert_eq!(
            recorder.record(verified("wh_1", &body(1)), 1).await,
            Err(RecordError::Failed)
        );
        sqlx::query("ALTER TABLE gone RENAME TO webhook_deliveries")
            .execute(&store.pool_for_tests())
            .await
            .unwrap();
        assert_eq!(
            recorder.record(verified("wh_1", &body(1)), 1).await,
            Ok(true)
        );
        store.close().await;
    }

    /// A delivery of `event_type` naming `object_id`, its body varied like [`body`]'s.
    fn event(webhook_id: &str, event_type: &str, object_id: &str, i: usize) -> Verified {
        let mut body: serde_json::Value = serde_json::from_str(&body(i)).unwrap();
        body["type"] = event_type.into();
        body["data"]["id"] = object_id.into();
        verified(webhook_id, &body.to_string())
    }

    /// `(look_booked, next_look_at)` of each webhook id, in order.
    async fn bookings(store: &Store, ids: &[String]) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        for id in ids {
            out.push(
                sqlx::query_as(
                    "SELECT look_booked, next_look_at FROM webhook_deliveries WHERE webhook_id = ?",
                )
                .bind(id)
                .fetch_one(&store.pool_for_tests())
                .await
                .unwrap(),
            );
        }
        out
    }

    /// With a pace set, the receiver books the look-up of each delivery naming a response no
    /// job knows as it records it, by both ways of recording (one batch, and batches in one
    /// turn): a burst due now, the others later at the pace, one after the other across
    /// batches; a duplicate takes no time, and deliveries for a job's response or for no
    /// response are not booked. The hand-off then looks up those due, hands the job its
    /// delivery and writes nothing for those booked later. Without a pace nothing is booked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_receiver_books_look_ups_of_responses_no_job_knows_at_the_pace() {
        use crate::store::LookPacer;
        use crate::store::delivery_tests::{hand_off_due, job_with};
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let job = job_with(&store, Some("resp_ours")).await;
        // Not set yet: recorded unbooked, due when received.
        let now: i64 = 1_700_000_000_000;
        let early = event("wh_early", "response.completed", "resp_early", 0);
        store.record_deliveries(&[(&early, now)]).await.unwrap();
        assert_eq!(
            bookings(&store, &["wh_early".into()]).await,
            [(0, now)],
            "no pace, no booking"
        );

        store.look_pace().set(Some(LookPacer::new(4, 0)));
        let mut ds: Vec<Verified> = (0..20)
            .map(|i| {
                event(
                    &format!("wh_u{i}"),
                    "response.completed",
                    &format!("resp_u{i:03}"),
                    i,
                )
            })
            .collect();
        ds.insert(5, event("wh_ours", "response.completed", "resp_ours", 1));
        ds.insert(9, event("wh_u3", "response.completed", "resp_u003", 2));
        ds.insert(12, event("wh_batch", "batch.completed", "batch_abc", 3));
        ds.insert(
            14,
            event("wh_bad", "response.failed", "not a response id", 4),
        );
        let rows: Vec<(&Verified, i64)> = ds.iter().map(|d| (d, now)).collect();
        let new = store.record_deliveries(&rows).await.unwrap();
        assert_eq!(new.iter().filter(|n| !**n).count(), 1, "{new:?}");
        let unknown: Vec<String> = (0..20).map(|i| format!("wh_u{i}")).collect();
        let booked = bookings(&store, &unknown).await;
        assert!(booked.iter().all(|(b, _)| *b == 1), "{booked:?}");
        let times: Vec<i64> = booked.iter().map(|(_, t)| *t).collect();
        let burst = LookPacer::BURST as usize;
        assert!(times[..burst].iter().all(|&t| t == now), "{times:?}");
        assert!(
            times[burst..]
                .iter()
                .all(|&t| t > now && t % LookPacer::GRAIN_MS == 0),
            "{times:?}"
        );
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        // After the burst, at most 4 a second.
        for (i, &t) in times.iter().enumerate().skip(burst) {
            let in_a_second = times[i..].iter().take_while(|&&u| u < t + 1_000).count();
            assert!(in_a_second <= 4, "{times:?}");
        }
        let others: Vec<String> = ["wh_ours", "wh_batch", "wh_bad"].map(String::from).into();
        assert_eq!(bookings(&store, &others).await, [(0, now); 3]);

        // The other way of recording books after them: the pace runs across batches.
        let recorder = Recorder::start(store.clone());
        for i in 20..24 {
            let d = event(
                &format!("wh_u{i}"),
                "response.completed",
                &format!("resp_u{i:03}"),
                i,
            );
            assert!(recorder.record(d, now + 10).await.unwrap());
        }
        let later: Vec<String> = (20..24).map(|i| format!("wh_u{i}")).collect();
        let last = *times.last().unwrap();
        let booked_later = bookings(&store, &later).await;
        assert!(
            booked_later.iter().all(|&(b, t)| b == 1 && t > last),
            "{booked_later:?} after {last}"
        );

        // The hand-off: the burst looked up, the job handed its delivery, the others named
        // none; the 16 booked later are left as they are.
        let handed = hand_off_due(&store, now).await;
        // The one recorded before the pace was set is booked now, by the hand-off, after the
        // burst the receiver took.
        assert_eq!(handed.booked, 1);
        assert_eq!(bookings(&store, &["wh_early".into()]).await[0].0, 1);
        let mut looked: Vec<String> = handed
            .look_up
            .into_iter()
            .map(|(d, _)| d.webhook_id)
            .collect();
        looked.sort();
        let mut expected: Vec<String> = unknown[..burst].to_vec();
        expected.sort();
        assert_eq!(looked, expected);
        let ours: Option<String> = sqlx::query_scalar(
            "SELECT job_id FROM webhook_deliveries WHERE webhook_id = 'wh_ours'",
        )
        .fetch_one(&store.pool_for_tests())
        .await
        .unwrap();
        assert_eq!(ours.as_deref(), Some(job.as_str()));
        assert_eq!(bookings(&store, &unknown[burst..]).await, booked[burst..]);
        assert_eq!(bookings(&store, &later).await, booked_later);

        // Copies of deliveries already stored take no time (theirs are given back): the next
        // new one is booked right after the last, a quarter second on at 4 a second.
        let copies: Vec<Verified> = (0..3)
            .map(|i| {
                event(
                    &format!("wh_u{i}"),
                    "response.completed",
                    &format!("resp_u{i:03}"),
                    i,
                )
            })
            .chain([event("wh_next", "response.completed", "resp_next", 5)])
            .collect();
        let rows: Vec<(&Verified, i64)> = copies.iter().map(|d| (d, now + 20)).collect();
        let latest = store.latest_booked_look().await.unwrap().unwrap();
        assert_eq!(
            store.record_deliveries(&rows).await.unwrap(),
            [false, false, false, true]
        );
        let next = bookings(&store, &["wh_next".into()]).await[0];
        assert_eq!(next, (1, latest + LookPacer::GRAIN_MS), "after {latest}");

        // A job's create answers with a response whose delivery came first and was booked
        // later: the delivery is due now, and the next hand-off gives it to the job.
        let late = job_with(&store, None).await;
        let attached = store
            .attach_response(
                &late,
                &crate::job::ResponseId::parse("resp_next").unwrap(),
                &crate::store::AttachContext::create_answered_at(now + 30),
            )
            .await
            .unwrap();
        assert!(
            matches!(attached, crate::store::Attach::Attached { .. }),
            "{attached:?}"
        );
        assert_eq!(
            bookings(&store, &["wh_next".into()]).await,
            [(0, now + 30)],
            "unbooked, due when the job learned its response"
        );
        let handed = hand_off_due(&store, now + 30).await;
        assert!(
            handed
                .look_up
                .iter()
                .all(|(d, _)| d.webhook_id != "wh_next")
        );
        let to: Option<String> = sqlx::query_scalar(
            "SELECT job_id FROM webhook_deliveries WHERE webhook_id = 'wh_next'",
        )
        .fetch_one(&store.pool_for_tests())
        .await
        .unwrap();
        assert_eq!(to.as_deref(), Some(late.as_str()));
        drop(recorder);
        store.close().await;
    }
}
