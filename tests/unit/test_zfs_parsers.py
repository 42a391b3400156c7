"""The ZFS driver's parsers on recorded outputs of real OpenZFS 2.3.2 and zfs-fuse 0.7.0.

zfs-fuse recordings name their pools ``fz…`` and their devices by file path (which differs per run, so
only base names are compared); OpenZFS recordings use ``testpool`` on /dev/vda and ``mpool`` on vdb+vdc.
"""

from __future__ import annotations

import os
import time

import pytest

from appliance.system.errors import UnexpectedOutput, Unsupported
from appliance.system.runner import CommandResult
from appliance.zfs import capabilities, datasets, holds, pools, properties, snapshots, status
from appliance.zfs.capabilities import OPENZFS, ZFS_FUSE
from appliance.zfs.host import chunks, split_rows
from tests.replay import OPENZFS as OPENZFS_DIR
from tests.replay import ZFS_FUSE as ZFS_FUSE_DIR
from tests.replay import Recording, Recordings

oz = Recordings(OPENZFS_DIR)
fz = Recordings(ZFS_FUSE_DIR)


def rows(recording: Recording, columns: int) -> list[list[str]]:
    return split_rows(CommandResult(("zfs", "get"), 0, recording.stdout, b"", 0.0), columns)


def one(recording: Recording) -> status.PoolStatus:
    parsed = status.parse_status(recording.out)
    assert len(parsed) == 1
    return parsed[0]


Shape = tuple[str, str, str | None, tuple[int, int, int], str, tuple["Shape", ...]]


def shape(vdev: status.Vdev) -> Shape:
    """A vdev tree with device paths cut to base names (they differ per zfs-fuse recording)."""
    return (
        os.path.basename(vdev.name),
        vdev.kind,
        vdev.state,
        (vdev.read_errors, vdev.write_errors, vdev.checksum_errors),
        vdev.note,
        tuple(shape(c) for c in vdev.children),
    )


OK = (0, 0, 0)


def disk(name: str, state: str = "ONLINE", errors: tuple[int, int, int] = OK, note: str = "") -> Shape:
    return (name, "disk", state, errors, note, ())


def pool(name: str, state: str, *children: Shape) -> Shape:
    # (the pool's own line parses as a vdev of kind "disk": Vdev.kind cannot tell the root apart)
    return (name, "disk", state, OK, "", children)


def mirror(state: str, *children: Shape) -> Shape:
    return ("mirror-0", "mirror", state, OK, "", children)


# -- zpool list --------------------------------------------------------------------------------------


def test_parse_list_zfs_fuse_rounded_sizes() -> None:
    [single] = pools.parse_list(rows(fz["zpool_list_Ho_single"], 7))
    assert single.name == "fzsingle"
    assert single.health == "ONLINE"
    assert (single.size_bytes, single.alloc_bytes, single.free_bytes) == (250 << 20, 556 << 10, 249 << 20)
    assert single.guid.isdigit()
    assert single.altroot is None
    assert single.sizes_exact is False
    assert single.to_dict()["capacity_percent"] == 0.2

    listed = pools.parse_list(rows(fz["zpool_list_Ho_all"], 7))
    assert [(p.name, p.alloc_bytes) for p in listed] == [("fzmirror", 556 << 10), ("fzsingle", round(5.60 * 2**20))]
    [degraded] = pools.parse_list(rows(fz["zpool_list_Ho_degraded"], 7))
    assert degraded.health == "DEGRADED"
    [repaired] = pools.parse_list(rows(fz["zpool_list_Ho_repaired"], 7))
    assert repaired.alloc_bytes == round(65.3 * 2**20)
    [raidz] = pools.parse_list(rows(fz["zpool_list_Ho_raidz"], 7))
    assert raidz.size_bytes == 370 << 20
    assert pools.parse_list(rows(fz["zpool_list_Ho_empty"], 7)) == []


def _openzfs_list_row(recording: Recording) -> list[str]:
    """``zpool list -H -p`` (the default columns; the driver's ``-o`` list was not recorded) cut down to
    the driver's columns, with the guid from ``zpool get -H -p all`` of the same run."""
    name, size, alloc, free, _ckpoint, _expandsz, _frag, _cap, _dedup, health, altroot = recording.out.strip().split(
        "\t"
    )
    guids = {r[0]: r[2] for r in rows(oz["zpool_get_Hp_all"], 4) if r[1] == "guid"}
    return [name, size, alloc, free, health, guids.get(name, "1833800288862347805"), altroot]


