"""Whole driver functions against recorded command outputs, through a replaying runner.

A recording answers only the exact argv it was recorded with. The zfs-fuse recordings were made with the
driver's own commands (``tests/data/record_zfs_fuse.py``), so most functions replay end to end there.
The OpenZFS recordings were made by hand in a VM; where their command differs from the driver's, only
the parser is tested (``test_zfs_parsers.py``), namely:

- ``pools.list_pools``/``get_pool``/``create_pool``/``import_pool``: recorded ``zpool list -H -p`` with the
  default columns, not ``-o name,size,allocated,free,health,guid,altroot``; ``zpool create -f``;
- ``properties.get``, ``datasets.get_dataset``/``list_datasets``, ``snapshots.get_snapshot``/``list_snapshots``,
  ``holds.hold_count`` and the hold count that ``snapshots.destroy`` looks up: recorded ``zfs get -H -p all``
  without ``-o name,property,value,source`` (and no ``-d 1``);
- ``holds.list_holds``: recorded ``zfs holds -H -p -r``, the driver runs it without ``-r``;
- ``pools.offline_device``/``online_device``: recorded with the short device name ``vdc``, which the driver's
  validation refuses (it wants an absolute path).
"""

from __future__ import annotations

import shlex

import pytest

from appliance.system.errors import InvalidInput, Unsupported
from appliance.zfs import capabilities, datasets, errors, holds, pools, properties, snapshots, status
from appliance.zfs.host import ZfsHost
from tests.replay import OPENZFS, ZFS_FUSE, Recording, Recordings, ReplayRunner

oz = Recordings(OPENZFS)
fz = Recordings(ZFS_FUSE)
OPENZFS_CAPS = capabilities.openzfs_capabilities(2, 3, 2)
FUSE_CAPS = capabilities.zfs_fuse_capabilities(23)


def openzfs(*steps: Recording) -> ZfsHost:
    return ZfsHost(ReplayRunner(*steps), OPENZFS_CAPS)


def fuse(*steps: Recording) -> ZfsHost:
    return ZfsHost(ReplayRunner(*steps), FUSE_CAPS)


def done(host: ZfsHost) -> None:
    assert isinstance(host.runner, ReplayRunner)
    host.runner.assert_done()


def arg(recording: Recording, index: int) -> str:
    """An argument of the recorded command (paths differ per zfs-fuse recording run)."""
    return shlex.split(recording.command)[index]


# -- capabilities ---------------------------------------------------------------------------------------------


def test_detect_openzfs() -> None:
    host = ZfsHost.detect(ReplayRunner(oz["zfs_version"]))
    assert (host.caps.implementation, host.caps.version) == (capabilities.OPENZFS, "2.3.2")
    done(host)


def test_detect_zfs_fuse() -> None:
    host = ZfsHost.detect(ReplayRunner(fz["zfs_version"], fz["zpool_upgrade_v"]))
    assert host.caps == FUSE_CAPS
    done(host)


# -- OpenZFS ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recording", "pool", "state"),
    [
        ("zpool_status_mirror", "mpool", "ONLINE"),
        ("zpool_status_degraded", "mpool", "DEGRADED"),
        ("zpool_status_online", "mpool", "ONLINE"),
        ("zpool_status_scrubbed", "mpool", "ONLINE"),
        ("zpool_status_imported", "testpool", "ONLINE"),
    ],
)
def test_openzfs_pool_status_text(recording: str, pool: str, state: str) -> None:
    host = openzfs(oz[recording])
    parsed = status.pool_status_text(host, pool)
    assert (parsed.name, parsed.state) == (pool, state)
    done(host)


def test_openzfs_before_json_all_status() -> None:
    # (OpenZFS before 2.3 has no 'zpool status -j': the driver reads the same text as 2.3 prints)
    host = ZfsHost(ReplayRunner(oz["zpool_status"]), capabilities.openzfs_capabilities(2, 2, 7))
    assert [p.name for p in status.all_status(host)] == ["testpool"]
    done(host)


def test_openzfs_importable_pools() -> None:
    host = openzfs(oz["zpool_import_list"])
    assert pools.importable_pools(host) == [pools.ImportablePool("testpool", "9041467939768055058", "ONLINE")]


