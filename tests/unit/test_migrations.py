"""Schema migrations: the upgrade from every earlier version, concurrency, failure and refusal cases.

Adding a migration ``000N`` means adding one entry ``N`` to ``SAMPLES`` in ``tests/unit/migration_samples.py``:
rows that are valid in a database at exactly version N. ``test_samples_cover_every_version`` fails until
that entry exists.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from appliance.store import Store, db
from appliance.store.db import DatabaseTooNew, latest_version, migrate, migrations, schema_version
from tests.unit.migration_samples import SAMPLES

Spawn = Callable[..., subprocess.Popen[str]]


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
    assert sorted(applied, key=int) == [str(v) for v in range(1, latest_version() + 1)]  # each applied exactly once
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
