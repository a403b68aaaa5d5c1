-- Knowledge sets (`knowledge:` of a job): one vector store per set name, and which files are
-- in it. Portable types only.

-- A set's vector store. `creating` is a claim (its `owner` and `lease_until`) taken before
-- the store is created upstream, so a lost answer leaves a trace: the next claim looks for
-- the store upstream (by its name, created since `started_at`) before creating another.
CREATE TABLE knowledge_stores (
    name             TEXT PRIMARY KEY,
    state            TEXT NOT NULL CHECK (state IN ('creating', 'ready')),
    vector_store_id  TEXT,
    owner            TEXT,
    lease_until      INTEGER,
    started_at       INTEGER NOT NULL,
    -- When the store was last seen upstream, not expired.
    verified_at      INTEGER,
    last_used_at     INTEGER NOT NULL,
    CHECK ((state = 'ready') = (vector_store_id IS NOT NULL))
);

-- The files attached to a set's store, by content, with the processing status upstream
-- reported last (`in_progress`, `completed`, `failed`, `cancelled`).
CREATE TABLE knowledge_files (
    name        TEXT NOT NULL REFERENCES knowledge_stores (name) ON DELETE CASCADE,
    sha256      TEXT NOT NULL,
    file_id     TEXT NOT NULL,
    filename    TEXT NOT NULL,
    status      TEXT NOT NULL,
    last_error  TEXT,
    attached_at INTEGER NOT NULL,
    PRIMARY KEY (name, sha256)
);

-- The files of a job's knowledge sets are named by the job too (so retention keeps their
-- bytes while it exists): `knowledge` is the set's name, NULL for the job's own attachments.
ALTER TABLE job_attachments ADD COLUMN knowledge TEXT;
