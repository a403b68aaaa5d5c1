-- Submission order and budgets on the ledger, and summaries of pruned jobs.
-- Portable types only; times are unix milliseconds.

-- `priority` from the job spec: the submit claim takes the highest first, then the oldest.
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
-- 1 when the spec says `budget_exempt: true`: never held by a budget.
ALTER TABLE jobs ADD COLUMN budget_exempt INTEGER NOT NULL DEFAULT 0;

-- The submit claim: ready pending jobs by priority, then age.
CREATE INDEX jobs_claim ON jobs (status, submit_state, priority, created_at);
-- Spend per period and retention both look at finished jobs by time.
CREATE INDEX jobs_finished_at ON jobs (finished_at);
-- Pruning deliveries by age.
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);

-- What is kept of a finished job after `retention.jobs` pruned it (with `keep_summary`), so
-- spend and counts still include it.
CREATE TABLE job_summaries (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    model          TEXT NOT NULL,
    status         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    submitted_at   BIGINT,
    finished_at    BIGINT NOT NULL,
    -- The upstream usage object (JSON), as the job had it.
    usage          TEXT,
    -- Cost in millionths of a dollar with the prices in force when it was pruned; NULL when
    -- the model had no price.
    cost_microusd  BIGINT,
    error_code     TEXT,
    pruned_at      BIGINT NOT NULL
);

CREATE INDEX job_summaries_finished_at ON job_summaries (finished_at);
