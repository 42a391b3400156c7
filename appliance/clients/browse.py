"""Browsing a recovery point: a read-only clone of its snapshot, mounted under ``<pool>/browse``.

zfs-fuse has no ``.zfs/snapshot`` directories, and a clone works the same on OpenZFS, so a point is browsed
through a clone ``<pool>/browse/<id>`` made with ``readonly=on``. A browse session is a database row plus its
clone; it expires after ``SESSION_IDLE`` seconds without use. A restore job clones the point the same way, as
``<pool>/browse/job-<id>``. :func:`sweep` (periodic, and at daemon start) destroys every clone that no live
session or active job owns, including those left by a crash; the clone's ``bulwark:browse-owner`` property
says whom it belongs to even when the database does not know it (a pool imported into a fresh appliance).
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.clients import download, points, service
from appliance.clients.errors import BrowseSessionNotFound, PathNotFound
from appliance.clients.paths import clean_relative, resolve_inside
from appliance.jobs import queue
from appliance.store import Store
from appliance.system.errors import BulwarkError, NotFound
from appliance.zfs import datasets, properties, snapshots
from appliance.zfs.errors import DatasetNotFound
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.browse")

BROWSE = "browse"
SESSION_IDLE = 30 * 60
KEEPALIVE = 60.0  # a running download refreshes its session this often
CLONE_GRACE = 120.0  # a session row younger than this may still be waiting for its clone
MAX_LISTING = 10_000
P_OWNER = "bulwark:browse-owner"
P_POINT = "bulwark:browse-point"


def browse_root(store: Store) -> str:
    return f"{service.pool_name(store)}/{BROWSE}"


def ensure_browse_root(store: Store, zfs: ZfsHost) -> str:
    root = browse_root(store)
    if not datasets.exists(zfs, root):
        datasets.create(zfs, root, {"bulwark:role": "browse"})
    return root


def clone_point(store: Store, zfs: ZfsHost, point: points.RecoveryPoint, clone_id: str, owner: str) -> Path:
    """A read-only clone of ``point`` at ``<pool>/browse/<clone_id>``, mounted; returns its mount directory.
    An existing clone of the same name and point (a retried job) is reused."""
    clone = f"{ensure_browse_root(store, zfs)}/{clone_id}"
    if datasets.exists(zfs, clone):
        found = properties.get_one(zfs, clone, (P_POINT,))
        if found.get(P_POINT) is not None and found[P_POINT].value == point.snapshot:
            return _mounted(zfs, clone)
        destroy_clone(zfs, clone)
    snapshots.clone(zfs, point.snapshot, clone, {"readonly": "on", P_OWNER: owner, P_POINT: point.snapshot})
    return _mounted(zfs, clone)


def _mounted(zfs: ZfsHost, clone: str) -> Path:
    ds = datasets.get_dataset(zfs, clone)
    if not ds.mounted:
        datasets.mount(zfs, clone)
        ds = datasets.get_dataset(zfs, clone)
    if ds.mountpoint is None:
        raise NotFound(f"a mount point for {clone}")
    return Path(ds.mountpoint)


def destroy_clone(zfs: ZfsHost, clone: str) -> bool:
    try:
        datasets.destroy(zfs, clone)
    except DatasetNotFound:
        return False
    return True


@dataclass(frozen=True)
class BrowseSession:
    id: str
    client: str
    point: str  # the point's id within the client (share@bw-…)
    snapshot: str
    clone: str
    mountpoint: str
    created_by: str | None
    created_at: float
    last_used_at: float
    expires_at: float

    @property
    def root(self) -> Path:
        return Path(self.mountpoint)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client": self.client,
            "point": self.point,
            "snapshot": self.snapshot,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "expires_at": self.expires_at,
        }


def _session(row: Any) -> BrowseSession:
    snapshot = row["point"]
    area = snapshot.split("@", 1)[0].split("/clients/", 1)[-1].split("/", 1)[-1]
    return BrowseSession(
        id=row["id"],
        client=row["client"],
        point=f"{area}@{snapshot.split('@', 1)[1]}",
        snapshot=snapshot,
        clone=row["clone"],
        mountpoint=row["mountpoint"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
    )


def open_session(store: Store, zfs: ZfsHost, name: str, ref: str, *, by: str) -> BrowseSession:
    """Open (or reuse, for the same person and point) a browse session of a client's point."""
    point = points.get_point(store, zfs, name, ref)
    now = time.time()
    row = store.query_one(
        "SELECT * FROM browse_sessions WHERE client = ? AND point = ? AND created_by IS ? AND expires_at > ? "
        "ORDER BY created_at DESC LIMIT 1",
        (name, point.snapshot, by, now),
    )
    if row is not None and datasets.exists(zfs, row["clone"]):
        return touch(store, row["id"])
    sid = secrets.token_hex(8)
    clone = f"{browse_root(store)}/{sid}"
    with store.write() as conn:  # the row first: a crash after it leaves a row the sweep drops
        conn.execute(
            "INSERT INTO browse_sessions (id, client, point, clone, mountpoint, created_by, created_at, "
            "last_used_at, expires_at) VALUES (?, ?, ?, ?, '', ?, ?, ?, ?)",
            (sid, name, point.snapshot, clone, by, now, now, now + SESSION_IDLE),
        )
    try:
        mountpoint = clone_point(store, zfs, point, sid, f"session:{sid}")
    except BaseException:
        with store.write() as conn:
            conn.execute("DELETE FROM browse_sessions WHERE id = ?", (sid,))
        raise
    with store.write() as conn:
        conn.execute("UPDATE browse_sessions SET mountpoint = ? WHERE id = ?", (str(mountpoint), sid))
    log.info("browse session %s opened on %s", sid, point.snapshot)
    return get_session(store, sid)


