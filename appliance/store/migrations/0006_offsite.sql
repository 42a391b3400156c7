-- Offsite replication: data keys, targets, per-client policy, the streams sent to each target (with the
-- chunk they reached, so an interrupted upload resumes), verification drills and backlog samples.

-- Data keys. Only one is active (retired_at IS NULL); older ones stay to read the streams they wrote.
CREATE TABLE offsite_keys (
    id               TEXT PRIMARY KEY,               -- 16 hex digits, written into every stream header
    created_at       REAL NOT NULL,
    retired_at       REAL,
    local_wrapped    BLOB NOT NULL,                  -- AES-256-GCM under the appliance's key file
    kit_entry        TEXT NOT NULL,                  -- JSON: the key wrapped by the passphrase (scrypt)
    kit_exported_at  REAL
);

CREATE TABLE offsite_targets (
    name        TEXT PRIMARY KEY,                    -- [a-z][a-z0-9-]*
    type        TEXT NOT NULL CHECK (type IN ('local', 'sftp', 's3')),
    config      TEXT NOT NULL,                       -- JSON without secrets
    secret      TEXT,                                -- S3 secret key or SSH private key; never shown back
    keep_chains INTEGER NOT NULL DEFAULT 2,          -- target-side retention: complete chains kept
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);

-- Replication policy of one client to one target.
CREATE TABLE offsite_policies (
    client          TEXT NOT NULL,
    target          TEXT NOT NULL REFERENCES offsite_targets (name) ON DELETE CASCADE,
    enabled         INTEGER NOT NULL DEFAULT 1,
    interval_s      INTEGER NOT NULL DEFAULT 86400,
    chain_length    INTEGER NOT NULL DEFAULT 30,     -- a new full after this many streams in a chain
    chain_age_s     INTEGER NOT NULL DEFAULT 2592000,-- … or when the chain's full is older than this
    bandwidth       TEXT NOT NULL DEFAULT '[]',      -- JSON: [{"window": "08:00-18:00", "kbps": 2000}, …]
    default_kbps    INTEGER,                         -- outside every window; NULL = unlimited
    next_run_at     REAL,
    last_run_at     REAL,
    last_job_id     INTEGER,
    PRIMARY KEY (client, target)
);

-- One stream per (target, dataset, snapshot): what was sent, where it stopped, what it holds.
CREATE TABLE offsite_streams (
    id            TEXT PRIMARY KEY,                  -- 32 hex digits, random
    target        TEXT NOT NULL,
    client        TEXT NOT NULL,
    area          TEXT NOT NULL,                     -- 'share', 'files', 'images/0', …
    chain_id      TEXT NOT NULL,
    seq           INTEGER NOT NULL,                  -- 0 for the full, 1… for incrementals
    snapshot      TEXT NOT NULL,                     -- the snapshot's short name
    base          TEXT,                              -- short name of the incremental base
    key_id        TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('uploading', 'complete', 'abandoned')),
    chunks_done   INTEGER NOT NULL DEFAULT 0,
    plain_bytes   INTEGER NOT NULL DEFAULT 0,
    stored_bytes  INTEGER NOT NULL DEFAULT 0,
    started_at    REAL NOT NULL,
    completed_at  REAL,
    seconds       REAL NOT NULL DEFAULT 0,           -- time spent uploading (for the observed rate)
    manifest_sha256 TEXT                             -- SHA-256 of the stored stream manifest, once complete
);
CREATE INDEX offsite_streams_by_client ON offsite_streams (target, client, area, state);

CREATE TABLE offsite_verifications (
    id        INTEGER PRIMARY KEY,
    client    TEXT NOT NULL,
    target    TEXT NOT NULL,
    at        REAL NOT NULL,
    ok        INTEGER NOT NULL,
    detail    TEXT NOT NULL                          -- JSON: streams, chunks, files compared, error
);
CREATE INDEX offsite_verifications_by_client ON offsite_verifications (client, target, at);

CREATE TABLE offsite_backlog_samples (
    client         TEXT NOT NULL,
    target         TEXT NOT NULL,
    at             REAL NOT NULL,
    pending_bytes  INTEGER NOT NULL,
    PRIMARY KEY (client, target, at)
);
