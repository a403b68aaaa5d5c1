-- The jobs in flight, counted by model: a row per model kept by triggers, read before every
-- submit claim (issue "Fast under load").
--
-- The claim counted them from their index (`jobs_in_flight`) each time: a walk of every job
-- in flight, twice a claim (the submit worker's free slots, then the limits inside the
-- claim), so a backlog of 10,000 jobs going upstream cost about 100 million index steps.
-- "In flight" is what it was: running upstream, or past `ready` in the create (submitting,
-- uncertain). The triggers see every write to `jobs`, whichever daemon makes it, so the
-- counts stay those of the table.

CREATE TABLE in_flight_counts (
    model TEXT PRIMARY KEY,
    n     INTEGER NOT NULL
);

INSERT INTO in_flight_counts (model, n)
SELECT model, COUNT(*) FROM jobs INDEXED BY jobs_in_flight
WHERE status IN ('queued', 'in_progress') OR (status = 'pending' AND submit_state <> 'ready')
GROUP BY model;

CREATE TRIGGER in_flight_counts_insert AFTER INSERT ON jobs
WHEN new.status IN ('queued', 'in_progress') OR (new.status = 'pending' AND new.submit_state <> 'ready')
BEGIN
    INSERT INTO in_flight_counts (model, n) VALUES (new.model, 1)
    ON CONFLICT (model) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER in_flight_counts_delete AFTER DELETE ON jobs
WHEN old.status IN ('queued', 'in_progress') OR (old.status = 'pending' AND old.submit_state <> 'ready')
BEGIN
    UPDATE in_flight_counts SET n = n - 1 WHERE model = old.model;
END;

-- One trigger for leaving and one for entering, so a change of model while in flight moves
-- the count from the old model to the new.
CREATE TRIGGER in_flight_counts_leave AFTER UPDATE OF status, submit_state, model ON jobs
WHEN (old.status IN ('queued', 'in_progress') OR (old.status = 'pending' AND old.submit_state <> 'ready'))
 AND NOT ((new.status IN ('queued', 'in_progress') OR (new.status = 'pending' AND new.submit_state <> 'ready'))
          AND new.model = old.model)
BEGIN
    UPDATE in_flight_counts SET n = n - 1 WHERE model = old.model;
END;

CREATE TRIGGER in_flight_counts_enter AFTER UPDATE OF status, submit_state, model ON jobs
WHEN (new.status IN ('queued', 'in_progress') OR (new.status = 'pending' AND new.submit_state <> 'ready'))
 AND NOT ((old.status IN ('queued', 'in_progress') OR (old.status = 'pending' AND old.submit_state <> 'ready'))
          AND new.model = old.model)
BEGIN
    INSERT INTO in_flight_counts (model, n) VALUES (new.model, 1)
    ON CONFLICT (model) DO UPDATE SET n = n + 1;
END;
