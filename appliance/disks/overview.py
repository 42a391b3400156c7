"""What the Disks page, the API and ``bulwark disk list`` show: the inventory joined with each disk's last
SMART reading and its history."""

from __future__ import annotations

import re
import time
from typing import Any

from appliance.disks import bays, inventory, polling, smartctl
from appliance.disks.inventory import Disk, Membership
from appliance.store import Store
from appliance.system.errors import BulwarkError, InvalidInput, NotFound
from appliance.system.runner import Runner
from appliance.zfs import status
from appliance.zfs.host import ZfsHost

NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def members(zfs: ZfsHost | None, pool_name: str | None) -> dict[str, Membership]:
    if zfs is None or not pool_name:
        return {}
    try:
        return inventory.memberships([status.pool_status(zfs, pool_name)])
    except BulwarkError:
        return {}


def _smart(disk: Disk, latest: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if polling.skip(disk):
        return None
    row = latest.get(disk.name)
    if row is None:
        return {"verdict": "unknown", "reasons": ["unknown: not read yet (bulwarkd reads SMART every 30 minutes)"],
                "temperature": None, "power_on_hours": None, "checked_at": None, "protocol": "",
                "key": polling.disk_key(disk)}  # fmt: skip
    return {
        "verdict": row["verdict"],
        "reasons": row["reasons"],
        "temperature": row["temperature"],
        "power_on_hours": row["power_on_hours"],
        "checked_at": row["checked_at"],
        "protocol": row["protocol"],
        "key": row["disk_key"],
    }


def disks(store: Store, zfs: ZfsHost | None, pool_name: str | None) -> list[dict[str, Any]]:
    return layout(store, zfs, pool_name, with_bays=False)[0]


def layout(
    store: Store, zfs: ZfsHost | None, pool_name: str | None, *, with_bays: bool = True
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every disk with its SMART summary, and — when a hardware profile matches this machine — its bays with
    the disk found in each (None without a profile)."""
    latest = {r["name"]: r for r in polling.latest(store)}
    found = inventory.scan(None, members(zfs, pool_name))
    rows = {d.name: {**d.to_dict(), "smart": _smart(d, latest)} for d in found}
    profile = bays.find_profile(bays.read_dmi(bays.DMI_DIR), bays.HARDWARE_DIR) if with_bays else None
    if profile is None:
        return list(rows.values()), None
    slots, loose = bays.place(profile, found)
    chassis = {
        "name": profile.name,
        "columns": profile.columns,
        "slots": [{"label": s.bay.label, "disk": rows[s.disk.name] if s.disk else None} for s in slots],
        "loose": [d.name for d in loose],
    }
    return list(rows.values()), chassis


def find_disk(name: str) -> Disk:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInput(f"not a disk name: {name!r} (e.g. sda or nvme0n1)")
    for disk in inventory.scan():
        if disk.name == name:
            return disk
    raise NotFound(f"disk {name!r}")


def detail(store: Store, zfs: ZfsHost | None, pool_name: str | None, name: str, *, days: int = 30) -> dict[str, Any]:
    find_disk(name)
    found = [d for d in disks(store, zfs, pool_name) if d["name"] == name]
    if not found:  # gone between the two scans
        raise NotFound(f"disk {name!r}")
    row = found[0]
    smart = row["smart"]
    latest = polling.latest_for(store, smart["key"]) if smart else None
    report = latest["report"] if latest else {}
    since = time.time() - days * 86400
    tests = store.query(
        "SELECT kind, started_at, started_by, error FROM disk_selftests WHERE disk_key = ? ORDER BY started_at DESC "
        "LIMIT 20",
        (smart["key"] if smart else "",),
    )
    return {
        "disk": row,
        "attributes": report.get("attributes", []),
        "nvme": report.get("nvme"),
        "scsi": report.get("scsi"),
        "self_test_log": report.get("self_tests", []),
        "self_test_running": report.get("self_test_running"),
        "samples": polling.samples(store, smart["key"], since) if smart else [],
        "tests_started": [dict(t) for t in tests],
    }


def read_now(store: Store, runner: Runner, name: str) -> polling.Reading:
    disk = find_disk(name)
    if polling.skip(disk):
        raise InvalidInput(f"{name} is a loop device: it has no SMART")
    reading = polling.read_disk(runner, disk)
    polling.record(store, reading)
    return reading


def start_test(store: Store, runner: Runner, name: str, kind: str, by: str) -> str | None:
    if kind not in smartctl.TEST_KINDS:
        raise InvalidInput(f"a self-test is short or long, not {kind!r}")
    disk = find_disk(name)
    if polling.skip(disk):
        raise InvalidInput(f"{name} is a loop device: it has no SMART self-test")
    return polling.start_test(store, runner, disk, kind, by=by)
