//! Following a job's timeline as it is written (`GET /v1/jobs/{id}/events?follow=true` and the
//! job page): the events after an id, then each new one, until the job has ended.
//!
//! New events are noticed by the process's write counter ([`super::events_written`]), a hint
//! that may come before the writer's commit, so the follower reads a moment after it; and by a
//! read every [`READ_EVERY`] on its own, for events other daemons on the database wrote.

use std::collections::VecDeque;
use std::time::Duration;

use futures::Stream;

use super::{EventRow, Store, StoreError};
use crate::job::JobId;

/// How long a follow stays open after the job's end for the events that close it.
const END_GRACE: Duration = Duration::from_secs(2);
/// The longest a follower goes without reading the table.
const READ_EVERY: Duration = Duration::from_secs(1);
/// The wait after a write's hint before reading (its transaction commits meanwhile).
const AFTER_HINT: Duration = Duration::from_millis(40);
/// Events read per query.
const PAGE: i64 = 500;

struct Follow {
    store: Store,
    job_id: JobId,
    after: Option<i64>,
    rx: tokio::sync::watch::Receiver<u64>,
    buffered: VecDeque<EventRow>,
    done: bool,
    /// When the job was first seen ended with nothing left to give.
    ended_at: Option<tokio::time::Instant>,
}

impl Store {
    /// The job's timeline events after event `after` (all when `None`), then each new one as
    /// it is written, ending once the job has ended and its events up to that end were given.
    /// A read error ends the stream with that error.
    pub fn follow_events(
        &self,
        job_id: JobId,
        after: Option<i64>,
    ) -> impl Stream<Item = Result<EventRow, StoreError>> + Send + 'static {
        let state = Follow {
            store: self.clone(),
            job_id,
            after,
            rx: super::events_written(),
            buffered: VecDeque::new(),
            done: false,
            ended_at: None,
        };
        futures::stream::unfold(state, |mut f| async move {
            loop {
                if let Some(row) = f.buffered.pop_front() {
                    f.after = Some(row.id);
                    return Some((Ok(row), f));
                }
                if f.done {
                    return None;
                }
                f.rx.borrow_and_update();
                // The status first: an end is written with its status event in one
                // transaction, so events read after seeing the end include that event.
                let ended = match f.store.status_of(&f.job_id).await {
                    Ok(s) => s.is_none_or(|s| s.is_terminal()),
                    Err(e) => {
                        f.done = true;
                        return Some((Err(e), f));
                    }
                };
                match f.store.events_after(&f.job_id, f.after, PAGE).await {
                    Ok(rows) if !rows.is_empty() => {
                        f.buffered.extend(rows);
                        continue;
                    }
                    // After the end, a moment for what follows it closely (the stream's last
                    // text and its `stream ended`, written by its follower after the poll
                    // that recorded the end); then the timeline is closed.
                    Ok(_) if ended => {
                        let since = *f.ended_at.get_or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() >= END_GRACE {
                            return None;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        f.done = true;
                        return Some((Err(e), f));
                    }
                }
                tokio::select! {
                    changed = f.rx.changed() => {
                        if changed.is_ok() {
                            tokio::time::sleep(AFTER_HINT).await;
                        } else {
                            tokio::time::sleep(READ_EVERY).await;
                        }
                    }
                    () = tokio::time::sleep(READ_EVERY) => {}
                }
            }
        })
    }
}
