"""Which ZFS implementation is on the other end of the runner, and what it can do.

Production runs OpenZFS 2.x; development and tests run zfs-fuse (pool version 23). Features that only
OpenZFS has are asked for through :meth:`Capabilities.require`, which raises :class:`Unsupported`
with a clear message instead of pretending.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.system.errors import CommandFailed, UnexpectedOutput, Unsupported
from appliance.system.runner import Runner

ZFS_FUSE = "zfs-fuse"
OPENZFS = "openzfs"

_OPENZFS_VERSION = re.compile(r"zfs-(\d+)\.(\d+)\.(\d+)\S*")
_POOL_VERSION = re.compile(r"This system is currently running ZFS pool version (\d+)\.")

# Feature name → human description, used in Unsupported messages.
FEATURES = {
    "parsable_list": "exact byte values from 'zfs list -p' / 'zpool list -p'",
    "get_type_filter": "'zfs get -t' type filtering",
    "holds_list": "listing hold tags with 'zfs holds'",
    "bookmarks": "bookmarks",
    "resume_tokens": "resumable receive ('zfs receive -s', 'zfs send -t')",
    "native_encryption": "native encryption and raw sends",
    "diff": "'zfs diff'",
    "json_output": "JSON output ('-j')",
    "snapshot_dir": "'.zfs/snapshot' directories",
    "send_size_estimate": "send size estimates ('zfs send -nP')",
    "multi_property_set": "setting several properties in one 'zfs set'",
    "written_property": "the 'written' property",
}


@dataclass(frozen=True)
class Capabilities:
    implementation: str  # ZFS_FUSE or OPENZFS
    version: str  # "2.3.2" for OpenZFS, "0.7.0/pool-23" for zfs-fuse
    features: frozenset[str]

    def has(self, feature: str) -> bool:
        if feature not in FEATURES:
            raise KeyError(feature)
        return feature in self.features

    def require(self, feature: str) -> None:
        """Raise :class:`Unsupported` unless this implementation has ``feature``."""
        if not self.has(feature):
            raise Unsupported(f"{FEATURES[feature]} needs OpenZFS; this appliance runs {self.implementation}")

    def to_dict(self) -> dict[str, object]:
        return {
            "implementation": self.implementation,
            "version": self.version,
            "features": sorted(self.features),
        }


def zfs_fuse_capabilities(pool_version: int = 23) -> Capabilities:
    return Capabilities(ZFS_FUSE, f"pool-{pool_version}", frozenset())


def openzfs_capabilities(major: int, minor: int, patch: int) -> Capabilities:
    features = {
        "parsable_list",
        "get_type_filter",
        "holds_list",
        "bookmarks",
        "resume_tokens",
        "native_encryption",
        "diff",
        "snapshot_dir",
        "send_size_estimate",
        "multi_property_set",
        "written_property",
    }
    if (major, minor) >= (2, 3):
        features.add("json_output")
    return Capabilities(OPENZFS, f"{major}.{minor}.{patch}", frozenset(features))


def parse_zfs_version(stdout: str) -> Capabilities | None:
    """Parse ``zfs version`` (OpenZFS ≥ 0.8); ``None`` if it is not OpenZFS's output."""
    first = stdout.strip().splitlines()[0] if stdout.strip() else ""
    m = _OPENZFS_VERSION.fullmatch(first)
    if m is None:
        return None
    return openzfs_capabilities(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def parse_pool_upgrade_v(stdout: str) -> int:
    m = _POOL_VERSION.search(stdout)
    if m is None:
        raise UnexpectedOutput("zpool upgrade -v", stdout[:200])
    return int(m.group(1))


def detect(runner: Runner) -> Capabilities:
    """Ask the ZFS userland which implementation it is."""
    result = runner.run(["zfs", "version"], ok_codes=(0, 1, 2), timeout=30)
    if result.returncode == 0:
        caps = parse_zfs_version(result.out)
        if caps is None:
            raise UnexpectedOutput("zfs version", result.out[:200])
        return caps
    if "unrecognized command 'version'" not in result.err:
        raise CommandFailed(result.argv, result.returncode, result.err)
    # zfs-fuse has no 'zfs version'; its pool version identifies it.
    upgrade = runner.run(["zpool", "upgrade", "-v"], timeout=30)
    version = parse_pool_upgrade_v(upgrade.out)
    if version >= 1000:
        raise UnexpectedOutput("zpool upgrade -v", f"pool version {version} without 'zfs version'")
    return zfs_fuse_capabilities(version)
