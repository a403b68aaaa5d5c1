-- The ledger of jobs, their timelines, webhook deliveries and the notification outbox.
-- Portable types only (TEXT, BIGINT, INTEGER), so the same model works on PostgreSQL.
-- Times are unix milliseconds.

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    model            TEXT NOT NULL,
    status           TEXT NOT NULL,
    -- The validated job spec (JSON): the create body plus respool's own keys.
    spec             TEXT NOT NULL,
    idempotency_key  TEXT UNIQUE,
    -- Hash of the spec, to tell an idempotent replay from a reused key.
    spec_hash        TEXT NOT NULL,
    response_id      TEXT UNIQUE,
    -- Fencing token: bumped by every submit claim; submit writes are conditional on it.
    attempt          INTEGER NOT NULL DEFAULT 0,
    -- ready | submitting | uncertain | done: where the create call stands.
    submit_state     TEXT NOT NULL DEFAULT 'ready',
    -- How many create calls were sent for this job (should be 1).
    submissions      INTEGER NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    submitted_at     BIGINT,
    finished_at      BIGINT,
    deadline_at      BIGINT,
    -- When a worker should next look at the job (submit, poll, resolve); NULL when done.
    next_check_at    BIGINT,
    -- A claim's lease: until then, another worker leaves the job alone.
    lease_until      BIGINT,
    poll_interval_ms BIGINT NOT NULL DEFAULT 0,
    polls            INTEGER NOT NULL DEFAULT 0,
    -- Set by a webhook hint while a poll may be in flight, so the hint is not lost.
    wake_pending     INTEGER NOT NULL DEFAULT 0,
    -- 0/1, and why: 'user' or 'timeout'.
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    cancel_reason    TEXT,
    output_text      TEXT,
    error_code       TEXT,
    error_message    TEXT,
    usage            TEXT,
    response         TEXT
);

CREATE INDEX jobs_status_next_check ON jobs (status, next_check_at);
CREATE INDEX jobs_submit_state ON jobs (submit_state, next_check_at);
CREATE INDEX jobs_created_at ON jobs (created_at, id);

CREATE TABLE job_events (
    id       INTEGER PRIMARY KEY,
    job_id   TEXT NOT NULL REFERENCES jobs (id),
    at       BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    message  TEXT NOT NULL,
    data     TEXT
);

CREATE INDEX job_events_job ON job_events (job_id, id);

CREATE TABLE webhook_deliveries (
    -- The `webhook-id` header: the idempotency key of a delivery.
    webhook_id   TEXT PRIMARY KEY,
    received_at  BIGINT NOT NULL,
    event_id     TEXT,
    event_type   TEXT NOT NULL,
    -- `data.id` of the event (a response id for response.* events).
    object_id    TEXT,
    job_id       TEXT,
    body         TEXT NOT NULL,
    -- Set once the hint was handed to a job (or found to need none).
    handled_at   BIGINT
);

CREATE INDEX webhook_deliveries_object ON webhook_deliveries (object_id);
CREATE INDEX webhook_deliveries_unhandled ON webhook_deliveries (handled_at, received_at);

CREATE TABLE notifications (
    id               INTEGER PRIMARY KEY,
    job_id           TEXT NOT NULL REFERENCES jobs (id),
    sink             TEXT NOT NULL,
    event            TEXT NOT NULL,
    -- pending | delivered | dead
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT,
    UNIQUE (job_id, sink, event)
);

CREATE INDEX notifications_due ON notifications (state, next_attempt_at);
