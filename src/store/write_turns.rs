//! SQLite's writers in this process take turns, first come first served, before
//! `BEGIN IMMEDIATE`.
//!
//! SQLite has one writer at a time. Without a queue, writers that find its lock taken sleep
//! in its busy handler (1 ms, then longer, up to 100 ms a time) and try again; one unlucky
//! enough to keep missing the moment waited seconds under load while fresh ones went first
//! (10,000 jobs: a job's end recorded 8 s late at p99). In a queue nobody sleeps, and nobody
//! is passed over.
//!
//! Two kinds of writers share the queue. **Foreground** writers have a client waiting on
//! their commit: the group-committed webhook deliveries (the sender waits for its `200`) and
//! jobs taken in (the `POST` waits for its `201`). Each is one batch at a time. The workers'
//! writes are **background**, and take a place in the queue one at a time (a background writer
//! first waits for the others ahead of it, outside the queue). So a foreground batch waits
//! for at most the transaction under way, one background transaction and the other foreground
//! batcher's, never for every worker's; and a background writer is never passed over for
//! long, since foreground writers queue behind it once it has its place.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Who waits on a write transaction's commit (see the module's docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Writer {
    /// A client waits for it (webhook deliveries, jobs taken in).
    Foreground,
    /// A worker's write.
    Background,
}

/// The queue of one database's writers in this process.
#[derive(Debug)]
pub(crate) struct WriteTurns {
    /// The turn itself: one writer at a time, in the order they came.
    turn: Arc<Semaphore>,
    /// The place of background writers in that queue: one at a time.
    background: Arc<Semaphore>,
    /// Writers waiting for the turn itself (see [`WriteTurns::others_wait`]).
    waiting: AtomicUsize,
}

/// A writer's turn, given up when dropped.
#[derive(Debug)]
pub(crate) struct Turn {
    _turn: OwnedSemaphorePermit,
    _background: Option<OwnedSemaphorePermit>,
}

impl WriteTurns {
    pub(crate) fn new() -> Self {
        Self {
            turn: Arc::new(Semaphore::new(1)),
            background: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Whether a writer waits for the turn: one that holds it and could write on (batch after
    /// batch) gives it up instead.
    pub(crate) fn others_wait(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// Waits for `writer`'s turn, at most `timeout` in all.
    pub(crate) async fn take(
        &self,
        writer: Writer,
        timeout: Duration,
    ) -> Result<Turn, sqlx::Error> {
        let waited = tokio::time::timeout(timeout, async {
            let background = match writer {
                Writer::Foreground => None,
                Writer::Background => Some(Arc::clone(&self.background).acquire_owned().await?),
            };
            let turn = {
                let _counted = Waiting::count(&self.waiting);
                Arc::clone(&self.turn).acquire_owned().await?
            };
            Ok::<_, tokio::sync::AcquireError>(Turn {
                _turn: turn,
                _background: background,
            })
        })
        .await;
        match waited {
            Ok(Ok(turn)) => Ok(turn),
            Ok(Err(_)) => Err(sqlx::Error::PoolClosed),
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "waited {}s for this process's other writers to finish",
                    timeout.as_secs()
                ),
            ))),
        }
    }
}

/// One writer counted as waiting for the turn, counted out however its wait ends (given the
/// turn, timed out, dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::AcqRel);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    /// Turns go one at a time; a foreground writer that comes while background writers queue
    /// goes after at most one of them, and every background writer gets its turn, in order.
    #[tokio::test]
    async fn a_foreground_writer_waits_for_one_background_writer_at_most_and_none_is_passed_over() {
        let turns = Arc::new(WriteTurns::new());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let first = turns.take(Writer::Foreground, LONG).await.unwrap();
        let mut tasks = Vec::new();
        // Three background writers queue behind the one holding the turn (one in the queue,
        // two waiting for its place)...
        for i in 0..3 {
            let (turns, order) = (Arc::clone(&turns), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let _t = turns.take(Writer::Background, LONG).await.unwrap();
                order.lock().unwrap().push(format!("b{i}"));
                tokio::task::yield_now().await;
            }));
            tokio::task::yield_now().await;
        }
        // ...then a foreground one.
        let (t, o) = (Arc::clone(&turns), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let _t = t.take(Writer::Foreground, LONG).await.unwrap();
            o.lock().unwrap().push("f".to_string());
        }));
        tokio::task::yield_now().await;
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["b0", "f", "b1", "b2"]);
    }

    /// The holder of the turn sees a writer waiting for it, foreground or background, and
    /// sees none once every wait has ended: given the turn, timed out or dropped; a background
    /// writer waiting for its place behind another is not yet waiting for the turn.
    #[tokio::test]
    async fn the_holder_sees_who_waits_for_the_turn_until_their_wait_ends() {
        let turns = Arc::new(WriteTurns::new());
        let held = turns.take(Writer::Foreground, LONG).await.unwrap();
        assert!(!turns.others_wait());
        // Timed out.
        turns
            .take(Writer::Foreground, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(!turns.others_wait(), "a wait that timed out is counted out");
        // Dropped while waiting.
        let mut dropped = Box::pin(turns.take(Writer::Background, LONG));
        assert!(futures::FutureExt::now_or_never(&mut dropped).is_none());
        assert!(
            turns.others_wait(),
            "a background writer in the queue waits"
        );
        // A second background writer waits for the first one's place, not for the turn.
        let mut second = Box::pin(turns.take(Writer::Background, LONG));
        assert!(futures::FutureExt::now_or_never(&mut second).is_none());
        drop(dropped);
        assert!(
            futures::FutureExt::now_or_never(&mut second).is_none(),
            "it now waits for the turn"
        );
        assert!(turns.others_wait());
        drop(held);
        let turn = second.await.unwrap();
        assert!(!turns.others_wait(), "given the turn, it no longer waits");
        drop(turn);
        let t = Arc::clone(&turns);
        let waiter = tokio::spawn(async move { t.take(Writer::Foreground, LONG).await.map(drop) });
        waiter.await.unwrap().unwrap();
        assert!(!turns.others_wait());
    }

    /// A writer that gives up waiting (its future dropped, or timed out) takes nobody's turn.
    #[tokio::test]
    async fn a_writer_that_stops_waiting_takes_nobodys_turn() {
        let turns = WriteTurns::new();
        let held = turns.take(Writer::Foreground, LONG).await.unwrap();
        let e = turns
            .take(Writer::Background, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("other writers"), "{e}");
        let waiting = turns.take(Writer::Foreground, LONG);
        assert!(futures::FutureExt::now_or_never(waiting).is_none());
        drop(held);
        let _next = turns.take(Writer::Background, LONG).await.unwrap();
        assert!(
            futures::FutureExt::now_or_never(turns.take(Writer::Foreground, LONG)).is_none(),
            "one at a time"
        );
    }
}