def test_parse_list_openzfs_exact_sizes() -> None:
    [testpool] = pools.parse_list([_openzfs_list_row(oz["zpool_list_Hp"])])
    assert testpool.name == "testpool"
    assert (testpool.size_bytes, testpool.alloc_bytes, testpool.free_bytes) == (1006632960, 6484992, 1000147968)
    assert testpool.guid == "9041467939768055058"
    assert testpool.sizes_exact is True
    assert testpool.altroot is None
    [after] = pools.parse_list([_openzfs_list_row(oz["zpool_list_after"])])
    assert after.alloc_bytes == 446217216
    assert round(after.capacity_percent) == 44
    [mpool] = pools.parse_list([_openzfs_list_row(oz["zpool_list_Hp_degraded"])])
    assert (mpool.name, mpool.health, mpool.size_bytes) == ("mpool", "DEGRADED", 251658240)


def test_parse_list_is_strict() -> None:
    row = rows(fz["zpool_list_Ho_single"], 7)[0]
    with pytest.raises(UnexpectedOutput):
        pools.parse_list([[*row[:4], "HAPPY", *row[5:]]])
    with pytest.raises(UnexpectedOutput):
        pools.parse_list([[*row[:5], "-", row[6]]])
    with pytest.raises(UnexpectedOutput):
        pools.parse_list([["fzsingle", "250 M", *row[2:]]])
    with pytest.raises(UnexpectedOutput):  # the wrong number of columns
        split_rows(CommandResult(("zpool", "list"), 0, oz["zpool_list_Hp"].stdout, b"", 0.0), 7)


# -- zpool import (listing) --------------------------------------------------------------------------


def test_parse_import_list() -> None:
    assert pools.parse_import_list(oz["zpool_import_list"].out) == [
        pools.ImportablePool("testpool", "9041467939768055058", "ONLINE")
    ]
    [found] = pools.parse_import_list(fz["zpool_import_d_list"].out)
    assert (found.name, found.state) == ("fzmirror", "ONLINE")
    assert found.id.isdigit()
    assert pools.parse_import_list(fz["zpool_import_d_empty"].out) == []


# -- zpool status -------------------------------------------------------------------------------------

STATUS_SHAPES = [
    (oz, "zpool_status", pool("testpool", "ONLINE", disk("vda"))),
    (oz, "zpool_status_P", pool("testpool", "ONLINE", disk("vda1"))),
    (oz, "zpool_status_imported", pool("testpool", "ONLINE", disk("vda"))),
    (oz, "zpool_status_mirror", pool("mpool", "ONLINE", mirror("ONLINE", disk("vdb"), disk("vdc")))),
    (oz, "zpool_status_online", pool("mpool", "ONLINE", mirror("ONLINE", disk("vdb"), disk("vdc")))),
    (oz, "zpool_status_scrubbed", pool("mpool", "ONLINE", mirror("ONLINE", disk("vdb"), disk("vdc")))),
    (
        oz,
        "zpool_status_degraded",
        pool("mpool", "DEGRADED", mirror("DEGRADED", disk("vdb"), disk("vdc", "OFFLINE"))),
    ),
    (
        oz,
        "zpool_status_degraded_P",
        pool("mpool", "DEGRADED", mirror("DEGRADED", disk("vdb1"), disk("vdc1", "OFFLINE"))),
    ),
    (
        oz,
        "zpool_status_x_degraded",
        pool("mpool", "DEGRADED", mirror("DEGRADED", disk("vdb"), disk("vdc", "OFFLINE"))),
    ),
    (fz, "zpool_status_single", pool("fzsingle", "ONLINE", disk("single.img"))),
    (fz, "zpool_status_mirror", pool("fzmirror", "ONLINE", mirror("ONLINE", disk("m1.img"), disk("m2.img")))),
    (
        fz,
        "zpool_status_degraded",
        pool("fzmirror", "DEGRADED", mirror("DEGRADED", disk("m1.img"), disk("m2.img", "OFFLINE"))),
    ),
    (
        fz,
        "zpool_status_resilvered",
        pool("fzmirror", "ONLINE", mirror("ONLINE", disk("m1.img"), disk("m2.img", note="12K resilvered"))),
    ),
    (fz, "zpool_status_scrubbed", pool("fzmirror", "ONLINE", mirror("ONLINE", disk("m1.img"), disk("m2.img")))),
    (fz, "zpool_status_imported", pool("fzmirror", "ONLINE", mirror("ONLINE", disk("m1.img"), disk("m2.img")))),
    (
        fz,
        "zpool_status_repaired",
        pool(
            "fzmirror",
            "ONLINE",
            mirror("ONLINE", disk("m1.img"), disk("m2.img", errors=(0, 0, 633), note="61.1M repaired")),
        ),
    ),
    (
        fz,
        "zpool_status_raidz",
        pool(
            "fzraidz",
            "ONLINE",
            ("raidz1-0", "raidz1", "ONLINE", OK, "", (disk("r0.img"), disk("r1.img"), disk("r2.img"))),
        ),
    ),
    (fz, "zpool_status_groups", pool("fzgroups", "ONLINE", mirror("ONLINE", disk("g0.img"), disk("g1.img")))),
    (fz, "zpool_status_scrub_in_progress", pool("fzscrub", "ONLINE", disk("big.img"))),
    (fz, "zpool_status_scrub_stopped", pool("fzscrub", "ONLINE", disk("big.img"))),
]