def get_session(store: Store, sid: str) -> BrowseSession:
    row = store.query_one("SELECT * FROM browse_sessions WHERE id = ?", (sid,))
    if row is None or row["expires_at"] <= time.time() or not row["mountpoint"]:
        raise BrowseSessionNotFound(sid)
    return _session(row)


def touch(store: Store, sid: str) -> BrowseSession:
    """Keep a session alive (every request that uses it calls this)."""
    now = time.time()
    with store.write() as conn:
        conn.execute(
            "UPDATE browse_sessions SET last_used_at = ?, expires_at = ? WHERE id = ? AND expires_at > ?",
            (now, now + SESSION_IDLE, sid, now),
        )
    return get_session(store, sid)


def list_sessions(store: Store, client: str | None = None) -> list[BrowseSession]:
    rows = store.query("SELECT * FROM browse_sessions WHERE mountpoint != '' ORDER BY created_at")
    return [_session(r) for r in rows if client is None or r["client"] == client]


def close_session(store: Store, zfs: ZfsHost, sid: str) -> None:
    row = store.query_one("SELECT clone FROM browse_sessions WHERE id = ?", (sid,))
    if row is None:
        raise BrowseSessionNotFound(sid)
    destroy_clone(zfs, row["clone"])
    with store.write() as conn:
        conn.execute("DELETE FROM browse_sessions WHERE id = ?", (sid,))


def close_client_sessions(store: Store, zfs: ZfsHost, client: str) -> int:
    rows = store.query("SELECT id FROM browse_sessions WHERE client = ?", (client,))
    for row in rows:
        close_session(store, zfs, row["id"])
    return len(rows)


@dataclass(frozen=True)
class SweepReport:
    destroyed: list[str]
    dropped_sessions: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"destroyed": self.destroyed, "dropped_sessions": self.dropped_sessions}


def _owner_alive(store: Store, owner: str, now: float) -> bool:
    kind, _, ident = owner.partition(":")
    if kind == "session":
        row = store.query_one("SELECT expires_at FROM browse_sessions WHERE id = ?", (ident,))
        return row is not None and row["expires_at"] > now
    if kind == "job" and ident.isdigit():
        try:
            return queue.get(store, int(ident)).state in ("queued", "running")
        except NotFound:
            return False
    return False


