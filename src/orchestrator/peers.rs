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

/// How long to wait before listening again after the listening connection failed to open.
const LISTEN_RETRY: Duration = Duration::from_secs(5);

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
            if let Err(e) = self.inner.store.notify_peers(&peers.instance).await {
                tracing::debug!(error = %chain(&e), "cannot wake the other daemons");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(TELL_GAP) => {}
            }
        }
    }

    async fn hear_peers(&self, shutdown: &CancellationToken) {
        let store = &self.inner.store;
        let me = &self.inner.peers.instance;
        let mut listener = loop {
            match store.listen_to_peers(me).await {
                Ok(Some(l)) => break l,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "cannot listen for the other daemons' wake-ups; the workers still look every second");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(LISTEN_RETRY) => {}
            }
        };
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
                Err(e) => {
                    // The next call opens the connection again.
                    tracing::warn!(error = %chain(&e), "lost the connection that hears the other daemons' wake-ups");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}
