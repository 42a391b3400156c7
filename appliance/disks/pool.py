"""The appliance's pool: its summary for status pages, capacity history, and the scrub job."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from appliance.jobs import base
from appliance.jobs.base import JobContext
from appliance.store import Store
from appliance.system.errors import Conflict, InvalidInput
from appliance.zfs import names, pools, status
from appliance.zfs.host import ZfsHost
from appliance.zfs.pools import Pool
from appliance.zfs.status import PoolStatus

SAMPLE_KEEP_SECONDS = 400 * 86400


@dataclass(frozen=True)
class PoolSummary:
    pool: Pool
    status: PoolStatus

    def to_dict(self) -> dict[str, Any]:
        return {**self.pool.to_dict(), "status": self.status.to_dict()}


def summary(host: ZfsHost, name: str) -> PoolSummary:
    return PoolSummary(pools.get_pool(host, name), status.pool_status(host, name))


def record_sample(store: Store, pool: Pool, at: float | None = None) -> None:
    """Keep one capacity sample (for the capacity chart), and forget samples older than ~13 months."""
    now = time.time() if at is None else at
    with store.write() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO pool_samples (pool, at, size_bytes, alloc_bytes, free_bytes, health) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (pool.name, now, pool.size_bytes, pool.alloc_bytes, pool.free_bytes, pool.health),
        )
        conn.execute("DELETE FROM pool_samples WHERE pool = ? AND at < ?", (pool.name, now - SAMPLE_KEEP_SECONDS))


def samples(store: Store, pool: str, since: float) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT at, size_bytes, alloc_bytes, free_bytes, health FROM pool_samples WHERE pool = ? AND at >= ? "
        "ORDER BY at",
        (pool, since),
    )
    return [dict(r) for r in rows]


class ScrubJob:
    """Scrub a pool and follow it to the end, reporting the percentage done."""

    name = "pool.scrub"
    title = "Scrub pool"
    poll_seconds = 1.0

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        if set(params) != {"pool"}:
            raise InvalidInput("a scrub takes exactly one parameter: pool")
        return {"pool": names.pool_name(params["pool"])}

    def resource(self, params: dict[str, Any]) -> str | None:
        return f"pool:{params['pool']}:scrub"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        pool = ctx.job.params["pool"]
        before = status.pool_status(ctx.zfs, pool).scan
        if before.function == "scrub" and before.state == "in_progress":
            ctx.log("a scrub was already running; following it")
        else:
            pools.scrub_start(ctx.zfs, pool)
            ctx.log(f"scrub of {pool} started")
        started = time.monotonic()
        while True:
            try:
                ctx.check_cancelled()
            except base.JobCancelled:
                if not ctx.stopping():
                    pools.scrub_stop(ctx.zfs, pool)
                    ctx.log("scrub stopped on request")
                raise
            scan = status.pool_status(ctx.zfs, pool).scan
            if scan.state == "in_progress":
                ctx.progress(int((scan.percent or 0) * 100), 10000, f"{scan.percent or 0:.1f}% scanned")
            elif scan.state == "finished":
                ctx.progress(10000, 10000, "finished", force=True)
                ctx.log(scan.text)
                return {"errors": scan.errors, "seconds": round(time.monotonic() - started, 1), "text": scan.text}
            elif scan.state == "canceled":
                raise Conflict(f"the scrub of {pool} was stopped outside Bulwark: {scan.text}")
            ctx.sleep(self.poll_seconds)


base.register(ScrubJob())

# The other disk and pool job kinds, registered wherever the scrub is (bulwarkd and the web process).
import appliance.disks.replace  # noqa: E402, F401
import appliance.disks.selftest_job  # noqa: E402, F401
