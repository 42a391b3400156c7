"""Snapshots, holds, clones and rollback on zfs-fuse and on OpenZFS."""

from __future__ import annotations

import errno

import pytest

from appliance.system.errors import InvalidInput, Unsupported
from appliance.zfs import datasets, errors, holds, snapshots
from tests.zfs_fixtures import TestPool

pytestmark = pytest.mark.zfs
MiB = 1024 * 1024


@pytest.fixture
def ds(pool: TestPool) -> str:
    name = pool.ds("data")
    datasets.create(pool.host, name)
    return name


def test_create_with_user_properties(pool: TestPool, ds: str) -> None:
    pool.fs.write_random(pool.path("data") / "f", 2 * MiB)
    snap = snapshots.create(pool.host, ds, "auto-2026-11-26_14.34", {"bulwark:source": "agent", "bulwark:job": "17"})
    assert (snap.name, snap.dataset, snap.snapname) == (f"{ds}@auto-2026-11-26_14.34", ds, "auto-2026-11-26_14.34")
    assert snap.user == {"bulwark:source": "agent", "bulwark:job": "17"}
    assert snap.holds == 0
    assert snap.referenced >= 2 * MiB
    assert snap.creation > 1_700_000_000
    assert snapshots.get_snapshot(pool.host, snap.name) == snap
    assert snapshots.exists(pool.host, snap.name)
    assert not snapshots.exists(pool.host, f"{ds}@nope")
    with pytest.raises(InvalidInput):
        snapshots.create(pool.host, ds, "s1", {"compression": "on"})  # only bulwark: properties
    for bad in ("", "-r", "a b", "a@b", "a\n"):
        with pytest.raises(InvalidInput):
            snapshots.create(pool.host, ds, bad)


def test_list_order_and_fields(pool: TestPool, ds: str) -> None:
    host = pool.host
    datasets.create(host, f"{ds}/child")
    snapshots.create(host, f"{ds}/child", "c1")
    for name in ("zz", "aa", "mm"):  # within one second: the order of creation, not of names
        pool.fs.write_random(pool.path("data") / name, 64 * 1024)
        snapshots.create(host, ds, name, {"bulwark:source": "smb"} if name == "aa" else None)
    listed = snapshots.list_snapshots(host, ds)
    assert [s.snapname for s in listed] == ["zz", "aa", "mm"]
    assert [s.creation for s in listed] == sorted(s.creation for s in listed)
    assert [s.referenced for s in listed] == sorted(s.referenced for s in listed)
    assert all(s.used >= 0 and s.holds == 0 for s in listed)
    assert listed[1].user == {"bulwark:source": "smb"}
    narrow = snapshots.list_snapshots(host, ds, user_props=("bulwark:source",))
    assert [(s.snapname, s.user) for s in narrow] == [("zz", {}), ("aa", {"bulwark:source": "smb"}), ("mm", {})]
    assert [s.name for s in snapshots.list_snapshots(host, f"{ds}/child")] == [f"{ds}/child@c1"]
    assert snapshots.list_snapshots(host, pool.name) == []
    with pytest.raises(errors.DatasetNotFound):
        snapshots.list_snapshots(host, pool.ds("nope"))


def test_destroy(pool: TestPool, ds: str) -> None:
    snap = snapshots.create(pool.host, ds, "s1")
    snapshots.destroy(pool.host, snap.name)
    assert not snapshots.exists(pool.host, snap.name)
    with pytest.raises(errors.DatasetNotFound):
        snapshots.destroy(pool.host, snap.name)
    with pytest.raises(InvalidInput):
        snapshots.destroy(pool.host, ds)  # a dataset is not a snapshot


