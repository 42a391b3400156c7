"""Pools on zfs-fuse and on OpenZFS: create (single, mirror, raidz), list, status, scrub, export/import,
offline/online, destroy; and the driver's capability detection."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.system.errors import InvalidInput
from appliance.zfs import capabilities, datasets, errors, pools, status
from appliance.zfs.host import ZfsHost
from tests.zfs_fixtures import FUSE, PoolMaker, TestPool, ZfsBackend, new_pool_name, only_openzfs, wait_for

pytestmark = pytest.mark.zfs
MiB = 1024 * 1024


def make(maker: PoolMaker, layout: str, count: int, **kwargs: object) -> tuple[str, list[str], pools.Pool]:
    """A pool made through the driver (and destroyed by the maker afterwards)."""
    name = new_pool_name()
    files = maker.files(count)
    maker.adopt(name)
    made = pools.create_pool(
        maker.host, name, files, layout=layout, mountpoint=str(maker.directory / "mnt" / name), **kwargs
    )
    return name, files, made


def wait_for_scan(host: ZfsHost, name: str, function: str) -> status.PoolStatus:
    def finished() -> status.PoolStatus | None:
        current = status.pool_status(host, name)
        return current if (current.scan.function, current.scan.state) == (function, "finished") else None

    return wait_for(f"the {function} of {name} to finish", finished)


def test_detects_the_implementation(zfs_backend: ZfsBackend) -> None:
    caps = zfs_backend.host.caps
    if zfs_backend.name == FUSE:
        assert (caps.implementation, caps.version, caps.features) == (capabilities.ZFS_FUSE, "pool-23", frozenset())
    else:
        assert caps.implementation == capabilities.OPENZFS
        m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", caps.version)
        assert m is not None and (int(m[1]), int(m[2])) >= (2, 3)
        assert caps == capabilities.openzfs_capabilities(int(m[1]), int(m[2]), int(m[3]))
        assert caps.has("json_output") and caps.has("native_encryption")
    assert ZfsHost.detect(zfs_backend.host.runner).caps == caps


def test_create_single_pool(pool_maker: PoolMaker) -> None:
    host = pool_maker.host
    name, files, made = make(pool_maker, "single", 1, fs_properties={"compression": "on", "bulwark:role": "test"})
    exact = host.caps.has("parsable_list")  # (zfs-fuse prints rounded sizes)
    assert (made.name, made.health, made.altroot, made.sizes_exact) == (name, "ONLINE", None, exact)
    assert 240 * MiB <= made.size_bytes <= 256 * MiB
    assert made.alloc_bytes + made.free_bytes == pytest.approx(made.size_bytes, rel=0 if exact else 0.02)
    assert made.guid.isdigit()
    assert name in [p.name for p in pools.list_pools(host)]
    assert pools.get_pool(host, name) == made
    assert pools.exists(host, name)
    root = datasets.get_dataset(host, name)
    assert (root.compression, root.user, root.mounted) == ("on", {"bulwark:role": "test"}, True)
    assert root.mountpoint == str(pool_maker.directory / "mnt" / name)
    assert pool_maker.fs.ismount(Path(root.mountpoint))
    [device] = status.pool_status(host, name).devices()
    assert (device.name, device.state) == (files[0], "ONLINE")


def test_create_mirror_and_raidz(pool_maker: PoolMaker) -> None:
    host = pool_maker.host
    mirror_name, mirror_files, mirror = make(pool_maker, "mirror", 2)
    raidz_name, raidz_files, raidz = make(pool_maker, "raidz", 3)
    assert mirror.health == raidz.health == "ONLINE"
    assert raidz.size_bytes > 2 * mirror.size_bytes  # three devices, one of parity
    tree = status.pool_status(host, mirror_name).root
    [top] = tree.children
    assert (top.name, top.kind, [c.name for c in top.children]) == ("mirror-0", "mirror", mirror_files)
    [top] = status.pool_status(host, raidz_name).root.children
    assert (top.name, top.kind, [c.name for c in top.children]) == ("raidz1-0", "raidz1", raidz_files)
    assert {mirror_name, raidz_name} <= {s.name for s in status.all_status(host)}


@pytest.mark.parametrize(
    ("layout", "count", "duplicate"),
    [("single", 2, False), ("mirror", 1, False), ("raidz2", 2, False), ("mirror", 2, True), ("draid", 3, False)],
)
def test_create_pool_validates_layout(pool_maker: PoolMaker, layout: str, count: int, duplicate: bool) -> None:
    files = pool_maker.files(1 if duplicate else count)
    with pytest.raises(InvalidInput):
        pools.create_pool(pool_maker.host, new_pool_name(), files * 2 if duplicate else files, layout=layout)


def test_create_pool_validates_names(pool_maker: PoolMaker) -> None:
    [file] = pool_maker.files(1)
    for bad_name in ("mirror", "1pool", "po ol", "pool\n"):
        with pytest.raises(InvalidInput):
            pools.create_pool(pool_maker.host, bad_name, [file])
    for bad_device in ("dev.img", "-f", f"{file} "):
        with pytest.raises(InvalidInput):
            pools.create_pool(pool_maker.host, new_pool_name(), [bad_device])


def test_make_sparse_file(pool_maker: PoolMaker) -> None:
    host, fs = pool_maker.host, pool_maker.fs
    fs.mkdir(pool_maker.directory)
    path = pool_maker.directory / "pool.img"
    pools.make_sparse_file(host, str(path), "1G")
    assert fs.size_and_blocks(path) == (1 << 30, 0)  # sparse
    with pytest.raises(InvalidInput):
        pools.make_sparse_file(host, str(pool_maker.directory / "small.img"), "1M")
    with pytest.raises(InvalidInput):
        pools.make_sparse_file(host, "relative.img", "1G")


def test_scrub_and_wait(pool: TestPool) -> None:
    pool.fs.write_random(pool.path() / "data", 8 * MiB)
    assert status.pool_status(pool.host, pool.name).scan.state == "none"
    pools.scrub_start(pool.host, pool.name)
    scan = wait_for_scan(pool.host, pool.name, "scrub").scan
    assert (scan.percent, scan.errors) == (100.0, 0)
    assert scan.ended_at is not None


@pytest.mark.slow
def test_scrub_start_returns_while_zfs_fuse_still_scrubs(
    pool_maker: PoolMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zfs-fuse's 'zpool scrub' blocks until the scrub ends; scrub_start() returns after a short wait and
    leaves it running."""
    if pool_maker.implementation != FUSE:
        pytest.skip("OpenZFS's 'zpool scrub' returns at once: there is no wait to cut short")
    big = pool_maker.create(size=512 * MiB)
    datasets.set_user_properties(big.host, big.name, {"bulwark:purpose": "slow scrub"})
    big.host.zfs("set", "checksum=sha256", big.name)  # slower to verify
    big.host.zfs("set", "compression=off", big.name)
    for i in range(6):
        big.fs.write_random(big.path() / f"data{i}", 32 * MiB)
    monkeypatch.setattr(pools, "FUSE_SCRUB_START_WAIT", 0.1)
    pools.scrub_start(big.host, big.name)
    scan = status.pool_status(big.host, big.name).scan
    assert (scan.function, scan.state) == ("scrub", "in_progress")
    assert scan.percent is not None and 0 <= scan.percent < 100
    pools.scrub_stop(big.host, big.name)
    # (zfs-fuse does not honour a stop in a scrub's first moments: then it runs to its end)
    ended = wait_for(
        "the scrub to end",
        lambda: (s := status.pool_status(big.host, big.name).scan).state != "in_progress" and s,
    )
    assert (ended.function, ended.state, ended.errors) in (("scrub", "canceled", 0), ("scrub", "finished", 0))
    pools.scrub_stop(big.host, big.name)  # no scrub running: harmless


