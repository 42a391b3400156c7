"""Pools: create (on devices or sparse files), list, scrub, export/import, destroy."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from appliance.system.errors import CommandTimeout, InvalidInput, UnexpectedOutput
from appliance.zfs import names, units
from appliance.zfs.capabilities import ZFS_FUSE
from appliance.zfs.errors import PoolNotFound
from appliance.zfs.host import ZfsHost, split_rows

LAYOUTS = {"single": 1, "stripe": 1, "mirror": 2, "raidz": 2, "raidz1": 2, "raidz2": 3, "raidz3": 4}
HEALTHS = {"ONLINE", "DEGRADED", "FAULTED", "OFFLINE", "UNAVAIL", "REMOVED", "SUSPENDED"}
_LIST_COLUMNS = ("name", "size", "allocated", "free", "health", "guid", "altroot")


@dataclass(frozen=True)
class Pool:
    name: str
    health: str
    size_bytes: int
    alloc_bytes: int
    free_bytes: int
    guid: str
    altroot: str | None
    sizes_exact: bool  # False where the implementation prints rounded sizes (zfs-fuse)

    @property
    def capacity_percent(self) -> float:
        return 100.0 * self.alloc_bytes / self.size_bytes if self.size_bytes else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "health": self.health,
            "size_bytes": self.size_bytes,
            "alloc_bytes": self.alloc_bytes,
            "free_bytes": self.free_bytes,
            "capacity_percent": round(self.capacity_percent, 1),
            "guid": self.guid,
            "altroot": self.altroot,
            "sizes_exact": self.sizes_exact,
        }


def parse_list(stdout_rows: list[list[str]]) -> list[Pool]:
    """Rows of ``zpool list -H [-p] -o name,size,allocated,free,health,guid,altroot``."""
    pools = []
    for name, size, alloc, free, health, guid, altroot in stdout_rows:
        if health not in HEALTHS:
            raise UnexpectedOutput("zpool list", "\t".join((name, size, alloc, free, health, guid, altroot)))
        if not guid.isdigit():
            raise UnexpectedOutput("zpool list", f"guid {guid!r}")
        pools.append(
            Pool(
                name=name,
                health=health,
                size_bytes=units.parse_size(size, what="zpool list size"),
                alloc_bytes=units.parse_size(alloc, what="zpool list allocated"),
                free_bytes=units.parse_size(free, what="zpool list free"),
                guid=guid,
                altroot=None if altroot == "-" else altroot,
                sizes_exact=all(units.is_exact(v) for v in (size, alloc, free)),
            )
        )
    return pools


def list_pools(host: ZfsHost, name: str | None = None) -> list[Pool]:
    """Imported pools (or just ``name``)."""
    args = ["list", "-H"]
    # (OpenZFS: exact byte values with -p, verified with these columns in the OpenZFS test machine)
    if host.caps.has("parsable_list"):
        args.append("-p")
    args += ["-o", ",".join(_LIST_COLUMNS)]
    if name is not None:
        args.append(names.pool_name(name))
    result = host.zpool(*args, subject=name or "")
    if result.out.strip() == "no pools available":
        return []
    return parse_list(split_rows(result, len(_LIST_COLUMNS)))


def get_pool(host: ZfsHost, name: str) -> Pool:
    pools = list_pools(host, name)
    if len(pools) != 1:
        raise PoolNotFound(name)
    return pools[0]


def exists(host: ZfsHost, name: str) -> bool:
    try:
        get_pool(host, name)
    except PoolNotFound:
        return False
    return True


def vdev_args(devices: Sequence[str], layout: str) -> list[str]:
    """The vdev part of ``zpool create`` for a layout, validated."""
    if layout not in LAYOUTS:
        raise InvalidInput(f"layout {layout!r} must be one of {', '.join(sorted(LAYOUTS))}")
    devs = [names.device_path(d) for d in devices]
    if len(set(devs)) != len(devs):
        raise InvalidInput("a device is listed twice")
    if len(devs) < LAYOUTS[layout]:
        raise InvalidInput(f"layout {layout} needs at least {LAYOUTS[layout]} devices, got {len(devs)}")
    if layout in ("single", "stripe"):
        if layout == "single" and len(devs) != 1:
            raise InvalidInput("layout 'single' takes exactly one device; use 'stripe' for several")
        return devs
    return [layout, *devs]


def create_pool(
    host: ZfsHost,
    name: str,
    devices: Sequence[str],
    *,
    layout: str = "single",
    mountpoint: str | None = None,
    fs_properties: Mapping[str, str] | None = None,
) -> Pool:
    """Create a pool. Never forces (``-f``): a device in use by another pool is refused."""
    names.pool_name(name)
    args = ["create"]
    if mountpoint is not None:
        args += ["-m", names.device_path(mountpoint)]
    for key, value in (fs_properties or {}).items():
        args += ["-O", f"{names.property_name(key)}={names.property_value(key, value)}"]
    args += [name, *vdev_args(devices, layout)]
    host.zpool(*args, subject=name, timeout=300)
    return get_pool(host, name)


def make_sparse_file(host: ZfsHost, path: str, size: int | str) -> None:
    """A sparse file to hold a file-backed pool (development and the embedded default)."""
    size_arg = units.size_argument(size)
    if int(size_arg) < 64 * 1024 * 1024:
        raise InvalidInput("a pool file must be at least 64 MiB")
    host.runner.run(["truncate", "-s", size_arg, names.device_path(path)])


def destroy_pool(host: ZfsHost, name: str) -> None:
    """Destroy a pool and everything on it. Only for tests and explicit operator action."""
    names.pool_name(name)
    host.retry_spurious_busy(lambda: host.zpool("destroy", name, subject=name, timeout=300))


def export_pool(host: ZfsHost, name: str) -> None:
    host.zpool("export", names.pool_name(name), subject=name, timeout=300)


@dataclass(frozen=True)
class ImportablePool:
    name: str
    id: str
    state: str


_IMPORT_FIELD = re.compile(r"\s*(pool|id|state):\s*(\S+)\s*")


def parse_import_list(stdout: str) -> list[ImportablePool]:
    """``zpool import`` (no pool argument): the pools found on the searched devices."""
    found: list[ImportablePool] = []
    current: dict[str, str] = {}
    for line in stdout.splitlines():
        m = _IMPORT_FIELD.fullmatch(line)
        if not m:
            continue
        key, value = m.groups()
        if key == "pool" and current:
            found.append(_importable(current))
            current = {}
        current[key] = value
    if current:
        found.append(_importable(current))
    return found


def _importable(fields: dict[str, str]) -> ImportablePool:
    if "pool" not in fields or "state" not in fields:
        raise UnexpectedOutput("zpool import", repr(fields))
    return ImportablePool(fields["pool"], fields.get("id", ""), fields["state"])


def importable_pools(host: ZfsHost, search_dirs: Sequence[str] = ()) -> list[ImportablePool]:
    args = ["import"]
    for d in search_dirs:
        args += ["-d", names.device_path(d)]
    result = host.runner.run(["zpool", *args], ok_codes=(0, 1), timeout=300)
    return parse_import_list(result.out)


def import_pool(host: ZfsHost, name: str, search_dirs: Sequence[str] = ()) -> Pool:
    """Import an exported pool (searching ``search_dirs`` for file-backed vdevs)."""
    args = ["import"]
    for d in search_dirs:
        args += ["-d", names.device_path(d)]
    host.zpool(*args, names.pool_name(name), subject=name, timeout=300)
    return get_pool(host, name)


# zfs-fuse's 'zpool scrub' returns only when the scrub has finished (OpenZFS's returns at once); its
# daemon scrubs on when the command is stopped. Wait this long, then leave it running.
FUSE_SCRUB_START_WAIT = 5.0


def scrub_start(host: ZfsHost, name: str) -> None:
    """Start a scrub; ``zpool status`` reports its progress."""
    names.pool_name(name)
    if host.caps.implementation != ZFS_FUSE:
        host.zpool("scrub", name, subject=name)
        return
    try:
        host.zpool("scrub", name, subject=name, timeout=FUSE_SCRUB_START_WAIT)
    except CommandTimeout:
        pass  # still scrubbing


def scrub_stop(host: ZfsHost, name: str) -> None:
    host.zpool("scrub", "-s", names.pool_name(name), subject=name)


def offline_device(host: ZfsHost, name: str, device: str) -> None:
    host.zpool("offline", names.pool_name(name), names.device_path(device), subject=name)


def online_device(host: ZfsHost, name: str, device: str) -> None:
    host.zpool("online", names.pool_name(name), names.device_path(device), subject=name)
