//! Server-sent events for responses created with `stream: true`: the live stream of a create
//! and the resumable replay of `GET /v1/responses/{id}?stream=true&starting_after=N`
//! (`docs/upstream-api.md` §2.5, §2.6). Events come from the response's event log in
//! `state.rs`; a stream only reads it, waiting on the shared change counter, and ends after the
//! terminal event (or on shutdown).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::state::{Shared, Status};

/// How long a stream that is cut waits, after its last event, before it breaks.
const CUT_FLUSH: std::time::Duration = std::time::Duration::from_millis(50);

struct Cursor {
    shared: Arc<Shared>,
    id: String,
    next: usize,
    sent: usize,
    cut_after: Option<usize>,
    rx: watch::Receiver<u64>,
    cancel: CancellationToken,
    done: bool,
    stick_on_abort: bool,
}

impl Drop for Cursor {
    /// A client that goes away mid-stream lands here; with the `stream_abort_sticks` fault, a
    /// response still `queued` at that moment never starts.
    fn drop(&mut self) {
        if !self.stick_on_abort || self.done {
            return;
        }
        let mut inner = self.shared.lock();
        if let Some(entry) = inner.entries.get_mut(&self.id)
            && entry.status == Status::Queued
        {
            tracing::debug!(response_id = %self.id, "stream aborted while queued: stuck");
            entry.stuck = true;
        }
    }
}

/// Formats one event as an SSE frame (`event:` line, `data:` line, blank line; no `id:`).
pub(crate) fn frame(event: &Value) -> String {
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    format!("event: {kind}\ndata: {event}\n\n")
}

/// An SSE response replaying events after `after` (all when `None`) and following the live
/// log until the terminal event. `cut_after` drops the connection after that many events;
/// `stick_on_abort` leaves the response queued forever if the client leaves while it is queued.
pub(crate) fn sse(
    shared: Arc<Shared>,
    id: String,
    after: Option<u64>,
    cut_after: Option<usize>,
    stick_on_abort: bool,
    cancel: CancellationToken,
) -> Response {
    let next = after.map_or(0, |n| {
        usize::try_from(n).unwrap_or(usize::MAX).saturating_add(1)
    });
    let rx = shared.changes.subscribe();
    let cursor = Cursor {
        shared,
        id,
        next,
        sent: 0,
        cut_after,
        rx,
        cancel,
        done: false,
        stick_on_abort,
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        if c.done {
            return None;
        }
        loop {
            if c.cut_after.is_some_and(|cut| c.sent >= cut) {
                c.done = true;
                // Let the server flush the events sent so far before the connection is cut:
                // an error right behind a chunk can drop it with the connection.
                tokio::select! {
                    () = c.cancel.cancelled() => {}
                    () = tokio::time::sleep(CUT_FLUSH) => {}
                }
                let err = std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "sim: stream dropped",
                );
                return Some((Err(err), c));
            }
            c.rx.borrow_and_update();
            let (events, finished) = {
                let inner = c.shared.lock();
                match inner.entries.get(&c.id) {
                    None => (Vec::new(), true),
                    Some(entry) => {
                        let mut events: Vec<Value> =
                            entry.events.iter().skip(c.next).cloned().collect();
                        if let Some(cut) = c.cut_after {
                            events.truncate(cut.saturating_sub(c.sent).max(1));
                        }
                        let finished = entry.status.is_terminal()
                            && c.next + events.len() >= entry.events.len();
                        (events, finished)
                    }
                }
            };
            if !events.is_empty() {
                c.next += events.len();
                c.sent += events.len();
                let text: String = events.iter().map(frame).collect();
                c.done = finished;
                return Some((Ok::<Bytes, std::io::Error>(Bytes::from(text)), c));
            }
            if finished {
                // Terminal: dropping the cursor cannot make anything stuck.
                return None;
            }
            tokio::select! {
                () = c.cancel.cancelled() => return None,
                changed = c.rx.changed() => if changed.is_err() { return None },
            }
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
