"""bulwarkd's scheduler of snapshots: enqueue each client's due scheduled run, durably and at most once.

Each client's last handled fire time is kept in ``client_schedule_runs`` and written in the same transaction
that queues the job, so a daemon that dies between the two neither loses the run nor repeats it, and after
downtime the missed fire times add up to one run (:func:`appliance.schedules.due`).

Scheduled points are of the SMB share (an agent's points are taken by the agent at each verified backup, on
its own schedule); a client without a share has nothing to schedule here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from appliance import schedules
from appliance.clients import jobs, service
from appliance.clients.model import Client
from appliance.jobs import queue
from appliance.store import Store
from appliance.system.errors import BulwarkError

log = logging.getLogger("bulwark.scheduler")


@dataclass(frozen=True)
class ScheduleStatus:
    client: str
    schedule: str
    window: str | None
    last_fire: float | None
    last_job_id: int | None
    next_run: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "schedule": self.schedule,
            "window": self.window,
            "last_fire": self.last_fire,
            "last_job_id": self.last_job_id,
            "next_run": self.next_run,
        }


def schedules_share(client: Client) -> bool:
    return client.kind in ("smb", "both")


def _last(store: Store, name: str) -> tuple[float | None, int | None]:
    row = store.query_one("SELECT last_fire, last_job_id FROM client_schedule_runs WHERE client = ?", (name,))
    return (None, None) if row is None else (row["last_fire"], row["last_job_id"])


def status(store: Store, name: str, now: float | None = None) -> ScheduleStatus:
    client = service.get_client(store, name)
    at = time.time() if now is None else now
    schedule = schedules.parse_schedule(client.settings.schedule)
    window = schedules.parse_window(client.settings.window)
    last_fire, last_job = _last(store, name)
    upcoming = None
    if client.active and schedules_share(client):
        upcoming = schedules.next_run(schedule, window, at, service.timezone(store))
    return ScheduleStatus(name, schedule.text, client.settings.window, last_fire, last_job, upcoming)


def _pending(store: Store, name: str) -> bool:
    return any(
        j.params.get("client") == name and j.params.get("source") == "schedule"
        for j in queue.list_jobs(store, states=("queued", "running"), kind=jobs.SNAPSHOT, limit=1000)
    )


def tick(store: Store, now: float | None = None) -> list[int]:
    """Queue the scheduled snapshot of every client that is due; returns the new job ids."""
    at = time.time() if now is None else now
    tz = service.timezone(store)
    queued = []
    for client in service.list_clients(store):
        if not schedules_share(client):
            continue
        try:
            schedule = schedules.parse_schedule(client.settings.schedule)
            window = schedules.parse_window(client.settings.window)
        except BulwarkError as exc:
            log.warning("client %s has an unusable schedule: %s", client.name, exc)
            continue
        if not schedule.enabled:
            continue
        last_fire, _ = _last(store, client.name)
        fire = schedules.due(schedule, window, client.created_at if last_fire is None else last_fire, at, tz)
        if fire is None:
            continue
        with store.write() as conn:  # the job and the bookkeeping commit together
            job = (
                None
                if _pending(store, client.name)
                else jobs.submit_snapshot(store, client.name, by="schedule", source="schedule")
            )
            conn.execute(
                "INSERT INTO client_schedule_runs (client, last_fire, last_job_id, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (client) DO UPDATE SET last_fire = excluded.last_fire, "
                "last_job_id = COALESCE(excluded.last_job_id, client_schedule_runs.last_job_id), "
                "updated_at = excluded.updated_at",
                (client.name, fire, job, at),
            )
        if job is not None:
            queued.append(job)
            log.info("scheduled snapshot of %s queued as job %d", client.name, job)
    return queued
