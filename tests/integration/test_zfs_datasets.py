"""Filesystems and their properties on zfs-fuse and on OpenZFS."""

from __future__ import annotations

import errno

import pytest

from appliance.system.errors import InvalidInput, Unsupported
from appliance.zfs import datasets, errors, properties, snapshots
from tests.zfs_fixtures import TestPool

pytestmark = pytest.mark.zfs
MiB = 1024 * 1024


def test_create_with_properties_and_user_properties(pool: TestPool) -> None:
    made = datasets.create(
        pool.host,
        pool.ds("clients"),
        {"compression": "gzip-1", "quota": "64M", "bulwark:client": "acme", "bulwark:note": "ünïcödé, spaces ok"},
    )
    assert made.name == pool.ds("clients")
    assert (made.type, made.compression, made.quota, made.refquota, made.readonly) == (
        "filesystem",
        "gzip-1",
        64 * MiB,
        None,
        False,
    )
    assert made.user == {"bulwark:client": "acme", "bulwark:note": "ünïcödé, spaces ok"}
    assert made.mounted and made.mountpoint == str(pool.path("clients"))
    assert pool.fs.ismount(pool.path("clients"))
    assert made.creation > 1_700_000_000 and made.used > 0 and made.available > 0 and made.referenced > 0
    assert made.pool == pool.name
    assert made.to_dict()["user_properties"] == made.user


def test_create_with_parents_and_validation(pool: TestPool) -> None:
    deep = datasets.create(pool.host, pool.ds("clients/acme/images/0"), parents=True)
    assert deep.mounted
    assert datasets.exists(pool.host, pool.ds("clients/acme"))
    with pytest.raises(InvalidInput):
        datasets.create(pool.host, pool.name)  # a pool's root dataset is not created this way
    for bad in ("a b", "a\nb", "-o", "a/../b", "a%", "ä"):
        with pytest.raises(InvalidInput):
            datasets.create(pool.host, pool.ds(bad))
    with pytest.raises(InvalidInput):
        datasets.create(pool.host, pool.ds("x"), {"bulwark:note": "line\nbreak"})
    with pytest.raises(InvalidInput):
        datasets.create(pool.host, pool.ds("x"), {"mountpoint=/etc -o x": "1"})
    assert not datasets.exists(pool.host, pool.ds("x"))


def test_list_and_get(pool: TestPool) -> None:
    host = pool.host
    datasets.create(host, pool.ds("b"), {"bulwark:client": "bravo"})
    datasets.create(host, pool.ds("a"), {"bulwark:client": "alpha"})
    datasets.create(host, pool.ds("a/share"))
    snapshots.create(host, pool.ds("a"), "s1")
    assert datasets.list_names(host, pool.name) == [pool.name, pool.ds("a"), pool.ds("a/share"), pool.ds("b")]
    assert datasets.list_names(host, pool.ds("a"), recursive=False) == [pool.ds("a")]
    listed = datasets.list_datasets(host, pool.name, user_props=("bulwark:client",))
    assert [(d.name, d.user) for d in listed] == [
        (pool.name, {}),
        (pool.ds("a"), {"bulwark:client": "alpha"}),
        (pool.ds("a/share"), {"bulwark:client": "alpha"}),  # inherited
        (pool.ds("b"), {"bulwark:client": "bravo"}),
    ]
    full = datasets.list_datasets(host, pool.ds("a"))
    assert [d.name for d in full] == [pool.ds("a"), pool.ds("a/share")]
    assert datasets.get_dataset(host, pool.ds("b")) == datasets.list_datasets(host, pool.ds("b"))[0]
    assert datasets.exists(host, pool.ds("a/share"))
    assert not datasets.exists(host, pool.ds("nope"))


def test_get_recursive_and_depth(pool: TestPool) -> None:
    host = pool.host
    datasets.create(host, pool.ds("a/b/c"), {"bulwark:client": "x"}, parents=True)
    everything = properties.get(host, [pool.name], ["bulwark:client"], recursive=True)
    assert list(everything) == [pool.name, pool.ds("a"), pool.ds("a/b"), pool.ds("a/b/c")]
    assert not everything[pool.name]["bulwark:client"].is_set
    assert everything[pool.ds("a/b/c")]["bulwark:client"] == properties.Property("x", "local")
    assert list(properties.get(host, [pool.name], ["used"], depth=1)) == [pool.name, pool.ds("a")]
    assert properties.get(host, []) == {}
    with pytest.raises(InvalidInput):
        properties.get(host, [pool.name], depth=-1)
    snapshots.create(host, pool.ds("a/b"), "s1")
    if host.caps.has("get_type_filter"):
        only_snapshots = properties.get(host, [pool.name], ["used"], recursive=True, types=["snapshot"])
        assert list(only_snapshots) == [pool.ds("a/b@s1")]
    else:
        with pytest.raises(Unsupported):
            properties.get(host, [pool.name], types=["snapshot"])


