"""Strict validation of names and values before they reach zfs/zpool: valid and invalid samples, one
table each (STYLE §8)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from appliance.system.errors import InvalidInput
from appliance.zfs import names

LONG = "a" * 300

VALID: list[tuple[Callable[..., str], tuple[str, ...]]] = [
    (names.pool_name, ("tank",)),
    (names.pool_name, ("bwt0123abcd",)),
    (names.pool_name, ("P",)),
    (names.pool_name, ("Pool_1.x-y",)),
    (names.pool_name, ("a" * 63,)),
    (names.pool_name, ("logs",)),
    (names.pool_name, ("cachepool",)),
    (names.component, ("a",)),
    (names.component, ("0",)),
    (names.component, ("auto-2026-11-26_14.34",)),
    (names.component, ("a:b",)),
    (names.component, ("A" * 128,)),
    (names.dataset_name, ("tank",)),
    (names.dataset_name, ("tank/a",)),
    (names.dataset_name, ("tank/clients/acme/share",)),
    (names.dataset_name, ("tank/a.b/c-d/e_f/g:h/0",)),
    (names.dataset_name, ("tank/" + "/".join(["a" * 49] * 5),)),  # 254 characters
    (names.snapshot_name, ("tank/a@s1",)),
    (names.snapshot_name, ("tank@s",)),
    (names.snapshot_name, ("tank/a/b@auto-2026-11-26_14.34",)),
    (names.any_name, ("tank/a",)),
    (names.any_name, ("tank/a@s",)),
    (names.property_name, ("compression",)),
    (names.property_name, ("quota",)),
    (names.property_name, ("bulwark:client",)),
    (names.property_name, ("bulwark:a.b-c_d:e",)),
    (names.user_property_name, ("bulwark:source",)),
    (names.property_value, ("bulwark:note", "hello world")),
    (names.property_value, ("bulwark:note", "")),
    (names.property_value, ("bulwark:note", "ünïcödé ✓")),
    (names.property_value, ("compression", "lz4")),
    (names.property_value, ("bulwark:note", "x" * 8191)),
    (names.hold_tag, ("keep",)),
    (names.hold_tag, ("bulwark:lock-1.0",)),
    (names.device_path, ("/dev/sda",)),
    (names.device_path, ("/tmp/pytest-of-root/pool.img",)),
    (names.device_path, ("/dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K0XXXXXX",)),
]

INVALID: list[tuple[Callable[..., str], tuple[object, ...]]] = [
    (names.pool_name, ("",)),
    (names.pool_name, ("1tank",)),
    (names.pool_name, ("-tank",)),
    (names.pool_name, ("tank\n",)),
    (names.pool_name, ("ta\tnk",)),
    (names.pool_name, ("ta nk",)),
    (names.pool_name, (" tank",)),
    (names.pool_name, ("tank%",)),
    (names.pool_name, ("ta[nk",)),
    (names.pool_name, ("tänk",)),
    (names.pool_name, ("..",)),
    (names.pool_name, ("tank/a",)),
    (names.pool_name, ("a" * 64,)),
    (names.pool_name, ("mirror",)),
    (names.pool_name, ("mirror2",)),  # zpool create: "name is reserved" (zfs-fuse recording)
    (names.pool_name, ("raidz",)),
    (names.pool_name, ("raidz1",)),
    (names.pool_name, ("raidzx",)),
    (names.pool_name, ("draid2",)),
    (names.pool_name, ("spare",)),
    (names.pool_name, ("spares",)),
    (names.pool_name, ("log",)),
    (names.pool_name, ("cache",)),
    (names.pool_name, ("special",)),
    (names.pool_name, ("dedup",)),
    (names.pool_name, ("c0t0d0",)),
    (names.pool_name, ("c1",)),
    (names.pool_name, (None,)),
    (names.pool_name, (123,)),
    (names.component, ("",)),
    (names.component, (".",)),
    (names.component, ("..",)),
    (names.component, ("-r",)),
    (names.component, ("_a",)),
    (names.component, (".hidden",)),
    (names.component, ("a b",)),
    (names.component, ("a\n",)),
    (names.component, ("a\tb",)),
    (names.component, ("50%",)),
    (names.component, ("a[1]",)),
    (names.component, ("ä",)),
    (names.component, ("a/b",)),
    (names.component, ("a@b",)),
    (names.component, ("A" * 129,)),
    (names.dataset_name, ("",)),
    (names.dataset_name, ("tank/",)),
    (names.dataset_name, ("/tank",)),
    (names.dataset_name, ("tank//a",)),
    (names.dataset_name, ("tank/../a",)),
    (names.dataset_name, ("tank/a/..",)),
    (names.dataset_name, ("tank/-a",)),
    (names.dataset_name, ("tank/a b",)),
    (names.dataset_name, ("tank/a\n",)),
    (names.dataset_name, ("tank/a\nb",)),
    (names.dataset_name, ("tank/a\tb",)),
    (names.dataset_name, ("tank/a%b",)),
    (names.dataset_name, ("tank/a[1]",)),
    (names.dataset_name, ("tank/ä",)),
    (names.dataset_name, ("tank/a@s",)),
    (names.dataset_name, ("tank/a#bm",)),
    (names.dataset_name, ("mirror/a",)),
    (names.dataset_name, ("1tank/a",)),
    (names.dataset_name, ("tank/" + "/".join(["a" * 50] * 5),)),  # 259 characters
    (names.dataset_name, ("tank/" + LONG,)),
    (names.snapshot_name, ("tank/a",)),
    (names.snapshot_name, ("tank/a@",)),
    (names.snapshot_name, ("@s",)),
    (names.snapshot_name, ("tank/a@s@t",)),
    (names.snapshot_name, ("tank/a@-s",)),
    (names.snapshot_name, ("tank/a@s b",)),
    (names.snapshot_name, ("tank/a@s\n",)),
    (names.snapshot_name, ("tank/a@s%",)),
    (names.snapshot_name, ("tank/../a@s",)),
    (names.snapshot_name, ("tank/a@" + LONG,)),
    (names.split_snapshot, ("tank/a",)),
    (names.any_name, ("tank/a@",)),
    (names.any_name, ("tank/a b",)),
    (names.property_name, ("",)),
    (names.property_name, ("Compression",)),
    (names.property_name, ("com pression",)),
    (names.property_name, ("quota=1",)),
    (names.property_name, ("-o",)),
    (names.property_name, ("written@snap1",)),
    (names.property_name, ("bulwark:",)),
    (names.property_name, ("bulwark:Client",)),
    (names.property_name, ("bulwark:a\n",)),
    (names.property_name, ("other:prop",)),
    (names.user_property_name, ("compression",)),
    (names.user_property_name, ("com.example:x",)),
    (names.property_value, ("bulwark:note", "a\tb")),
    (names.property_value, ("bulwark:note", "a\nb")),
    (names.property_value, ("bulwark:note", "a\rb")),
    (names.property_value, ("bulwark:note", "a\0b")),
    (names.property_value, ("bulwark:note", "a\x1b[31mred")),
    (names.property_value, ("bulwark:note", "x" * 8192)),
    (names.property_value, ("bulwark:note", "é" * 4096)),  # 8192 bytes
    (names.property_value, ("compression", "")),
    (names.property_value, ("bulwark:note", None)),
    (names.hold_tag, ("",)),
    (names.hold_tag, ("-r",)),
    (names.hold_tag, ("a b",)),
    (names.hold_tag, ("keep\n",)),
    (names.hold_tag, ("50%",)),
    (names.hold_tag, ("ä",)),
    (names.device_path, ("",)),
    (names.device_path, ("sda",)),
    (names.device_path, ("-f",)),
    (names.device_path, ("/dev/sd a",)),
    (names.device_path, ("/dev/sda\n",)),
    (names.device_path, ("/dev/\tsda",)),
    (names.device_path, ("/tmp/../etc/shadow",)),
    (names.device_path, ("/tmp/x/..",)),
    (names.device_path, ("/" + "a" * 4096,)),
    (names.device_path, (None,)),
]


def _id(case: tuple[Callable[..., str], tuple[object, ...]]) -> str:
    function, args = case
    return f"{function.__name__}{args!r}"[:80]


@pytest.mark.parametrize("case", VALID, ids=_id)
def test_valid(case: tuple[Callable[..., str], tuple[str, ...]]) -> None:
    function, args = case
    assert function(*args) == args[-1]


@pytest.mark.parametrize("case", INVALID, ids=_id)
def test_invalid(case: tuple[Callable[..., str], tuple[object, ...]]) -> None:
    function, args = case
    with pytest.raises(InvalidInput):
        function(*args)


def test_split_snapshot() -> None:
    assert names.split_snapshot("tank/a/b@s1") == ("tank/a/b", "s1")


def test_error_message_does_not_echo_long_or_odd_values() -> None:
    with pytest.raises(InvalidInput) as exc_info:
        names.component("x" * 200)
    assert "x" * 100 not in str(exc_info.value)
    with pytest.raises(InvalidInput) as exc_info:
        names.dataset_name("tank/a\nb")
    assert "\n" not in str(exc_info.value)
