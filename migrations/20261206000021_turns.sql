-- Jobs that act (issue "Jobs that act and show progress"): a response that ends asking for
-- function outputs or MCP approvals is one *turn* of its job; respool answers it (a handler, a
-- policy or a person) and continues with a new response carrying the answers and
-- `previous_response_id`. The job's own row always holds the current turn's response; every
-- earlier turn's response is kept here, with the actions it asked for.

-- The job's current turn, from 0 (the first create).
ALTER TABLE jobs ADD COLUMN turn INTEGER NOT NULL DEFAULT 0;
-- When a job waiting for a person (`requires_action`) gives up (`actions.wait_timeout`, or
-- its own deadline if earlier): a wait's own limit, cleared when it is answered, so it never
-- shortens the job's later turns.
ALTER TABLE jobs ADD COLUMN wait_until BIGINT;

CREATE TABLE job_turns (
    job_id        TEXT NOT NULL REFERENCES jobs (id),
    turn          INTEGER NOT NULL,
    -- Unique: a webhook or a journal naming an earlier turn's response finds it here, and is
    -- never taken for the current turn's.
    response_id   TEXT NOT NULL UNIQUE,
    -- The turn's finished Response JSON, whole.
    response      TEXT NOT NULL,
    usage         TEXT,
    input_tokens  INTEGER,
    cached_tokens INTEGER,
    output_tokens INTEGER,
    reasoning_tokens INTEGER,
    total_tokens  INTEGER,
    finished_at   BIGINT NOT NULL,
    PRIMARY KEY (job_id, turn)
);

-- What a turn asked for: a function call (`call_id`) or an MCP approval request (`mcpr_…`).
-- state: new (not looked at yet) | ready (a handler will run it) | running (a handler was
-- started: after a crash it is run again only when its handler is idempotent) | waiting (for a
-- person) | done (`output` holds the answer).
CREATE TABLE job_actions (
    job_id       TEXT NOT NULL REFERENCES jobs (id),
    turn         INTEGER NOT NULL,
    item_id      TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('function', 'approval')),
    name         TEXT NOT NULL,
    server_label TEXT,
    arguments    TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('new', 'ready', 'running', 'waiting', 'done')),
    -- Which handler answers it (a function name of the config or the job), if any.
    handler      TEXT,
    runs         INTEGER NOT NULL DEFAULT 0,
    -- A function's output (text), or an approval's answer as JSON {"approve", "reason"}.
    output       TEXT,
    -- Who answered: handler | person | policy | respool (an error output respool wrote).
    answered_by  TEXT,
    error        TEXT,
    started_at   BIGINT,
    finished_at  BIGINT,
    -- Per turn: an upstream that numbers calls per response (`call_0`) reuses ids.
    PRIMARY KEY (job_id, turn, item_id)
);


-- The acting worker's claim: jobs whose current turn's actions are being answered.
CREATE INDEX jobs_acting ON jobs (next_check_at) WHERE submit_state = 'acting';
-- Waits for a person that run out.
CREATE INDEX jobs_waiting ON jobs (wait_until) WHERE status = 'requires_action';

-- The submit claim of a later turn: jobs already running whose next response is to be created.
-- Tried before new jobs (their earlier turns are paid for).
CREATE INDEX jobs_turn_order ON jobs (priority DESC, created_at, id)
    WHERE status = 'in_progress' AND submit_state = 'ready';
