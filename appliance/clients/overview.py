"""One client at a glance, for list and detail pages: settings, space, points, RPO and schedule state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from appliance.clients import points, rpo, scheduler, service
from appliance.clients.model import Client
from appliance.store import Store
from appliance.system.errors import BulwarkError
from appliance.zfs.host import ZfsHost


@dataclass(frozen=True)
class ClientOverview:
    client: Client
    schedule: scheduler.ScheduleStatus
    usage: service.ClientUsage | None  # None when ZFS could not be read (see error)
    point_count: int | None
    last_point: points.RecoveryPoint | None
    rpo: rpo.RpoStatus | None
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.client.to_dict(),
            "schedule_status": self.schedule.to_dict(),
            "usage": None if self.usage is None else self.usage.to_dict(),
            "points": self.point_count,
            "last_point": None if self.last_point is None else self.last_point.to_dict(),
            "rpo_status": None if self.rpo is None else self.rpo.to_dict(),
            "error": self.error,
        }


def overview(store: Store, zfs: ZfsHost | None, name: str, now: float | None = None) -> ClientOverview:
    """A client with what ZFS says about it (``zfs`` None: the database's view only)."""
    at = time.time() if now is None else now
    client = service.get_client(store, name)
    status = scheduler.status(store, name, at)
    if zfs is None:
        return ClientOverview(client, status, None, None, None, None)
    try:
        found = points.scan(zfs, client)
        usage = service.usage(zfs, client)
    except BulwarkError as exc:
        return ClientOverview(client, status, None, None, None, None, exc.to_dict())
    timeline = list(found.points)
    return ClientOverview(
        client,
        status,
        usage,
        len(timeline),
        timeline[0] if timeline else None,
        rpo.evaluate(client, timeline, at),
    )


def overviews(store: Store, zfs: ZfsHost | None, *, include_removed: bool = False) -> list[ClientOverview]:
    return [overview(store, zfs, c.name) for c in service.list_clients(store, include_removed=include_removed)]
