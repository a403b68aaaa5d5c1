-- Two indexes for the ledger's housekeeping, which runs up to four times a second. Each of its
-- checks below walked every unfinished or every waiting job and read its row: about 9 ms with
-- 10,000 jobs, most of the daemon's idle CPU. Each index holds only the rows its check can
-- take, so a check reads the few rows that are due. Their WHERE must stay the one of the
-- statements that name them in `INDEXED BY` (src/store/observations.rs), or SQLite cannot
-- use them (the statement then fails, which `plans.rs` tests).

-- The jobs whose deadline may fall due (`DUE_TIMEOUTS`): unfinished, with a deadline, not yet
-- being cancelled, in deadline order.
CREATE INDEX jobs_deadline_due ON jobs (deadline_at)
    WHERE deadline_at IS NOT NULL AND cancel_requested = 0
      AND status IN ('pending', 'held', 'queued', 'in_progress') AND quarantine IS NULL;

-- Never-sent jobs asked to be cancelled (`CANCELLABLE_UNSUBMITTED`): it walked every job of a
-- backlog waiting to be submitted.
CREATE INDEX jobs_cancel_unsent ON jobs (id)
    WHERE cancel_requested = 1 AND status IN ('pending', 'held') AND submit_state = 'ready'
      AND quarantine IS NULL;
