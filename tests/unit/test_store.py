"""The SQLite store: pragmas, settings, write transactions, threads and processes sharing one file."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.store import Store
from appliance.store.db import BUSY_TIMEOUT_MS

Spawn = Callable[..., subprocess.Popen[str]]


def test_pragmas(store: Store) -> None:
    conn = store.conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
    assert BUSY_TIMEOUT_MS >= 5000


def test_wal_persists_for_plain_connections(store: Store) -> None:
    """WAL is a property of the file: a connection that sets nothing still sees it."""
    plain = sqlite3.connect(store.path)
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        plain.close()


@pytest.mark.parametrize(
    "value",
    [
        "text",
        "",
        0,
        -12,
        3.5,
        True,
        None,
        [1, "two", None],
        {"pool": {"name": "tank", "devices": ["/dev/sda", "/dev/sdb"]}, "port": 8443},
        "unicode ✓ and a\nnewline",
    ],
    ids=repr,
)
def test_setting_round_trip(store: Store, value: object) -> None:
    store.set_setting("k", value)
    assert store.get_setting("k", default="missing") == value
    assert store.all_settings() == {"k": value}


def test_setting_default_and_overwrite(store: Store) -> None:
    assert store.get_setting("absent") is None
    assert store.get_setting("absent", default={"x": 1}) == {"x": 1}
    store.set_setting("k", 1)
    store.set_setting("k", {"now": "a dict"})
    assert store.get_setting("k") == {"now": "a dict"}
    assert store.query_one("SELECT COUNT(*) AS n FROM settings")["n"] == 1


def test_settings_visible_to_another_store(store: Store) -> None:
    store.set_setting("shared", [1, 2])
    other = Store.open(store.path)
    try:
        assert other.get_setting("shared") == [1, 2]
    finally:
        other.close()


def _rows(store: Store) -> list[str]:
    return [r["key"] for r in store.query("SELECT key FROM settings ORDER BY key")]


def _committed_rows(path: Path) -> list[str]:
    """What another connection (another process, in effect) sees."""
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT key FROM settings ORDER BY key")]
    finally:
        conn.close()


def _insert(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("INSERT INTO settings (key, value, updated_at) VALUES (?, '1', 0)", (key,))


def test_write_commits(store: Store) -> None:
    with store.write() as conn:
        _insert(conn, "a")
        assert conn.in_transaction
        assert _committed_rows(store.path) == []  # not visible before the commit
    assert not store.conn().in_transaction
    assert _committed_rows(store.path) == ["a"]


def test_write_rolls_back_on_exception(store: Store) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.write() as conn:
        _insert(conn, "a")
        raise Boom
    assert not store.conn().in_transaction
    assert _rows(store) == []
    assert _committed_rows(store.path) == []
    with store.write() as conn:  # the connection is usable afterwards
        _insert(conn, "b")
    assert _committed_rows(store.path) == ["b"]


def test_write_rolls_back_on_base_exception(store: Store) -> None:
    with pytest.raises(KeyboardInterrupt), store.write() as conn:
        _insert(conn, "a")
        raise KeyboardInterrupt
    assert not store.conn().in_transaction
    assert _rows(store) == []


def test_write_rolls_back_on_sql_error(store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError), store.write() as conn:
        _insert(conn, "a")
        _insert(conn, "a")
    assert _rows(store) == []


def test_nested_write_joins_the_outer_transaction(store: Store) -> None:
    with store.write() as outer:
        _insert(outer, "a")
        with store.write() as inner:
            assert inner is outer
            _insert(inner, "b")
        assert outer.in_transaction  # the inner block did not commit
        assert _committed_rows(store.path) == []
        store.set_setting("c", 3)  # the API's own writes join too
        assert _committed_rows(store.path) == []
    assert _committed_rows(store.path) == ["a", "b", "c"]


def test_nested_write_failure_rolls_back_everything(store: Store) -> None:
    with pytest.raises(ValueError, match="inner"), store.write() as outer:
        _insert(outer, "a")
        with store.write() as inner:
            _insert(inner, "b")
            raise ValueError("inner")
    assert _committed_rows(store.path) == []
    assert not store.conn().in_transaction


def test_connections_are_per_thread(store: Store) -> None:
    main_conn = store.conn()
    assert store.conn() is main_conn
    seen: dict[str, object] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            conn = store.conn()
            assert store.conn() is conn
            seen[name] = conn
            store.set_setting(name, name)
            with pytest.raises(sqlite3.ProgrammingError):  # a connection stays with its thread
                main_conn.execute("SELECT 1")
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close_thread()

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    conns = list(seen.values())
    assert len({id(c) for c in conns}) == 4
    assert all(c is not main_conn for c in conns)
    assert store.all_settings() == {f"t{i}": f"t{i}" for i in range(4)}


def test_threads_writing_at_once_lose_nothing(store: Store) -> None:
    store.set_setting("counter", 0)
    per_thread = 50
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(per_thread):
                with store.write():
                    store.set_setting("counter", store.get_setting("counter") + 1)
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close_thread()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert store.get_setting("counter") == 4 * per_thread


INCREMENT = """
import sys, time
from pathlib import Path
from appliance.store import Store

