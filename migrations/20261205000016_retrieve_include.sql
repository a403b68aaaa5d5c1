-- What a job's polls ask upstream to include (`GET /responses/{id}?include[]=…`): the output
-- that OpenAI leaves out of a retrieved Response unless asked for, and that the job's tools
-- produce (web search sources, file search results, code interpreter outputs, computer-use
-- screenshots), plus the job's own `include` list. Comma-separated; NULL for none. Written
-- when the job is taken in, from its spec (`JobSpec::retrieve_include`, src/job/spec.rs);
-- the backfill below follows the same rules for the jobs still running. Portable types only.

ALTER TABLE jobs ADD COLUMN retrieve_include TEXT;

UPDATE jobs SET retrieve_include = (
    SELECT group_concat(v, ',') FROM (
        SELECT DISTINCT v FROM (
            SELECT CASE CASE WHEN t.type = 'object' THEN json_extract(t.value, '$.type') END
                     WHEN 'web_search' THEN 'web_search_call.action.sources'
                     WHEN 'web_search_preview' THEN 'web_search_call.action.sources'
                     WHEN 'web_search_2025_08_26' THEN 'web_search_call.action.sources'
                     WHEN 'web_search_preview_2025_03_11' THEN 'web_search_call.action.sources'
                     WHEN 'file_search' THEN 'file_search_call.results'
                     WHEN 'code_interpreter' THEN 'code_interpreter_call.outputs'
                     WHEN 'computer_use_preview' THEN 'computer_call_output.output.image_url'
                   END AS v
            FROM json_each(jobs.spec, '$.request.tools') AS t
            WHERE json_valid(jobs.spec)
            UNION ALL
            SELECT i.value FROM json_each(jobs.spec, '$.request.include') AS i
            WHERE json_valid(jobs.spec) AND i.type = 'text'
        ) WHERE v IS NOT NULL ORDER BY v
    )
)
WHERE status IN ('pending', 'held', 'queued', 'in_progress') AND json_valid(spec);
