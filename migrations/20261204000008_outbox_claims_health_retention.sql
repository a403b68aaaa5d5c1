-- Fencing for the outbox, a row `/readyz` writes to, and what retention keeps of pruned
-- schedule runs. Portable types only; times are unix milliseconds.

-- Bumped by every claim of the row and never reset (`attempts` is reset by a manual retry):
-- the token a delivery's closing write (delivered / failed) must still match, so a worker
-- whose lease ran out and whose row was claimed again changes nothing.
ALTER TABLE notifications ADD COLUMN claim INTEGER NOT NULL DEFAULT 0;

-- One row, updated by `/readyz` inside a write transaction: proof that the main database
-- takes a write (not a TEMP table, which a read-only file or a held write lock would allow).
CREATE TABLE health (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at  BIGINT NOT NULL
);
INSERT INTO health (id, checked_at) VALUES (1, 0);

-- Runs retention deleted, per schedule, so "jobs created so far" still counts them.
ALTER TABLE schedules ADD COLUMN runs_pruned INTEGER NOT NULL DEFAULT 0;

-- Retention of schedule runs looks them up by age.
CREATE INDEX schedule_runs_scheduled_for ON schedule_runs (scheduled_for);
-- Retention of retired webhook secrets.
CREATE INDEX webhook_secrets_expires_at ON webhook_secrets (expires_at);
-- Retention checks a job's undelivered notifications before pruning it.
CREATE INDEX notifications_job_state ON notifications (job_id, state);
