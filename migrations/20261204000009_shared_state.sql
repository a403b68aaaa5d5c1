-- State that every daemon on the database must share, rather than each keep in its memory.
--
-- The latest upstream rate-limit window seen per model, from the `x-ratelimit-*` headers of a
-- create's answer (whichever daemon made the call). Before claiming submissions each daemon
-- reads it and defers a model's creates while its remaining requests or tokens are at the
-- low-water mark, until the reset. A write only replaces an older observation (`observed_at`).
-- One row per model ever created with, overwritten in place: the table stays small, and a
-- window past both resets is simply ignored. Times are unix milliseconds.

CREATE TABLE rate_limit_windows (
    model               TEXT PRIMARY KEY,
    -- `x-ratelimit-remaining-requests` / `-tokens`; NULL when the answer did not say.
    remaining_requests  BIGINT,
    remaining_tokens    BIGINT,
    -- When each limit is back to full: the answer's time plus `x-ratelimit-reset-*`.
    requests_reset_at   BIGINT NOT NULL,
    tokens_reset_at     BIGINT NOT NULL,
    -- When the answer arrived.
    observed_at         BIGINT NOT NULL
);
