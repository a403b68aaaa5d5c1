-- Live progress (`progress: stream`, src/orchestrator/progress.rs): how far the response's
-- event stream has been read, so a daemon that restarts resumes it where it was
-- (`GET /responses/{id}?stream=true&starting_after=N`).
--
-- progress_stream: NULL for a job not followed by a stream; 'live' while its stream is
-- followed (or is to be resumed); 'polling' once it fell back to polls alone (the resume
-- window passed, or the stream failed too often); 'done' after its terminal event.
-- progress_seq: the last `sequence_number` whose milestones are in the timeline.
-- progress_turn: the job's turn whose response the stream is (each turn of a job that acts is
-- its own response and stream, its sequence numbers from 0 again); a follower of another turn
-- writes nothing.
-- Portable types only.

ALTER TABLE jobs ADD COLUMN progress_stream TEXT;
ALTER TABLE jobs ADD COLUMN progress_seq INTEGER;
ALTER TABLE jobs ADD COLUMN progress_turn INTEGER;

CREATE INDEX jobs_progress_live ON jobs (progress_stream) WHERE progress_stream = 'live';
