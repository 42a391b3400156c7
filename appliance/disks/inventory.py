"""The inventory of block devices, read through pyudev: model, serial, WWN, size, rotational, by-id and
by-path links, and pool/vdev membership.

Without udevd the kernel's properties and sysfs attributes are all there is (model and serial from sysfs,
links from /dev/disk); with udevd the ID_* properties fill in what sysfs lacks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyudev  # type: ignore[import-untyped]

from appliance.zfs.status import PoolStatus, Vdev

SKIP_PREFIXES = ("ram", "zram", "fd", "sr")
LINK_DIRS = ("/dev/disk/by-id", "/dev/disk/by-path")


@dataclass(frozen=True)
class Membership:
    pool: str
    vdev: str  # the top-level vdev ("mirror-0") or the device itself for a plain stripe member
    state: str


@dataclass(frozen=True)
class Disk:
    name: str  # kernel name, e.g. "sda", "nvme0n1", "loop3"
    node: str  # "/dev/sda"
    model: str
    serial: str
    wwn: str
    size_bytes: int
    rotational: bool | None
    kind: str  # "ata", "nvme", "scsi", "virtio", "loop", …
    by_id: list[str] = field(default_factory=list)
    by_path: list[str] = field(default_factory=list)
    backing_file: str = ""
    pool: Membership | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _attr(device: pyudev.Device, name: str) -> str:
    try:
        value = device.attributes.get(name)
    except (OSError, KeyError):
        return ""
    if value is None:
        return ""
    return bytes(value).decode("utf-8", "replace").strip()


def _links(node: str) -> tuple[list[str], list[str]]:
    by_id: list[str] = []
    by_path: list[str] = []
    for directory, out in zip(LINK_DIRS, (by_id, by_path), strict=True):
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                if os.path.realpath(entry.path) == node:
                    out.append(entry.path)
            except OSError:
                continue
    return by_id, by_path


def _kind(device: pyudev.Device, name: str) -> str:
    if name.startswith("loop"):
        return "loop"
    if name.startswith("nvme"):
        return "nvme"
    if name.startswith("vd"):
        return "virtio"
    bus = device.properties.get("ID_BUS", "")
    if bus:
        return str(bus)
    return "scsi" if name.startswith("sd") else "other"


def _disk(device: pyudev.Device) -> Disk | None:
    name = device.sys_name
    if device.device_type != "disk" or name.startswith(SKIP_PREFIXES):
        return None
    node = device.device_node or f"/dev/{name}"
    props = device.properties
    parent = device.find_parent("nvme") or device.parent
    model = str(props.get("ID_MODEL", "")).replace("_", " ") or (_attr(parent, "model") if parent is not None else "")
    serial = str(props.get("ID_SERIAL_SHORT", "")) or (_attr(parent, "serial") if parent is not None else "")
    wwn = str(props.get("ID_WWN_WITH_EXTENSION", "") or props.get("ID_WWN", "")) or _attr(device, "wwid")
    if not wwn and parent is not None:
        wwn = _attr(parent, "wwid")
    try:
        size = int(_attr(device, "size") or 0) * 512
    except ValueError:
        size = 0
    rot = _attr(device, "queue/rotational")
    by_id, by_path = _links(node)
    links = [str(link) for link in device.device_links]
    by_id = sorted(set(by_id) | {x for x in links if "/by-id/" in x})
    by_path = sorted(set(by_path) | {x for x in links if "/by-path/" in x})
    return Disk(
        name=name,
        node=node,
        model=model,
        serial=serial,
        wwn=wwn,
        size_bytes=size,
        rotational=None if rot not in ("0", "1") else rot == "1",
        kind=_kind(device, name),
        by_id=by_id,
        by_path=by_path,
        backing_file=_attr(device, "loop/backing_file"),
    )


def memberships(statuses: Iterable[PoolStatus]) -> dict[str, Membership]:
    """Every leaf device of the pools, by the name ``zpool status`` shows (a path, a by-id name or a file)."""
    out: dict[str, Membership] = {}
    for status in statuses:
        for top in (*status.root.children, *[c for g in status.groups for c in g.children]):
            leaves: list[Vdev] = [v for v in top.walk() if not v.children] or [top]
            for leaf in leaves:
                out[leaf.name] = Membership(status.name, top.name, leaf.state or "")
    return out


def _membership(disk: Disk, members: dict[str, Membership]) -> Membership | None:
    names = {disk.name, disk.node, *disk.by_id, *disk.by_path}
    names |= {Path(x).name for x in (*disk.by_id, *disk.by_path)}
    if disk.backing_file:
        names.add(disk.backing_file)
    for key, member in members.items():
        if key in names or Path(key).name in names:
            return member
        # whole-disk vdevs show their partition ("sda1", "…-part1")
        stripped = key.rstrip("0123456789").removesuffix("-part").removesuffix("p")
        if stripped != key and (stripped in names or Path(stripped).name in names):
            return member
    return None


def scan(context: pyudev.Context | None = None, members: dict[str, Membership] | None = None) -> list[Disk]:
    """Every disk the kernel knows now, with its pool membership when ``members`` is given."""
    ctx = context or pyudev.Context()
    disks = []
    for device in ctx.list_devices(subsystem="block"):
        disk = _disk(device)
        if disk is None:
            continue
        if members:
            member = _membership(disk, members)
            if member is not None:
                disk = Disk(**{**disk.__dict__, "pool": member})
        disks.append(disk)
    return sorted(disks, key=lambda d: (d.kind == "loop", len(d.name), d.name))


def from_device(device: pyudev.Device, members: dict[str, Membership] | None = None) -> Disk | None:
    disk = _disk(device)
    if disk is not None and members and (member := _membership(disk, members)) is not None:
        disk = Disk(**{**disk.__dict__, "pool": member})
    return disk
