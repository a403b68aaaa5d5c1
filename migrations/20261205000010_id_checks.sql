-- Ids are checked where they enter (the API, the jobs file, respool's own generator), and the
-- store reads them back as typed ids (`JobId`, `ResponseId`). A row holding an id no reader can
-- decode (a hand edit) would stop every pass that lists it; these triggers refuse such a write,
-- naming the rule, so the ledger keeps only ids it can read.

CREATE TRIGGER jobs_ids_insert BEFORE INSERT ON jobs
WHEN NOT ((length(NEW.id) = 30 AND NEW.id GLOB 'job_*' AND substr(NEW.id, 5) NOT GLOB '*[^0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]*') AND (NEW.response_id IS NULL OR (length(NEW.response_id) BETWEEN 1 AND 128 AND NEW.response_id NOT GLOB '*[^A-Za-z0-9_-]*')) AND (NEW.retry_of IS NULL OR (length(NEW.retry_of) = 30 AND NEW.retry_of GLOB 'job_*' AND substr(NEW.retry_of, 5) NOT GLOB '*[^0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]*')))
BEGIN
    SELECT RAISE(ABORT, 'respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U); a response id is 1 to 128 of A-Z, a-z, 0-9, _ and -');
END;

CREATE TRIGGER jobs_ids_update BEFORE UPDATE OF id, response_id, retry_of ON jobs
WHEN NOT ((length(NEW.id) = 30 AND NEW.id GLOB 'job_*' AND substr(NEW.id, 5) NOT GLOB '*[^0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]*') AND (NEW.response_id IS NULL OR (length(NEW.response_id) BETWEEN 1 AND 128 AND NEW.response_id NOT GLOB '*[^A-Za-z0-9_-]*')) AND (NEW.retry_of IS NULL OR (length(NEW.retry_of) = 30 AND NEW.retry_of GLOB 'job_*' AND substr(NEW.retry_of, 5) NOT GLOB '*[^0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]*')))
BEGIN
    SELECT RAISE(ABORT, 'respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U); a response id is 1 to 128 of A-Z, a-z, 0-9, _ and -');
END;

CREATE TRIGGER job_events_ids_insert BEFORE INSERT ON job_events
WHEN NOT ((length(NEW.job_id) = 30 AND NEW.job_id GLOB 'job_*' AND substr(NEW.job_id, 5) NOT GLOB '*[^0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]*'))
BEGIN
    SELECT RAISE(ABORT, 'respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U)');
END;

CREATE TRIGGER job_events_ids_update BEFORE UPDATE OF job_id ON job_events
WHEN NOT ((length(NEW.job_id) = 30 AND NEW.job_id GLOB 'job_*' AND substr(NEW.job_id, 5) NOT GLOB '*[^0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]*'))
BEGIN
    SELECT RAISE(ABORT, 'respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U)');
END;

CREATE TRIGGER notifications_ids_insert BEFORE INSERT ON notifications
WHEN NOT ((length(NEW.job_id) = 30 AND NEW.job_id GLOB 'job_*' AND substr(NEW.job_id, 5) NOT GLOB '*[^0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]*'))
BEGIN
    SELECT RAISE(ABORT, 'respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U)');
END;

CREATE TRIGGER notifications_ids_update BEFORE UPDATE OF job_id ON notifications
WHEN NOT ((length(NEW.job_id) = 30 AND NEW.job_id GLOB 'job_*' AND substr(NEW.job_id, 5) NOT GLOB '*[^0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]*'))
BEGIN
    SELECT RAISE(ABORT, 'respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U)');
END;

CREATE TRIGGER duplicate_responses_ids_insert BEFORE INSERT ON duplicate_responses
WHEN NOT ((length(NEW.job_id) = 30 AND NEW.job_id GLOB 'job_*' AND substr(NEW.job_id, 5) NOT GLOB '*[^0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]*') AND (length(NEW.response_id) BETWEEN 1 AND 128 AND NEW.response_id NOT GLOB '*[^A-Za-z0-9_-]*'))
BEGIN
    SELECT RAISE(ABORT, 'respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U); a response id is 1 to 128 of A-Z, a-z, 0-9, _ and -');
END;

CREATE TRIGGER duplicate_responses_ids_update BEFORE UPDATE OF job_id, response_id ON duplicate_responses
WHEN NOT ((length(NEW.job_id) = 30 AND NEW.job_id GLOB 'job_*' AND substr(NEW.job_id, 5) NOT GLOB '*[^0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]*') AND (length(NEW.response_id) BETWEEN 1 AND 128 AND NEW.response_id NOT GLOB '*[^A-Za-z0-9_-]*'))
BEGIN
    SELECT RAISE(ABORT, 'respool: a job id is job_ and a ULID (26 of 0-9 and A-Z without I, L, O, U); a response id is 1 to 128 of A-Z, a-z, 0-9, _ and -');
END;
