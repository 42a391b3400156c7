"""Pool alerts from ``zpool list`` and ``zpool status``: health other than ONLINE, capacity past 80/90/95 %,
and devices with read, write or checksum errors. :func:`findings` is pure; :func:`check_pool` (run by
``bulwarkd`` every minute) raises what it finds and clears what is gone."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from appliance import alerts
from appliance.alerts import AlertClass
from appliance.store import Store
from appliance.system.errors import BulwarkError
from appliance.zfs import pools, status, units
from appliance.zfs.host import ZfsHost
from appliance.zfs.pools import Pool
from appliance.zfs.status import PoolStatus

CATEGORY = "pool"
CAPACITY_LEVELS = ((95.0, "critical"), (90.0, "warning"), (80.0, "info"))

POOL_HEALTH = alerts.declare(
    "pool.health",
    level="critical",
    category=CATEGORY,
    title="Pool not healthy",
    template="pool {pool} is {health}: {detail}",
)
POOL_CAPACITY = alerts.declare(
    "pool.capacity",
    level="warning",
    category=CATEGORY,
    title="Pool filling up",
    template="pool {pool} is {percent}% full ({used} used of {size}); {advice}",
)
DEVICE_ERRORS = alerts.declare(
    "pool.device_errors",
    level="warning",
    category=CATEGORY,
    title="Device errors",
    template="device {device} of pool {pool} ({state}) has {read} read, {write} write and {checksum} checksum errors",
)


@dataclass(frozen=True)
class Finding:
    key: str
    cls: AlertClass
    level: str
    params: dict[str, Any] = field(default_factory=dict)


def _advice(percent: float) -> str:
    if percent >= 95:
        return "writes will soon fail: free space or add disks now"
    if percent >= 90:
        return "ZFS slows down when this full: prune recovery points or add disks"
    return "plan for more space"


def findings(pool: Pool | None, pool_status: PoolStatus | None, name: str, error: str | None = None) -> list[Finding]:
    """What is wrong with the pool (pure)."""
    subject: dict[str, Any] = {"pool": name}
    params: dict[str, Any]
    if pool is None:
        detail = error or "it is not imported"
        params = {**subject, "health": "UNAVAILABLE", "detail": detail}
        return [Finding(f"pool:health:{name}", POOL_HEALTH, "critical", params)]
    out = []
    if pool.health != "ONLINE":
        detail = (pool_status.status if pool_status else "") or "see zpool status"
        params = {**subject, "health": pool.health, "detail": " ".join(detail.split())}
        out.append(Finding(f"pool:health:{name}", POOL_HEALTH, "critical", params))
    percent = pool.capacity_percent
    for threshold, level in CAPACITY_LEVELS:
        if percent >= threshold:
            params = {
                **subject,
                "percent": f"{percent:.0f}",
                "used": units.format_size(pool.alloc_bytes),
                "size": units.format_size(pool.size_bytes),
                "advice": _advice(percent),
            }
            out.append(Finding(f"pool:capacity:{name}", POOL_CAPACITY, level, params))
            break
    for device in pool_status.devices() if pool_status else []:
        if device.read_errors or device.write_errors or device.checksum_errors:
            params = {
                **subject,
                "device": device.name,
                "state": device.state or "?",
                "read": device.read_errors,
                "write": device.write_errors,
                "checksum": device.checksum_errors,
            }
            out.append(Finding(f"pool:errors:{name}:{device.name}", DEVICE_ERRORS, DEVICE_ERRORS.level, params))
    return out


def check_pool(store: Store, zfs: ZfsHost, name: str, *, now: float | None = None) -> list[Finding]:
    """Raise the pool's alerts from what ZFS says now; clear those whose condition ended."""
    at = time.time() if now is None else now
    try:
        pool: Pool | None = pools.get_pool(zfs, name)
        pool_status: PoolStatus | None = status.pool_status(zfs, name)
        error = None
    except BulwarkError as exc:
        pool, pool_status, error = None, None, exc.message
    found = findings(pool, pool_status, name, error)
    for finding in found:
        alerts.fire(
            store, finding.cls, finding.key, subject=f"pool:{name}", level=finding.level, now=at, **finding.params
        )
    alerts.clear_missing(store, CATEGORY, {f.key for f in found}, now=at)
    return found
