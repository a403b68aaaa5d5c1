-- Schedules from the jobs file, and every tick they handled. Portable types only; times are
-- unix milliseconds.

-- One row per schedule (a jobs-file entry with `schedule:`), kept in step with the jobs file
-- at start and on reload. A schedule removed from the file is kept (inactive) with its history.
CREATE TABLE schedules (
    -- The job name in the jobs file.
    name                TEXT PRIMARY KEY,
    -- Hash of the whole entry (template and schedule), to notice an edit.
    spec_hash           TEXT NOT NULL,
    -- The job template (JSON job spec, without its schedule) each tick turns into a job.
    spec                TEXT NOT NULL,
    cron                TEXT NOT NULL,
    -- IANA time zone the cron is read in.
    timezone            TEXT NOT NULL,
    -- none | latest | all: ticks missed while respool was down.
    catch_up            TEXT NOT NULL,
    -- skip | queue | allow: a tick while the previous run is unfinished.
    overlap             TEXT NOT NULL,
    -- 1 while the jobs file has it.
    active              INTEGER NOT NULL DEFAULT 1,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    -- The latest tick handled (run or skipped).
    last_scheduled_for  BIGINT,
    -- The next tick to handle; NULL when inactive.
    next_run_at         BIGINT,
    -- The latest tick skipped (by catch-up or overlap), why, and how many so far.
    last_skipped_for    BIGINT,
    last_skip_reason    TEXT,
    skipped_count       BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX schedules_due ON schedules (active, next_run_at);

-- One row per tick a schedule handled, written in the same transaction as the job it created,
-- so a tick is never run twice: by a restart or by another daemon (the unique key makes one
-- win). A tick skipped because the previous run was unfinished has a row without a job.
CREATE TABLE schedule_runs (
    id              INTEGER PRIMARY KEY,
    schedule_name   TEXT NOT NULL,
    scheduled_for   BIGINT NOT NULL,
    -- The job the tick created (no foreign key: retention may prune old jobs); NULL if skipped.
    job_id          TEXT,
    -- created | skipped
    outcome         TEXT NOT NULL,
    -- Why it was skipped (overlap, …).
    reason          TEXT,
    -- 1 while the job waits for the previous run to finish (`overlap: queue`).
    waiting         INTEGER NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    UNIQUE (schedule_name, scheduled_for)
);

CREATE INDEX schedule_runs_job ON schedule_runs (job_id);
CREATE INDEX schedule_runs_waiting ON schedule_runs (waiting);