def test_status_counts_checksum_errors_after_damage(pool_maker: PoolMaker) -> None:
    host = pool_maker.host
    name, files, _ = make(pool_maker, "mirror", 2)
    host.zfs("set", "compression=off", name)
    pool_maker.fs.write_random(pool_maker.directory / "mnt" / name / "data", 48 * MiB)
    pools.export_pool(host, name)
    # overwrite one side of the mirror, sparing its labels
    pool_maker.fs.overwrite_random(Path(files[1]), 8 * MiB, 120 * MiB)
    pools.import_pool(host, name, [str(Path(files[0]).parent)])
    pools.scrub_start(host, name)
    after = wait_for_scan(host, name, "scrub")
    healthy, damaged = after.devices()
    assert (healthy.name, healthy.checksum_errors) == (files[0], 0)
    assert damaged.name == files[1]
    assert damaged.checksum_errors > 0
    # zfs-fuse notes "… repaired" on the device line; OpenZFS notes "(repairing)" only while it scrubs
    assert damaged.note.endswith("repaired") if pool_maker.implementation == FUSE else damaged.note == ""
    assert after.scan.errors == 0  # the mirror repaired every block
    assert after.state == "ONLINE"
    assert "unrecoverable error" in after.status
    assert after.to_dict()["vdevs"]["children"][0]["children"][1]["checksum_errors"] == damaged.checksum_errors  # type: ignore[index]


def test_export_and_import_with_search_dir(pool: TestPool) -> None:
    host = pool.host
    datasets.create(host, pool.ds("keep"))
    pool.fs.write(pool.path("keep") / "file", b"survives export")
    pools.export_pool(host, pool.name)
    assert not pools.exists(host, pool.name)
    assert not pool.fs.ismount(pool.path())
    found = {p.name: p for p in pools.importable_pools(host, [str(pool.directory)])}
    assert found[pool.name].state == "ONLINE"
    assert found[pool.name].id.isdigit()
    imported = pools.import_pool(host, pool.name, [str(pool.directory)])
    assert (imported.name, imported.health) == (pool.name, "ONLINE")
    assert pool.fs.read(pool.path("keep") / "file") == b"survives export"
    assert pools.importable_pools(host, [str(pool.directory)]) == []


