-- The whole schema on PostgreSQL, in one migration: the final state of the SQLite migrations
-- `migrations/2026*.sql` (20261125000001 to 20261206000023), so that the store's SQL runs on
-- both backends. `.ci/schema-parity.py` compares the two (tables, columns in order, nullability,
-- defaults, keys, foreign keys, indexes and their columns) and must pass after any change to
-- either side: a new SQLite migration needs its PostgreSQL twin in this directory.
--
-- How the SQLite schema was carried over:
--
-- - Types: INTEGER and BIGINT (counts, 0/1 flags, unix-millisecond times) are BIGINT, TEXT is
--   TEXT (JSON documents included), BLOB is BYTEA. SQLite's rowid aliases (`id INTEGER PRIMARY
--   KEY`, numbered by SQLite when the insert leaves them out) are identity columns; `health.id`,
--   always written as 1, is a plain BIGINT key.
-- - Every TEXT column is `COLLATE "C"`: SQLite compares text by its bytes (BINARY), and the
--   store sorts and pages by text (`ORDER BY created_at, id`, `id < ?`, `ORDER BY model, name`);
--   "C" gives byte order whatever the database's locale, so both backends return the same order.
-- - Names are SQLite's: tables, columns and their order (columns added by `ALTER TABLE` come
--   last, as they do there), indexes (partial and DESC ones alike), triggers. Constraints
--   SQLite left unnamed keep PostgreSQL's default names (`jobs_pkey`, `jobs_response_id_key`…).
-- - Dropped, as SQLite-only: the FTS5 tables `jobs_fts` and `jobs_fts_keys` and their triggers
--   (20261125000005/6; replaced by `jobs_search` below), `INDEXED BY` in the backfill of
--   20261205000014, and the backfills themselves (a new database has no rows to convert). No
--   STRICT or WITHOUT ROWID tables and no PRAGMAs exist in the SQLite migrations; the store's
--   connection pragmas (WAL, synchronous, foreign_keys) have no schema counterpart: PostgreSQL
--   always enforces foreign keys.
-- - Triggers are PL/pgSQL functions called by row triggers whose WHEN clauses are the SQLite
--   triggers' own, so they fire on the same writes.
-- - Two indexes differ in form, not in name or use: `jobs_stats` and `job_summaries_stats` end
--   in SQLite with the expression `json_array(...)` (the stats record, which SQLite reads from
--   the index); `json_build_array` is not immutable, so here the record's columns are the
--   index's INCLUDE columns (an index-only scan reads them the same way).
-- - `job_actions` has one column more: `rowid`, an identity, last. The store orders a turn's
--   actions `ORDER BY rowid` (the order they were asked in; SQLite's implicit rowid), and this
--   column lets that SQL run unchanged here.

-- Diacritics are folded as FTS5's `remove_diacritics 2` does (see `respool_search` below).
-- `unaccent` ships with PostgreSQL's contrib modules (Debian's `postgresql` package) and is a
-- trusted extension: a role with CREATE on the database may create it.
CREATE EXTENSION IF NOT EXISTS unaccent;

-- ---------------------------------------------------------------------------------------------
-- Tables, in the order SQLite created them.

CREATE TABLE jobs (
    id                       TEXT COLLATE "C" PRIMARY KEY,
    name                     TEXT COLLATE "C" NOT NULL,
    model                    TEXT COLLATE "C" NOT NULL,
    status                   TEXT COLLATE "C" NOT NULL,
    spec                     TEXT COLLATE "C" NOT NULL,
    idempotency_key          TEXT COLLATE "C" UNIQUE,
    spec_hash                TEXT COLLATE "C" NOT NULL,
    response_id              TEXT COLLATE "C" UNIQUE,
    attempt                  BIGINT NOT NULL DEFAULT 0,
    submit_state             TEXT COLLATE "C" NOT NULL DEFAULT 'ready',
    submissions              BIGINT NOT NULL DEFAULT 0,
    created_at               BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL,
    submitted_at             BIGINT,
    finished_at              BIGINT,
    deadline_at              BIGINT,
    next_check_at            BIGINT,
    lease_until              BIGINT,
    poll_interval_ms         BIGINT NOT NULL DEFAULT 0,
    polls                    BIGINT NOT NULL DEFAULT 0,
    wake_pending             BIGINT NOT NULL DEFAULT 0,
    cancel_requested         BIGINT NOT NULL DEFAULT 0,
    cancel_reason            TEXT COLLATE "C",
    output_text              TEXT COLLATE "C",
    error_code               TEXT COLLATE "C",
    error_message            TEXT COLLATE "C",
    usage                    TEXT COLLATE "C",
    response                 TEXT COLLATE "C",
    -- 20261125000003
    priority                 BIGINT NOT NULL DEFAULT 0,
    budget_exempt            BIGINT NOT NULL DEFAULT 0,
    -- 20261125000005
    retry_of                 TEXT COLLATE "C",
    -- 20261204000007
    polls_not_found          BIGINT NOT NULL DEFAULT 0,
    poll_errors              BIGINT NOT NULL DEFAULT 0,
    quarantine               TEXT COLLATE "C",
    -- 20261205000012
    input_tokens             BIGINT,
    cached_tokens            BIGINT,
    output_tokens            BIGINT,
    reasoning_tokens         BIGINT,
    total_tokens             BIGINT,
    -- 20261205000013
    lease_owner              TEXT COLLATE "C",
    -- 20261205000016
    retrieve_include         TEXT COLLATE "C",
    -- 20261206000020
    web_search_calls         BIGINT,
    web_search_preview_calls BIGINT,
    file_search_calls        BIGINT,
    code_containers          BIGINT,
    images                   BIGINT,
    image_fee_microusd       BIGINT,
    service_tier             TEXT COLLATE "C",
    -- 20261206000021
    turn                     BIGINT NOT NULL DEFAULT 0,
    wait_until               BIGINT,
    -- 20261206000022
    after_job_id             TEXT COLLATE "C",
    chain_id                 TEXT COLLATE "C",
    conversation_key         TEXT COLLATE "C",
    conversation_seq         BIGINT,
    -- 20261206000023
    progress_stream          TEXT COLLATE "C",
    progress_seq             BIGINT,
    progress_turn            BIGINT
);

CREATE TABLE job_events (
    -- SQLite: `id INTEGER PRIMARY KEY` (rowid alias, numbered by SQLite).
    id       BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    job_id   TEXT COLLATE "C" NOT NULL REFERENCES jobs (id),
    at       BIGINT NOT NULL,
    kind     TEXT COLLATE "C" NOT NULL,
    message  TEXT COLLATE "C" NOT NULL,
    data     TEXT COLLATE "C"
);

CREATE TABLE webhook_deliveries (
    webhook_id   TEXT COLLATE "C" PRIMARY KEY,
    received_at  BIGINT NOT NULL,
    event_id     TEXT COLLATE "C",
    event_type   TEXT COLLATE "C" NOT NULL,
    object_id    TEXT COLLATE "C",
    job_id       TEXT COLLATE "C",
    body         TEXT COLLATE "C" NOT NULL,
    handled_at   BIGINT,
    -- 20261205000011
    next_look_at BIGINT NOT NULL DEFAULT 0,
    looks        BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE notifications (
    -- SQLite: `id INTEGER PRIMARY KEY` (rowid alias, numbered by SQLite).
    id               BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    job_id           TEXT COLLATE "C" NOT NULL REFERENCES jobs (id),
    sink             TEXT COLLATE "C" NOT NULL,
    event            TEXT COLLATE "C" NOT NULL,
    state            TEXT COLLATE "C" NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    last_error       TEXT COLLATE "C",
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT,
    -- 20261204000008
    claim            BIGINT NOT NULL DEFAULT 0,
    UNIQUE (job_id, sink, event)
);

CREATE TABLE schedules (
    name                TEXT COLLATE "C" PRIMARY KEY,
    spec_hash           TEXT COLLATE "C" NOT NULL,
    spec                TEXT COLLATE "C" NOT NULL,
    cron                TEXT COLLATE "C" NOT NULL,
    timezone            TEXT COLLATE "C" NOT NULL,
    catch_up            TEXT COLLATE "C" NOT NULL,
    overlap             TEXT COLLATE "C" NOT NULL,
    active              BIGINT NOT NULL DEFAULT 1,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    last_scheduled_for  BIGINT,
    next_run_at         BIGINT,
    last_skipped_for    BIGINT,
    last_skip_reason    TEXT COLLATE "C",
    skipped_count       BIGINT NOT NULL DEFAULT 0,
    -- 20261204000008
    runs_pruned         BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE schedule_runs (
    -- SQLite: `id INTEGER PRIMARY KEY` (rowid alias, numbered by SQLite).
    id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    schedule_name   TEXT COLLATE "C" NOT NULL,
    scheduled_for   BIGINT NOT NULL,
    job_id          TEXT COLLATE "C",
    outcome         TEXT COLLATE "C" NOT NULL,
    reason          TEXT COLLATE "C",
    waiting         BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    UNIQUE (schedule_name, scheduled_for)
);

CREATE TABLE job_summaries (
    id                       TEXT COLLATE "C" PRIMARY KEY,
    name                     TEXT COLLATE "C" NOT NULL,
    model                    TEXT COLLATE "C" NOT NULL,
    status                   TEXT COLLATE "C" NOT NULL,
    created_at               BIGINT NOT NULL,
    submitted_at             BIGINT,
    finished_at              BIGINT NOT NULL,
    usage                    TEXT COLLATE "C",
    cost_microusd            BIGINT,
    error_code               TEXT COLLATE "C",
    pruned_at                BIGINT NOT NULL,
    -- 20261205000012
    input_tokens             BIGINT,
    cached_tokens            BIGINT,
    output_tokens            BIGINT,
    reasoning_tokens         BIGINT,
    total_tokens             BIGINT,
    -- 20261206000020
    web_search_calls         BIGINT,
    web_search_preview_calls BIGINT,
    file_search_calls        BIGINT,
    code_containers          BIGINT,
    images                   BIGINT,
    image_fee_microusd       BIGINT,
    service_tier             TEXT COLLATE "C"
);

CREATE TABLE webhook_secrets (
    -- SQLite: `id INTEGER PRIMARY KEY` (rowid alias, numbered by SQLite; the store reads it
    -- back with `last_insert_rowid()`, which becomes `RETURNING id`).
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    endpoint_id  TEXT COLLATE "C" NOT NULL,
    secret       TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    active       BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE duplicate_responses (
    response_id              TEXT COLLATE "C" PRIMARY KEY,
    job_id                   TEXT COLLATE "C" NOT NULL REFERENCES jobs (id),
    status                   TEXT COLLATE "C" NOT NULL,
    usage                    TEXT COLLATE "C",
    response                 TEXT COLLATE "C",
    found_by                 TEXT COLLATE "C" NOT NULL,
    found_at                 BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL,
    next_check_at            BIGINT,
    checks                   BIGINT NOT NULL DEFAULT 0,
    -- 20261205000012
    input_tokens             BIGINT,
    cached_tokens            BIGINT,
    output_tokens            BIGINT,
    reasoning_tokens         BIGINT,
    total_tokens             BIGINT,
    -- 20261206000020
    web_search_calls         BIGINT,
    web_search_preview_calls BIGINT,
    file_search_calls        BIGINT,
    code_containers          BIGINT,
    images                   BIGINT,
    image_fee_microusd       BIGINT,
    service_tier             TEXT COLLATE "C"
);

CREATE TABLE health (
    -- SQLite: `id INTEGER PRIMARY KEY CHECK (id = 1)`; one row, always id 1.
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    checked_at  BIGINT NOT NULL
);
INSERT INTO health (id, checked_at) VALUES (1, 0);

CREATE TABLE rate_limit_windows (
    model               TEXT COLLATE "C" PRIMARY KEY,
    remaining_requests  BIGINT,
    remaining_tokens    BIGINT,
    requests_reset_at   BIGINT NOT NULL,
    tokens_reset_at     BIGINT NOT NULL,
    observed_at         BIGINT NOT NULL
);

CREATE TABLE in_flight_counts (
    model TEXT COLLATE "C" PRIMARY KEY,
    n     BIGINT NOT NULL
);

CREATE TABLE attachments (
    id          TEXT COLLATE "C" PRIMARY KEY,
    filename    TEXT COLLATE "C" NOT NULL,
    media_type  TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL CHECK (kind IN ('document', 'image')),
    bytes       BIGINT NOT NULL CHECK (bytes > 0),
    sha256      TEXT COLLATE "C" NOT NULL,
    data        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE job_attachments (
    job_id        TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position      BIGINT NOT NULL,
    attachment_id TEXT COLLATE "C" NOT NULL REFERENCES attachments (id),
    -- 20261206000018
    knowledge     TEXT COLLATE "C",
    PRIMARY KEY (job_id, position)
);

CREATE TABLE uploads (
    sha256       TEXT COLLATE "C" NOT NULL,
    purpose      TEXT COLLATE "C" NOT NULL,
    state        TEXT COLLATE "C" NOT NULL CHECK (state IN ('uploading', 'uploaded')),
    file_id      TEXT COLLATE "C",
    filename     TEXT COLLATE "C" NOT NULL,
    bytes        BIGINT NOT NULL,
    owner        TEXT COLLATE "C",
    lease_until  BIGINT,
    started_at   BIGINT NOT NULL,
    uploaded_at  BIGINT,
    verified_at  BIGINT,
    last_used_at BIGINT NOT NULL,
    PRIMARY KEY (sha256, purpose),
    CHECK ((state = 'uploaded') = (file_id IS NOT NULL))
);

CREATE TABLE knowledge_stores (
    name             TEXT COLLATE "C" PRIMARY KEY,
    state            TEXT COLLATE "C" NOT NULL CHECK (state IN ('creating', 'ready')),
    vector_store_id  TEXT COLLATE "C",
    owner            TEXT COLLATE "C",
    lease_until      BIGINT,
    started_at       BIGINT NOT NULL,
    verified_at      BIGINT,
    last_used_at     BIGINT NOT NULL,
    CHECK ((state = 'ready') = (vector_store_id IS NOT NULL))
);

CREATE TABLE knowledge_files (
    name        TEXT COLLATE "C" NOT NULL REFERENCES knowledge_stores (name) ON DELETE CASCADE,
    sha256      TEXT COLLATE "C" NOT NULL,
    file_id     TEXT COLLATE "C" NOT NULL,
    filename    TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,
    last_error  TEXT COLLATE "C",
    attached_at BIGINT NOT NULL,
    PRIMARY KEY (name, sha256)
);

CREATE TABLE artifacts (
    job_id      TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    position    BIGINT NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL CHECK (kind IN ('image', 'container_file')),
    media_type  TEXT COLLATE "C" NOT NULL,
    bytes       BIGINT NOT NULL CHECK (bytes >= 0),
    sha256      TEXT COLLATE "C",
    source      TEXT COLLATE "C" NOT NULL,
    path        TEXT COLLATE "C",
    error       TEXT COLLATE "C",
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (job_id, name)
);

CREATE TABLE job_turns (
    job_id           TEXT COLLATE "C" NOT NULL REFERENCES jobs (id),
    turn             BIGINT NOT NULL,
    response_id      TEXT COLLATE "C" NOT NULL UNIQUE,
    response         TEXT COLLATE "C" NOT NULL,
    usage            TEXT COLLATE "C",
    input_tokens     BIGINT,
    cached_tokens    BIGINT,
    output_tokens    BIGINT,
    reasoning_tokens BIGINT,
    total_tokens     BIGINT,
    finished_at      BIGINT NOT NULL,
    PRIMARY KEY (job_id, turn)
);

CREATE TABLE job_actions (
    job_id       TEXT COLLATE "C" NOT NULL REFERENCES jobs (id),
    turn         BIGINT NOT NULL,
    item_id      TEXT COLLATE "C" NOT NULL,
    kind         TEXT COLLATE "C" NOT NULL CHECK (kind IN ('function', 'approval')),
    name         TEXT COLLATE "C" NOT NULL,
    server_label TEXT COLLATE "C",
    arguments    TEXT COLLATE "C" NOT NULL,
    state        TEXT COLLATE "C" NOT NULL CHECK (state IN ('new', 'ready', 'running', 'waiting', 'done')),
    handler      TEXT COLLATE "C",
    runs         BIGINT NOT NULL DEFAULT 0,
    output       TEXT COLLATE "C",
    answered_by  TEXT COLLATE "C",
    error        TEXT COLLATE "C",
    started_at   BIGINT,
    finished_at  BIGINT,
    -- Not a SQLite column: SQLite's implicit rowid, which `ORDER BY rowid` (src/store/turns.rs)
    -- reads as the order the actions were asked in. Never written by the store.
    rowid        BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (job_id, turn, item_id)
);

CREATE TABLE conversations (
    key             TEXT COLLATE "C" PRIMARY KEY,
    job_id          TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" UNIQUE,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_try_at     BIGINT,
    last_error      TEXT COLLATE "C",
    created_at      BIGINT NOT NULL,
    recorded_at     BIGINT
);

-- ---------------------------------------------------------------------------------------------
-- Indexes, named and ordered as in SQLite.

CREATE INDEX jobs_status_next_check ON jobs (status, next_check_at);
CREATE INDEX jobs_submit_state ON jobs (submit_state, next_check_at);
CREATE INDEX jobs_created_at ON jobs (created_at, id);
CREATE INDEX job_events_job ON job_events (job_id, id);
CREATE INDEX webhook_deliveries_object ON webhook_deliveries (object_id);
CREATE INDEX notifications_due ON notifications (state, next_attempt_at);
CREATE INDEX schedules_due ON schedules (active, next_run_at);
CREATE INDEX schedule_runs_job ON schedule_runs (job_id);
CREATE INDEX schedule_runs_waiting ON schedule_runs (waiting);
CREATE INDEX jobs_finished_at ON jobs (finished_at);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);
CREATE INDEX job_summaries_finished_at ON job_summaries (finished_at);
CREATE INDEX webhook_secrets_endpoint ON webhook_secrets (endpoint_id, id);
CREATE INDEX jobs_retry_of ON jobs (retry_of) WHERE retry_of IS NOT NULL;
CREATE INDEX jobs_status_created ON jobs (status, created_at, id);
CREATE INDEX jobs_model_created ON jobs (model, created_at, id);
CREATE INDEX job_summaries_created_at ON job_summaries (created_at);
CREATE INDEX duplicate_responses_job ON duplicate_responses (job_id);
CREATE INDEX duplicate_responses_due ON duplicate_responses (next_check_at);
CREATE INDEX schedule_runs_scheduled_for ON schedule_runs (scheduled_for);
CREATE INDEX webhook_secrets_expires_at ON webhook_secrets (expires_at);
CREATE INDEX notifications_job_state ON notifications (job_id, state);
CREATE INDEX jobs_submit_order ON jobs (priority DESC, created_at, id)
    WHERE status = 'pending' AND submit_state = 'ready';
CREATE INDEX jobs_poll_due ON jobs (next_check_at)
    WHERE status IN ('pending', 'queued', 'in_progress') AND response_id IS NOT NULL;
CREATE INDEX notifications_sink_due ON notifications (state, sink, next_attempt_at);
CREATE INDEX jobs_in_flight ON jobs (model, status, submit_state)
    WHERE status IN ('queued', 'in_progress') OR (status = 'pending' AND submit_state <> 'ready');
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_look_at) WHERE handled_at IS NULL;
CREATE INDEX jobs_ledger_due ON jobs (next_check_at)
    WHERE status IN ('queued', 'in_progress') OR (status = 'pending' AND submit_state <> 'ready');
CREATE INDEX jobs_poll_hinted ON jobs (next_check_at)
    WHERE wake_pending = 1 AND status IN ('pending', 'queued', 'in_progress') AND response_id IS NOT NULL;
CREATE INDEX jobs_deadline_due ON jobs (deadline_at)
    WHERE deadline_at IS NOT NULL AND cancel_requested = 0
      AND status IN ('pending', 'held', 'queued', 'in_progress') AND quarantine IS NULL;
CREATE INDEX jobs_cancel_unsent ON jobs (id)
    WHERE cancel_requested = 1 AND status IN ('pending', 'held') AND submit_state = 'ready'
      AND quarantine IS NULL;
CREATE INDEX attachments_sha256 ON attachments (sha256);
CREATE INDEX job_attachments_attachment ON job_attachments (attachment_id);
-- SQLite (20261206000020): (created_at / 900000, model, name, status, created_at,
-- json_array(created_at / 900000, status, model, name, <the record's columns>)). The record's
-- columns are INCLUDE columns here: see the header.
CREATE INDEX jobs_stats ON jobs ((created_at / 900000), model, name, status, created_at)
    INCLUDE (input_tokens, cached_tokens, output_tokens, reasoning_tokens, total_tokens,
             service_tier, web_search_calls, web_search_preview_calls, file_search_calls,
             code_containers, images, image_fee_microusd);
CREATE INDEX job_summaries_stats ON job_summaries ((created_at / 900000), model, name, status,
    created_at)
    INCLUDE (input_tokens, cached_tokens, output_tokens, reasoning_tokens, total_tokens,
             service_tier, web_search_calls, web_search_preview_calls, file_search_calls,
             code_containers, images, image_fee_microusd);
CREATE INDEX jobs_acting ON jobs (next_check_at) WHERE submit_state = 'acting';
CREATE INDEX jobs_waiting ON jobs (wait_until) WHERE status = 'requires_action';
CREATE INDEX jobs_turn_order ON jobs (priority DESC, created_at, id)
    WHERE status = 'in_progress' AND submit_state = 'ready';
CREATE INDEX jobs_followers ON jobs (after_job_id) WHERE after_job_id IS NOT NULL;
CREATE INDEX jobs_chain ON jobs (chain_id, created_at, id) WHERE chain_id IS NOT NULL;
CREATE INDEX jobs_conversation_order ON jobs (conversation_key, conversation_seq)
    WHERE conversation_key IS NOT NULL
      AND status IN ('pending', 'held', 'queued', 'in_progress', 'requires_action');
CREATE INDEX jobs_waiting_due ON jobs (next_check_at) WHERE submit_state = 'waiting';
CREATE INDEX jobs_waiting_cancel ON jobs (id) WHERE submit_state = 'waiting' AND cancel_requested = 1;
CREATE INDEX conversations_due ON conversations (next_try_at) WHERE next_try_at IS NOT NULL;
CREATE INDEX jobs_progress_live ON jobs (progress_stream) WHERE progress_stream = 'live';

-- ---------------------------------------------------------------------------------------------
-- Id checks (20261205000010): a write whose ids no reader could decode is refused, naming the
-- rule. SQLite: `RAISE(ABORT, …)` in BEFORE triggers; here the same WHEN conditions (GLOB
-- patterns written as anchored regular expressions) call one function that raises the message
-- given as the trigger's argument. `length(x) = 30 AND x GLOB 'job_*' AND substr(x, 5) NOT GLOB
-- '*[^0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]*'` is `x ~ '^job_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$'`;
-- `length(x) BETWEEN 1 AND 128 AND x NOT GLOB '*[^A-Za-z0-9_-]*'` is `x ~ '^[A-Za-z0-9_-]{1,128}$'`.

CREATE FUNCTION respool_refuse_ids() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'check_violation', MESSAGE = TG_ARGV[0];
END;
$$;

CREATE TRIGGER jobs_ids_insert BEFORE INSERT ON jobs FOR EACH ROW
WHEN (NOT ((NEW.id ~ '^job_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$')
       AND (NEW.response_id IS NULL OR NEW.response_id ~ '^[A-Za-z0-9_-]{1,128}$')
       AND (NEW.retry_of IS NULL OR NEW.retry_of ~ '^job_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$')))
EXECUTE FUNCTION respool_refuse_ids('respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U); a response id is 1 to 128 of A-Z, a-z, 0-9, _ and -');

CREATE TRIGGER jobs_ids_update BEFORE UPDATE OF id, response_id, retry_of ON jobs FOR EACH ROW
WHEN (NOT ((NEW.id ~ '^job_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$')
       AND (NEW.response_id IS NULL OR NEW.response_id ~ '^[A-Za-z0-9_-]{1,128}$')
       AND (NEW.retry_of IS NULL OR NEW.retry_of ~ '^job_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$')))
EXECUTE FUNCTION respool_refuse_ids('respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U); a response id is 1 to 128 of A-Z, a-z, 0-9, _ and -');

CREATE TRIGGER job_events_ids_insert BEFORE INSERT ON job_events FOR EACH ROW
WHEN (NOT (NEW.job_id ~ '^job_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$'))
EXECUTE FUNCTION respool_refuse_ids('respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U)');

CREATE TRIGGER job_events_ids_update BEFORE UPDATE OF job_id ON job_events FOR EACH ROW
WHEN (NOT (NEW.job_id ~ '^job_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$'))
EXECUTE FUNCTION respool_refuse_ids('respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U)');

CREATE TRIGGER notifications_ids_insert BEFORE INSERT ON notifications FOR EACH ROW
WHEN (NOT (NEW.job_id ~ '^job_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$'))
EXECUTE FUNCTION respool_refuse_ids('respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U)');

CREATE TRIGGER notifications_ids_update BEFORE UPDATE OF job_id ON notifications FOR EACH ROW
WHEN (NOT (NEW.job_id ~ '^job_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$'))
EXECUTE FUNCTION respool_refuse_ids('respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U)');

CREATE TRIGGER duplicate_responses_ids_insert BEFORE INSERT ON duplicate_responses FOR EACH ROW
WHEN (NOT ((NEW.job_id ~ '^job_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$')
       AND (NEW.response_id ~ '^[A-Za-z0-9_-]{1,128}$')))
EXECUTE FUNCTION respool_refuse_ids('respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U); a response id is 1 to 128 of A-Z, a-z, 0-9, _ and -');

CREATE TRIGGER duplicate_responses_ids_update BEFORE UPDATE OF job_id, response_id ON duplicate_responses FOR EACH ROW
WHEN (NOT ((NEW.job_id ~ '^job_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$')
       AND (NEW.response_id ~ '^[A-Za-z0-9_-]{1,128}$')))
EXECUTE FUNCTION respool_refuse_ids('respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U); a response id is 1 to 128 of A-Z, a-z, 0-9, _ and -');

-- ---------------------------------------------------------------------------------------------
-- The jobs in flight, counted by model (20261205000014, as remade by 20261206000022): the same
-- four triggers, the same WHEN conditions. In flight: queued or in_progress, or pending and
-- past `ready` in its create but not `waiting`.

CREATE FUNCTION in_flight_counts_enter() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO in_flight_counts AS c (model, n) VALUES (NEW.model, 1)
    ON CONFLICT (model) DO UPDATE SET n = c.n + 1;
    RETURN NULL;
END;
$$;

CREATE FUNCTION in_flight_counts_leave() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE in_flight_counts SET n = n - 1 WHERE model = OLD.model;
    RETURN NULL;
END;
$$;

CREATE TRIGGER in_flight_counts_insert AFTER INSERT ON jobs FOR EACH ROW
WHEN (NEW.status IN ('queued', 'in_progress')
      OR (NEW.status = 'pending' AND NEW.submit_state NOT IN ('ready', 'waiting')))
EXECUTE FUNCTION in_flight_counts_enter();

CREATE TRIGGER in_flight_counts_delete AFTER DELETE ON jobs FOR EACH ROW
WHEN (OLD.status IN ('queued', 'in_progress')
      OR (OLD.status = 'pending' AND OLD.submit_state NOT IN ('ready', 'waiting')))
EXECUTE FUNCTION in_flight_counts_leave();

CREATE TRIGGER in_flight_counts_leave AFTER UPDATE OF status, submit_state, model ON jobs FOR EACH ROW
WHEN ((OLD.status IN ('queued', 'in_progress')
       OR (OLD.status = 'pending' AND OLD.submit_state NOT IN ('ready', 'waiting')))
      AND NOT ((NEW.status IN ('queued', 'in_progress')
                OR (NEW.status = 'pending' AND NEW.submit_state NOT IN ('ready', 'waiting')))
               AND NEW.model = OLD.model))
EXECUTE FUNCTION in_flight_counts_leave();

CREATE TRIGGER in_flight_counts_enter AFTER UPDATE OF status, submit_state, model ON jobs FOR EACH ROW
WHEN ((NEW.status IN ('queued', 'in_progress')
       OR (NEW.status = 'pending' AND NEW.submit_state NOT IN ('ready', 'waiting')))
      AND NOT ((OLD.status IN ('queued', 'in_progress')
                OR (OLD.status = 'pending' AND OLD.submit_state NOT IN ('ready', 'waiting')))
               AND NEW.model = OLD.model))
EXECUTE FUNCTION in_flight_counts_enter();

-- ---------------------------------------------------------------------------------------------
-- Full-text search over a job's name, input and output text: PostgreSQL's own text search in
-- place of SQLite's FTS5 (`jobs_fts`, `jobs_fts_keys` and their triggers, 20261125000005/6).
--
-- A table of its own rather than a generated tsvector column on `jobs`: the ledger updates a
-- job's row many times (claims, polls, leases), and a stored generated column would be part
-- of every one of those row versions; here the document is written when a job is inserted and
-- when its name or output text changes (the columns the FTS5 triggers watched), and goes with
-- the job (ON DELETE CASCADE; SQLite's delete trigger). The same split as SQLite's, where the
-- index is a table beside `jobs`.
--
-- Matching is FTS5's `unicode61 remove_diacritics 2` as closely as PostgreSQL's parser allows:
-- - tokens are runs of letters and digits (every other character separates words, as in
--   unicode61: `zoo-report` is `zoo` then `report`; `-bar:` is `bar`), folded to lower case,
--   diacritics removed (`respool_search`: the `simple` dictionary, no stemming and no stop
--   words, after `unaccent`): names, ids and text in any language match as written;
-- - a job matches a query word when the word's tokens occur in one of its three texts
--   consecutively (an FTS5 phrase: a word never spans from the name into the input);
-- - every word must match; a word with no letters or digits is ignored, and a query of only
--   such words matches nothing (as FTS5 does); no prefix matching, no ranking.
-- The database's LC_CTYPE must be a UTF-8 locale (C.UTF-8, en_US.UTF-8…): it decides what a
-- letter is and how letters fold, for the parser and for `[[:alnum:]]` below.

CREATE TEXT SEARCH CONFIGURATION respool_search (COPY = pg_catalog.simple);
-- The extension's dictionary wherever the extension lives (another schema of the database may
-- have created it first: CREATE EXTENSION IF NOT EXISTS then leaves it there).
DO $$
BEGIN
    EXECUTE format(
        'ALTER TEXT SEARCH CONFIGURATION respool_search '
        'ALTER MAPPING FOR word, numword, hword, numhword, hword_part WITH %s, simple',
        (SELECT format('%I.%I', n.nspname, d.dictname)
         FROM pg_extension e
         JOIN pg_depend dep ON dep.refclassid = 'pg_extension'::regclass AND dep.refobjid = e.oid
              AND dep.classid = 'pg_ts_dict'::regclass
         JOIN pg_ts_dict d ON d.oid = dep.objid
         JOIN pg_namespace n ON n.oid = d.dictnamespace
         WHERE e.extname = 'unaccent' AND d.dictname = 'unaccent'));
END;
$$;

-- The input text a job is found by (as in 20261125000006): the spec's `request.input` when it
-- is a string, else every string under it whose key is `text` or `content` (the text parts of
-- an item list), in document order, joined by spaces; NULL when there is none. `json`, not
-- `jsonb`, so the order and duplicate keys are the document's, as SQLite's `json_tree` walks
-- them. A `\u0000` escape (which PostgreSQL cannot turn into text) is dropped. PL/pgSQL rather
-- than SQL so that the query's plan is kept between calls (a trigger calls it once a job).
CREATE FUNCTION jobs_search_input(spec TEXT) RETURNS TEXT
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN (WITH RECURSIVE
    input (v) AS (
        SELECT (CASE WHEN strpos(spec, '\u0000') > 0
                     THEN regexp_replace(spec, '(?<!\\)((?:\\\\)*)\\u0000', '\1', 'g')
                     ELSE spec END)::json #> '{request,input}'
    ),
    walk (key, value, path) AS (
        SELECT NULL::text, v, ARRAY[]::bigint[] FROM input WHERE v IS NOT NULL
        UNION ALL
        SELECT c.key, c.value, w.path || c.n
        FROM walk w
        CROSS JOIN LATERAL (
            SELECT o.key, o.value, o.n
            FROM json_each(CASE WHEN json_typeof(w.value) = 'object' THEN w.value END)
                 WITH ORDINALITY AS o (key, value, n)
            UNION ALL
            SELECT NULL, a.value, a.n
            FROM json_array_elements(CASE WHEN json_typeof(w.value) = 'array' THEN w.value END)
                 WITH ORDINALITY AS a (value, n)
        ) c
    )
    SELECT CASE
        WHEN json_typeof(v) = 'string' THEN v #>> '{}'
        ELSE (SELECT string_agg(value #>> '{}', ' ' ORDER BY path) FROM walk
              WHERE key IN ('text', 'content') AND json_typeof(value) = 'string')
    END
    FROM input);
END;
$$;

-- A text as the words it is found by: its runs of letters and digits, separated by spaces.
CREATE FUNCTION jobs_search_words(t TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT regexp_replace(COALESCE(t, '') COLLATE "default", '[^[:alnum:]]+', ' ', 'g')
$$;

-- A job's document: the words of its name, input and output as `respool_search` tokens, each
-- text one position apart from the next so that a phrase never runs from one into the other
-- (FTS5 phrases stay within a column). A tsvector holds at most 1 MB: when the three texts
-- make a larger one, the longest is cut in half until they fit, so a job with a huge input is
-- found by the first part of it rather than refused (only texts of more than 150,000 bytes
-- together, which may come near the limit, pay for the check).
CREATE FUNCTION jobs_search_document(name TEXT, input TEXT, output TEXT) RETURNS tsvector
LANGUAGE plpgsql STABLE AS $$
DECLARE
    texts TEXT[] := ARRAY[jobs_search_words(name), jobs_search_words(input), jobs_search_words(output)];
    longest INT;
BEGIN
    IF octet_length(texts[1]) + octet_length(texts[2]) + octet_length(texts[3]) < 150000 THEN
        RETURN ts_delete(to_tsvector('respool_search', texts[1]) || $d$'|':1$d$::tsvector
                         || to_tsvector('respool_search', texts[2]) || $d$'|':1$d$::tsvector
                         || to_tsvector('respool_search', texts[3]), '|'::text);
    END IF;
    LOOP
        BEGIN
            RETURN ts_delete(to_tsvector('respool_search', texts[1]) || $d$'|':1$d$::tsvector
                             || to_tsvector('respool_search', texts[2]) || $d$'|':1$d$::tsvector
                             || to_tsvector('respool_search', texts[3]), '|'::text);
        EXCEPTION WHEN program_limit_exceeded THEN
            SELECT i INTO longest FROM generate_series(1, 3) AS i
            ORDER BY octet_length(texts[i]) DESC LIMIT 1;
            texts[longest] := left(texts[longest], length(texts[longest]) / 2);
        END;
    END LOOP;
END;
$$;

-- The query for a search: the text `fts_query` (src/store/jobs.rs) makes of the user's words,
-- `"word" "word"…` (each word quoted, inner quotes doubled), the very value SQLite's MATCH is
-- given. Each word is a phrase of its tokens; the words are ANDed. NULL (matches nothing) when
-- no word has a letter or digit.
CREATE FUNCTION jobs_search_query(fts TEXT) RETURNS tsquery
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    q tsquery;
    word TEXT;
BEGIN
    FOR word IN
        SELECT replace(m[1], '""', '"')
        FROM regexp_matches(fts, '"((?:[^"]|"")*)"', 'g') AS m
    LOOP
        word := jobs_search_words(word);
        CONTINUE WHEN btrim(word) = '';
        IF q IS NULL THEN
            q := phraseto_tsquery('respool_search', word);
        ELSE
            q := q && phraseto_tsquery('respool_search', word);
        END IF;
    END LOOP;
    RETURN q;
END;
$$;

CREATE TABLE jobs_search (
    job_id TEXT COLLATE "C" PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    doc    tsvector NOT NULL
);
CREATE INDEX jobs_search_doc ON jobs_search USING gin (doc);

CREATE FUNCTION jobs_search_index() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobs_search AS s (job_id, doc)
    VALUES (NEW.id, jobs_search_document(NEW.name, jobs_search_input(NEW.spec), NEW.output_text))
    ON CONFLICT (job_id) DO UPDATE SET doc = excluded.doc;
    RETURN NULL;
END;
$$;

-- SQLite: jobs_fts_after_insert.
CREATE TRIGGER jobs_search_after_insert AFTER INSERT ON jobs FOR EACH ROW
EXECUTE FUNCTION jobs_search_index();

-- SQLite: jobs_fts_after_update (the input text is read again from the spec, as there).
CREATE TRIGGER jobs_search_after_update AFTER UPDATE OF name, output_text ON jobs FOR EACH ROW
WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.output_text IS DISTINCT FROM NEW.output_text)
EXECUTE FUNCTION jobs_search_index();

-- SQLite's jobs_fts_after_delete: the foreign key's ON DELETE CASCADE.