def test_openzfs_export_and_destroy_pool() -> None:
    host = openzfs(oz["zpool_export"], oz["zpool_destroy_mpool"])
    pools.export_pool(host, "testpool")
    pools.destroy_pool(host, "mpool")
    done(host)


def test_openzfs_hold_and_release() -> None:
    host = openzfs(oz["zfs_hold"], oz["zfs_release"])
    holds.hold(host, "testpool/a@snap1", "keep")
    holds.release(host, "testpool/a@snap1", "keep")
    done(host)


def test_openzfs_destroy_held_snapshot() -> None:
    host = openzfs(oz["zfs_destroy_held"])
    with pytest.raises(errors.SnapshotHeld):
        host.zfs("destroy", "testpool/a@snap1", subject="testpool/a@snap1")


def test_openzfs_rollback_refused() -> None:
    host = openzfs(oz["zfs_rollback_fail"])
    with pytest.raises(errors.NewerSnapshotsExist) as exc_info:
        snapshots.rollback(host, "testpool/a@snap1")
    assert str(exc_info.value) == "Cannot roll back to testpool/a@snap1: newer snapshots exist."


# -- zfs-fuse: pools -----------------------------------------------------------------------------------------------


def test_fuse_list_pools() -> None:
    host = fuse(fz["zpool_list_Ho_all"], fz["zpool_list_Ho_single"], fz["zpool_list_Ho_empty"])
    assert [(p.name, p.health, p.sizes_exact) for p in pools.list_pools(host)] == [
        ("fzmirror", "ONLINE", False),
        ("fzsingle", "ONLINE", False),
    ]
    assert pools.get_pool(host, "fzsingle").size_bytes == 250 << 20
    assert pools.list_pools(host) == []
    done(host)


def test_fuse_missing_pool() -> None:
    host = fuse(fz["zpool_list_Ho_missing"], fz["zpool_list_Ho_missing"], fz["zpool_status_missing"])
    with pytest.raises(errors.PoolNotFound) as exc_info:
        pools.get_pool(host, "fznope")
    assert str(exc_info.value) == "Pool fznope does not exist or is not imported."
    assert pools.exists(host, "fznope") is False
    with pytest.raises(errors.PoolNotFound):
        status.pool_status(host, "fznope")
    done(host)


def test_fuse_create_pool() -> None:
    created = fz["zpool_create_single"]
    host = fuse(created, fz["zpool_list_Ho_single"])
    made = pools.create_pool(host, "fzsingle", [arg(created, -1)], mountpoint=arg(created, 3))
    assert (made.name, made.health) == ("fzsingle", "ONLINE")
    done(host)


def test_fuse_create_mirror_and_raidz() -> None:
    mirror = fz["zpool_create_mirror"]
    raidz = fz["zpool_create_raidz"]
    host = fuse(mirror, fz["zpool_list_Ho_degraded"], raidz, fz["zpool_list_Ho_raidz"])
    pools.create_pool(host, "fzmirror", shlex.split(mirror.command)[-2:], layout="mirror", mountpoint=arg(mirror, 3))
    made = pools.create_pool(host, "fzraidz", shlex.split(raidz.command)[-3:], layout="raidz", mountpoint=arg(raidz, 3))
    assert made.size_bytes == 370 << 20
    done(host)


@pytest.mark.parametrize(
    ("recording", "error", "pool", "device_arg"),
    [
        ("zpool_create_exists", errors.PoolExists, "fzsingle", -1),
        ("zpool_create_in_use", errors.DeviceInUse, "fzother", -1),
        ("zpool_create_no_device", errors.DeviceNotFound, "fzother", -1),
    ],
)
def test_fuse_create_pool_refused(recording: str, error: type[Exception], pool: str, device_arg: int) -> None:
    step = fz[recording]
    host = fuse(step)
    with pytest.raises(error):
        pools.create_pool(host, pool, [arg(step, device_arg)], mountpoint=arg(step, 3))
    done(host)


