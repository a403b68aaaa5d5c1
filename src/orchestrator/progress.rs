//! Live progress of `progress: stream` jobs: one follower task per open response stream.
//!
//! The submit worker sends such a job's create with `stream: true` and, once the response id
//! from `response.created` is recorded like any create's answer, hands the open stream here.
//! A follower reads events, records milestones in the timeline (`milestones.rs`) and the last
//! `sequence_number` it recorded (`jobs.progress_seq`), and resumes with `starting_after` when
//! the connection drops (bounded retries with backoff). When the stream cannot be resumed (a
//! 400: OpenAI's 5-minute window has passed) or fails too often, the job falls back to polls
//! alone, with a `stream` event saying so.
//!
//! The stream is never the ledger's source of truth: it may move a job from `queued` to
//! `in_progress` (as a webhook's hint would lead a poll to), but a job's end is recorded only
//! by the poll path: at the terminal event the follower makes the job's poll due now, and the
//! retrieve it makes is what is applied. A broken, repeated or lost stream therefore cannot
//! lose or duplicate anything of a job's result, its status history or its notifications.
//!
//! OpenAI's stuck-in-`queued` bug (`docs/upstream-api.md` §2.6: a background stream aborted at
//! its very first event can leave the response queued for ever): a follower never drops a
//! stream younger than [`HOLD_YOUNG_STREAM`] (on shutdown it waits that long), and a response
//! still `queued` [`STUCK_QUEUED_AFTER`] after its create is reported in the timeline. It is
//! not cancelled and created again by respool on its own: only a cancel confirmed by OpenAI
//! would make a second create safe, and that choice is left to the job's `timeout` (which
//! cancels) and to a person (`respool jobs cancel`, then `retry`).

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Orchestrator;
use super::milestones::{TEXT_EVERY_MS, Tracker};
use crate::job::progress::Progress;
use crate::job::{JobId, JobStatus, ResponseId};
use crate::store::{Milestone, StoreError, StreamState};
use crate::telemetry::chain;
use crate::upstream::{Fetched, ResponseStream, StreamCreated, UpstreamError, observe};

/// Resumes in a row that may fail before the job falls back to polls.
const MAX_RESUME_FAILURES: u32 = 5;
/// A stream younger than this is not dropped on purpose (the stuck-in-`queued` bug hits
/// streams aborted at their first event; one cut ~2 s later recovers).
const HOLD_YOUNG_STREAM: Duration = Duration::from_secs(3);
/// A response still `queued` this long after its create is reported as possibly stuck.
const STUCK_QUEUED_AFTER_MS: i64 = 10 * 60_000;

/// The followers of this daemon: which jobs' streams are read here, and the token that stops
/// them at shutdown.
#[derive(Default)]
pub(super) struct Followers {
    /// By job and turn: each turn of a job is its own response and stream.
    following: Mutex<HashSet<(JobId, i64)>>,
    stop: CancellationToken,
}

impl Followers {
    /// Stops every follower (shutdown); each records what it read first.
    pub(super) fn stop(&self) {
        self.stop.cancel();
    }

    fn claim(&self, id: &JobId, turn: i64) -> bool {
        self.following
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((id.clone(), turn))
    }

    fn release(&self, id: &JobId, turn: i64) {
        self.following
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(id.clone(), turn));
    }
}

/// Where a follower starts.
struct Start {
    job_id: JobId,
    /// The job's turn whose response this is.
    turn: i64,
    response_id: ResponseId,
    /// The last sequence number recorded.
    seq: Option<i64>,
    /// When the create was answered (unix ms).
    submitted_at: i64,
    tracker: Tracker,
}

