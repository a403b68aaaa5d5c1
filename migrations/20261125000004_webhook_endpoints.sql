-- Signing secrets of the webhook endpoints respool registered upstream itself (`respool webhook
-- register` / `rotate`). The receiver accepts every active secret until its `expires_at`, next
-- to the config's `webhook.secrets`. Times are unix milliseconds.

CREATE TABLE webhook_secrets (
    id           INTEGER PRIMARY KEY,
    -- The upstream webhook endpoint (`we_…`) the secret signs for.
    endpoint_id  TEXT NOT NULL,
    -- The `whsec_…` secret itself: never shown by the API or logged, only its last 4 characters.
    secret       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    -- When it stops being accepted: set on the old secret by a rotation that keeps it 24 hours;
    -- NULL while it is the endpoint's current secret.
    expires_at   BIGINT,
    -- 1 while accepted; 0 once retired (past its expiry).
    active       INTEGER NOT NULL DEFAULT 1
);

CREATE INDEX webhook_secrets_endpoint ON webhook_secrets (endpoint_id, id);