def test_fuse_pool_status() -> None:
    host = fuse(fz["zpool_status_degraded"], fz["zpool_status_all"], fz["zpool_status_empty"])
    degraded = status.pool_status(host, "fzmirror")
    assert degraded.state == "DEGRADED"
    assert [d.state for d in degraded.devices()] == ["ONLINE", "OFFLINE"]
    assert [p.name for p in status.all_status(host)] == ["fzmirror", "fzsingle"]
    assert status.all_status(host) == []
    done(host)


def test_fuse_offline_online_scrub() -> None:
    offline = fz["zpool_offline"]
    device = arg(offline, -1)
    host = fuse(offline, fz["zpool_online"], fz["zpool_scrub"], fz["zpool_offline_missing"], fz["zpool_scrub_missing"])
    pools.offline_device(host, "fzmirror", device)
    pools.online_device(host, "fzmirror", device)
    pools.scrub_start(host, "fzmirror")
    with pytest.raises(errors.DeviceNotFound) as exc_info:
        pools.offline_device(host, "fzmirror", arg(fz["zpool_offline_missing"], -1))
    assert exc_info.value.args[0].endswith("/nope.img")
    with pytest.raises(errors.PoolNotFound):
        pools.scrub_start(host, "fznope")
    done(host)


def test_fuse_export_import() -> None:
    listing = fz["zpool_import_d_list"]
    search_dir = arg(listing, -1)
    host = fuse(fz["zpool_export"], listing, fz["zpool_import_d"], fz["zpool_list_Ho_repaired"])
    pools.export_pool(host, "fzmirror")
    assert [p.name for p in pools.importable_pools(host, [search_dir])] == ["fzmirror"]
    assert pools.import_pool(host, "fzmirror", [search_dir]).name == "fzmirror"
    done(host)


def test_fuse_nothing_to_import() -> None:
    empty = fz["zpool_import_d_empty"]
    host = fuse(empty, fz["zpool_import_d_missing"])
    assert pools.importable_pools(host, [arg(empty, -1)]) == []
    with pytest.raises(errors.PoolNotFound):
        pools.import_pool(host, "fznope", [arg(empty, -1)])
    done(host)


# -- zfs-fuse: datasets and properties ------------------------------------------------------------------------------


def test_fuse_create_dataset() -> None:
    host = fuse(fz["zfs_create_a"], fz["zfs_get_Hpo_all_a"])
    made = datasets.create(host, "fzsingle/a", {"bulwark:client": "acme", "quota": "104857600"})
    assert (made.name, made.quota, made.user) == ("fzsingle/a", 104857600, {"bulwark:client": "acme"})
    done(host)


def test_fuse_create_dataset_refused() -> None:
    host = fuse(fz["zfs_create_no_parent"], fz["zfs_create_exists"], fz["zfs_create_bad_prop"])
    with pytest.raises(errors.ParentNotFound) as not_found:
        datasets.create(host, "fzsingle/nope/x")
    assert str(not_found.value) == "The parent of dataset fzsingle/nope/x does not exist."
    with pytest.raises(errors.DatasetExists):
        datasets.create(host, "fzsingle/a")
    with pytest.raises(errors.InvalidProperty):
        datasets.create(host, "fzsingle/c", {"bogusprop": "1"})
    done(host)


def test_fuse_list_datasets() -> None:
    host = fuse(fz["zfs_list_Ho_r"], fz["zfs_list_Ho_r"], fz["zfs_get_Hpo_all_many"])
    assert datasets.list_names(host, "fzsingle") == ["fzsingle", "fzsingle/a", "fzsingle/a/child"]
    listed = datasets.list_datasets(host, "fzsingle")
    assert [(d.name, d.user) for d in listed] == [
        ("fzsingle", {}),
        ("fzsingle/a", {"bulwark:client": "acme"}),
        ("fzsingle/a/child", {"bulwark:client": "acme"}),
    ]
    done(host)


def test_fuse_dataset_exists() -> None:
    host = fuse(fz["zfs_list_Ho_a"], fz["zfs_list_Ho_missing"])
    assert datasets.exists(host, "fzsingle/a") is True
    assert datasets.exists(host, "fzsingle/nope") is False
    done(host)