impl Orchestrator {
    /// Sends a claimed job's create: by stream for a `progress: stream` job (marked `live`
    /// first, so a daemon that dies with the stream open resumes it), else as JSON. Either
    /// way the result is what [`crate::upstream::Client::create`] would give, so the submit
    /// worker records it by the same rules; the open stream comes back beside it.
    pub(super) async fn create_for(
        &self,
        claim: &crate::store::SubmitClaim,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(Result<Fetched, UpstreamError>, Option<ResponseStream>), StoreError> {
        let progress = claim.spec.progress.unwrap_or(self.config().jobs.progress);
        if progress != Progress::Stream {
            return Ok((self.client().create(body).await, None));
        }
        // Only what a restart resumes hangs on this mark: a failed write must not keep the
        // create from going (its claim would end as an uncertain create though none was sent).
        if let Err(e) = self
            .inner
            .store
            .mark_stream_live(&claim.id, claim.turn, self.now())
            .await
        {
            tracing::warn!(job_id = %claim.id, error = %chain(&e), "cannot mark the stream followed; a restart will poll this job instead");
        }
        Ok(match self.client().create_stream(body).await {
            Ok(StreamCreated::Stream { fetched, stream }) => (Ok(*fetched), Some(stream)),
            Ok(StreamCreated::Json(fetched)) => (Ok(*fetched), None),
            Err(e) => (Err(e), None),
        })
    }

    /// Hands the stream a create opened to a follower (the response id is recorded already).
    pub(super) fn follow_created(
        &self,
        (job_id, turn): (&JobId, i64),
        response_id: &ResponseId,
        stream: ResponseStream,
    ) {
        let start = Start {
            job_id: job_id.clone(),
            turn,
            response_id: response_id.clone(),
            seq: None,
            submitted_at: self.now(),
            tracker: Tracker::default(),
        };
        self.spawn_follower(start, Some(stream));
    }

    /// Resumes the streams of jobs whose streams were followed when a daemon stopped (at
    /// start, after the create journals are replayed).
    pub(super) async fn resume_streams(&self) -> Result<(), StoreError> {
        for live in self.inner.store.live_streams().await? {
            let text_chars = self
                .inner
                .store
                .last_progress(&live.id)
                .await?
                .and_then(|d| d.get("text_chars").and_then(serde_json::Value::as_u64))
                .unwrap_or(0);
            self.spawn_follower(
                Start {
                    job_id: live.id,
                    turn: live.progress_turn,
                    response_id: live.response_id,
                    seq: live.progress_seq,
                    submitted_at: live.submitted_at.unwrap_or_else(|| self.now()),
                    tracker: Tracker::resumed(text_chars),
                },
                None,
            );
        }
        Ok(())
    }

    fn spawn_follower(&self, start: Start, stream: Option<ResponseStream>) {
        if !self.inner.followers.claim(&start.job_id, start.turn) {
            return;
        }
        let me = self.clone();
        let span =
            tracing::info_span!("stream", job_id = %start.job_id, response_id = %start.response_id);
        self.inner.tracker.spawn(
            async move {
                let (id, turn) = (start.job_id.clone(), start.turn);
                if let Err(e) = me.follow(start, stream).await {
                    tracing::warn!(error = %chain(&e), "following a response stream failed; polls go on");
                }
                me.inner.followers.release(&id, turn);
            }
            .instrument(span),
        );
    }

    /// Reads a job's stream to its end, resuming after drops; see the module's docs.
    async fn follow(
        &self,
        mut s: Start,
        mut opened: Option<ResponseStream>,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let stop = self.inner.followers.stop.clone();
        let mut failures = 0u32;
        let mut stuck_reported = false;
        let mut status = JobStatus::Queued;
        loop {
            let stream = match opened.take() {
                Some(stream) => stream,
                None => {
                    if stop.is_cancelled() {
                        return Ok(());
                    }
                    match store.status_of(&s.job_id).await? {
                        Some(st) if !st.is_terminal() => status = forward(status, st),
                        // Ended (by a poll or a webhook) or gone: nothing more to show.
                        _ => {
                            self.end_stream(
                                &s,
                                StreamState::Done,
                                "job ended; stream no longer read",
                                None,
                            )
                            .await?;
                            return Ok(());
                        }
                    }
                    match self
                        .client()
                        .resume_stream(s.response_id.as_str(), s.seq)
                        .await
                    {
                        Ok(stream) => {
                            if failures > 0 || s.seq.is_some() {
                                let msg = format!(
                                    "stream resumed after event {}",
                                    s.seq.map_or("(none)".into(), |n| n.to_string())
                                );
                                store
                                    .record_event(
                                        &s.job_id,
                                        self.now(),
                                        crate::store::EventKind::Stream,
                                        &msg,
                                        Some(&json!({"starting_after": s.seq})),
                                    )
                                    .await?;
                            }
                            stream
                        }
                        Err(
                            e @ UpstreamError::Api {
                                status: 400 | 404, ..
                            },
                        ) => {
                            let msg = format!(
                                "stream cannot be resumed ({}); following the job by polls",
                                e.describe()
                            );
                            self.fall_back(&s, &msg).await?;
                            return Ok(());
                        }
                        Err(e) => {
                            failures += 1;
                            if failures >= MAX_RESUME_FAILURES {
                                let msg = format!(
                                    "stream failed {failures} times in a row (last: {}); following the job by polls",
                                    e.describe()
                                );
                                self.fall_back(&s, &msg).await?;
                                return Ok(());
                            }
                            tracing::debug!(error = %e.describe(), failures, "resuming a stream failed; trying again");
                            if pause(&stop, backoff(failures)).await {
                                return Ok(());
                            }
                            continue;
                        }
                    }
                }
            };
            match self
                .read(&mut s, stream, &stop, &mut status, &mut stuck_reported)
                .await?
            {
                Read::Ended => return Ok(()),
                Read::Stopped => return Ok(()),
                Read::Lost => {
                    return Ok(());
                }
                Read::Dropped(progress) => {
                    failures = if progress { 1 } else { failures + 1 };
                    if failures >= MAX_RESUME_FAILURES {
                        self.fall_back(
                            &s,
                            &format!("stream dropped {failures} times in a row; following the job by polls"),
                        )
                        .await?;
                        return Ok(());
                    }
                    if pause(&stop, backoff(failures)).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Reads one connection of a stream until it ends, drops or the daemon stops.
    async fn read(
        &self,
        s: &mut Start,
        mut stream: ResponseStream,
        stop: &CancellationToken,
        status: &mut JobStatus,
        stuck_reported: &mut bool,
    ) -> Result<Read, StoreError> {
        let opened_at = tokio::time::Instant::now();
        let mut pending: Vec<Milestone> = Vec::new();
        let mut read_to = s.seq;
        let mut progressed = false;
        let mut ticks = tokio::time::interval(Duration::from_millis(
            u64::try_from(TEXT_EVERY_MS).unwrap_or(2_000),
        ));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                ev = stream.next() => ev,
                _ = ticks.tick() => {
                    let now = self.now();
                    // Forced: the sequence number recorded must never pass text not written
                    // (a restart resumes after it). Ticks are the text's pace anyway.
                    pending.extend(s.tracker.flush_due(now, true, read_to));
                    if !self.flush(s, read_to, &mut pending).await? {
                        return Ok(Read::Lost);
                    }
                    if *status == JobStatus::Queued
                        && !*stuck_reported
                        && now - s.submitted_at > STUCK_QUEUED_AFTER_MS
                    {
                        *stuck_reported = true;
                        self.report_stuck(s, now).await?;
                    }
                    continue;
                }
                () = stop.cancelled() => {
                    // Never cut a stream at its very start (the stuck-in-queued bug).
                    let young = HOLD_YOUNG_STREAM.saturating_sub(opened_at.elapsed());
                    if *status == JobStatus::Queued && !young.is_zero() {
                        tokio::time::sleep(young).await;
                    }
                    pending.extend(s.tracker.flush_due(self.now(), true, read_to));
                    self.flush(s, read_to, &mut pending).await?;
                    return Ok(Read::Stopped);
                }
            };
            match next {
                Some(Ok(ev)) => {
                    if let (Some(seq), Some(done)) = (ev.seq, read_to)
                        && seq <= done
                    {
                        continue;
                    }
                    progressed = true;
                    let now = self.now();
                    let made = s.tracker.on_event(&ev, now);
                    let urgent = made.iter().any(|m| m.data["kind"] != "text");
                    pending.extend(made);
                    if ev.seq.is_some() {
                        read_to = ev.seq;
                    }
                    if ev.kind == "response.in_progress" || ev.kind == "response.queued" {
                        self.note_status(s, &ev.data, status).await;
                    }
                    if ev.kind == "error" {
                        tracing::warn!(event = %ev.data, "the stream sent an error event");
                    }
                    if ev.is_terminal() {
                        if !self.flush(s, read_to, &mut pending).await? {
                            return Ok(Read::Lost);
                        }
                        let msg = format!(
                            "stream ended ({}); the job's end is recorded from a retrieve",
                            ev.kind
                        );
                        self.end_stream(s, StreamState::Done, &msg, Some(&json!({"seq": ev.seq})))
                            .await?;
                        // The poll path records the end: due now.
                        self.inner.store.wake_poll(&s.job_id, self.now()).await?;
                        self.wake();
                        return Ok(Read::Ended);
                    }
                    if urgent && !self.flush(s, read_to, &mut pending).await? {
                        return Ok(Read::Lost);
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e.describe(), "stream dropped; resuming");
                    pending.extend(s.tracker.flush_due(self.now(), true, read_to));
                    if !self.flush(s, read_to, &mut pending).await? {
                        return Ok(Read::Lost);
                    }
                    return Ok(Read::Dropped(progressed));
                }
                None => {
                    pending.extend(s.tracker.flush_due(self.now(), true, read_to));
                    if !self.flush(s, read_to, &mut pending).await? {
                        return Ok(Read::Lost);
                    }
                    return Ok(Read::Dropped(progressed));
                }
            }
        }
    }

    /// Writes the pending milestones and the sequence number read to; false when the stream
    /// is no longer followed by us (ended, fallen back, or another follower wrote first).
    async fn flush(
        &self,
        s: &mut Start,
        read_to: Option<i64>,
        pending: &mut Vec<Milestone>,
    ) -> Result<bool, StoreError> {
        let Some(seq) = read_to else {
            return Ok(true);
        };
        if s.seq == Some(seq) && pending.is_empty() {
            return Ok(true);
        }
        let ok = self
            .inner
            .store
            .record_progress((&s.job_id, s.turn), s.seq, seq, self.now(), pending)
            .await?;
        pending.clear();
        if ok {
            s.seq = Some(seq);
        }
        Ok(ok)
    }

    /// A lifecycle event's Response moves a `queued` job to `in_progress` in the ledger, as a
    /// poll would: never an end (the poll path records those).
    async fn note_status(&self, s: &Start, data: &serde_json::Value, status: &mut JobStatus) {
        let Some(raw) = data.get("response").cloned() else {
            return;
        };
        let Ok(obs) = observe(raw) else {
            return;
        };
        if obs.status.is_terminal() || obs.response_id != s.response_id {
            return;
        }
        *status = forward(*status, obs.status);
        if obs.status == JobStatus::InProgress
            && let Err(e) = self.apply(&s.job_id, &obs, 0, None, "stream").await
        {
            tracing::warn!(error = %chain(&e), "cannot record a status from the stream");
        }
    }

    async fn end_stream(
        &self,
        s: &Start,
        state: StreamState,
        msg: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        self.inner
            .store
            .end_stream((&s.job_id, s.turn), state, self.now(), msg, data)
            .await?;
        Ok(())
    }

    /// Gives up the stream: polls (due now) follow the job from here.
    async fn fall_back(&self, s: &Start, msg: &str) -> Result<(), StoreError> {
        tracing::info!(job_id = %s.job_id, "{msg}");
        self.end_stream(s, StreamState::Polling, msg, Some(&json!({"seq": s.seq})))
            .await?;
        self.inner.store.wake_poll(&s.job_id, self.now()).await?;
        self.wake();
        Ok(())
    }

    async fn report_stuck(&self, s: &Start, now: i64) -> Result<(), StoreError> {
        let minutes = (now - s.submitted_at) / 60_000;
        let msg = format!(
            "response still queued {minutes} min after its create: OpenAI can leave a streamed response queued for ever when its stream was cut at the start (docs/upstream-api.md §2.6). respool does not cancel and send it again on its own (a second create could bill twice): the job's timeout cancels it, or cancel and retry it yourself"
        );
        tracing::warn!(job_id = %s.job_id, minutes, "streamed response still queued; it may be stuck");
        self.inner
            .store
            .record_event(
                &s.job_id,
                now,
                crate::store::EventKind::Stream,
                &msg,
                Some(&json!({"stuck_queued": true, "minutes": minutes})),
            )
            .await
    }
}

/// How one connection of a stream ended.
enum Read {
    /// The terminal event was read.
    Ended,
    /// The daemon is stopping.
    Stopped,
    /// The stream is no longer ours to follow.
    Lost,
    /// The connection dropped (whether it had read anything new).
    Dropped(bool),
}

/// The later of two statuses (a status seen on the stream or in the ledger never moves back).
fn forward(now: JobStatus, seen: JobStatus) -> JobStatus {
    if now.can_move_to(seen) { seen } else { now }
}

/// The wait before resume number `n` (1, 2, 4, 8… seconds, at most 30).
fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// Sleeps `d` unless stopped first; true when stopped.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }
}
