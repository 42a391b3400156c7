-- Settings, local users and the durable job queue.

CREATE TABLE settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,          -- JSON
    updated_at  REAL NOT NULL
);

CREATE TABLE users (
    id                    INTEGER PRIMARY KEY,
    username              TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash         TEXT NOT NULL,  -- argon2id
    role                  TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    must_change_password  INTEGER NOT NULL DEFAULT 0,
    created_at            REAL NOT NULL,
    updated_at            REAL NOT NULL
);

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,
    params          TEXT NOT NULL DEFAULT '{}',   -- JSON
    state           TEXT NOT NULL CHECK (state IN
                        ('queued', 'running', 'succeeded', 'failed', 'interrupted', 'cancelled')),
    resource        TEXT,                          -- at most one running job per resource
    created_at      REAL NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    progress_done   INTEGER,
    progress_total  INTEGER,
    progress_text   TEXT,
    result          TEXT,                          -- JSON
    error           TEXT,                          -- JSON: BulwarkError.to_dict()
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_by      TEXT
);

CREATE INDEX jobs_by_state ON jobs (state, created_at);
