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
CREATE INDEX jobs_in_flight ON jobs (model, status, submit_state)
    WHERE status IN ('queued', 'in_progress') OR (status = 'pending' AND submit_state <> 'ready');

-- Webhook deliveries not yet handed to a job are taken oldest due first. A delivery naming a
-- response no job knows yet is looked up a bounded number of times with growing pauses; when
-- it is next due and how often it was looked at now live in the row (they were in one daemon's
-- memory, and the oldest such deliveries filled every page, holding back newer ones).
ALTER TABLE webhook_deliveries ADD COLUMN next_look_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE webhook_deliveries ADD COLUMN looks INTEGER NOT NULL DEFAULT 0;
UPDATE webhook_deliveries SET next_look_at = received_at WHERE handled_at IS NULL;
DROP INDEX webhook_deliveries_unhandled;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_look_at) WHERE handled_at IS NULL;

-- When the ledger worker must look again: the earliest future check of a job in flight.
CREATE INDEX jobs_ledger_due ON jobs (next_check_at)
    WHERE status IN ('queued', 'in_progress') OR (status = 'pending' AND submit_state <> 'ready');

-- Polls a webhook asked for go first: a completion a webhook announced is recorded at once,
-- not after every poll that fell due before it.
CREATE INDEX jobs_poll_hinted ON jobs (next_check_at)
    WHERE wake_pending = 1 AND status IN ('pending', 'queued', 'in_progress') AND response_id IS NOT NULL;
