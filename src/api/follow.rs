//! `GET /v1/jobs/{id}/events?follow=true`: a job's timeline as server-sent events (see
//! [`crate::live`], which the job page's live view shares).

use axum::http::HeaderMap;
use axum::response::Response;

use super::{ApiError, ApiState};
use crate::job::JobId;

/// The `Last-Event-ID` header: the id of the last event the client has.
pub(super) fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    crate::live::last_event_id(headers)
        .map_err(|m| ApiError::invalid(m, Some("Last-Event-ID".into())))
}

/// The SSE answer following job `id`'s timeline after event `after`.
pub(super) fn follow(state: &ApiState, id: JobId, after: Option<i64>) -> Response {
    crate::live::timeline(&state.store, id, after)
}
