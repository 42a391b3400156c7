-- Backup agents: one-time enrollment codes, per-agent credentials, and ingest jobs.

CREATE TABLE agent_enroll_codes (
    code_hash    TEXT PRIMARY KEY,                -- sha256 hex of the code's secret part
    client       TEXT NOT NULL REFERENCES clients (name) ON DELETE CASCADE,
    created_by   TEXT,
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    used_at      REAL                              -- NULL: not used yet (single use)
);

CREATE TABLE agent_credentials (
    id           TEXT PRIMARY KEY,                -- public agent id
    client       TEXT NOT NULL REFERENCES clients (name) ON DELETE CASCADE,
    secret_hash  TEXT NOT NULL,                   -- sha256 hex of the secret
    hostname     TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'revoked')),
    created_at   REAL NOT NULL,
    last_seen_at REAL,
    revoked_at   REAL,
    revoked_by   TEXT
);

CREATE INDEX agent_credentials_by_client ON agent_credentials (client);

CREATE TABLE agent_jobs (
    id           TEXT PRIMARY KEY,                -- random job id
    client       TEXT NOT NULL REFERENCES clients (name) ON DELETE CASCADE,
    agent_id     TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('files', 'image')),
    state        TEXT NOT NULL CHECK (state IN ('open', 'committed', 'failed', 'aborted')),
    base_point   TEXT,                            -- recovery point the manifest was diffed against
    point        TEXT,                            -- recovery point taken at commit
    files        INTEGER NOT NULL DEFAULT 0,
    bytes_scanned INTEGER NOT NULL DEFAULT 0,
    bytes_sent   INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    started_at   REAL NOT NULL,
    finished_at  REAL
);

CREATE INDEX agent_jobs_by_client ON agent_jobs (client, started_at);
