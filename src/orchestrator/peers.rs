//! Wake-ups between daemons on one PostgreSQL database (see [`crate::store::PeerListener`]).
//!
//! [`Orchestrator::wake`] (new work: a job, a cancel, a job's end, a reload) also asks the
//! *teller* to tell the other daemons; it sends at most one `NOTIFY` per [`TELL_GAP`], so a
//! burst of a thousand intakes costs the database a handful. The *listener* wakes this
//! daemon's workers when another daemon tells. Neither runs on SQLite.

use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Orchestrator, Worker};
use crate::store::Backend;
use crate::telemetry::chain;

/// The least time between two wake-ups this daemon sends.
const TELL_GAP: Duration = Duration::from_millis(20);

/// How long to wait before listening again after the listening connection failed: at first,
/// and at most (doubling in between).
const LISTEN_RETRY: Duration = Duration::from_secs(1);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(30);

/// This daemon's side of the wake-ups.
pub(super) struct Peers {
    /// Sent as the payload, so that this daemon's listener skips its own wake-ups.
    instance: String,
    /// Asks the teller to send (a kept permit coalesces a burst).
    tell: Notify,
}

impl Default for Peers {
    fn default() -> Self {
        Self {
            instance: format!("{:016x}", rand::random::<u64>()),
            tell: Notify::new(),
        }
    }
}

impl Peers {
    /// Asks the teller to tell the other daemons (cheap; nothing is sent on SQLite).
    pub(super) fn tell(&self) {
        self.tell.notify_one();
    }
}

impl Orchestrator {
    /// Tells and listens until `shutdown` (returns at once on SQLite).
    pub(super) async fn peers(&self, shutdown: &CancellationToken) {
        if self.inner.store.backend() != Backend::Postgres {
            return;
        }
        tokio::join!(self.tell_peers(shutdown), self.hear_peers(shutdown));
    }

    async fn tell_peers(&self, shutdown: &CancellationToken) {
        let peers = &self.inner.peers;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = peers.tell.notified() => {}
            }
            // Raced with shutdown: with the database unreachable, a send may wait for a
            // connection for seconds.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                sent = self.inner.store.notify_peers(&peers.instance) => {
                    if let Err(e) = sent {
                        tracing::debug!(error = %chain(&e), "cannot wake the other daemons");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(TELL_GAP) => {}
            }
        }
    }

    /// Listens until `shutdown`. A connection that fails is dropped and opened again, waiting
    /// longer each time (up to [`LISTEN_RETRY_MAX`]); the first failure of a run of them is a
    /// warning, the rest are debug lines.
    async fn hear_peers(&self, shutdown: &CancellationToken) {
        let store = &self.inner.store;
        let me = &self.inner.peers.instance;
        let mut retry = LISTEN_RETRY;
        let mut warned = false;
        loop {
            let opened = tokio::select! {
                _ = shutdown.cancelled() => return,
                opened = store.listen_to_peers(me) => opened,
            };
            let failure = match opened {
                Ok(None) => return,
                Ok(Some(mut listener)) => {
                    if warned {
                        tracing::info!("listening for the other daemons' wake-ups again");
                        // What was sent while no one listened is lost: look now.
                        for w in Worker::ALL {
                            self.inner.wakes.of(w).notify_one();
                        }
                    }
                    warned = false;
                    retry = LISTEN_RETRY;
                    loop {
                        let heard = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            heard = listener.next() => heard,
                        };
                        match heard {
                            Ok(()) => {
                                crate::telemetry::peer_wake();
                                for w in Worker::ALL {
                                    self.inner.wakes.of(w).notify_one();
                                }
                            }
                            Err(e) => break e,
                        }
                    }
                }
                Err(e) => e,
            };
            if warned {
                tracing::debug!(error = %chain(&failure), "still cannot hear the other daemons' wake-ups");
            } else {
                tracing::warn!(error = %chain(&failure), "cannot hear the other daemons' wake-ups; the workers still look every second");
                warned = true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(LISTEN_RETRY_MAX);
        }
    }
}
