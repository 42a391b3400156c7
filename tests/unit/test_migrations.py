"""Schema migrations: the upgrade from every earlier version, concurrency, failure and refusal cases.

Adding a migration ``000N`` means adding one entry ``N`` to :data:`SAMPLES`: rows that are valid in a
database at exactly version N. ``test_samples_cover_every_version`` fails until that entry exists.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from appliance.store import Store, db
from appliance.store.db import DatabaseTooNew, latest_version, migrate, migrations, schema_version

Spawn = Callable[..., subprocess.Popen[str]]


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

SAMPLES: dict[int, list[Row]] = {
    0: [],
    1: _V1_ROWS,
    2: _V2_ROWS,
    3: _WEB_SECURITY_ROWS,
    4: [*_WEB_SECURITY_ROWS, *_CLIENT_ROWS],
    5: [*_WEB_SECURITY_ROWS, *_CLIENT_ROWS, *_ALERTING_ROWS],
    6: [*_WEB_SECURITY_ROWS, *_CLIENT_ROWS, *_ALERTING_ROWS, *_OFFSITE_ROWS],
}


def _open(path: Path) -> sqlite3.Connection:
    """A connection set up as the store sets up its own, on a database left at whatever version it has."""
    return Store(path).conn()


def _schema(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
    """sqlite_master with the SQL's whitespace normalized."""
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    return [(r[0], r[1], r[2], re.sub(r"\s+", " ", r[3] or "").strip()) for r in rows]


@pytest.fixture
def reference_schema(tmp_path: Path) -> Iterator[list[tuple[str, str, str, str]]]:
    """The schema of a database migrated from 0 straight to the latest version."""
    conn = _open(tmp_path / "reference.db")
    try:
        assert migrate(conn) == latest_version()
        yield _schema(conn)
    finally:
        conn.close()


def test_migrations_are_numbered_without_gaps() -> None:
    found = migrations()
    assert [v for v, _, _ in found] == list(range(1, len(found) + 1))
    assert latest_version() == len(found) >= 2
    for version, name, sql in found:
        assert name.startswith(f"{version:04d}_") and name.endswith(".sql")
        assert db._statements(sql), name


def test_samples_cover_every_version() -> None:
    assert sorted(SAMPLES) == list(range(latest_version() + 1))


@pytest.mark.parametrize("version", range(latest_version() + 1))
def test_migrate_to_exact_version(tmp_path: Path, version: int) -> None:
    conn = _open(tmp_path / "db")
    try:
        assert migrate(conn, target=version) == version
        assert schema_version(conn) == version
        assert migrate(conn, target=version) == version  # idempotent
    finally:
        conn.close()


@pytest.mark.parametrize("version", range(latest_version()))
def test_upgrade_from_every_earlier_version(tmp_path: Path, version: int, reference_schema: Any) -> None:
    latest = latest_version()
    conn = _open(tmp_path / "db")
    try:
        migrate(conn, target=version)
        conn.execute("BEGIN")
        for row in SAMPLES[version]:
            row.insert(conn)
        conn.execute("COMMIT")

        assert migrate(conn) == latest
        assert schema_version(conn) == latest
        missing = [row for row in SAMPLES[version] if not row.present(conn)]
        assert missing == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert _schema(conn) == reference_schema
    finally:
        conn.close()


def test_latest_samples_are_valid_now(store: Store) -> None:
    """The newest entry of SAMPLES fits the current schema (so it is ready as the next upgrade's input)."""
    with store.write() as conn:
        for row in SAMPLES[latest_version()]:
            row.insert(conn)
    assert store.query_one("PRAGMA foreign_key_check") is None


def test_store_open_upgrades_an_old_database(tmp_path: Path) -> None:
    path = tmp_path / "db"
    conn = _open(path)
    migrate(conn, target=1)
    conn.close()
    store = Store.open(path)
    try:
        assert schema_version(store.conn()) == latest_version()
    finally:
        store.close()


def test_database_too_new(tmp_path: Path) -> None:
    path = tmp_path / "db"
    conn = _open(path)
    migrate(conn)
    too_new = latest_version() + 1
    conn.execute(f"PRAGMA user_version = {too_new}")
    with pytest.raises(DatabaseTooNew) as info:
        migrate(conn, path=str(path))
    conn.close()
    assert info.value.exit_status == 13
    assert f"schema version {too_new}, newer than this Bulwark knows ({latest_version()})" in info.value.message
    for migrate_to_latest in (True, False):
        with pytest.raises(DatabaseTooNew):
            Store.open(path, migrate_to_latest=migrate_to_latest)
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA user_version").fetchone()[0] == too_new  # untouched
    finally:
        check.close()


