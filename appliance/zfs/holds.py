"""User holds on snapshots: a held snapshot cannot be destroyed by anyone (immutability, pins)."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.system.errors import UnexpectedOutput
from appliance.zfs import names, snapshots
from appliance.zfs.errors import HoldExists, HoldNotFound
from appliance.zfs.host import ZfsHost, split_rows


@dataclass(frozen=True)
class Hold:
    snapshot: str
    tag: str
    created: int  # epoch seconds


def hold(host: ZfsHost, snapshot: str, tag: str) -> None:
    try:
        host.zfs("hold", names.hold_tag(tag), names.snapshot_name(snapshot), subject=snapshot)
    except HoldExists as exc:  # (the stderr names the snapshot, not the tag)
        raise HoldExists(snapshot, tag) from exc


def release(host: ZfsHost, snapshot: str, tag: str) -> None:
    try:
        host.zfs("release", names.hold_tag(tag), names.snapshot_name(snapshot), subject=snapshot)
    except HoldNotFound as exc:  # (OpenZFS's stderr does not name the tag)
        raise HoldNotFound(snapshot, tag) from exc


def hold_count(host: ZfsHost, snapshot: str) -> int:
    """How many holds a snapshot has (works everywhere: the ``userrefs`` property)."""
    return snapshots.get_snapshot(host, snapshot).holds


def parse_holds(rows: list[list[str]]) -> list[Hold]:
    """Rows of ``zfs holds -H -p``: name, tag, timestamp (epoch seconds; without ``-p`` a date, refused)."""
    out = []
    for name, tag, created in rows:
        if "@" not in name or not created.isdigit():
            raise UnexpectedOutput("zfs holds", "\t".join((name, tag, created)))
        out.append(Hold(name, tag, int(created)))
    return out


def list_holds(host: ZfsHost, snapshot: str) -> list[Hold]:
    """The tags holding a snapshot. OpenZFS only: zfs-fuse cannot list them (``Unsupported``)."""
    host.caps.require("holds_list")
    result = host.zfs("holds", "-H", "-p", names.snapshot_name(snapshot), subject=snapshot)
    return parse_holds(split_rows(result, 3))