@pytest.mark.parametrize(
    ("recordings", "name", "expected"),
    STATUS_SHAPES,
    ids=[f"{'openzfs' if r is oz else 'zfs-fuse'}-{n}" for r, n, _ in STATUS_SHAPES],
)
def test_parse_status_vdev_tree(recordings: Recordings, name: str, expected: Shape) -> None:
    parsed = one(recordings[name])
    assert shape(parsed.root) == expected
    assert parsed.name == expected[0]
    assert parsed.state == expected[2]
    assert parsed.errors == "No known data errors"


def test_every_status_recording_is_covered() -> None:
    covered = {(id(r), n) for r, n, _ in STATUS_SHAPES} | {(id(fz), "zpool_status_all"), (id(fz), "zpool_status_empty")}
    for recordings in (oz, fz):
        for name in recordings:
            if name.startswith("zpool_status_j"):
                continue  # (JSON: see test_parse_status_json_*)
            if name.startswith("zpool_status") and recordings[name].returncode == 0 and recordings[name].out:
                if recordings[name].out.strip() != "all pools are healthy":  # 'zpool status -x', not parsed
                    assert (id(recordings), name) in covered, name


def test_parse_status_degraded_texts() -> None:
    for parsed in (one(oz["zpool_status_degraded"]), one(fz["zpool_status_degraded"])):
        assert parsed.status == (
            "One or more devices has been taken offline by the administrator.\n"
            "Sufficient replicas exist for the pool to continue functioning in a\ndegraded state."
        )
        assert parsed.action == "Online the device using 'zpool online' or replace the device with\n'zpool replace'."
        assert [(os.path.basename(d.name), d.state) for d in parsed.devices()][-1][1] == "OFFLINE"


def test_parse_status_error_counters_and_extra_fields() -> None:
    parsed = one(fz["zpool_status_repaired"])
    assert parsed.status.startswith("One or more devices has experienced an unrecoverable error.")
    assert parsed.extra == {"see": "http://www.sun.com/msg/ZFS-8000-9P"}
    damaged = [d for d in parsed.devices() if d.checksum_errors]
    assert [(os.path.basename(d.name), d.checksum_errors, d.note) for d in damaged] == [
        ("m2.img", 633, "61.1M repaired")
    ]
    as_dict = parsed.to_dict()
    assert as_dict["vdevs"]["children"][0]["children"][1]["checksum_errors"] == 633  # type: ignore[index]


def test_parse_status_groups() -> None:
    parsed = one(fz["zpool_status_groups"])
    assert [(g.name, g.kind) for g in parsed.groups] == [("logs", "group"), ("spares", "group")]
    assert [(os.path.basename(v.name), v.state, v.group) for g in parsed.groups for v in g.children] == [
        ("g2.img", "ONLINE", "logs"),
        ("g3.img", "AVAIL", "spares"),
    ]
    assert [os.path.basename(d.name) for d in parsed.devices()] == ["g0.img", "g1.img", "g2.img", "g3.img"]


@pytest.mark.parametrize(
    ("json_name", "text_name"),
    [("zpool_status_j", "zpool_status"), ("zpool_status_j_degraded", "zpool_status_degraded")],
)
def test_parse_status_json_matches_text(json_name: str, text_name: str) -> None:
    # (recorded without --json-int: counters are strings of digits there)
    [from_json] = status.parse_status_json(oz[json_name].out)
    from_text = one(oz[text_name])
    assert shape(from_json.root) == shape(from_text.root)
    same = ("name", "state", "status", "action", "groups", "errors", "scan")
    assert {k: getattr(from_json, k) for k in same} == {k: getattr(from_text, k) for k in same}


