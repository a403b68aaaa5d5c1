-- Token counts as columns of the three tables that keep an upstream usage object (`jobs`,
-- `job_summaries`, `duplicate_responses`), so stats sum integers instead of reading every row's
-- JSON (`stats_since(30d)` took 827 ms at 100,000 jobs, most of it in `json_extract`), and an
-- index on each of the two job tables that holds everything the stats query reads. (The index
-- expressions are SQLite's JSON; PostgreSQL would index the columns.)
--
-- Each column is NULL exactly when `usage` is NULL (nothing known yet), else the count read
-- from `usage`:
--
-- - `input_tokens`, `cached_tokens` (`input_tokens_details.cached_tokens`), `output_tokens`,
--   `reasoning_tokens` (`output_tokens_details.reasoning_tokens`): the value at that path if
--   it is a JSON integer from 0 to 2^63 - 1; anything else (missing, null, true/false, a
--   string, a fraction, a negative or larger number) counts 0, and so does every count of a
--   `usage` that is not valid JSON;
-- - `total_tokens`: `total_tokens` by the same rule when it is such an integer, else
--   `input_tokens + output_tokens` (capped at 2^63 - 1). Before this migration stats did the
--   same with `COALESCE(total_tokens, input_tokens + output_tokens)`.
--
-- Every write of `usage` sets the columns in the same statement, from
-- `TokenCounts::from_usage` (src/store/tokens.rs), which follows these rules; a test holds it
-- to the same answers as the backfill below. Portable types only.

ALTER TABLE jobs ADD COLUMN input_tokens BIGINT;
ALTER TABLE jobs ADD COLUMN cached_tokens BIGINT;
ALTER TABLE jobs ADD COLUMN output_tokens BIGINT;
ALTER TABLE jobs ADD COLUMN reasoning_tokens BIGINT;
ALTER TABLE jobs ADD COLUMN total_tokens BIGINT;

ALTER TABLE job_summaries ADD COLUMN input_tokens BIGINT;
ALTER TABLE job_summaries ADD COLUMN cached_tokens BIGINT;
ALTER TABLE job_summaries ADD COLUMN output_tokens BIGINT;
ALTER TABLE job_summaries ADD COLUMN reasoning_tokens BIGINT;
ALTER TABLE job_summaries ADD COLUMN total_tokens BIGINT;

ALTER TABLE duplicate_responses ADD COLUMN input_tokens BIGINT;
ALTER TABLE duplicate_responses ADD COLUMN cached_tokens BIGINT;
ALTER TABLE duplicate_responses ADD COLUMN output_tokens BIGINT;
ALTER TABLE duplicate_responses ADD COLUMN reasoning_tokens BIGINT;
ALTER TABLE duplicate_responses ADD COLUMN total_tokens BIGINT;

-- The backfill: the counts of every distinct usage object, read once by the rules above,
-- then copied to each row that holds it.
CREATE TEMP TABLE usage_counts (
    usage            TEXT PRIMARY KEY,
    input_tokens     BIGINT NOT NULL,
    cached_tokens    BIGINT NOT NULL,
    output_tokens    BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    total_tokens     BIGINT NOT NULL
);

INSERT INTO usage_counts
SELECT usage, i, c, o, r, COALESCE(t, min(i + o, 9223372036854775807))
FROM (
    SELECT
        usage,
        CASE WHEN i_type = 'integer' AND typeof(i_value) = 'integer' AND i_value >= 0
             THEN i_value ELSE 0 END AS i,
        CASE WHEN c_type = 'integer' AND typeof(c_value) = 'integer' AND c_value >= 0
             THEN c_value ELSE 0 END AS c,
        CASE WHEN o_type = 'integer' AND typeof(o_value) = 'integer' AND o_value >= 0
             THEN o_value ELSE 0 END AS o,
        CASE WHEN r_type = 'integer' AND typeof(r_value) = 'integer' AND r_value >= 0
             THEN r_value ELSE 0 END AS r,
        -- NULL when not a count: the sum above stands in.
        CASE WHEN t_type = 'integer' AND typeof(t_value) = 'integer' AND t_value >= 0
             THEN t_value END AS t
    FROM (
        -- json_type tells an integer from true/false (json_extract gives 1 and 0 for those);
        -- typeof tells it from one too large for 64 bits (json_extract gives a real).
        SELECT
            usage,
            json_type(u, '$.input_tokens') AS i_type,
            json_extract(u, '$.input_tokens') AS i_value,
            json_type(u, '$.input_tokens_details.cached_tokens') AS c_type,
            json_extract(u, '$.input_tokens_details.cached_tokens') AS c_value,
            json_type(u, '$.output_tokens') AS o_type,
            json_extract(u, '$.output_tokens') AS o_value,
            json_type(u, '$.output_tokens_details.reasoning_tokens') AS r_type,
            json_extract(u, '$.output_tokens_details.reasoning_tokens') AS r_value,
            json_type(u, '$.total_tokens') AS t_type,
            json_extract(u, '$.total_tokens') AS t_value
        FROM (
            SELECT usage, CASE WHEN json_valid(usage) THEN usage ELSE '{}' END AS u
            FROM (SELECT usage FROM jobs
                  UNION SELECT usage FROM job_summaries
                  UNION SELECT usage FROM duplicate_responses)
            WHERE usage IS NOT NULL
        )
    )
);

UPDATE jobs SET input_tokens = c.input_tokens, cached_tokens = c.cached_tokens,
    output_tokens = c.output_tokens, reasoning_tokens = c.reasoning_tokens,
    total_tokens = c.total_tokens
FROM usage_counts c WHERE c.usage = jobs.usage;

UPDATE job_summaries SET input_tokens = c.input_tokens, cached_tokens = c.cached_tokens,
    output_tokens = c.output_tokens, reasoning_tokens = c.reasoning_tokens,
    total_tokens = c.total_tokens
FROM usage_counts c WHERE c.usage = job_summaries.usage;

UPDATE duplicate_responses SET input_tokens = c.input_tokens, cached_tokens = c.cached_tokens,
    output_tokens = c.output_tokens, reasoning_tokens = c.reasoning_tokens,
    total_tokens = c.total_tokens
FROM usage_counts c WHERE c.usage = duplicate_responses.usage;

DROP TABLE usage_counts;

-- What stats read of a job, in the order they group it: the quarter hour it was created in
-- (900,000 ms: `STATS_BUCKET_MS` in src/store/stats.rs), model, name, status, then its creation
-- time (to cut the first quarter hour) and its record as the stats query packs it. SQLite
-- reads an indexed expression from the index instead of computing it again, so the query
-- reads one range of an index and computes nothing per job (see src/store/stats.rs).
CREATE INDEX jobs_stats ON jobs (created_at / 900000, model, name, status, created_at,
    json_array(created_at / 900000, status, model, name, input_tokens, cached_tokens,
               output_tokens, reasoning_tokens, total_tokens));
CREATE INDEX job_summaries_stats ON job_summaries (created_at / 900000, model, name, status,
    created_at,
    json_array(created_at / 900000, status, model, name, input_tokens, cached_tokens,
               output_tokens, reasoning_tokens, total_tokens));
