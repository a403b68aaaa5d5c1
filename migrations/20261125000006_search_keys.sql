-- Full-text search keyed by a stable integer, and indexes for the history's common filters.
--
-- `jobs_fts` (20261125000005) found its row for a job by an UNINDEXED `job_id` column, so the
-- triggers that keep it in step scanned the whole index on every job that finished or was
-- pruned (221 ms a job at 100,000 jobs, inside the write transaction), and a search read the
-- stored text of every match to learn its job id. Now each job gets an integer key in
-- `jobs_fts_keys` (an explicit INTEGER PRIMARY KEY: VACUUM keeps it) which is the FTS row's
-- rowid, so every lookup is by key. The index keeps no copy of the text
-- (`contentless_delete`: rows are deleted by rowid; a changed job is deleted and indexed
-- again), which also halves the search's share of the file.
--
-- The input text is the spec's `input` when it is a string, else the text parts of its item
-- list (`text` of content parts, and `content` when an item's content is a plain string).

DROP TRIGGER jobs_fts_after_insert;
DROP TRIGGER jobs_fts_after_update;
DROP TRIGGER jobs_fts_after_delete;
DROP TABLE jobs_fts;

CREATE TABLE jobs_fts_keys (
    fts_id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL UNIQUE
);

CREATE VIRTUAL TABLE jobs_fts USING fts5 (
    name,
    input,
    output,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER jobs_fts_after_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO jobs_fts_keys (job_id) VALUES (new.id);
    INSERT INTO jobs_fts (rowid, name, input, output)
    VALUES (
        (SELECT fts_id FROM jobs_fts_keys WHERE job_id = new.id),
        new.name,
        CASE json_type(new.spec, '$.request.input')
            WHEN 'text' THEN json_extract(new.spec, '$.request.input')
            ELSE (SELECT group_concat(value, ' ') FROM json_tree(new.spec, '$.request.input')
                  WHERE type = 'text' AND key IN ('text', 'content'))
        END,
        new.output_text
    );
END;

CREATE TRIGGER jobs_fts_after_update AFTER UPDATE OF name, output_text ON jobs
WHEN old.name IS NOT new.name OR old.output_text IS NOT new.output_text
BEGIN
    DELETE FROM jobs_fts WHERE rowid = (SELECT fts_id FROM jobs_fts_keys WHERE job_id = new.id);
    INSERT INTO jobs_fts (rowid, name, input, output)
    VALUES (
        (SELECT fts_id FROM jobs_fts_keys WHERE job_id = new.id),
        new.name,
        CASE json_type(new.spec, '$.request.input')
            WHEN 'text' THEN json_extract(new.spec, '$.request.input')
            ELSE (SELECT group_concat(value, ' ') FROM json_tree(new.spec, '$.request.input')
                  WHERE type = 'text' AND key IN ('text', 'content'))
        END,
        new.output_text
    );
END;

CREATE TRIGGER jobs_fts_after_delete AFTER DELETE ON jobs BEGIN
    DELETE FROM jobs_fts WHERE rowid = (SELECT fts_id FROM jobs_fts_keys WHERE job_id = old.id);
    DELETE FROM jobs_fts_keys WHERE job_id = old.id;
END;

-- Jobs already in the ledger, oldest first.
INSERT INTO jobs_fts_keys (job_id) SELECT id FROM jobs ORDER BY created_at, id;
INSERT INTO jobs_fts (rowid, name, input, output)
SELECT
    k.fts_id,
    j.name,
    CASE json_type(j.spec, '$.request.input')
        WHEN 'text' THEN json_extract(j.spec, '$.request.input')
        ELSE (SELECT group_concat(value, ' ') FROM json_tree(j.spec, '$.request.input')
              WHERE type = 'text' AND key IN ('text', 'content'))
    END,
    j.output_text
FROM jobs j JOIN jobs_fts_keys k ON k.job_id = j.id;

-- The job list filtered by status or model, newest first, reads a page instead of sorting
-- every match; stats over a window of pruned jobs no longer scan all their summaries.
CREATE INDEX jobs_status_created ON jobs (status, created_at, id);
CREATE INDEX jobs_model_created ON jobs (model, created_at, id);
CREATE INDEX job_summaries_created_at ON job_summaries (created_at);
