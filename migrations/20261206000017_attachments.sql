-- Attachments (`attachments:` of a job): the files a job sends with its input, and the cache
-- of what respool uploaded to OpenAI's Files API. Portable types only.

-- A checked file, by id: `att_` and the SHA-256 of its name and bytes (src/job/attachment.rs).
-- Its bytes are kept here, not on one machine's disk, so any daemon on the database can
-- upload it, and a backup of the database has it.
CREATE TABLE attachments (
    id          TEXT PRIMARY KEY,
    filename    TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('document', 'image')),
    bytes       INTEGER NOT NULL CHECK (bytes > 0),
    -- SHA-256 of the bytes alone: the upload cache's key.
    sha256      TEXT NOT NULL,
    data        BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX attachments_sha256 ON attachments (sha256);

-- Which job sends which attachments, in order. Written with the job; an attachment a job
-- names is never deleted (no cascade), and goes with the job's row when retention prunes it.
CREATE TABLE job_attachments (
    job_id        TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    attachment_id TEXT NOT NULL REFERENCES attachments (id),
    PRIMARY KEY (job_id, position)
);
CREATE INDEX job_attachments_attachment ON job_attachments (attachment_id);

-- The upload cache: at most one upstream file per content (SHA-256) and purpose, so the same
-- bytes are never uploaded twice. `uploading` is a claim (its `owner` and `lease_until`) taken
-- before the upload is sent, so a crash or a lost answer leaves a trace: the next claim after
-- the lease looks for the file upstream (same name and size, created since `started_at`)
-- before uploading again. `verified_at`: when the file was last seen to exist upstream.
CREATE TABLE uploads (
    sha256       TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('uploading', 'uploaded')),
    file_id      TEXT,
    filename     TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    owner        TEXT,
    lease_until  INTEGER,
    started_at   INTEGER NOT NULL,
    uploaded_at  INTEGER,
    verified_at  INTEGER,
    last_used_at INTEGER NOT NULL,
    PRIMARY KEY (sha256, purpose),
    CHECK ((state = 'uploaded') = (file_id IS NOT NULL))
);
