-- Artifacts: what a finished response made besides its text — generated images (decoded from
-- the response's `image_generation_call` items) and the files code interpreter left in its
-- containers (downloaded before the container expires). The bytes are files on disk under the
-- artifact directory (`artifacts.dir`, by default `artifacts/` beside the database), one
-- folder per job; this table says what each is. Written in the transaction that records the
-- job's end, so a job's artifacts are listed exactly when its end is. Portable types only.
CREATE TABLE artifacts (
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- The file's name in the job's folder: unique per job, a plain file name (no `/`).
    name        TEXT NOT NULL,
    position    INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('image', 'container_file')),
    media_type  TEXT NOT NULL,
    -- Bytes on disk: 0 when `error` says why it could not be kept.
    bytes       INTEGER NOT NULL CHECK (bytes >= 0),
    sha256      TEXT,
    -- Where it came from: the output item id of an image, `container_id/file_id` of a file.
    source      TEXT NOT NULL,
    -- The file's path in its container (`/mnt/data/results.csv`), for container files.
    path        TEXT,
    -- Why the artifact is listed but has no bytes (the container expired, it was too large).
    error       TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (job_id, name)
);