def test_offline_online_degraded(pool_maker: PoolMaker) -> None:
    host = pool_maker.host
    name, files, _ = make(pool_maker, "mirror", 2)
    pools.offline_device(host, name, files[1])
    degraded = same_status(host, name)
    assert degraded.state == "DEGRADED"
    assert [(d.name, d.state) for d in degraded.devices()] == [(files[0], "ONLINE"), (files[1], "OFFLINE")]
    assert degraded.root.children[0].state == "DEGRADED"
    assert "taken offline" in degraded.status
    assert pools.get_pool(host, name).health == "DEGRADED"
    pools.online_device(host, name, files[1])
    back = wait_for_scan(host, name, "resilver")
    back = same_status(host, name)
    assert back.state == "ONLINE"
    assert [d.state for d in back.devices()] == ["ONLINE", "ONLINE"]
    assert pools.get_pool(host, name).health == "ONLINE"


def same_status(host: ZfsHost, name: str) -> status.PoolStatus:
    """``zpool status`` of ``name``; on OpenZFS read both as JSON and as text, which must agree (call it while
    the pool's state stands still: the two reads are two moments)."""
    parsed = status.pool_status(host, name)
    if host.caps.has("json_output"):
        text = status.pool_status_text(host, name)
        assert text.root == parsed.root
        assert (text.state, text.status, text.action, text.errors, text.groups) == (
            parsed.state,
            parsed.status,
            parsed.action,
            parsed.errors,
            parsed.groups,
        )
        scan = ("function", "state", "percent", "errors", "ended_at")
        assert {k: getattr(text.scan, k) for k in scan} == {k: getattr(parsed.scan, k) for k in scan}
    return parsed


@only_openzfs
def test_degraded_mirror_of_whole_disks(zfs_backend: ZfsBackend, pool_maker: PoolMaker) -> None:
    """A mirror of two of the machine's disks (ZFS partitions them), one disk offlined: DEGRADED in
    'zpool status' and in 'zpool status -j' alike, then ONLINE again after its resilver."""
    host = pool_maker.host
    disks = list(zfs_backend.disks[:2])
    name = new_pool_name()
    pool_maker.adopt(name, Path("/dev"))
    made = pools.create_pool(host, name, disks, layout="mirror", mountpoint=str(pool_maker.directory / "mnt" / name))
    assert (made.health, made.sizes_exact) == ("ONLINE", True)
    short = [Path(d).name for d in disks]  # (status names whole disks by their short names)
    assert [(d.name, d.state) for d in same_status(host, name).devices()] == [
        (short[0], "ONLINE"),
        (short[1], "ONLINE"),
    ]

    pools.offline_device(host, name, disks[1])
    degraded = same_status(host, name)
    assert (degraded.state, degraded.root.state, degraded.root.children[0].state) == (
        "DEGRADED",
        "DEGRADED",
        "DEGRADED",
    )
    assert [(d.name, d.kind, d.state) for d in degraded.devices()] == [
        (short[0], "disk", "ONLINE"),
        (short[1], "disk", "OFFLINE"),
    ]
    assert degraded.status.startswith("One or more devices has been taken offline by the administrator.")
    assert "'zpool online'" in degraded.action
    assert pools.get_pool(host, name).health == "DEGRADED"

    pools.online_device(host, name, disks[1])
    wait_for_scan(host, name, "resilver")
    back = same_status(host, name)  # (compared once it is still: the two reads are two moments)
    assert (back.state, back.scan.function, back.scan.errors) == ("ONLINE", "resilver", 0)


@only_openzfs
def test_log_cache_and_spare_groups(zfs_backend: ZfsBackend, pool_maker: PoolMaker) -> None:
    host = pool_maker.host
    data, log, cache, spare = zfs_backend.disks[:4]
    name = new_pool_name()
    pool_maker.adopt(name, Path("/dev"))
    host.zpool("create", "-f", "-m", "none", name, data, "log", log, "cache", cache, "spare", spare, subject=name)
    parsed = same_status(host, name)
    assert [(d.name, d.state, d.group) for d in parsed.devices()] == [
        ("vda", "ONLINE", None),
        ("vdb", "ONLINE", "logs"),
        ("vdc", "ONLINE", "cache"),
        ("vdd", "AVAIL", "spares"),
    ]


def test_destroy_pool(pool_maker: PoolMaker) -> None:
    host = pool_maker.host
    name, _, _ = make(pool_maker, "single", 1)
    datasets.create(host, f"{name}/a")
    mountpoint = pool_maker.directory / "mnt" / name
    pools.destroy_pool(host, name)
    assert not pools.exists(host, name)
    assert not pool_maker.fs.ismount(mountpoint)
    with pytest.raises(errors.PoolNotFound):
        pools.destroy_pool(host, name)


def test_destroy_pool_right_after_create(pool_maker: PoolMaker) -> None:
    """zfs-fuse sometimes finds a just-created pool "busy" while its mount settles; the driver retries (and
    OpenZFS never needs to)."""
    for _ in range(6):
        name, _, _ = make(pool_maker, "single", 1)
        pools.destroy_pool(pool_maker.host, name)
        assert not pools.exists(pool_maker.host, name)
