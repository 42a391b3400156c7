"""``zfs diff`` on OpenZFS, parsed into added, removed, modified and renamed files, names with spaces and
non-ASCII letters included. zfs-fuse has no ``zfs diff``: the driver says so."""

from __future__ import annotations

import pytest

from appliance.system.errors import InvalidInput, Unsupported
from appliance.zfs import datasets, diff, snapshots
from tests.zfs_fixtures import TestPool, only_openzfs, only_zfs_fuse

pytestmark = pytest.mark.zfs


@only_zfs_fuse
def test_diff_needs_openzfs(pool: TestPool) -> None:
    snapshots.create(pool.host, pool.name, "s1")
    with pytest.raises(Unsupported, match="'zfs diff' needs OpenZFS"):
        diff.diff(pool.host, f"{pool.name}@s1")


@only_openzfs
def test_diff_between_snapshots_and_to_the_live_filesystem(pool: TestPool) -> None:
    host, ds = pool.host, pool.ds("data")
    datasets.create(host, ds)
    root = pool.path("data")
    fs = pool.fs
    fs.write(root / "report.txt", b"v1")
    fs.write(root / "old name.txt", b"to be renamed")
    fs.write(root / "gone", b"to be removed")
    fs.mkdir(root / "dir")
    fs.write(root / "dir" / "x", b"x")
    snapshots.create(host, ds, "s1")
    fs.write(root / "report.txt", b"v2, longer")
    fs.unlink(root / "gone")
    fs.rename(root / "old name.txt", root / "ünïcödé\tname")
    fs.write(root / "dir" / "new", b"new")
    snapshots.create(host, ds, "s2")

    got = {(c.change, c.kind, c.path, c.new_path) for c in diff.diff(host, f"{ds}@s1", f"{ds}@s2")}
    assert got == {
        ("modified", "file", f"{root}/report.txt", None),
        ("removed", "file", f"{root}/gone", None),
        ("renamed", "file", f"{root}/old name.txt", f"{root}/ünïcödé\tname"),
        ("added", "file", f"{root}/dir/new", None),
        ("modified", "directory", f"{root}/dir", None),
        ("modified", "directory", f"{root}/", None),
    }
    changes = diff.diff(host, f"{ds}@s1", f"{ds}@s2")
    assert all(c.changed_at > 1_700_000_000 for c in changes)

    fs.write(root / "since s2", b"live")
    now = {(c.change, c.path) for c in diff.diff(host, f"{ds}@s2")}
    assert now == {("added", f"{root}/since s2"), ("modified", f"{root}/")}
    assert {(c.change, c.path) for c in diff.diff(host, f"{ds}@s2", ds)} == now
    assert diff.diff(host, f"{ds}@s2", f"{ds}@s2") == []
    with pytest.raises(InvalidInput):  # only a later state of the same dataset
        diff.diff(host, f"{ds}@s1", f"{pool.name}@s1")
