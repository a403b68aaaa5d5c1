//! Putting a reloaded config into effect: the config snapshot, the upstream client, the
//! notifier's sinks, the webhook health flag and the sizes of the work semaphores.
//!
//! Work already running keeps the snapshot it started with; every pass after the swap reads
//! the new one.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::Orchestrator;
use crate::config::Config;
use crate::notify::Notifier;
use crate::upstream;

impl Orchestrator {
    /// Swaps in a config that was already validated, with the client and notifier built from
    /// it, and resizes the limits. Wakes the workers so the new settings act at once.
    pub fn reconfigure(&self, config: Arc<Config>, client: upstream::Client, notifier: Notifier) {
        let old = self.inner.config.swap(config.clone());
        self.inner.client.store(Arc::new(client));
        self.inner.notifier.store(Arc::new(notifier));
        self.inner.health.set_configured(self.webhooks_configured());
        self.resize(
            &self.inner.submit_permits,
            old.limits.max_concurrent_submissions,
            config.limits.max_concurrent_submissions,
        );
        self.resize(
            &self.inner.poll_permits,
            old.limits.max_concurrent_polls,
            config.limits.max_concurrent_polls,
        );
        self.wake();
    }

    /// The notifier in force now (a reload builds the next one from it).
    pub fn notifier(&self) -> Arc<Notifier> {
        self.inner.notifier.load_full()
    }

    /// Grows or shrinks a semaphore from `old` to `new` permits. Permits held by running work
    /// cannot be taken back at once: those are forgotten as they are released, by a task.
    fn resize(&self, sem: &Arc<Semaphore>, old: usize, new: usize) {
        if new > old {
            sem.add_permits(new - old);
        } else if new < old {
            let owed = (old - new) - sem.forget_permits(old - new);
            if let Ok(owed) = u32::try_from(owed)
                && owed > 0
            {
                let sem = sem.clone();
                self.inner.tracker.spawn(async move {
                    if let Ok(p) = sem.acquire_many_owned(owed).await {
                        p.forget();
                    }
                });
            }
        }
    }
}