def sweep(store: Store, zfs: ZfsHost, now: float | None = None) -> SweepReport:
    """Destroy clones that no live session or active job owns; drop expired or clone-less sessions."""
    at = time.time() if now is None else now
    root = browse_root(store)
    destroyed: list[str] = []
    if datasets.exists(zfs, root):
        found = properties.get(zfs, [root], (P_OWNER, "type"), depth=1)
        for clone, props in sorted(found.items()):
            if clone == root or "@" in clone:
                continue
            owner = props[P_OWNER].value if P_OWNER in props and props[P_OWNER].is_set else ""
            if _owner_alive(store, owner, at):
                continue
            try:
                destroy_clone(zfs, clone)
                destroyed.append(clone)
            except BulwarkError as exc:  # in use right now (a download still reading): next sweep
                log.warning("stale browse clone %s not destroyed yet: %s", clone, exc)
    dropped = []
    for row in store.query("SELECT id, clone, created_at, expires_at FROM browse_sessions"):
        if datasets.exists(zfs, row["clone"]):
            continue  # alive, or expired but in use right now (the pass above retries it next time)
        if row["expires_at"] > at and at - row["created_at"] < CLONE_GRACE:
            continue  # its clone is being made right now
        with store.write() as conn:
            conn.execute("DELETE FROM browse_sessions WHERE id = ?", (row["id"],))
        dropped.append(row["id"])
    if destroyed or dropped:
        log.info("browse sweep: destroyed %s, dropped sessions %s", destroyed, dropped)
    return SweepReport(destroyed, dropped)


# -- listing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    name: str
    path: str  # relative to the point's root
    type: str  # file, dir, symlink, other
    size: int
    mtime: float
    target: str | None = None  # of a symlink

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "type": self.type,
            "size": self.size,
            "mtime": self.mtime,
            "target": self.target,
        }


def _type(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def list_dir(root: Path, path: str = "") -> list[Entry]:
    """The entries of directory ``path`` under ``root`` (symlinks shown, never followed), folders first."""
    rel = clean_relative(path)
    directory = resolve_inside(root, rel)
    if not directory.is_dir():
        raise PathNotFound(rel or "/", "this point (or it is not a folder)")
    entries: list[Entry] = []
    with os.scandir(directory) as it:
        for item in it:
            if len(entries) >= MAX_LISTING:
                break
            st = item.stat(follow_symlinks=False)
            kind = _type(st.st_mode)
            entries.append(
                Entry(
                    name=item.name,
                    path=f"{rel}/{item.name}" if rel else item.name,
                    type=kind,
                    size=st.st_size if kind == "file" else 0,
                    mtime=st.st_mtime,
                    target=os.readlink(item.path) if kind == "symlink" else None,
                )
            )
    entries.sort(key=lambda e: (e.type != "dir", e.name.lower(), e.name))
    return entries


def browse(store: Store, sid: str, path: str = "") -> list[Entry]:
    """List a folder of a session's point (and keep the session alive)."""
    return list_dir(touch(store, sid).root, path)


def stream_file(store: Store, sid: str, path: str) -> download.FileDownload:
    """One file of a session's point, as chunks (name and size known up front: a Content-Length)."""
    got = download.read_file(touch(store, sid).root, path)
    return download.FileDownload(got.name, got.size, got.mtime, _keeping_alive(store, sid, got.chunks))


def stream_zip(store: Store, sid: str, paths: list[str], *, compress: bool = False) -> Iterator[bytes]:
    """A zip of files and folders of a session's point, chunk by chunk, with no size cap. The paths are checked
    before the first chunk; the session is kept alive while the download runs, however long it takes."""
    session = touch(store, sid)
    chunks = download.zip_stream(session.root, paths, compress=compress)
    first = next(chunks, b"")  # raises here (UnsafePath, PathNotFound) rather than mid-download
    return _keeping_alive(store, sid, itertools.chain([first], chunks))


def _keeping_alive(store: Store, sid: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
    last = time.monotonic()
    for chunk in chunks:
        if time.monotonic() - last > KEEPALIVE:
            last = time.monotonic()
            touch(store, sid)
        yield chunk