def test_parse_status_json_is_strict() -> None:
    text = oz["zpool_status_j_degraded"].out
    for broken in (
        text[:-5],  # cut
        text.replace('"vers_major":0', '"vers_major":1'),  # a newer format
        text.replace('"state":"OFFLINE"', '"state":"SLEEPING"'),  # an unknown vdev state
        text.replace('"read_errors":"0"', '"read_errors":"1.2K"', 1),  # a rounded number
        text.replace('"error_count":"0"', '"error_count":"0","surprise":1'),  # an unknown pool field
    ):
        with pytest.raises(UnexpectedOutput):
            status.parse_status_json(broken)
    assert status.parse_status_json('{"output_version":{"command":"zpool status","vers_major":0,"vers_minor":1}}') == []


def _local(epoch: float | None) -> tuple[int, ...]:
    assert epoch is not None
    return tuple(time.localtime(epoch))[:6]


def test_parse_status_scan_openzfs_scrub_finished() -> None:
    scan = one(oz["zpool_status_scrubbed"]).scan
    assert (scan.function, scan.state, scan.percent, scan.errors) == ("scrub", "finished", 100.0, 0)
    assert _local(scan.ended_at) == (2026, 11, 26, 15, 32, 1)
    assert scan.text == "scrub repaired 0B in 00:00:00 with 0 errors on Thu Nov 26 15:32:01 2026"


def test_parse_status_scan_zfs_fuse() -> None:
    assert one(fz["zpool_status_single"]).scan == status.ScanState("none", "none", None, None, None, "none requested")
    scrubbed = one(fz["zpool_status_scrubbed"]).scan
    assert (scrubbed.function, scrubbed.state, scrubbed.percent, scrubbed.errors) == ("scrub", "finished", 100.0, 0)
    assert _local(scrubbed.ended_at)[:3] == (2026, 11, 26)
    resilvered = one(fz["zpool_status_resilvered"]).scan
    assert (resilvered.function, resilvered.state, resilvered.errors) == ("resilver", "finished", 0)
    running = one(fz["zpool_status_scrub_in_progress"]).scan
    assert (running.function, running.state, running.errors, running.ended_at) == ("scrub", "in_progress", None, None)
    assert running.percent is not None and 10 <= running.percent < 100
    stopped = one(fz["zpool_status_scrub_stopped"]).scan
    assert (stopped.function, stopped.state, stopped.percent, stopped.errors) == ("scrub", "canceled", None, 0)
    assert _local(stopped.ended_at)[:3] == (2026, 11, 26)


def test_parse_status_openzfs_without_scan_line() -> None:
    assert one(oz["zpool_status_mirror"]).scan == status.NO_SCAN


def test_parse_status_several_pools_and_none() -> None:
    assert [p.name for p in status.parse_status(fz["zpool_status_all"].out)] == ["fzmirror", "fzsingle"]
    assert status.parse_status(fz["zpool_status_empty"].out) == []


def test_parse_status_is_strict() -> None:
    text = oz["zpool_status_degraded"].out
    with pytest.raises(UnexpectedOutput):  # a vdev line with a counter missing
        status.parse_status(text.replace("vdc     OFFLINE      0     0     0", "vdc     OFFLINE      0     0"))
    with pytest.raises(UnexpectedOutput):  # a counter that is not a number
        status.parse_status(text.replace("vdc     OFFLINE      0     0     0", "vdc     OFFLINE      0     0     x"))
    with pytest.raises(UnexpectedOutput):  # a vdev indented deeper than its parent allows
        status.parse_status(text.replace("\t    vdb", "\t        vdb"))
    with pytest.raises(UnexpectedOutput):  # a state that does not exist
        status.parse_status(text.replace("vdb     ONLINE ", "vdb     HAPPY  "))
    with pytest.raises(UnexpectedOutput):  # an unknown section
        status.parse_status(text.replace("errors:", "surprise:"))
    with pytest.raises(UnexpectedOutput):  # text before the first pool
        status.parse_status("hello\n" + text)
    with pytest.raises(UnexpectedOutput):  # a scan line it does not know
        status.parse_status(fz["zpool_status_scrubbed"].out.replace("scrub completed after", "scrub ate"))
    with pytest.raises(UnexpectedOutput):  # 'zpool status -x' is not a status listing
        status.parse_status("all pools are healthy\n")


