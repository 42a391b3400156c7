"""Guided disk replacement: check the choice, ``zpool replace`` the failed disk by the new one, follow the
resilver to the end as a durable job with progress.

The checks are pure (:func:`check_choice`) so the web wizard, the API and the job make the same ones: the
old device must be a leaf of the pool, the new one must not be in it already, and the new disk must be at
least as large as the old one when both sizes are known.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from appliance.disks import bays, inventory
from appliance.disks.inventory import Disk
from appliance.jobs import base
from appliance.jobs.base import JobContext
from appliance.system.errors import BulwarkError, Conflict, InvalidInput
from appliance.system.runner import local_runner
from appliance.zfs import names, status
from appliance.zfs.host import ZfsHost
from appliance.zfs.status import PoolStatus

log = logging.getLogger(__name__)
RESILVER_WAIT_SECONDS = 5.0


def leaf_names(pool_status: PoolStatus) -> list[str]:
    return [v.name for v in pool_status.devices() if v.group not in ("cache", "spares")]


def _same(device: str, name: str) -> bool:
    """``zpool status`` prints a disk's short name (``sdb``) or its full path (files, by-id links)."""
    return device == name or device.rsplit("/", 1)[-1] == name or name.rsplit("/", 1)[-1] == device


def check_choice(
    pool_status: PoolStatus,
    old: str,
    new: str,
    *,
    old_size: int | None = None,
    new_size: int | None = None,
) -> str:
    """The pool's own name for ``old``; raises with what to pick instead when the choice is wrong."""
    names.device_path(new)
    leaves = leaf_names(pool_status)
    match = next((leaf for leaf in leaves if _same(old, leaf)), None)
    if match is None:
        raise InvalidInput(
            f"{old!r} is not a device of pool {pool_status.name} (its devices: {', '.join(leaves) or 'none'})"
        )
    if any(_same(new, leaf) for leaf in leaves):
        raise InvalidInput(f"{new!r} is already a device of pool {pool_status.name}: pick an unused disk")
    if old_size and new_size and new_size < old_size:
        raise InvalidInput(
            f"the new disk ({new_size} bytes) is smaller than the one it replaces ({old_size} bytes): "
            "pick a disk at least as large"
        )
    return match


def in_use(disk: Disk, sys_block: Path = Path("/sys/block"), mounts: Path = Path("/proc/mounts")) -> str:
    """Why a disk must not be offered as a replacement ('' when it is free): partitions, holders, mounts."""
    base = sys_block / disk.name
    try:
        parts = [p.name for p in base.iterdir() if p.name.startswith(disk.name)]
        holders = [p.name for p in (base / "holders").iterdir()]
    except OSError:
        parts, holders = [], []
    if parts:
        return f"it has partitions ({', '.join(sorted(parts))})"
    if holders:
        return f"it is held by {', '.join(sorted(holders))}"
    try:
        mounted = [line.split()[0] for line in mounts.read_text().splitlines() if line.strip()]
    except OSError:
        mounted = []
    if disk.node in mounted:
        return "it is mounted"
    return ""


def candidates(disks: list[Disk], pool_status: PoolStatus) -> list[Disk]:
    """Disks that could take a failed disk's place: not in the pool, not partitioned, held or mounted."""
    leaves = leaf_names(pool_status)
    return [
        d
        for d in disks
        if d.pool is None and not any(_same(d.node, leaf) for leaf in leaves) and d.size_bytes and not in_use(d)
    ]


def zpool_replace(zfs: ZfsHost, pool: str, old: str, new: str) -> None:
    """Start the replacement (OpenZFS returns at once; zfs-fuse may return when the resilver has ended)."""
    zfs.zpool("replace", names.pool_name(pool), old, names.device_path(new), subject=pool)


def _replacing(pool_status: PoolStatus) -> bool:
    return any(v.kind == "replacing" for top in (pool_status.root, *pool_status.groups) for v in top.walk())


class ReplaceJob:
    """Replace a pool disk and follow the resilver; the locate LED of the old disk's bay is cleared after."""

    name = "pool.replace"
    title = "Replace disk"
    poll_seconds = 1.0

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        if set(params) - {"pool", "old", "new", "led_node"} or not {"pool", "old", "new"} <= set(params):
            raise InvalidInput("a replacement takes pool, old and new (and optionally led_node)")
        out = {
            "pool": names.pool_name(params["pool"]),
            "old": params["old"],
            "new": names.device_path(params["new"]),
        }
        if not isinstance(out["old"], str) or not out["old"] or any(c.isspace() for c in out["old"]):
            raise InvalidInput(f"the disk to replace must be a device name or path, not {out['old']!r}")
        if params.get("led_node"):
            out["led_node"] = names.device_path(params["led_node"])
        return out

    def resource(self, params: dict[str, Any]) -> str | None:
        return f"pool:{params['pool']}:replace"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        params = ctx.job.params
        pool = params["pool"]
        if not params.get("started"):
            current = status.pool_status(ctx.zfs, pool)
            old = check_choice(current, params["old"], params["new"])
            ctx.remember(started=True, old=old)
            ctx.log(f"zpool replace {pool} {old} {params['new']}")
            ctx.progress(0, 10000, "replacing", force=True)
            zpool_replace(ctx.zfs, pool, old, params["new"])
        else:
            ctx.log("following the resilver started before the daemon restarted")
        started = time.monotonic()
        while True:
            ctx.check_cancelled()  # a resilver cannot be stopped; cancelling only stops following it
            now = status.pool_status(ctx.zfs, pool)
            scan = now.scan
            if scan.function == "resilver" and scan.state == "in_progress":
                ctx.progress(int((scan.percent or 0) * 100), 10000, f"resilvering, {scan.percent or 0:.1f}% done")
            elif not _replacing(now) and (scan.function != "resilver" or scan.state == "finished"):
                ctx.progress(10000, 10000, "resilvered", force=True)
                ctx.log(scan.text or f"{params['new']} has replaced {ctx.job.params.get('old')}")
                self._clear_led(ctx)
                return {
                    "pool": pool,
                    "old": ctx.job.params.get("old"),
                    "new": params["new"],
                    "state": now.state,
                    "errors": scan.errors,
                    "seconds": round(time.monotonic() - started, 1),
                }
            ctx.sleep(self.poll_seconds)

    def _clear_led(self, ctx: JobContext) -> None:
        node = ctx.job.params.get("led_node")
        if not node:
            return
        try:
            profile = bays.find_profile()
            disk = next((d for d in inventory.scan() if d.node == node), None)
            if profile is not None and disk is not None and profile.has_led("locate_off"):
                bays.set_led(local_runner(), profile, "locate_off", disk)
        except BulwarkError as exc:
            ctx.log(f"the locate LED could not be cleared: {exc.message}", "warning")


def ensure_not_running(zfs: ZfsHost, pool: str) -> None:
    if _replacing(status.pool_status(zfs, pool)):
        raise Conflict(f"a disk of pool {pool} is being replaced already; wait for its resilver to end")


base.register(ReplaceJob())
