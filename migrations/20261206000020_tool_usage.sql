-- Tool usage and service tier as columns of the three tables that keep what a response cost
-- (`jobs`, `job_summaries`, `duplicate_responses`), next to the token columns of
-- `20261205000012_token_columns`, so budgets and stats price tool fees and tiers from
-- integers, never from each response's JSON:
--
-- - `web_search_calls`: the response's `web_search_call` output items;
-- - `web_search_preview_calls`: all of them when every web search tool the response lists
--   in `tools` is a `web_search_preview…` one (and it lists one), else 0;
-- - `file_search_calls`: its `file_search_call` items;
-- - `code_containers`: the distinct non-empty `container_id` strings of its
--   `code_interpreter_call` items;
-- - `images`: its `image_generation_call` items whose `status` is not `failed`;
-- - `image_fee_microusd`: their price in millionths of a dollar, by `quality` (`low`,
--   `medium`, `high`; anything else `medium`) and `size` (`1024x1024`, `1024x1536`,
--   `1536x1024`; anything else `1024x1024`) at the built-in gpt-image-1 prices (a configured
--   `tool_pricing.image_generation` applies to jobs that end after it is set);
-- - `service_tier`: the response's `service_tier` when it is a string of 1 to 32 ASCII
--   letters, digits, `_` or `-`, else NULL.
--
-- An item counts only if it is an object whose `type` is that string. The six counts are NULL
-- until the job's final response is recorded, then all set; every write of a final response
-- sets them in the same transaction, from `ToolUsage::from_response` (src/pricing/tools.rs),
-- which follows these rules; a test (src/store/tool_usage/tests.rs) holds it to the same
-- answers as the backfill below. Portable types only.

ALTER TABLE jobs ADD COLUMN web_search_calls BIGINT;
ALTER TABLE jobs ADD COLUMN web_search_preview_calls BIGINT;
ALTER TABLE jobs ADD COLUMN file_search_calls BIGINT;
ALTER TABLE jobs ADD COLUMN code_containers BIGINT;
ALTER TABLE jobs ADD COLUMN images BIGINT;
ALTER TABLE jobs ADD COLUMN image_fee_microusd BIGINT;
ALTER TABLE jobs ADD COLUMN service_tier TEXT;

ALTER TABLE job_summaries ADD COLUMN web_search_calls BIGINT;
ALTER TABLE job_summaries ADD COLUMN web_search_preview_calls BIGINT;
ALTER TABLE job_summaries ADD COLUMN file_search_calls BIGINT;
ALTER TABLE job_summaries ADD COLUMN code_containers BIGINT;
ALTER TABLE job_summaries ADD COLUMN images BIGINT;
ALTER TABLE job_summaries ADD COLUMN image_fee_microusd BIGINT;
ALTER TABLE job_summaries ADD COLUMN service_tier TEXT;

ALTER TABLE duplicate_responses ADD COLUMN web_search_calls BIGINT;
ALTER TABLE duplicate_responses ADD COLUMN web_search_preview_calls BIGINT;
ALTER TABLE duplicate_responses ADD COLUMN file_search_calls BIGINT;
ALTER TABLE duplicate_responses ADD COLUMN code_containers BIGINT;
ALTER TABLE duplicate_responses ADD COLUMN images BIGINT;
ALTER TABLE duplicate_responses ADD COLUMN image_fee_microusd BIGINT;
ALTER TABLE duplicate_responses ADD COLUMN service_tier TEXT;