def test_fuse_get_missing_dataset() -> None:
    host = fuse(fz["zfs_get_Hpo_missing"])
    with pytest.raises(errors.DatasetNotFound) as exc_info:
        datasets.get_dataset(host, "fzsingle/nope")
    assert str(exc_info.value) == "Dataset fzsingle/nope does not exist."


def test_fuse_user_properties() -> None:
    host = fuse(fz["zfs_get_Hpo_user_unset"], fz["zfs_set_user"], fz["zfs_get_Hpo_user_set"], fz["zfs_inherit_user"])
    assert properties.get_one(host, "fzsingle/a", ["bulwark:missing"])["bulwark:missing"].is_set is False
    datasets.set_user_properties(host, "fzsingle/a", {"bulwark:note": "hello world"})
    got = properties.get(host, ["fzsingle/a", "fzsingle/a/child"], ["bulwark:note", "bulwark:client"])
    assert got["fzsingle/a/child"]["bulwark:note"].source == "inherited from fzsingle/a"
    datasets.clear_user_property(host, "fzsingle/a", "bulwark:note")
    done(host)


def test_fuse_quotas() -> None:
    host = fuse(fz["zfs_set_quota"], fz["zfs_set_quota_small"])
    datasets.set_quota(host, "fzsingle/a", 50 << 20, ref=True)
    with pytest.raises(errors.QuotaTooSmall):
        datasets.set_quota(host, "fzsingle/a", 1024)
    with pytest.raises(InvalidInput):
        datasets.set_quota(host, "fzsingle/a", 0)
    done(host)


def test_fuse_property_refusals() -> None:
    host = fuse(fz["zfs_set_readonly_prop"], fz["zfs_set_bad_number"], fz["zfs_inherit_readonly_prop"])
    with pytest.raises(errors.InvalidProperty):
        properties.set_properties(host, "fzsingle/a", {"used": "5"})
    with pytest.raises(errors.InvalidProperty):
        properties.set_properties(host, "fzsingle/a", {"quota": "lots"})
    with pytest.raises(errors.InvalidProperty):
        properties.inherit(host, "fzsingle/a", "used")
    done(host)


def test_fuse_type_filter_unsupported() -> None:
    host = fuse()
    with pytest.raises(Unsupported, match="'zfs get -t' type filtering needs OpenZFS"):
        properties.get(host, ["fzsingle"], types=["snapshot"])


def test_fuse_destroy_dataset() -> None:
    host = fuse(fz["zfs_destroy_has_children"], fz["zfs_destroy_r_clones"], fz["zfs_destroy_r"])
    with pytest.raises(errors.HasChildren):
        datasets.destroy(host, "fzsingle/a")
    with pytest.raises(errors.HasDependentClones):
        datasets.destroy(host, "fzsingle/a", recursive=True)
    datasets.destroy(host, "fzsingle/r", recursive=True)
    done(host)


def test_fuse_destroy_mounted_dataset_retries_spurious_busy() -> None:
    # zfs-fuse refuses the first destroy of a mounted filesystem ("dataset is busy"), sometimes the second
    steps = [fz["zfs_destroy_mounted_first"]]
    steps += [fz[n] for n in ("busy_zfs_destroy_mounted_again",) if n in fz]
    host = fuse(*steps, fz["zfs_destroy_mounted_again"])
    datasets.destroy(host, "fzsingle/cl")
    done(host)


def test_fuse_unmount_busy_is_not_retried() -> None:
    host = fuse(fz["zfs_unmount_busy"], fz["zfs_unmount"])
    with pytest.raises(errors.DatasetBusy):
        datasets.unmount(host, "fzsingle/busy")
    datasets.unmount(host, "fzsingle/busy")
    done(host)


# -- zfs-fuse: snapshots, clones, holds -------------------------------------------------------------------------------


def test_fuse_create_snapshot_with_user_property() -> None:
    host = fuse(fz["zfs_snapshot_s1"], fz["zfs_get_Hpo_all_s1"])
    snap = snapshots.create(host, "fzsingle/a", "s1", {"bulwark:source": "agent"})
    assert (snap.name, snap.holds, snap.user["bulwark:source"]) == ("fzsingle/a@s1", 0, "agent")
    done(host)


