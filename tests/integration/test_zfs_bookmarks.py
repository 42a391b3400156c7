"""Bookmarks on OpenZFS: an incremental send from a bookmark once its snapshot is gone from the source.
zfs-fuse refuses bookmarks as unsupported."""

from __future__ import annotations

import pytest

from appliance.system.errors import InvalidInput, Unsupported
from appliance.zfs import bookmarks, datasets, errors, properties, snapshots, transfer
from appliance.zfs.transfer import SendOptions
from tests.zfs_fixtures import TestPool, only_openzfs, only_zfs_fuse

pytestmark = pytest.mark.zfs
MiB = 1024 * 1024


@only_zfs_fuse
def test_bookmarks_need_openzfs(pool: TestPool) -> None:
    host = pool.host
    snapshots.create(host, pool.name, "s1")
    for call in (
        lambda: bookmarks.create(host, f"{pool.name}@s1", "b1"),
        lambda: bookmarks.list_bookmarks(host, pool.name),
        lambda: bookmarks.destroy(host, f"{pool.name}#b1"),
        lambda: transfer.send_argv(host, f"{pool.name}@s1", SendOptions(incremental_from=f"{pool.name}#b1")),
    ):
        with pytest.raises(Unsupported, match="bookmarks needs OpenZFS"):
            call()


@only_openzfs
def test_incremental_from_a_bookmark_after_its_snapshot_is_destroyed(pool: TestPool) -> None:
    host, src = pool.host, pool.ds("src")
    datasets.create(host, src)
    pool.fs.write_random(pool.path("src") / "a", 2 * MiB)
    first = snapshots.create(host, src, "s1")
    mark = bookmarks.create(host, first.name, "b1")
    guid = properties.get_one(host, first.name, ["guid"])["guid"].value
    assert (mark.name, mark.dataset, mark.mark, mark.guid, mark.creation) == (
        f"{src}#b1",
        src,
        "b1",
        guid,
        first.creation,
    )
    assert bookmarks.list_bookmarks(host, src) == [mark]
    transfer.replicate(host, first.name, pool.ds("copy"))

    snapshots.destroy(host, first.name)  # the source frees s1; the target still has it
    pool.fs.write(pool.path("src") / "b", b"after s1")
    snapshots.create(host, src, "s2")
    with pytest.raises(errors.DatasetNotFound):  # (the snapshot itself cannot be the base any more)
        transfer.replicate(host, f"{src}@s2", pool.ds("copy"), SendOptions(incremental_from=first.name))
    transfer.replicate(host, f"{src}@s2", pool.ds("copy"), SendOptions(incremental_from=mark.name))
    assert [s.snapname for s in snapshots.list_snapshots(host, pool.ds("copy"))] == ["s1", "s2"]
    assert pool.snapshot_files(pool.ds("copy@s2")) == pool.snapshot_files(f"{src}@s2")

    bookmarks.destroy(host, mark.name)
    assert bookmarks.list_bookmarks(host, src) == []
    for bad in (lambda: bookmarks.create(host, f"{src}@s2", "a#b"), lambda: bookmarks.destroy(host, f"{src}@s2")):
        with pytest.raises(InvalidInput):
            bad()