OPEN_AT_ONCE = """
import logging, sys, time
from pathlib import Path
from appliance.store import Store, schema_version

logging.basicConfig(level=logging.INFO, format="%(message)s")
go = Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
store = Store.open(Path(sys.argv[1]))
print(schema_version(store.conn()), flush=True)
store.close()
"""


def test_processes_opening_a_fresh_database_at_once(tmp_path: Path, spawn_python: Spawn) -> None:
    path, go = tmp_path / "fresh.db", tmp_path / "go"
    children = [spawn_python(OPEN_AT_ONCE, path, go) for _ in range(4)]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    go.touch()
    applied: list[str] = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert out.strip() == str(latest_version())
        applied += re.findall(r"database migrated to version (\d+)", err)
    assert sorted(applied) == [str(v) for v in range(1, latest_version() + 1)]  # each applied exactly once
    conn = _open(path)
    try:
        assert schema_version(conn) == latest_version()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def _with_extra(*extra: tuple[int, str, str]) -> Callable[[], list[tuple[int, str, str]]]:
    real = migrations()
    return lambda: [*real, *extra]


def test_failed_migration_leaves_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    latest = latest_version()
    broken = (
        latest + 1,
        f"{latest + 1:04d}_broken.sql",
        (
            "CREATE TABLE half_done (x INTEGER);\n"
            "INSERT INTO half_done VALUES (1);\n"
            "ALTER TABLE jobs ADD COLUMN half_done INTEGER;\n"
            "INSERT INTO no_such_table VALUES (1);\n"
        ),
    )
    monkeypatch.setattr(db, "migrations", _with_extra(broken))
    path = tmp_path / "db"
    conn = _open(path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
            migrate(conn)
        assert schema_version(conn) == latest  # every good migration stayed applied
        assert not conn.in_transaction
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "half_done" not in names
        columns = {r[1] for r in conn.execute("PRAGMA table_info(jobs)")}
        assert "half_done" not in columns
    finally:
        conn.close()

    monkeypatch.undo()  # the fixed release opens the same file
    store = Store.open(path)
    try:
        assert schema_version(store.conn()) == latest
    finally:
        store.close()


def test_failed_first_migration_leaves_version_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "migrations", lambda: [(1, "0001_broken.sql", "CREATE TABLE t (x);\nSELEC 1;\n")])
    conn = _open(tmp_path / "db")
    try:
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn)
        assert schema_version(conn) == 0
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
    finally:
        conn.close()


def _migration_dir(tmp_path: Path, files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name, sql in files.items():
        (folder / name).write_text(sql)
    monkeypatch.setattr(db, "resources", SimpleNamespace(files=lambda package: tmp_path))


def test_migrations_refuse_gaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _migration_dir(tmp_path, {"0001_a.sql": "CREATE TABLE a (x);", "0003_c.sql": "CREATE TABLE c (x);"}, monkeypatch)
    with pytest.raises(RuntimeError, match=r"0003_c\.sql is out of sequence \(expected 0002\)"):
        migrations()


def test_migrations_refuse_a_missing_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _migration_dir(tmp_path, {"0002_b.sql": "CREATE TABLE b (x);"}, monkeypatch)
    with pytest.raises(RuntimeError, match="out of sequence"):
        migrations()


def test_migrations_refuse_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _migration_dir(
        tmp_path,
        {"0001_a.sql": "CREATE TABLE a (x);", "0001_b.sql": "CREATE TABLE b (x);", "0002_c.sql": "SELECT 1;"},
        monkeypatch,
    )
    with pytest.raises(RuntimeError, match="out of sequence"):
        migrations()


def test_migrations_ignore_other_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _migration_dir(
        tmp_path,
        {"0001_a.sql": "CREATE TABLE a (x);", "README.md": "notes", "0002_B.sql": "x", "0002_b.sql.orig": "x"},
        monkeypatch,
    )
    assert [name for _, name, _ in migrations()] == ["0001_a.sql"]


def test_incomplete_statement_is_refused() -> None:
    with pytest.raises(RuntimeError, match="incomplete SQL statement"):
        db._statements("CREATE TABLE a (x);\nCREATE TABLE b (y)\n")
