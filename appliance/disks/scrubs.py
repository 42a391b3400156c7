"""Scheduled scrubs: bulwarkd queues a ``pool.scrub`` job when the pool's last scrub is older than the interval.

A scrub reads every block of the pool and checks it against its checksum: on a backup appliance it is what
finds a silently rotting disk before a restore needs the data. The last scrub is the newer of what
``zpool status`` says (a scrub started by hand counts) and the last successful ``pool.scrub`` job. A pool that
was never scrubbed is counted from when bulwarkd first saw it, so a fresh appliance does not start with one.
"""

from __future__ import annotations

import time

import appliance.disks.pool  # noqa: F401  (registers the pool.scrub job kind)
from appliance.jobs import base, queue
from appliance.store import Store
from appliance.system.errors import InvalidInput
from appliance.zfs import status
from appliance.zfs.host import ZfsHost

SETTING = "scrub_schedule"
DEFAULT_DAYS = 35  # about monthly, the interval TrueNAS and most distributions use by default
DAY = 86400.0


def every_days(store: Store) -> int:
    """Days between scrubs (0: never scheduled)."""
    value = store.get_setting(SETTING, None)
    days = value.get("every_days") if isinstance(value, dict) else None
    return days if isinstance(days, int) and not isinstance(days, bool) else DEFAULT_DAYS


def set_every_days(store: Store, days: int) -> int:
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 365:
        raise InvalidInput(f"the scrub interval must be 0 (never) to 365 days, not {days!r}")
    store.set_setting(SETTING, {"every_days": days})
    return days


def last_scrub(store: Store, zfs: ZfsHost, pool: str) -> float | None:
    """When the pool was last scrubbed to the end, as far as ``zpool status`` and the jobs know."""
    scan = status.pool_status(zfs, pool).scan
    seen = [scan.ended_at] if scan.function == "scrub" and scan.state == "finished" and scan.ended_at else []
    done = queue.list_jobs(store, states=("succeeded",), kind="pool.scrub", limit=1)
    seen += [job.finished_at for job in done if job.finished_at is not None and job.params.get("pool") == pool]
    return max(seen) if seen else None


def next_scrub(store: Store, zfs: ZfsHost, pool: str) -> float | None:
    """When the next scheduled scrub is due (None: never scheduled)."""
    days = every_days(store)
    if days == 0:
        return None
    since = last_scrub(store, zfs, pool)
    if since is None:
        since = store.get_setting(f"scrub_first_seen:{pool}", None)
    return None if since is None else float(since) + days * DAY


def schedule(store: Store, zfs: ZfsHost, pool: str, *, now: float | None = None) -> int | None:
    """Queue a scrub if one is due and none is queued or running; the new job's id, else None."""
    at = time.time() if now is None else now
    if store.get_setting(f"scrub_first_seen:{pool}", None) is None:
        store.set_setting(f"scrub_first_seen:{pool}", at)
    due = next_scrub(store, zfs, pool)
    if due is None or at < due:
        return None
    if queue.list_jobs(store, states=("queued", "running"), kind="pool.scrub", limit=1):
        return None
    if status.pool_status(zfs, pool).scan.state == "in_progress":
        return None  # a scrub or resilver is running already
    return base.submit(store, "pool.scrub", {"pool": pool}, created_by="schedule")