def test_set_and_inherit(pool: TestPool) -> None:
    host = pool.host
    name = pool.ds("a")
    datasets.create(host, name)
    properties.set_properties(host, name, {"compression": "gzip-9", "atime": "off", "bulwark:client": "acme"})
    got = properties.get_one(host, name, ["compression", "atime", "bulwark:client"])
    assert {k: (p.value, p.source) for k, p in got.items()} == {
        "compression": ("gzip-9", "local"),
        "atime": ("off", "local"),
        "bulwark:client": ("acme", "local"),
    }
    properties.inherit(host, name, "compression")
    assert properties.get_one(host, name, ["compression"])["compression"].source == "default"
    datasets.set_user_properties(host, name, {"bulwark:client": "other"})
    assert datasets.get_dataset(host, name).user == {"bulwark:client": "other"}
    datasets.clear_user_property(host, name, "bulwark:client")
    assert datasets.get_dataset(host, name).user == {}
    with pytest.raises(InvalidInput):  # nothing is written when one value is bad
        properties.set_properties(host, name, {"atime": "on", "bulwark:x": "a\tb"})
    assert properties.get_one(host, name, ["atime"])["atime"].value == "off"
    with pytest.raises(InvalidInput):
        datasets.set_user_properties(host, name, {"compression": "on"})


def test_quotas(pool: TestPool) -> None:
    host = pool.host
    name = pool.ds("q")
    datasets.create(host, name)
    datasets.set_quota(host, name, "32M")
    datasets.set_quota(host, name, 8 * MiB, ref=True)
    got = datasets.get_dataset(host, name)
    assert (got.quota, got.refquota) == (32 * MiB, 8 * MiB)
    with pytest.raises(OSError) as exc_info:  # the refquota holds
        pool.fs.write_random(pool.path("q") / "too-big", 12 * MiB)
    assert exc_info.value.errno == errno.EDQUOT
    pool.fs.unlink(pool.path("q") / "too-big")
    datasets.set_quota(host, name, None)
    datasets.set_quota(host, name, None, ref=True)
    got = datasets.get_dataset(host, name)
    assert (got.quota, got.refquota) == (None, None)
    with pytest.raises(InvalidInput):
        datasets.set_quota(host, name, 0)
    with pytest.raises(InvalidInput):
        datasets.set_quota(host, name, "lots")


def test_readonly_dataset(pool: TestPool) -> None:
    made = datasets.create(pool.host, pool.ds("ro"), {"readonly": "on"})
    assert made.readonly is True  # although zfs-fuse reports "off" (source "temporary") while mounted
    with pytest.raises(OSError) as exc_info:
        pool.fs.write(pool.path("ro") / "file", b"x")
    assert exc_info.value.errno == errno.EROFS
    assert datasets.get_dataset(pool.host, pool.name).readonly is False


def test_mount_and_unmount(pool: TestPool) -> None:
    name = pool.ds("m")
    datasets.create(pool.host, name)
    datasets.unmount(pool.host, name)
    assert not pool.fs.ismount(pool.path("m"))
    assert datasets.get_dataset(pool.host, name).mounted is False
    datasets.mount(pool.host, name)
    assert pool.fs.ismount(pool.path("m"))
    assert datasets.get_dataset(pool.host, name).mounted is True


def test_destroy_refuses_children_unless_recursive(pool: TestPool) -> None:
    host = pool.host
    datasets.create(host, pool.ds("a/b/c"), parents=True)
    snapshots.create(host, pool.ds("a/b"), "s1")
    with pytest.raises(errors.HasChildren) as exc_info:
        datasets.destroy(host, pool.ds("a"))
    assert exc_info.value.args == (pool.ds("a"),)
    assert pool.fs.ismount(pool.path("a"))  # a refused destroy leaves it mounted
    with pytest.raises(errors.HasChildren):
        datasets.destroy(host, pool.ds("a/b"))  # its snapshot is a child too
    datasets.destroy(host, pool.ds("a/b/c"))  # mounted, no children: zfs-fuse's first "busy" is retried
    assert not datasets.exists(host, pool.ds("a/b/c"))
    datasets.destroy(host, pool.ds("a"), recursive=True)  # three levels of mounts
    assert datasets.list_names(host, pool.name) == [pool.name]
    assert not pool.fs.ismount(pool.path("a"))
    with pytest.raises(InvalidInput):
        datasets.destroy(host, pool.name, recursive=True)
    with pytest.raises(errors.DatasetNotFound):
        datasets.destroy(host, pool.ds("a"))


def test_destroy_of_a_dataset_in_use_is_refused(pool: TestPool) -> None:
    host = pool.host
    datasets.create(host, pool.ds("busy"))
    with pool.fs.hold_open(pool.path("busy") / "open"):
        with pytest.raises(errors.DatasetBusy):
            datasets.destroy(host, pool.ds("busy"))
    datasets.destroy(host, pool.ds("busy"))
    assert not datasets.exists(host, pool.ds("busy"))
