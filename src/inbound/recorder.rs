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

use crate::batch::Batcher;
use crate::signing::Verified;
use crate::store::Store;
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

/// The handle requests use to record a delivery. Cheap to clone; the writer stops when every
/// handle is dropped, after recording what was queued.
#[derive(Clone)]
pub struct Recorder {
    batcher: Batcher<(Verified, i64), Result<bool, RecordError>>,
}

impl Recorder {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store) -> Self {
        let batcher = Batcher::start(MAX_BATCH, move |batch: Vec<(Verified, i64)>| {
            let store = store.clone();
            async move { write_batch(&store, &batch).await }
        });
        Self { batcher }
    }

    /// Records `delivery`, received now; returns whether it is new (false: its `webhook-id`
    /// was recorded before). Returns once the delivery is durable, or with the error that
    /// kept it from being so.
    pub async fn record(&self, delivery: Verified, received_at: i64) -> Result<bool, RecordError> {
        self.batcher
            .call((delivery, received_at))
            .await
            .unwrap_or(Err(RecordError::Stopped))
    }
}

/// Records one batch in one transaction. If that fails, one row may be at fault: each is
/// recorded alone, so only what cannot be recorded by itself is refused.
async fn write_batch(store: &Store, batch: &[(Verified, i64)]) -> Vec<Result<bool, RecordError>> {
    let rows: Vec<(&Verified, i64)> = batch.iter().map(|(d, at)| (d, *at)).collect();
    crate::telemetry::webhook_batch(rows.len());
    let refused = |e: &crate::store::StoreError, d: &Verified| {
        tracing::error!(error = %chain(e), webhook_id = d.webhook_id(), "cannot record a webhook delivery; answered 500, the sender will send it again");
        Err(RecordError::Failed)
    };
    match store.record_deliveries(&rows).await {
        Ok(new) => return new.into_iter().map(Ok).collect(),
        Err(e) if rows.len() == 1 => return vec![refused(&e, rows[0].0)],
        Err(e) => tracing::warn!(
            error = %chain(&e),
            deliveries = rows.len(),
            "cannot record a batch of webhook deliveries; recording them one by one"
        ),
    }
    let mut answers = Vec::with_capacity(rows.len());
    for row in &rows {
        answers.push(match store.record_deliveries(&[*row]).await {
            Ok(new) => Ok(new.first().copied().unwrap_or(false)),
            Err(e) => refused(&e, row.0),
        });
    }
    answers
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
}