-- The backfill: every finished job and duplicate with a stored response (`response` is the
-- whole Response JSON as received; text that is not JSON counts nothing). Summaries of pruned
-- jobs keep no response: their columns stay NULL (no tool fees, the standard tier).
--
-- The responses stream through (nothing but the counts is copied). Each item is read through
-- the response and its path (`fullkey`), never through its own text: `json_each` hands a
-- string element over unquoted, which is not JSON.
CREATE TEMP TABLE tool_counts AS
WITH finished (tbl, key, r) AS (
    SELECT 'jobs', id, CASE WHEN json_valid(response) THEN response ELSE '{}' END
    FROM jobs
    WHERE status IN ('completed', 'failed', 'incomplete', 'cancelled') AND response IS NOT NULL
    UNION ALL
    SELECT 'duplicate_responses', response_id,
           CASE WHEN json_valid(response) THEN response ELSE '{}' END
    FROM duplicate_responses
    WHERE status IN ('completed', 'failed', 'incomplete', 'cancelled') AND response IS NOT NULL
)
SELECT tbl, key, ws, CASE WHEN preview THEN ws ELSE 0 END AS wsp, fs, cc, im, fee, tier
FROM (
    SELECT
        tbl,
        key,
        (SELECT COUNT(*) FROM json_each(r, '$.output')
          WHERE json_type(r, '$.output') = 'array'
            AND json_extract(r, fullkey || '.type') = 'web_search_call') AS ws,
        (SELECT COUNT(*) FROM json_each(r, '$.output')
          WHERE json_type(r, '$.output') = 'array'
            AND json_extract(r, fullkey || '.type') = 'file_search_call') AS fs,
        (SELECT COUNT(DISTINCT json_extract(r, fullkey || '.container_id'))
           FROM json_each(r, '$.output')
          WHERE json_type(r, '$.output') = 'array'
            AND json_extract(r, fullkey || '.type') = 'code_interpreter_call'
            AND json_type(r, fullkey || '.container_id') = 'text'
            AND json_extract(r, fullkey || '.container_id') <> '') AS cc,
        (SELECT COUNT(*) FROM json_each(r, '$.output')
          WHERE json_type(r, '$.output') = 'array'
            AND json_extract(r, fullkey || '.type') = 'image_generation_call'
            AND json_extract(r, fullkey || '.status') IS NOT 'failed') AS im,
        (SELECT COALESCE(SUM(
                  CASE json_extract(r, fullkey || '.quality')
                    WHEN 'low' THEN CASE json_extract(r, fullkey || '.size')
                      WHEN '1024x1536' THEN 16000 WHEN '1536x1024' THEN 16000 ELSE 11000 END
                    WHEN 'high' THEN CASE json_extract(r, fullkey || '.size')
                      WHEN '1024x1536' THEN 250000 WHEN '1536x1024' THEN 250000 ELSE 167000 END
                    ELSE CASE json_extract(r, fullkey || '.size')
                      WHEN '1024x1536' THEN 63000 WHEN '1536x1024' THEN 63000 ELSE 42000 END
                  END), 0)
           FROM json_each(r, '$.output')
          WHERE json_type(r, '$.output') = 'array'
            AND json_extract(r, fullkey || '.type') = 'image_generation_call'
            AND json_extract(r, fullkey || '.status') IS NOT 'failed') AS fee,
        EXISTS (SELECT 1 FROM json_each(r, '$.tools')
                 WHERE json_type(r, '$.tools') = 'array'
                   AND json_type(r, fullkey || '.type') = 'text'
                   AND substr(json_extract(r, fullkey || '.type'), 1, 10) = 'web_search')
        AND NOT EXISTS (SELECT 1 FROM json_each(r, '$.tools')
                 WHERE json_type(r, '$.tools') = 'array'
                   AND json_type(r, fullkey || '.type') = 'text'
                   AND substr(json_extract(r, fullkey || '.type'), 1, 10) = 'web_search'
                   AND substr(json_extract(r, fullkey || '.type'), 1, 18)
                       <> 'web_search_preview') AS preview,
        CASE WHEN json_type(r, '$.service_tier') = 'text'
                  AND length(json_extract(r, '$.service_tier')) BETWEEN 1 AND 32
                  AND json_extract(r, '$.service_tier') NOT GLOB '*[^A-Za-z0-9_-]*'
             THEN json_extract(r, '$.service_tier') END AS tier
    FROM finished
);

UPDATE jobs SET web_search_calls = c.ws, web_search_preview_calls = c.wsp,
    file_search_calls = c.fs, code_containers = c.cc, images = c.im,
    image_fee_microusd = c.fee, service_tier = c.tier
FROM tool_counts c WHERE c.tbl = 'jobs' AND c.key = jobs.id;

UPDATE duplicate_responses SET web_search_calls = c.ws, web_search_preview_calls = c.wsp,
    file_search_calls = c.fs, code_containers = c.cc, images = c.im,
    image_fee_microusd = c.fee, service_tier = c.tier
FROM tool_counts c
WHERE c.tbl = 'duplicate_responses' AND c.key = duplicate_responses.response_id;

DROP TABLE tool_counts;

-- The stats indexes again, their records with the new columns (what stats read of a job; see
-- `20261205000012_token_columns` and src/store/stats.rs, which repeats these expressions
-- word for word).
DROP INDEX jobs_stats;
DROP INDEX job_summaries_stats;
CREATE INDEX jobs_stats ON jobs (created_at / 900000, model, name, status, created_at,
    json_array(created_at / 900000, status, model, name, input_tokens, cached_tokens,
               output_tokens, reasoning_tokens, total_tokens, service_tier, web_search_calls,
               web_search_preview_calls, file_search_calls, code_containers, images,
               image_fee_microusd));
CREATE INDEX job_summaries_stats ON job_summaries (created_at / 900000, model, name, status,
    created_at,
    json_array(created_at / 900000, status, model, name, input_tokens, cached_tokens,
               output_tokens, reasoning_tokens, total_tokens, service_tier, web_search_calls,
               web_search_preview_calls, file_search_calls, code_containers, images,
               image_fee_microusd));