store = Store(Path(sys.argv[1]))
go, count = Path(sys.argv[2]), int(sys.argv[3])
store.conn()
print("ready", flush=True)
deadline = time.monotonic() + 30
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.002)
for _ in range(count):
    with store.write():
        store.set_setting("counter", store.get_setting("counter") + 1)
store.close()
print("done", flush=True)
"""


def test_processes_writing_at_once_lose_nothing(store: Store, tmp_path: Path, spawn_python: Spawn) -> None:
    """Read-modify-write in ``store.write()`` from several processes: the count is exact, nobody fails
    with "database is locked"."""
    store.set_setting("counter", 0)
    go = tmp_path / "go"
    per_process, processes = 150, 3
    children = [spawn_python(INCREMENT, store.path, go, per_process) for _ in range(processes)]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    go.touch()
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert out.strip() == "done"
        assert "locked" not in err
    assert store.get_setting("counter") == processes * per_process
    assert store.query_one("PRAGMA integrity_check")[0] == "ok"


def test_close_thread(store: Store) -> None:
    first = store.conn()
    store.close_thread()
    with pytest.raises(sqlite3.ProgrammingError):
        first.execute("SELECT 1")
    second = store.conn()
    assert second is not first
    assert second.execute("SELECT 1").fetchone()[0] == 1
    store.close_thread()
    store.close_thread()  # closing twice is harmless


def test_close_thread_leaves_other_threads_alone(store: Store) -> None:
    main_conn = store.conn()
    done = threading.Event()

    def work() -> None:
        store.conn().execute("SELECT 1")
        store.close_thread()
        done.set()

    t = threading.Thread(target=work)
    t.start()
    t.join(10)
    assert done.is_set()
    assert main_conn.execute("SELECT 1").fetchone()[0] == 1


def test_close_closes_every_thread_connection(store: Store) -> None:
    main_conn = store.conn()
    holder: list[sqlite3.Connection] = []
    t = threading.Thread(target=lambda: holder.append(store.conn()))
    t.start()
    t.join(10)
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        main_conn.execute("SELECT 1")
    # The store can be used again after close: a new connection is opened.
    assert store.conn() is not main_conn
    assert store.query_one("SELECT 1 AS one")["one"] == 1


def test_audit(store: Store) -> None:
    store.audit("user:alice", "pool.scrub", "tank", job=7, when={"x": 1})
    row = store.query_one("SELECT * FROM audit")
    assert (row["actor"], row["action"], row["target"]) == ("user:alice", "pool.scrub", "tank")
    assert row["details"] == '{"job": 7, "when": {"x": 1}}'
    assert row["at"] > 0
