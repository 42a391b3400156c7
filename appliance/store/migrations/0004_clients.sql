-- Clients (cached from the bulwark: properties of <pool>/clients/<name>), schedule bookkeeping,
-- browse sessions (read-only clones of recovery points), and alerts.

CREATE TABLE clients (
    name           TEXT PRIMARY KEY,              -- also the dataset component: [a-z][a-z0-9-]*
    uuid           TEXT NOT NULL UNIQUE,
    dataset        TEXT NOT NULL UNIQUE,          -- <pool>/clients/<name>
    kind           TEXT NOT NULL CHECK (kind IN ('smb', 'agent', 'both')),
    state          TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'removed')),
    quota_bytes    INTEGER,                       -- NULL: no quota
    rpo_seconds    INTEGER NOT NULL,
    schedule       TEXT NOT NULL,                 -- 'off', 'every 1h', or a cron expression
    backup_window  TEXT,                          -- NULL: any time; else e.g. 'mon-fri 20:00-06:00'
    retention      TEXT NOT NULL,                 -- retention SPEC (docs/retention.md)
    lock_seconds   INTEGER NOT NULL DEFAULT 0,    -- immutability period of new points
    notes          TEXT NOT NULL DEFAULT '',
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL
);

-- The schedule's fire time last handled per client: after downtime, missed runs are run once.
CREATE TABLE client_schedule_runs (
    client       TEXT PRIMARY KEY REFERENCES clients (name) ON DELETE CASCADE,
    last_fire    REAL NOT NULL,
    last_job_id  INTEGER,
    updated_at   REAL NOT NULL
);

CREATE TABLE browse_sessions (
    id            TEXT PRIMARY KEY,               -- random token
    client        TEXT NOT NULL,
    point         TEXT NOT NULL,                  -- full snapshot name
    clone         TEXT NOT NULL UNIQUE,           -- <pool>/browse/<id>
    mountpoint    TEXT NOT NULL,
    created_by    TEXT,
    created_at    REAL NOT NULL,
    last_used_at  REAL NOT NULL,
    expires_at    REAL NOT NULL
);

CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY,
    key           TEXT NOT NULL,                  -- dedup key, e.g. 'rpo:acme'
    level         TEXT NOT NULL CHECK (level IN ('info', 'warning', 'critical')),
    category      TEXT NOT NULL,                  -- 'rpo', …
    subject       TEXT,                           -- what it is about, e.g. 'client:acme'
    message       TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('active', 'cleared')),
    raised_at     REAL NOT NULL,
    last_seen_at  REAL NOT NULL,
    cleared_at    REAL,
    count         INTEGER NOT NULL DEFAULT 1
);

CREATE UNIQUE INDEX alerts_one_active_per_key ON alerts (key) WHERE state = 'active';
CREATE INDEX alerts_by_state ON alerts (state, raised_at);