# -- zfs get -H -p --------------------------------------------------------------------------------------


def test_parse_get_openzfs() -> None:
    parsed = properties.parse_get(rows(oz["zfs_get_Hp_all_a"], 4))
    assert list(parsed) == ["testpool/a"]
    a = parsed["testpool/a"]
    assert a["used"] == properties.Property("6346752", "-")
    assert a["mountpoint"] == properties.Property("/testpool/a", "default")
    assert a["quota"].value == "0"
    assert not a["quota"].is_local
    written = properties.parse_get(rows(oz["zfs_get_Hp_written"], 4))["testpool/a"]
    assert written["written@snap1"] == properties.Property("2121728", "local")
    assert properties.parse_get(rows(oz["zfs_get_userrefs"], 4)) == {
        "testpool/a@snap1": {"userrefs": properties.Property("1", "-")}
    }


def test_parse_get_zfs_fuse_user_properties() -> None:
    a = properties.parse_get(rows(fz["zfs_get_Hpo_all_a"], 4))["fzsingle/a"]
    assert a["bulwark:client"] == properties.Property("acme", "local")
    assert a["quota"] == properties.Property("104857600", "local")
    assert properties.user_properties(a) == {"bulwark:client": "acme"}
    unset = properties.parse_get(rows(fz["zfs_get_Hpo_user_unset"], 4))["fzsingle/a"]["bulwark:missing"]
    assert (unset.value, unset.source, unset.is_set) == ("-", "-", False)
    both = properties.parse_get(rows(fz["zfs_get_Hpo_user_set"], 4))
    assert both["fzsingle/a"]["bulwark:note"] == properties.Property("hello world", "local")
    assert both["fzsingle/a/child"]["bulwark:client"] == properties.Property("acme", "inherited from fzsingle/a")
    child = properties.user_properties(both["fzsingle/a/child"])
    assert child == {"bulwark:note": "hello world", "bulwark:client": "acme"}


def test_parse_get_several_datasets() -> None:
    parsed = properties.parse_get(rows(fz["zfs_get_Hpo_all_many"], 4))
    assert list(parsed) == ["fzsingle", "fzsingle/a", "fzsingle/a/child"]
    depth1 = properties.parse_get(rows(fz["zfs_get_Hpo_d1_all_a"], 4))
    assert list(depth1) == ["fzsingle/a", "fzsingle/a@s1", "fzsingle/a@s2", "fzsingle/a@s3", "fzsingle/a/child"]
    assert "createtxg" not in depth1["fzsingle/a@s1"]  # zfs-fuse leaves it out of "all"


def test_chunks_bound_argv_length() -> None:
    targets = [f"tank/ds{i}" for i in range(600)]
    parts = chunks(targets)
    assert [len(p) for p in parts] == [256, 256, 88]
    assert [t for p in parts for t in p] == targets
    assert chunks([]) == []


def test_split_rows_refuses_a_wrong_column_count() -> None:
    with pytest.raises(UnexpectedOutput):
        split_rows(CommandResult(("zfs", "get"), 0, fz["zfs_get_Hpo_all_a"].stdout, b"", 0.0), 3)


# -- datasets and snapshots from properties ---------------------------------------------------------------


def test_dataset_from_openzfs_properties() -> None:
    props = properties.parse_get(rows(oz["zfs_get_Hp_all_a"], 4))["testpool/a"]
    a = datasets.from_properties("testpool/a", props, OPENZFS)
    assert a == datasets.Dataset(
        name="testpool/a",
        type="filesystem",
        creation=1795707115,
        used=6346752,
        available=865930240,
        referenced=6326272,
        mountpoint="/testpool/a",
        mounted=True,
        quota=None,
        refquota=None,
        compression="on",
        readonly=False,
        user={},
    )
    assert a.pool == "testpool"
    assert a.to_dict()["used_bytes"] == 6346752


def test_dataset_from_zfs_fuse_properties() -> None:
    props = properties.parse_get(rows(fz["zfs_get_Hpo_all_a"], 4))["fzsingle/a"]
    a = datasets.from_properties("fzsingle/a", props, ZFS_FUSE)
    assert (a.type, a.quota, a.refquota, a.compression, a.readonly, a.mounted) == (
        "filesystem",
        104857600,
        None,
        "off",
        False,
        True,
    )
    assert a.user == {"bulwark:client": "acme"}
    assert a.mountpoint is not None and a.mountpoint.endswith("/mnt/fzsingle/a")


