//! A job's timeline as server-sent events, served by the API
//! (`GET /v1/jobs/{id}/events?follow=true`) and by the job page (`GET /jobs/{id}/live`, behind
//! the page's login): the events already written first, then each new one, until the job's
//! end. Each event's `id:` is the timeline event's id, so a client that reconnects with
//! `Last-Event-ID` goes on after it; its `event:` is the kind (`status`, `progress`, …) and its
//! `data:` the event as JSON, as in the plain list. Comments keep the connection alive while
//! nothing happens.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::job::JobId;
use crate::store::Store;

/// How often a comment is sent while no event comes.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What a `Last-Event-ID` header holds: a timeline event's id.
pub const LAST_EVENT_ID_PATTERN: &str = "^[0-9]{1,18}$";

/// The `Last-Event-ID` header: the id of the last event the client has (`Err` with the
/// message for a value that is not one).
pub fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, String> {
    match headers.get("last-event-id") {
        None => Ok(None),
        // Digits only, as the document states (`LAST_EVENT_ID_PATTERN`).
        Some(v) => v
            .to_str()
            .ok()
            .filter(|s| (1..=18).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| {
                "header `Last-Event-ID` must be the id of a timeline event (a whole number)"
                    .to_string()
            }),
    }
}

/// The SSE answer following job `id`'s timeline after event `after`.
pub fn timeline(store: &Store, id: JobId, after: Option<i64>) -> Response {
    let stream = store
        .follow_events(id, after)
        .take_while(|r| {
            if let Err(e) = r {
                tracing::warn!(error = %crate::telemetry::chain(e), "following a timeline failed");
            }
            std::future::ready(r.is_ok())
        })
        .filter_map(|r| std::future::ready(r.ok()))
        .map(|row| {
            let data = serde_json::to_string(&row).unwrap_or_else(|_| "{}".into());
            Ok::<Event, Infallible>(
                Event::default()
                    .id(row.id.to_string())
                    .event(row.kind.clone())
                    .data(data),
            )
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}
