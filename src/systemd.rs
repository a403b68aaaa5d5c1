//! systemd integration: `sd_notify` messages (READY, WATCHDOG, RELOADING, STOPPING, STATUS).
//! Every function is a no-op outside systemd (no `$NOTIFY_SOCKET`); failures are logged, never
//! fatal.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The daemon can serve: listening, database migrated, workers started.
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// Sent from the main loop while it is healthy. Nothing is sent when the watchdog is off, and at
/// most one ping per half [`watchdog_interval`] otherwise: the loop turns every few milliseconds
/// while work is due, and systemd needs to hear only about twice per `WatchdogSec`.
pub fn watchdog() {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let Some(every) = watchdog_interval() else {
        return;
    };
    let now = Instant::now();
    {
        let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|t| now.duration_since(t) < every / 2) {
            return;
        }
        *last = Some(now);
    }
    send(&[NotifyState::Watchdog]);
}

/// How often systemd expects [`watchdog`] (half the configured `WatchdogSec`), if at all.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// A reload starts; follow with [`ready`] when it is done (systemd ≥ 253 wants the monotonic
/// timestamp with RELOADING=1).
pub fn reloading() {
    send(&[
        NotifyState::Reloading,
        NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading")),
    ]);
}

/// Shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// A free-form status line (`systemctl status` shows it).
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}