def test_dataset_readonly_clone_on_zfs_fuse() -> None:
    # zfs-fuse reports a mounted readonly=on filesystem as "off" from source "temporary".
    props = properties.parse_get(rows(fz["zfs_get_Hpo_all_cl"], 4))["fzsingle/cl"]
    assert props["readonly"] == properties.Property("off", "temporary")
    assert props["origin"].value == "fzsingle/a@s2"
    assert datasets.from_properties("fzsingle/cl", props, ZFS_FUSE).readonly is True


def test_dataset_from_properties_is_strict() -> None:
    props = properties.parse_get(rows(fz["zfs_get_Hpo_all_a"], 4))["fzsingle/a"]
    with pytest.raises(UnexpectedOutput):
        datasets.from_properties("fzsingle/a", {k: v for k, v in props.items() if k != "used"})
    with pytest.raises(UnexpectedOutput):
        datasets.from_properties("fzsingle/a", {**props, "used": properties.Property("4.2M", "-")})
    snap = properties.parse_get(rows(fz["zfs_get_Hpo_all_s1"], 4))["fzsingle/a@s1"]
    with pytest.raises(UnexpectedOutput):  # a snapshot is not a dataset
        datasets.from_properties("fzsingle/a@s1", snap)
    with pytest.raises(UnexpectedOutput):  # nor a dataset a snapshot
        snapshots.from_properties("fzsingle/a", props)


def test_snapshot_from_openzfs_properties() -> None:
    props = properties.parse_get(rows(oz["zfs_get_Hp_all_snap1"], 4))["testpool/a@snap1"]
    snap = snapshots.from_properties("testpool/a@snap1", props)
    assert snap == snapshots.Snapshot("testpool/a@snap1", 1795707115, 20480, 4225024, 0, {})
    assert (snap.dataset, snap.snapname) == ("testpool/a", "snap1")


def test_snapshot_from_zfs_fuse_properties() -> None:
    s1 = properties.parse_get(rows(fz["zfs_get_Hpo_all_s1"], 4))["fzsingle/a@s1"]
    snap = snapshots.from_properties("fzsingle/a@s1", s1)
    assert (snap.holds, snap.used, snap.referenced) == (0, 0, 3268608)
    # its own property, and the one it inherits from its dataset
    assert snap.user == {"bulwark:source": "agent", "bulwark:client": "acme"}
    held = properties.parse_get(rows(fz["zfs_get_Hpo_all_s1_held"], 4))["fzsingle/a@s1"]
    assert snapshots.from_properties("fzsingle/a@s1", held).holds == 1


# -- zfs holds ----------------------------------------------------------------------------------------------


def test_parse_holds_openzfs() -> None:
    assert holds.parse_holds(rows(oz["zfs_holds_Hp_r"], 3)) == [holds.Hold("testpool/a@snap1", "keep", 1795707121)]
    assert holds.parse_holds(rows(oz["zfs_holds_H_empty"], 3)) == []


# -- capabilities -------------------------------------------------------------------------------------------


def test_parse_zfs_version_openzfs() -> None:
    caps = capabilities.parse_zfs_version(oz["zfs_version"].out)
    assert caps is not None
    assert (caps.implementation, caps.version) == (OPENZFS, "2.3.2")
    assert caps.has("json_output") and caps.has("holds_list") and caps.has("parsable_list")
    caps.require("bookmarks")


def test_parse_zfs_version_zfs_fuse_has_none() -> None:
    assert fz["zfs_version"].returncode == 2
    assert "unrecognized command 'version'" in fz["zfs_version"].err
    assert capabilities.parse_zfs_version(fz["zfs_version"].out) is None


def test_parse_pool_upgrade_v() -> None:
    assert capabilities.parse_pool_upgrade_v(fz["zpool_upgrade_v"].out) == 23
    with pytest.raises(UnexpectedOutput):
        capabilities.parse_pool_upgrade_v(oz["zfs_version"].out)


def test_zfs_fuse_capabilities() -> None:
    caps = capabilities.zfs_fuse_capabilities(23)
    assert caps.to_dict() == {"implementation": ZFS_FUSE, "version": "pool-23", "features": []}
    for feature in capabilities.FEATURES:
        assert not caps.has(feature)
        with pytest.raises(Unsupported, match="needs OpenZFS; this appliance runs zfs-fuse"):
            caps.require(feature)
    with pytest.raises(KeyError):
        caps.has("teleportation")
