-- Alerting: acknowledgement and snooze of alerts, their history, notification channels with a durable
-- outbox, and the history the client reports are made from (points seen, storage used over time).

ALTER TABLE alerts ADD COLUMN class TEXT;            -- the declared alert class, e.g. 'rpo.stale'
ALTER TABLE alerts ADD COLUMN acknowledged_at REAL;
ALTER TABLE alerts ADD COLUMN acknowledged_by TEXT;
ALTER TABLE alerts ADD COLUMN snoozed_until REAL;    -- silenced until then; NULL when not snoozed
ALTER TABLE alerts ADD COLUMN snoozed_by TEXT;

-- What happened to each alert: raised, escalated, acknowledged, snoozed, unsnoozed, reminded, cleared.
CREATE TABLE alert_events (
    id        INTEGER PRIMARY KEY,
    alert_id  INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    at        REAL NOT NULL,
    event     TEXT NOT NULL,
    actor     TEXT,
    level     TEXT NOT NULL,
    message   TEXT NOT NULL
);
CREATE INDEX alert_events_by_alert ON alert_events (alert_id, id);

CREATE TABLE alert_channels (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,          -- [a-z][a-z0-9-]*
    kind             TEXT NOT NULL CHECK (kind IN ('email', 'webhook', 'syslog')),
    enabled          INTEGER NOT NULL DEFAULT 1,
    min_level        TEXT NOT NULL CHECK (min_level IN ('info', 'warning', 'critical')),
    notify_cleared   INTEGER NOT NULL DEFAULT 1,
    quiet_hours      TEXT,                          -- NULL, or a window such as '22:00-07:00' (local time)
    config           TEXT NOT NULL,                 -- JSON without secrets
    secret           TEXT,                          -- SMTP password or webhook HMAC key; never shown back
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    last_success_at  REAL,
    last_failure_at  REAL,
    last_error       TEXT
);

-- Notifications waiting for, or done with, delivery by bulwarkd (retried with backoff).
CREATE TABLE alert_outbox (
    id            INTEGER PRIMARY KEY,
    channel_id    INTEGER NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
    alert_id      INTEGER REFERENCES alerts (id) ON DELETE SET NULL,
    event         TEXT NOT NULL,                    -- raised, escalated, reminder, cleared, test, report
    payload       TEXT NOT NULL,                    -- JSON: subject, text, optional html, data
    state         TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'dropped')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    not_before    REAL NOT NULL,
    claimed_at    REAL,
    sent_at       REAL,
    last_error    TEXT,
    note          TEXT                              -- e.g. why it was held (quiet hours) or dropped
);
CREATE INDEX alert_outbox_due ON alert_outbox (state, not_before);

-- Scheduled report mails: one client's SLA report, or the appliance summary (client NULL).
CREATE TABLE report_schedules (
    id            INTEGER PRIMARY KEY,
    client        TEXT,
    channel_id    INTEGER NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
    every         TEXT NOT NULL CHECK (every IN ('daily', 'weekly', 'monthly')),
    next_at       REAL NOT NULL,
    last_sent_at  REAL,
    created_at    REAL NOT NULL,
    UNIQUE (client, channel_id)
);

-- Every recovery point seen by the daemon, kept after pruning so that reports can count what was made.
CREATE TABLE point_history (
    snapshot       TEXT PRIMARY KEY,                -- full snapshot name
    client         TEXT NOT NULL,
    area           TEXT NOT NULL,
    created_at     REAL NOT NULL,
    source         TEXT NOT NULL,
    verified       TEXT NOT NULL,
    first_seen_at  REAL NOT NULL,
    gone_at        REAL                             -- when it was no longer found (pruned or destroyed)
);
CREATE INDEX point_history_by_client ON point_history (client, created_at);

CREATE TABLE client_usage_samples (
    client      TEXT NOT NULL,
    at          REAL NOT NULL,
    used_bytes  INTEGER NOT NULL,                   -- the client's datasets and their points
    points      INTEGER NOT NULL,
    PRIMARY KEY (client, at)
);
