-- Audit trail, per-job log lines, pool capacity samples, and job cancellation and retry timing.

CREATE TABLE audit (
    id        INTEGER PRIMARY KEY,
    at        REAL NOT NULL,
    actor     TEXT NOT NULL,        -- "user:alice", "cli:root", "daemon"
    action    TEXT NOT NULL,        -- "pool.scrub", "user.create", …
    target    TEXT,
    details   TEXT NOT NULL DEFAULT '{}'   -- JSON
);

CREATE INDEX audit_by_time ON audit (at);

CREATE TABLE job_log (
    id      INTEGER PRIMARY KEY,
    job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at      REAL NOT NULL,
    level   TEXT NOT NULL,
    message TEXT NOT NULL
);

CREATE INDEX job_log_by_job ON job_log (job_id, id);

CREATE TABLE pool_samples (
    pool        TEXT NOT NULL,
    at          REAL NOT NULL,
    size_bytes  INTEGER NOT NULL,
    alloc_bytes INTEGER NOT NULL,
    free_bytes  INTEGER NOT NULL,
    health      TEXT NOT NULL,
    PRIMARY KEY (pool, at)
);

ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN not_before REAL;           -- retry backoff: do not start before this time
ALTER TABLE jobs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1;