def test_fuse_create_snapshot_refused() -> None:
    host = fuse(fz["zfs_snapshot_exists"], fz["zfs_snapshot_missing_ds"])
    with pytest.raises(errors.DatasetExists):
        snapshots.create(host, "fzsingle/a", "s1")
    with pytest.raises(errors.DatasetNotFound):
        snapshots.create(host, "fzsingle/nope", "x")
    done(host)


def test_fuse_list_snapshots() -> None:
    host = fuse(fz["zfs_get_Hpo_d1_all_a"], fz["zfs_get_Hpo_d1_props_a"])
    listed = snapshots.list_snapshots(host, "fzsingle/a")
    assert [s.name for s in listed] == ["fzsingle/a@s1", "fzsingle/a@s2", "fzsingle/a@s3"]  # not the child's
    assert listed[0].user == {"bulwark:source": "agent", "bulwark:client": "acme"}
    assert all(s.creation == listed[0].creation for s in listed)  # one second: the output's order decides
    with_props = snapshots.list_snapshots(host, "fzsingle/a", user_props=("bulwark:source",))
    assert [(s.snapname, s.user) for s in with_props] == [("s1", {"bulwark:source": "agent"}), ("s2", {}), ("s3", {})]
    done(host)


def test_fuse_holds() -> None:
    host = fuse(
        fz["zfs_hold"],
        fz["zfs_hold_exists"],
        fz["zfs_get_Hpo_all_s1_held"],
        fz["zfs_destroy_held"],
        fz["zfs_get_Hpo_all_s1_held"],
        fz["zfs_release_missing"],
        fz["zfs_release"],
    )
    holds.hold(host, "fzsingle/a@s1", "keep")
    with pytest.raises(errors.HoldExists) as exists:
        holds.hold(host, "fzsingle/a@s1", "keep")
    assert str(exists.value) == "Snapshot fzsingle/a@s1 already has a hold tagged keep."
    assert holds.hold_count(host, "fzsingle/a@s1") == 1
    with pytest.raises(errors.SnapshotHeld) as held:
        snapshots.destroy(host, "fzsingle/a@s1")
    assert held.value.args == ("fzsingle/a@s1", 1)
    with pytest.raises(errors.HoldNotFound) as missing:
        holds.release(host, "fzsingle/a@s1", "nokeep")
    assert missing.value.args == ("fzsingle/a@s1", "nokeep")
    holds.release(host, "fzsingle/a@s1", "keep")
    with pytest.raises(Unsupported, match="listing hold tags"):
        holds.list_holds(host, "fzsingle/a@s1")
    done(host)


def test_fuse_rollback() -> None:
    host = fuse(fz["zfs_rollback_newer"], fz["zfs_rollback_missing"], fz["zfs_rollback"])
    with pytest.raises(errors.NewerSnapshotsExist):
        snapshots.rollback(host, "fzsingle/a@s1")
    with pytest.raises(errors.DatasetNotFound):
        snapshots.rollback(host, "fzsingle/a@nope")
    snapshots.rollback(host, "fzsingle/a@s3")
    done(host)


def test_fuse_clone_readonly() -> None:
    host = fuse(fz["zfs_clone"], fz["zfs_get_Hpo_all_cl"], fz["zfs_destroy_snap_clones"])
    clone = snapshots.clone(host, "fzsingle/a@s2", "fzsingle/cl", {"readonly": "on"})
    assert (clone.name, clone.readonly, clone.mounted) == ("fzsingle/cl", True, True)
    with pytest.raises(errors.HasDependentClones):
        snapshots.destroy(host, "fzsingle/a@s2")
    done(host)


def test_fuse_rename_snapshot() -> None:
    host = fuse(fz["zfs_rename"], fz["zfs_rename_exists"])
    assert snapshots.rename(host, "fzsingle/a@s3", "s3r") == "fzsingle/a@s3r"
    with pytest.raises(errors.DatasetExists):
        snapshots.rename(host, "fzsingle/a@s3r", "s2")
    done(host)


def test_replay_refuses_an_unexpected_command() -> None:
    host = fuse(fz["zpool_list_Ho_single"])
    with pytest.raises(AssertionError, match="expected command"):
        pools.list_pools(host)
