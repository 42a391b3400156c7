"""Bringing the database in line with ZFS, the source of truth: at daemon start and when a pool is adopted.

* clients: the rows are re-derived from the ``bulwark:`` properties of ``<pool>/clients/*``;
* points are never cached, so they cannot disagree; their holds are made to match their pins and locks;
* browse clones that nothing owns any more (a crash, a pool from elsewhere) are destroyed;
* a snapshot job the restart found interrupted gets a log line saying which of its planned points exist.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from appliance.clients import browse, jobs, points, service
from appliance.jobs import queue
from appliance.store import Store
from appliance.system.errors import BulwarkError, NotFound
from appliance.zfs import snapshots
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.reconcile")


@dataclass(frozen=True)
class ReconcileReport:
    clients: service.ImportReport
    holds: points.HoldReport
    sweep: browse.SweepReport

    def to_dict(self) -> dict[str, Any]:
        return {"clients": self.clients.to_dict(), "holds": self.holds.to_dict(), "sweep": self.sweep.to_dict()}


def reconcile(store: Store, zfs: ZfsHost, *, by: str = "daemon") -> ReconcileReport:
    service.ensure_clients_root(store, zfs)
    clients = service.import_clients(store, zfs, by=by)
    holds = points.reconcile_holds(store, zfs)
    sweep = browse.sweep(store, zfs)
    return ReconcileReport(clients, holds, sweep)


def note_interrupted(store: Store, zfs: ZfsHost, job_ids: Iterable[int]) -> None:
    """For each interrupted snapshot job, log which of its planned snapshots ZFS has (a snapshot is atomic: one
    that exists is a complete recovery point; a requeued job takes only the missing ones)."""
    for job_id in job_ids:
        try:
            job = queue.get(store, job_id)
        except NotFound:
            continue
        if job.kind != jobs.SNAPSHOT or not job.params.get("planned"):
            continue
        try:
            client = service.get_client(store, job.params["client"])
        except BulwarkError:
            continue
        found = []
        for area, snapname in sorted(job.params["planned"].items()):
            exists = snapshots.exists(zfs, f"{client.area_dataset(area)}@{snapname}")
            found.append(f"{area}@{snapname} {'exists (complete)' if exists else 'was not taken'}")
        state = "it will be run again" if job.state == "queued" else f"it is {job.state}"
        queue.log(store, job_id, f"after the interruption: {'; '.join(found)}; {state}", "warning")


def on_daemon_start(store: Store, zfs: ZfsHost, recovered: Iterable[int]) -> ReconcileReport:
    report = reconcile(store, zfs)
    note_interrupted(store, zfs, recovered)
    c = report.clients
    if c.added or c.updated or c.forgotten or report.holds.fixed or report.sweep.destroyed:
        log.warning("reconciled with ZFS: %s", report.to_dict())
    return report
