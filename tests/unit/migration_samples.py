"""Rows valid in a database at each schema version, for the upgrade tests in ``test_migrations.py``.

Adding a migration ``000N`` means adding one entry ``N`` to :data:`SAMPLES`: rows that are valid in a
database at exactly version N. ``test_samples_cover_every_version`` fails until that entry exists.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    """One row to insert into ``table``; after an upgrade it must still be there, value for value."""

    table: str
    values: dict[str, Any]

    def insert(self, conn: sqlite3.Connection) -> None:
        cols = ", ".join(self.values)
        marks = ", ".join("?" * len(self.values))
        conn.execute(f"INSERT INTO {self.table} ({cols}) VALUES ({marks})", tuple(self.values.values()))

    def present(self, conn: sqlite3.Connection) -> bool:
        where = " AND ".join(f"{col} IS ?" for col in self.values)
        sql = f"SELECT COUNT(*) FROM {self.table} WHERE {where}"
        return conn.execute(sql, tuple(self.values.values())).fetchone()[0] == 1


def _error(code: str) -> str:
    return json.dumps({"code": code, "message": "m", "hint": "h", "retryable": False})


_V1_ROWS = [
    Row("settings", {"key": "appliance", "value": json.dumps({"pool": {"name": "tank"}}), "updated_at": 1.5}),
    Row(
        "users",
        {
            "id": 1,
            "username": "admin",
            "password_hash": "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "role": "admin",
            "must_change_password": 1,
            "created_at": 1.0,
            "updated_at": 2.0,
        },
    ),
    Row(
        "users",
        {
            "id": 2,
            "username": "victor",
            "password_hash": "x",
            "role": "viewer",
            "must_change_password": 0,
            "created_at": 1.0,
            "updated_at": 1.0,
        },
    ),
    Row(
        "jobs",
        {
            "id": 1,
            "kind": "pool.scrub",
            "params": '{"pool": "tank"}',
            "state": "succeeded",
            "resource": "pool:tank:scrub",
            "created_at": 10.0,
            "started_at": 11.0,
            "finished_at": 12.0,
            "progress_done": 100,
            "progress_total": 100,
            "progress_text": "finished",
            "result": '{"errors": 0}',
            "attempts": 1,
            "created_by": "user:admin",
        },
    ),
    Row(
        "jobs",
        {"id": 2, "kind": "pool.scrub", "state": "failed", "created_at": 20.0, "error": _error("busy"), "attempts": 1},
    ),
    Row("jobs", {"id": 3, "kind": "pool.scrub", "state": "running", "created_at": 30.0, "attempts": 1}),
]

_V2_ROWS = [
    *_V1_ROWS,
    Row(
        "jobs",
        {
            "id": 4,
            "kind": "pool.scrub",
            "state": "queued",
            "created_at": 40.0,
            "attempts": 1,
            "max_attempts": 3,
            "not_before": 100.0,
            "cancel_requested": 0,
        },
    ),
    Row("jobs", {"id": 5, "kind": "pool.scrub", "state": "running", "created_at": 50.0, "cancel_requested": 1}),
    Row("audit", {"id": 1, "at": 1.0, "actor": "cli", "action": "appliance.init", "target": "tank", "details": "{}"}),
    Row("audit", {"id": 2, "at": 2.0, "actor": "user:admin", "action": "login", "target": None, "details": "{}"}),
    Row("job_log", {"id": 1, "job_id": 1, "at": 11.0, "level": "info", "message": "started (attempt 1 of 1)"}),
    Row("job_log", {"id": 2, "job_id": 4, "at": 41.0, "level": "error", "message": "failed, will retry"}),
    Row(
        "pool_samples",
        {
            "pool": "tank",
            "at": 5.0,
            "size_bytes": 8 << 30,
            "alloc_bytes": 1 << 20,
            "free_bytes": 7 << 30,
            "health": "ONLINE",
        },
    ),
]

_WEB_SECURITY_ROWS = [
    *_V2_ROWS,
    Row(
        "users",
        {
            "id": 3,
            "username": "tina",
            "password_hash": "x",
            "role": "operator",
            "must_change_password": 0,
            "created_at": 3.0,
            "updated_at": 3.0,
            "totp_secret": "JBSWY3DPEHPK3PXP",
            "totp_last_step": 59000000,
            "disabled": 0,
        },
    ),
    Row(
        "sessions",
        {
            "id": "ab" * 32,
            "user_id": 1,
            "created_at": 60.0,
            "last_seen_at": 61.0,
            "expires_at": 9e9,
            "address": "192.0.2.7",
            "remote": 1,
            "mfa_done": 0,
            "user_agent": "test",
        },
    ),
    Row(
        "api_tokens",
        {
            "id": 1,
            "name": "monitoring",
            "secret_hash": "cd" * 32,
            "role": "viewer",
            "created_by": "user:admin",
            "created_at": 70.0,
            "expires_at": None,
        },
    ),
    Row("login_failures", {"id": 1, "username": "admin", "address": "192.0.2.9", "at": 80.0}),
    Row(
        "audit", {"id": 3, "at": 3.0, "actor": "user:tina", "action": "login", "details": "{}", "address": "192.0.2.7"}
    ),
]

_CLIENT_ROWS = [
    Row(
        "clients",
        {
            "name": "acme-fs1",
            "uuid": "0b5e7c1e-7d0f-4a53-9b8e-3f0f6a1c2d4e",
            "dataset": "tank/clients/acme-fs1",
            "kind": "both",
            "state": "active",
            "quota_bytes": 10 << 30,
            "rpo_seconds": 3600,
            "schedule": "every 1h",
            "backup_window": "mon-fri 20:00-06:00",
            "retention": "last=24,daily=7,weekly=4,monthly=12,yearly=3",
            "lock_seconds": 7 * 86400,
            "notes": "file server, 2nd floor",
            "created_at": 60.0,
            "updated_at": 61.0,
        },
    ),
    Row(
        "clients",
        {
            "name": "old-pc",
            "uuid": "5d1f2f64-4b1c-4c0e-8a55-0a2f0a9a7e11",
            "dataset": "tank/clients/old-pc",
            "kind": "smb",
            "state": "removed",
            "quota_bytes": None,
            "rpo_seconds": 86400,
            "schedule": "off",
            "backup_window": None,
            "retention": "last=7",
            "created_at": 62.0,
            "updated_at": 63.0,
        },
    ),
    Row("client_schedule_runs", {"client": "acme-fs1", "last_fire": 3600.0, "last_job_id": 4, "updated_at": 3601.0}),
    Row(
        "browse_sessions",
        {
            "id": "k3J9x",
            "client": "acme-fs1",
            "point": "tank/clients/acme-fs1/share@bw-20260126T143400Z-manual",
            "clone": "tank/browse/k3J9x",
            "mountpoint": "/var/lib/bulwark/mnt/tank/browse/k3J9x",
            "created_by": "user:admin",
            "created_at": 70.0,
            "last_used_at": 71.0,
            "expires_at": 1870.0,
        },
    ),
    Row(
        "alerts",
        {
            "id": 1,
            "key": "rpo:acme-fs1",
            "level": "warning",
            "category": "rpo",
            "subject": "client:acme-fs1",
            "message": "no recovery point for 2 h (target 1 h)",
            "state": "active",
            "raised_at": 80.0,
            "last_seen_at": 90.0,
            "count": 3,
        },
    ),
    Row(
        "alerts",
        {
            "id": 2,
            "key": "rpo:acme-fs1",
            "level": "warning",
            "category": "rpo",
            "subject": "client:acme-fs1",
            "message": "old",
            "state": "cleared",
            "raised_at": 10.0,
            "last_seen_at": 20.0,
            "cleared_at": 30.0,
        },
    ),
]

_ALERTING_ROWS = [
    Row(
        "alerts",
        {
            "id": 3,
            "key": "pool:health:tank",
            "level": "critical",
            "category": "pool",
            "subject": "pool:tank",
            "message": "pool tank is DEGRADED",
            "state": "active",
            "raised_at": 100.0,
            "last_seen_at": 160.0,
            "count": 2,
            "class": "pool.health",
            "acknowledged_at": 120.0,
            "acknowledged_by": "user:olivia",
            "snoozed_until": 7300.0,
            "snoozed_by": "user:olivia",
        },
    ),
    Row(
        "alert_events",
        {
            "id": 1,
            "alert_id": 3,
            "at": 120.0,
            "event": "acknowledged",
            "actor": "user:olivia",
            "level": "critical",
            "message": "pool tank is DEGRADED",
        },
    ),
    Row(
        "alert_channels",
        {
            "id": 1,
            "name": "msp-mail",
            "kind": "email",
            "enabled": 1,
            "min_level": "warning",
            "notify_cleared": 1,
            "quiet_hours": "22:00-07:00",
            "config": json.dumps({"host": "smtp.example.net", "port": 587, "security": "starttls"}),
            "secret": "smtp-password",
            "created_at": 90.0,
            "updated_at": 91.0,
            "last_success_at": 95.0,
            "last_failure_at": None,
            "last_error": None,
        },
    ),
    Row(
        "alert_outbox",
        {
            "id": 1,
            "channel_id": 1,
            "alert_id": 3,
            "event": "raised",
            "payload": json.dumps({"subject": "s", "text": "t"}),
            "state": "pending",
            "attempts": 1,
            "max_attempts": 6,
            "created_at": 100.0,
            "not_before": 110.0,
            "last_error": "connection refused",
        },
    ),
    Row(
        "report_schedules",
        {"id": 1, "client": "acme-fs1", "channel_id": 1, "every": "weekly", "next_at": 604800.0, "created_at": 90.0},
    ),
    Row(
        "point_history",
        {
            "snapshot": "tank/clients/acme-fs1/share@bw-20260126T143400Z-manual",
            "client": "acme-fs1",
            "area": "share",
            "created_at": 1769438040.0,
            "source": "manual",
            "verified": "verified",
            "first_seen_at": 1769438100.0,
            "gone_at": None,
        },
    ),
    Row("client_usage_samples", {"client": "acme-fs1", "at": 3600.0, "used_bytes": 1 << 30, "points": 12}),
]

# Version → rows valid in a database at exactly that version (version 0 is an empty database).
_OFFSITE_ROWS = [
    Row("offsite_keys", {"id": "0011223344556677", "created_at": 10.0, "retired_at": None,
                         "local_wrapped": b"\x00" * 60, "kit_entry": "{}", "kit_exported_at": None}),
    Row("offsite_targets", {"name": "usb", "type": "local", "config": '{"path": "/mnt/usb"}', "secret": None,
                            "keep_chains": 2, "created_at": 10.0, "updated_at": 10.0}),
    Row("offsite_policies", {"client": "acme", "target": "usb", "enabled": 1, "interval_s": 86400,
                             "chain_length": 30, "chain_age_s": 2592000, "bandwidth": "[]", "default_kbps": None,
                             "next_run_at": 20.0, "last_run_at": None, "last_job_id": None}),
    Row("offsite_streams", {"id": "ab" * 16, "target": "usb", "client": "acme", "area": "share", "chain_id": "cd" * 16,
                            "seq": 0, "snapshot": "bw-20260101T000000Z-manual", "base": None,
                            "key_id": "0011223344556677", "state": "complete", "chunks_done": 3, "plain_bytes": 9,
                            "stored_bytes": 7, "started_at": 11.0, "completed_at": 12.0, "seconds": 1.0,
                            "manifest_sha256": "ef" * 32}),
    Row("offsite_verifications", {"id": 1, "client": "acme", "target": "usb", "at": 13.0, "ok": 1, "detail": "{}"}),
    Row("offsite_backlog_samples", {"client": "acme", "target": "usb", "at": 14.0, "pending_bytes": 100}),
]  # fmt: skip

_AGENT_ROWS = [
    Row("agent_enroll_codes", {"code_hash": "ab" * 32, "client": "acme-fs1", "created_by": "cli", "created_at": 1.0,
                               "expires_at": 86401.0, "used_at": 2.0}),
    Row("agent_credentials", {"id": "ag-0011223344556677", "client": "acme-fs1", "secret_hash": "cd" * 32,
                              "hostname": "fs1", "state": "revoked", "created_at": 2.0, "last_seen_at": 3.0,
                              "revoked_at": 4.0, "revoked_by": "cli"}),
    Row("agent_jobs", {"id": "j-0011223344556677", "client": "acme-fs1", "agent_id": "ag-0011223344556677",
                       "kind": "files", "state": "committed", "base_point": None,
                       "point": "files@bw-20260101T000000Z-agent", "files": 3, "bytes_scanned": 9, "bytes_sent": 7,
                       "error": None, "started_at": 2.0, "finished_at": 3.0}),
]  # fmt: skip

_DISK_ROWS = [
    Row("disk_smart", {"disk_key": "wwn:0x5000cca37fca81a8", "name": "sdc", "node": "/dev/sdc", "model": "Hitachi",
                       "serial": "MSK423Y20S3HBC", "protocol": "ATA", "verdict": "failing", "reasons": "[]",
                       "temperature": 25, "power_on_hours": 65592, "exit_status": 216, "report": "{}",
                       "checked_at": 15.0}),
    Row("disk_smart_samples", {"disk_key": "wwn:0x5000cca37fca81a8", "at": 15.0, "verdict": "failing",
                               "temperature": 25, "counters": '{"5": 1975}'}),
    Row("disk_selftests", {"id": 1, "disk_key": "wwn:0x5000cca37fca81a8", "node": "/dev/sdc", "kind": "long",
                           "started_at": 16.0, "started_by": "schedule", "error": None}),
]  # fmt: skip

_IMAGE_ROWS = [
    Row("agent_jobs", {"id": "j-8899aabbccddeeff", "client": "acme-fs1", "agent_id": "ag-0011223344556677",
                       "kind": "image", "state": "committed", "base_point": None,
                       "point": "images/sda@bw-20260101T000000Z-agent", "files": 1, "bytes_scanned": 9,
                       "bytes_sent": 7, "error": None, "started_at": 4.0, "finished_at": 5.0, "image": "sda",
                       "consistency": "crash"}),
]  # fmt: skip

_AGENT_OPS_ROWS = [
    Row("agent_settings", {"client": "acme-fs1", "paths": '["/home", "/etc"]', "bwlimit_kibps": 2048,
                           "backup_window": "22:00-06:00", "updated_at": 6.0, "updated_by": "user:admin"}),
    Row("agent_jobs", {"id": "j-1122334455667788", "client": "acme-fs1", "agent_id": "ag-0011223344556677",
                       "kind": "files", "state": "open", "base_point": None, "point": None, "files": 0,
                       "bytes_scanned": 0, "bytes_sent": 5, "error": None, "started_at": 6.0, "finished_at": None,
                       "image": None, "consistency": None, "phase": "sending", "files_done": 2, "files_total": 9,
                       "bytes_done": 5, "bytes_total": 50, "phase_started_at": 6.5, "progress_at": 7.0}),
    Row("agent_auth_failures", {"id": 1, "address": "192.0.2.44", "at": 8.0}),
]  # fmt: skip


SAMPLES: dict[int, list[Row]] = {
    0: [],
    1: _V1_ROWS,
    2: _V2_ROWS,
    3: _WEB_SECURITY_ROWS,
    4: [*_WEB_SECURITY_ROWS, *_CLIENT_ROWS],
    5: [*_WEB_SECURITY_ROWS, *_CLIENT_ROWS, *_ALERTING_ROWS],
    6: [*_WEB_SECURITY_ROWS, *_CLIENT_ROWS, *_ALERTING_ROWS, *_OFFSITE_ROWS],
    7: [*_WEB_SECURITY_ROWS, *_CLIENT_ROWS, *_ALERTING_ROWS, *_OFFSITE_ROWS, *_AGENT_ROWS],
    8: [*_WEB_SECURITY_ROWS, *_CLIENT_ROWS, *_ALERTING_ROWS, *_OFFSITE_ROWS, *_AGENT_ROWS, *_DISK_ROWS],
    9: [*_WEB_SECURITY_ROWS, *_CLIENT_ROWS, *_ALERTING_ROWS, *_OFFSITE_ROWS, *_AGENT_ROWS, *_DISK_ROWS, *_IMAGE_ROWS],
    10: [
        *_WEB_SECURITY_ROWS,
        *_CLIENT_ROWS,
        *_ALERTING_ROWS,
        *_OFFSITE_ROWS,
        *_AGENT_ROWS,
        *_DISK_ROWS,
        *_IMAGE_ROWS,
        *_AGENT_OPS_ROWS,
    ],
}
