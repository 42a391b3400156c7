-- Schema 8: disk SMART state, attribute history and self-test runs.

-- The latest SMART reading of each disk, keyed by its identity (WWN, else serial, else kernel name).
CREATE TABLE disk_smart (
    disk_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    node TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    serial TEXT NOT NULL DEFAULT '',
    protocol TEXT NOT NULL DEFAULT '',
    verdict TEXT NOT NULL CHECK (verdict IN ('healthy', 'warning', 'failing', 'unknown')),
    reasons TEXT NOT NULL DEFAULT '[]',
    temperature INTEGER,
    power_on_hours INTEGER,
    exit_status INTEGER NOT NULL DEFAULT 0,
    report TEXT NOT NULL DEFAULT '{}',
    checked_at REAL NOT NULL
);

-- One sample per poll: temperature and the failure-predicting counters, for trend charts.
CREATE TABLE disk_smart_samples (
    disk_key TEXT NOT NULL,
    at REAL NOT NULL,
    verdict TEXT NOT NULL,
    temperature INTEGER,
    counters TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (disk_key, at)
);

-- Self-tests started by the schedule or by a person.
CREATE TABLE disk_selftests (
    id INTEGER PRIMARY KEY,
    disk_key TEXT NOT NULL,
    node TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('short', 'long')),
    started_at REAL NOT NULL,
    started_by TEXT NOT NULL DEFAULT 'schedule',
    error TEXT
);
CREATE INDEX disk_selftests_by_disk ON disk_selftests (disk_key, kind, started_at);