def test_holds(pool: TestPool, ds: str) -> None:
    host = pool.host
    snap = snapshots.create(host, ds, "pinned").name
    holds.hold(host, snap, "bulwark:lock")
    holds.hold(host, snap, "pin-1")
    assert holds.hold_count(host, snap) == 2
    assert snapshots.get_snapshot(host, snap).holds == 2
    with pytest.raises(errors.SnapshotHeld) as held:
        snapshots.destroy(host, snap)
    assert held.value.args == (snap, 2)
    assert str(held.value) == f"Snapshot {snap} is held (2 hold(s)) and cannot be destroyed."
    with pytest.raises(errors.HoldExists) as exists:
        holds.hold(host, snap, "pin-1")
    assert exists.value.args == (snap, "pin-1")
    with pytest.raises(errors.HoldNotFound) as missing:
        holds.release(host, snap, "pin-2")
    assert missing.value.args == (snap, "pin-2")
    if host.caps.has("holds_list"):
        listed = holds.list_holds(host, snap)
        assert sorted(h.tag for h in listed) == ["bulwark:lock", "pin-1"]
        assert {h.snapshot for h in listed} == {snap}
        assert all(h.created > 1_700_000_000 for h in listed)
    else:
        with pytest.raises(Unsupported, match="listing hold tags"):
            holds.list_holds(host, snap)
    holds.release(host, snap, "pin-1")
    holds.release(host, snap, "bulwark:lock")
    assert holds.hold_count(host, snap) == 0
    snapshots.destroy(host, snap)
    for bad in ("", "-r", "a b", "tag\n"):
        with pytest.raises(InvalidInput):
            holds.hold(host, f"{ds}@x", bad)


def test_clone_readonly(pool: TestPool, ds: str) -> None:
    host = pool.host
    pool.fs.write(pool.path("data") / "report.txt", b"version 1")
    snap = snapshots.create(host, ds, "s1").name
    pool.fs.write(pool.path("data") / "report.txt", b"version 2")
    clone = snapshots.clone(host, snap, pool.ds("restore"), {"readonly": "on", "bulwark:origin": snap})
    assert (clone.name, clone.readonly, clone.mounted, clone.user) == (
        pool.ds("restore"),
        True,
        True,
        {"bulwark:origin": snap},
    )
    assert pool.fs.read(pool.path("restore") / "report.txt") == b"version 1"
    with pytest.raises(OSError) as exc_info:
        pool.fs.write(pool.path("restore") / "new", b"x")
    assert exc_info.value.errno == errno.EROFS
    with pytest.raises(errors.HasDependentClones):
        snapshots.destroy(host, snap)
    writable = snapshots.clone(host, snap, pool.ds("scratch"))
    assert writable.readonly is False
    pool.fs.write(pool.path("scratch") / "new", b"x")
    datasets.destroy(host, pool.ds("restore"))  # mounted clones go too
    datasets.destroy(host, pool.ds("scratch"))
    assert not pool.fs.ismount(pool.path("restore"))
    snapshots.destroy(host, snap)


def test_rollback(pool: TestPool, ds: str) -> None:
    host = pool.host
    pool.fs.write(pool.path("data") / "f", b"one")
    snapshots.create(host, ds, "s1")
    pool.fs.write(pool.path("data") / "f", b"two, longer")
    pool.fs.write(pool.path("data") / "extra", b"x")
    snapshots.rollback(host, f"{ds}@s1")
    assert sorted(pool.fs.listdir(pool.path("data"))) == ["f"]
    assert pool.fs.read(pool.path("data") / "f") == b"one"


def test_rollback_refused_when_newer_snapshots_exist(pool: TestPool, ds: str) -> None:
    host = pool.host
    snapshots.create(host, ds, "s1")
    snapshots.create(host, ds, "s2")
    # zfs-fuse: "more recent snapshots exist"; OpenZFS: "more recent snapshots or bookmarks exist"
    with pytest.raises(errors.NewerSnapshotsExist) as exc_info:
        snapshots.rollback(host, f"{ds}@s1")
    assert exc_info.value.args == (f"{ds}@s1",)
    assert [s.snapname for s in snapshots.list_snapshots(host, ds)] == ["s1", "s2"]  # nothing destroyed


def test_rename(pool: TestPool, ds: str) -> None:
    snapshots.create(pool.host, ds, "s1")
    assert snapshots.rename(pool.host, f"{ds}@s1", "s1-renamed") == f"{ds}@s1-renamed"
    assert [s.snapname for s in snapshots.list_snapshots(pool.host, ds)] == ["s1-renamed"]
    with pytest.raises(InvalidInput):
        snapshots.rename(pool.host, f"{ds}@s1-renamed", "../x")
