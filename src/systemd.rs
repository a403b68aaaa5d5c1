//! systemd integration: `sd_notify` messages (READY, WATCHDOG, RELOADING, STOPPING, STATUS).
//! Every function is a no-op outside systemd (no `$NOTIFY_SOCKET`); failures are logged, never
//! fatal.

use std::time::Duration;

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

/// Sent from the main loop while it is healthy.
pub fn watchdog() {
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
