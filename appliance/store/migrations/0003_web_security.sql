-- Web security: server-side sessions, API tokens, TOTP second factor, login failures, audit origin.

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,          -- sha256 of the cookie's secret
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    REAL NOT NULL,
    last_seen_at  REAL NOT NULL,
    expires_at    REAL NOT NULL,
    address       TEXT,
    remote        INTEGER NOT NULL DEFAULT 0,  -- arrived through the remote-access tunnel
    mfa_done      INTEGER NOT NULL DEFAULT 0,  -- second factor passed (or not required)
    user_agent    TEXT
);

CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,             -- sha256 of the token's secret part
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_by    TEXT NOT NULL,
    created_at    REAL NOT NULL,
    expires_at    REAL,
    last_used_at  REAL,
    revoked_at    REAL
);

CREATE TABLE login_failures (
    id        INTEGER PRIMARY KEY,
    username  TEXT NOT NULL,
    address   TEXT NOT NULL,
    at        REAL NOT NULL
);

CREATE INDEX login_failures_by_user ON login_failures (username, at);
CREATE INDEX login_failures_by_address ON login_failures (address, at);

ALTER TABLE users ADD COLUMN totp_secret TEXT;           -- base32; NULL = no second factor
ALTER TABLE users ADD COLUMN totp_last_step INTEGER;     -- last accepted time step (no replay)
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;

ALTER TABLE audit ADD COLUMN address TEXT;
