-- The ledger's hard cases: responses revealed twice, polls that find nothing, rows that do
-- not decode. Portable types only; times are unix milliseconds.

-- A response that was created for a job that already holds another one (a create whose answer
-- was lost and that was sent again, a webhook revealing a run the job never heard of). It is
-- cancelled while it runs and kept here, with what it cost, so nothing paid for is invisible.
CREATE TABLE duplicate_responses (
    response_id    TEXT PRIMARY KEY,
    job_id         TEXT NOT NULL REFERENCES jobs (id),
    -- Its last known upstream status (queued, in_progress, completed, failed, incomplete,
    -- cancelled), or `unknown` before the first look.
    status         TEXT NOT NULL,
    -- The upstream usage object (JSON) once known.
    usage          TEXT,
    -- The whole Response JSON as last fetched.
    response       TEXT,
    -- How it was found (`create`, `webhook`, `journal`).
    found_by       TEXT NOT NULL,
    found_at       BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    -- When to look again (cancel it, or learn its final usage); NULL once it is terminal.
    next_check_at  BIGINT,
    -- Looks so far (bounded: one that never answers stops being retried).
    checks         INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX duplicate_responses_job ON duplicate_responses (job_id);
CREATE INDEX duplicate_responses_due ON duplicate_responses (next_check_at);

-- Consecutive polls that answered 404 for the job's response: one is not enough to fail it.
ALTER TABLE jobs ADD COLUMN polls_not_found INTEGER NOT NULL DEFAULT 0;
-- Consecutive polls that failed (upstream down): the timeline notes the 1st, 10th, 100th…
-- instead of one event per failed poll through an outage.
ALTER TABLE jobs ADD COLUMN poll_errors INTEGER NOT NULL DEFAULT 0;

-- Why the row was set aside: it could not be decoded (a spec or status that no longer
-- parses). Quarantined jobs are never claimed; the rest of the ledger goes on.
ALTER TABLE jobs ADD COLUMN quarantine TEXT;
