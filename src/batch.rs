//! Group commit: many callers, one writer. Each caller hands its item to the writer task and
//! waits for its own answer; the writer takes whatever has queued up (up to a maximum) and
//! writes it in one transaction, so one commit (one fsync) serves the whole batch. Under load
//! the batches grow and the cost per item falls; a lone item is written at once (no timer
//! waits for company).
//!
//! Used for taking jobs in (`orchestrator::intake`), for poll results (`orchestrator::poll`)
//! and for the outbox's delivery results (`notify`); webhook deliveries have a writer of
//! their own on the same plan (`inbound::recorder`). The writer stops when every handle is dropped, after writing
//! what was queued. A batch whose write panics answers its callers [`Stopped`] and the writer
//! goes on with the next one.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use tokio::sync::{mpsc, oneshot};

/// The writer is gone (the process is stopping): the item was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the writer has stopped")]
pub struct Stopped;

type Pending<T, R> = (T, oneshot::Sender<R>);

/// A handle on one writer task. Cheap to clone.
pub struct Batcher<T, R> {
    tx: mpsc::Sender<Pending<T, R>>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the writer on the current runtime. `write` gets each batch (at most `max_batch`
    /// items, in arrival order) and returns one answer per item, in the same order; a missing
    /// answer reaches its caller as [`Stopped`]. At most `4 × max_batch` items wait; callers
    /// beyond that wait to queue.
    pub fn start<F, Fut>(max_batch: usize, mut write: F) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        let max_batch = max_batch.max(1);
        let (tx, mut rx) = mpsc::channel::<Pending<T, R>>(4 * max_batch);
        tokio::spawn(async move {
            let mut pending = Vec::with_capacity(max_batch);
            while rx.recv_many(&mut pending, max_batch).await > 0 {
                let (items, answers): (Vec<T>, Vec<oneshot::Sender<R>>) = pending.drain(..).unzip();
                // A panic in one batch must not leave every later caller without a writer.
                let Ok(results) = AssertUnwindSafe(write(items)).catch_unwind().await else {
                    tracing::error!(
                        items = answers.len(),
                        "a batch write panicked; its callers are told it was not written"
                    );
                    continue;
                };
                for (answer, result) in answers.into_iter().zip(results) {
                    // The caller may have gone (its client hung up): the item is written all
                    // the same.
                    let _ = answer.send(result);
                }
            }
        });
        Self { tx }
    }

    /// Hands `item` to the writer and waits for its answer.
    pub async fn call(&self, item: T) -> Result<R, Stopped> {
        let (answer, reply) = oneshot::channel();
        self.tx.send((item, answer)).await.map_err(|_| Stopped)?;
        reply.await.map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Every caller gets the answer to its own item, however the items fall into batches, and
    /// items queued while a batch is written make up the next (larger) batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_caller_gets_its_own_answer_and_batches_form_under_load() {
        let batches = Arc::new(AtomicUsize::new(0));
        let seen = batches.clone();
        let b = Batcher::start(64, move |items: Vec<u64>| {
            seen.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                items.into_iter().map(|i| i * 10).collect()
            }
        });
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..2_000u64 {
            let b = b.clone();
            calls.spawn(async move { (i, b.call(i).await) });
        }
        while let Some(done) = calls.join_next().await {
            let (i, answer) = done.unwrap();
            assert_eq!(answer, Ok(i * 10));
        }
        let n = batches.load(Ordering::Relaxed);
        assert!(n < 2_000, "no batching: {n} batches for 2,000 items");
    }

    /// A writer that answers fewer items than it got: the unanswered callers learn it.
    #[tokio::test]
    async fn a_missing_answer_is_stopped() {
        let b = Batcher::start(8, |_items: Vec<u8>| async { Vec::<u8>::new() });
        assert_eq!(b.call(1).await, Err(Stopped));
    }

    /// A batch whose write panics answers its callers `Stopped`; the writer lives on and the
    /// next batch is written.
    #[tokio::test]
    async fn a_panicking_batch_does_not_stop_the_writer() {
        let b = Batcher::start(8, |items: Vec<u8>| async move {
            assert!(!items.contains(&0), "a poisoned item");
            items
        });
        assert_eq!(b.call(0).await, Err(Stopped));
        assert_eq!(b.call(7).await, Ok(7));
    }
}
