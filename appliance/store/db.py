"""SQLite in WAL mode: one connection per thread, explicit write transactions, numbered migrations.

The web processes (gunicorn workers) and the daemon open the same file. WAL lets readers run while one
writer writes; every write transaction starts with ``BEGIN IMMEDIATE`` so that two writers queue on the
database lock (``busy_timeout``) instead of failing half-way through an upgrade from a read lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from appliance.system.errors import BulwarkError

log = logging.getLogger("bulwark.store")

BUSY_TIMEOUT_MS = 15000
_MIGRATION_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


class DatabaseTooNew(BulwarkError):
    """The database {} has schema version {}, newer than this Bulwark knows ({})."""

    code = "database_too_new"
    exit_status = 13
    hint = "Run the Bulwark version that wrote it, or restore a backup of the database."


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for every migration shipped, in order, with no gaps."""
    found = []
    for entry in resources.files("appliance.store").joinpath("migrations").iterdir():
        m = _MIGRATION_NAME.fullmatch(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (version, name, _) in enumerate(found, start=1):
        if version != expected:
            raise RuntimeError(f"migration {name} is out of sequence (expected {expected:04d})")
    return found


def latest_version() -> int:
    return len(migrations())


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=True)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _enable_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL. SQLite answers "database is locked" at once, without waiting on
    ``busy_timeout``, when another process is switching a fresh file at the same moment: retry then."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        else:
            return


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int | None = None, *, path: str = "database") -> int:
    """Apply the migrations after the database's version up to ``target`` (default: latest).

    Each migration runs in its own immediate transaction together with the version bump, so a crash
    leaves the database at the previous version, and two processes starting at once apply it once."""
    all_migrations = migrations()
    goal = len(all_migrations) if target is None else target
    current = schema_version(conn)
    if current > len(all_migrations):
        raise DatabaseTooNew(path, current, len(all_migrations))
    for version, name, sql in all_migrations:
        if version > goal:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) >= version:  # another process got here first
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("database migrated to version %d (%s)", version, name)
    return schema_version(conn)


def _statements(sql: str) -> list[str]:
    """Split a migration file into statements (complete per sqlite3.complete_statement)."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        if not buf and line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise RuntimeError(f"incomplete SQL statement in migration: {buf.strip()[:80]}")
    return out


class Store:
    """The appliance database. Safe to share between threads: each thread gets its own connection."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, *, migrate_to_latest: bool = True) -> Store:
        store = cls(path)
        if migrate_to_latest:
            migrate(store.conn(), path=str(path))
        else:
            version = schema_version(store.conn())
            if version > latest_version():
                raise DatabaseTooNew(str(path), version, latest_version())
        return store

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close_thread(self) -> None:
        """Close this thread's connection (a thread calls this before it ends)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)
            conn.close()

    def close(self) -> None:
        """Close every thread's connection (call when all threads are done)."""
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locked) transaction, committed on success, rolled back on error."""
        conn = self.conn()
        if conn.in_transaction:  # nested: join the outer transaction
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return self.conn().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn().execute(sql, params).fetchone()
        return row

    # -- settings ---------------------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self.query_one("SELECT value FROM settings WHERE key = ?", (key,))
        return default if row is None else json.loads(row["value"])

    def set_setting(self, key: str, value: Any) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, json.dumps(value), time.time()),
            )

    def all_settings(self) -> dict[str, Any]:
        return {row["key"]: json.loads(row["value"]) for row in self.query("SELECT key, value FROM settings")}

    # -- audit ------------------------------------------------------------------------------

    def audit(
        self, actor: str, action: str, target: str | None = None, *, address: str | None = None, **details: Any
    ) -> None:
        """Record a change: who (``actor``), what (``action`` on ``target``), from where, and details."""
        with self.write() as conn:
            conn.execute(
                "INSERT INTO audit (at, actor, action, target, details, address) VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), actor, action, target, json.dumps(details, default=str), address),
            )
