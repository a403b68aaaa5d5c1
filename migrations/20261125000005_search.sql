-- Full-text search over a job's name, input and output text, and a job's link to the job it
-- retries.
--
-- `jobs_fts` is a standalone FTS5 table kept in step with `jobs` by the triggers below, so
-- every write that inserts a job, records its output or deletes it (retention) updates the
-- index in the same transaction, whichever store function made it. The job id is stored
-- (unindexed) rather than borrowing `jobs.rowid`, which VACUUM may renumber.
--
-- The input text is the spec's `input` when it is a string, else the text parts of its item
-- list (`text` of content parts, and `content` when an item's content is a plain string).

CREATE VIRTUAL TABLE jobs_fts USING fts5 (
    job_id UNINDEXED,
    name,
    input,
    output,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER jobs_fts_after_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO jobs_fts (job_id, name, input, output)
    VALUES (
        new.id,
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
    UPDATE jobs_fts SET name = new.name, output = new.output_text WHERE job_id = new.id;
END;

CREATE TRIGGER jobs_fts_after_delete AFTER DELETE ON jobs BEGIN
    DELETE FROM jobs_fts WHERE job_id = old.id;
END;

-- Jobs already in the ledger.
INSERT INTO jobs_fts (job_id, name, input, output)
SELECT
    id,
    name,
    CASE json_type(spec, '$.request.input')
        WHEN 'text' THEN json_extract(spec, '$.request.input')
        ELSE (SELECT group_concat(value, ' ') FROM json_tree(jobs.spec, '$.request.input')
              WHERE type = 'text' AND key IN ('text', 'content'))
    END,
    output_text
FROM jobs;

-- `respool jobs retry`: the job this one was made from (NULL for a job submitted directly).
ALTER TABLE jobs ADD COLUMN retry_of TEXT;
CREATE INDEX jobs_retry_of ON jobs (retry_of) WHERE retry_of IS NOT NULL;
