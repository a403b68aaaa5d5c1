-- Claims walk an index in the order they take rows, instead of sorting the backlog per claim
-- (issue "Fast under load"). `src/store/plans.rs` checks each claim's plan.

-- The submit claim: `ORDER BY priority DESC, created_at, id` over ready pending jobs. With
-- `jobs_claim` (status, submit_state, priority, created_at) SQLite sorted each priority's jobs
-- for every claim (a temporary B-tree of the whole backlog when all share one priority).
DROP INDEX jobs_claim;
CREATE INDEX jobs_submit_order ON jobs (priority DESC, created_at, id)
    WHERE status = 'pending' AND submit_state = 'ready';

-- The poll claim: unfinished jobs with a response, oldest due first.
CREATE INDEX jobs_poll_due ON jobs (next_check_at)
    WHERE status IN ('pending', 'queued', 'in_progress') AND response_id IS NOT NULL;

-- The outbox claims each sink's due rows, oldest due first.
CREATE INDEX notifications_sink_due ON notifications (state, sink, next_attempt_at);

-- The jobs in flight, counted by model before every submit claim (limits): a small index of
-- those rows only, read instead of the table.
CREATE INDEX jobs_in_flight ON jobs (model)
    WHERE status IN ('queued', 'in_progress') OR (status = 'pending' AND submit_state <> 'ready');
