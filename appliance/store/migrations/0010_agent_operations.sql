-- Schema 10: operating agents. Per-client agent settings set on the appliance (default paths, bandwidth limit,
-- backup window), the progress an agent reports for its open job, and failed agent authentications per source
-- address (throttled like web sign-ins).

CREATE TABLE agent_settings (
    client         TEXT PRIMARY KEY REFERENCES clients (name) ON DELETE CASCADE,
    paths          TEXT NOT NULL DEFAULT '[]',    -- JSON list of absolute paths backed up when none is given
    bwlimit_kibps  INTEGER,                       -- NULL: no limit set on the appliance
    backup_window  TEXT,                          -- NULL: any time; else e.g. '22:00-06:00'
    updated_at     REAL NOT NULL,
    updated_by     TEXT
);

ALTER TABLE agent_jobs ADD COLUMN phase TEXT;            -- last reported: 'scanning', 'sending', 'committing'
ALTER TABLE agent_jobs ADD COLUMN files_done INTEGER;
ALTER TABLE agent_jobs ADD COLUMN files_total INTEGER;
ALTER TABLE agent_jobs ADD COLUMN bytes_done INTEGER;
ALTER TABLE agent_jobs ADD COLUMN bytes_total INTEGER;
ALTER TABLE agent_jobs ADD COLUMN phase_started_at REAL; -- when the agent reported the phase first (for the ETA)
ALTER TABLE agent_jobs ADD COLUMN progress_at REAL;      -- when the agent last reported progress

CREATE TABLE agent_auth_failures (
    id       INTEGER PRIMARY KEY,
    address  TEXT NOT NULL,
    at       REAL NOT NULL
);

CREATE INDEX agent_auth_failures_by_address ON agent_auth_failures (address, at);
