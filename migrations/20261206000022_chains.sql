-- Chains and conversations (issue 14, section 3): a job may run `after` another one (it waits
-- for it, then takes its response as `previous_response_id` or its output in its input), and
-- jobs on one conversation run one at a time, in the order they were taken in. See
-- `src/store/chains.rs` and docs/jobs.md, "Chains and conversations".

-- The job this one runs after (`after:`, resolved to an id when the job was taken in).
ALTER TABLE jobs ADD COLUMN after_job_id TEXT;
-- The chain a job belongs to: its first job's id (set on every member, the first included,
-- once a job runs after it). NULL for a job alone.
ALTER TABLE jobs ADD COLUMN chain_id TEXT;
-- The conversation a job runs on, as a key: `conv_…` for one the job names, or the id of the
-- job that asked for a new one (`conversation: new`; its id is in `conversations`).
ALTER TABLE jobs ADD COLUMN conversation_key TEXT;
-- Its place among the jobs on that conversation: one more than the last unfinished one's when
-- it was taken in, so a job always comes after the job it runs after.
ALTER TABLE jobs ADD COLUMN conversation_seq INTEGER;

-- A job's followers, found when it ends.
CREATE INDEX jobs_followers ON jobs (after_job_id) WHERE after_job_id IS NOT NULL;
-- A chain's members (`GET /v1/jobs?chain=…`, the job page).
CREATE INDEX jobs_chain ON jobs (chain_id, created_at, id) WHERE chain_id IS NOT NULL;
-- The unfinished jobs of each conversation, in their order: the first one is the only one
-- that may run.
CREATE INDEX jobs_conversation_order ON jobs (conversation_key, conversation_seq)
    WHERE conversation_key IS NOT NULL
      AND status IN ('pending', 'held', 'queued', 'in_progress', 'requires_action');
-- Jobs waiting (submit_state `waiting`: for their predecessor, for their conversation's turn,
-- or for the conversation to be created) that are due to be looked at again.
CREATE INDEX jobs_waiting_due ON jobs (next_check_at) WHERE submit_state = 'waiting';
-- Waiting jobs asked to be cancelled (a user, a timeout).
CREATE INDEX jobs_waiting_cancel ON jobs (id) WHERE submit_state = 'waiting' AND cancel_requested = 1;

-- Conversations respool creates (`conversation: new`), one per asking job. The row is written
-- with the job (the intent), before any call; `conversation_id` is set once, by the first
-- create whose answer is recorded (a conditional write): a second one made meanwhile (a lost
-- answer, a lease that ran out) is deleted upstream and never used.
CREATE TABLE conversations (
    key             TEXT PRIMARY KEY,
    job_id          TEXT NOT NULL,
    conversation_id TEXT UNIQUE,
    -- Create calls sent for it (should be 1).
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- When to try (again); NULL once created or given up.
    next_try_at     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    recorded_at     BIGINT
);
CREATE INDEX conversations_due ON conversations (next_try_at) WHERE next_try_at IS NOT NULL;

-- A waiting job is not in flight: it holds no place under `max_in_flight` or `per_model` (a
-- backlog of followers must not stop their predecessors). The in-flight counts' triggers
-- (migration 20261205000014) are made again without it; the counts are unchanged (no job
-- waits yet).
DROP TRIGGER in_flight_counts_insert;
DROP TRIGGER in_flight_counts_delete;
DROP TRIGGER in_flight_counts_leave;
DROP TRIGGER in_flight_counts_enter;

CREATE TRIGGER in_flight_counts_insert AFTER INSERT ON jobs
WHEN new.status IN ('queued', 'in_progress') OR (new.status = 'pending' AND new.submit_state NOT IN ('ready', 'waiting'))
BEGIN
    INSERT INTO in_flight_counts (model, n) VALUES (new.model, 1)
    ON CONFLICT (model) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER in_flight_counts_delete AFTER DELETE ON jobs
WHEN old.status IN ('queued', 'in_progress') OR (old.status = 'pending' AND old.submit_state NOT IN ('ready', 'waiting'))
BEGIN
    UPDATE in_flight_counts SET n = n - 1 WHERE model = old.model;
END;

CREATE TRIGGER in_flight_counts_leave AFTER UPDATE OF status, submit_state, model ON jobs
WHEN (old.status IN ('queued', 'in_progress') OR (old.status = 'pending' AND old.submit_state NOT IN ('ready', 'waiting')))
 AND NOT ((new.status IN ('queued', 'in_progress') OR (new.status = 'pending' AND new.submit_state NOT IN ('ready', 'waiting')))
          AND new.model = old.model)
BEGIN
    UPDATE in_flight_counts SET n = n - 1 WHERE model = old.model;
END;

CREATE TRIGGER in_flight_counts_enter AFTER UPDATE OF status, submit_state, model ON jobs
WHEN (new.status IN ('queued', 'in_progress') OR (new.status = 'pending' AND new.submit_state NOT IN ('ready', 'waiting')))
 AND NOT ((old.status IN ('queued', 'in_progress') OR (old.status = 'pending' AND old.submit_state NOT IN ('ready', 'waiting')))
          AND new.model = old.model)
BEGIN
    INSERT INTO in_flight_counts (model, n) VALUES (new.model, 1)
    ON CONFLICT (model) DO UPDATE SET n = n + 1;
END;
