"""RPO status: the age of a client's last good recovery point against its target, and the stale alert."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from appliance import alerts
from appliance.clients import points, service
from appliance.clients.model import Client
from appliance.store import Store
from appliance.system.durations import describe_age, format_duration
from appliance.system.errors import BulwarkError
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.rpo")
CATEGORY = "rpo"
OK, STALE, NO_POINT = "ok", "stale", "no_point"


STALE_ALERT = alerts.declare(
    "rpo.stale",
    level="warning",
    category=CATEGORY,
    title="Client past its RPO target",
    template="client {client}: last good recovery point is {age} old (RPO target {target})",
)
NO_POINT_ALERT = alerts.declare(
    "rpo.no_point",
    level="warning",
    category=CATEGORY,
    title="Client without a good recovery point",
    template="client {client} has no good recovery point yet (RPO target {target})",
)


def alert_key(client: str) -> str:
    return f"rpo:{client}"


@dataclass(frozen=True)
class RpoStatus:
    client: str
    target_seconds: int
    last_good_at: float | None  # newest point not known to have failed verification
    last_good_point: str | None
    age_seconds: float | None
    state: str  # ok, stale, or no_point (none yet, still within the target since the client was added)

    @property
    def stale(self) -> bool:
        return self.state == STALE

    def message(self) -> str:
        target = format_duration(self.target_seconds)
        if self.last_good_at is None:
            return f"client {self.client} has no good recovery point yet (RPO target {target})"
        age = describe_age(self.age_seconds or 0)
        return f"client {self.client}: last good recovery point is {age} old (RPO target {target})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "target_seconds": self.target_seconds,
            "last_good_at": self.last_good_at,
            "last_good_point": self.last_good_point,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
            "state": self.state,
            "message": self.message(),
        }


def evaluate(client: Client, timeline: list[points.RecoveryPoint], now: float) -> RpoStatus:
    """Pure: the RPO status of ``client`` given its points (a point whose verification failed is not good)."""
    good = [p for p in timeline if p.verified != "failed"]
    target = client.settings.rpo
    if not good:
        state = STALE if now - client.created_at > target else NO_POINT
        return RpoStatus(client.name, target, None, None, None, state)
    last = max(good, key=lambda p: (p.created_at, p.seq))
    age = max(0.0, now - last.created_at)
    return RpoStatus(client.name, target, last.created_at, last.id, age, STALE if age > target else OK)


def status(store: Store, zfs: ZfsHost, name: str, now: float | None = None) -> RpoStatus:
    client = service.get_client(store, name)
    return evaluate(client, list(points.scan(zfs, client).points), time.time() if now is None else now)


def check_all(store: Store, zfs: ZfsHost, now: float | None = None) -> list[RpoStatus]:
    """Evaluate every active client; raise the alert of a stale one, clear it when fresh again.
    Alerts of removed or forgotten clients are cleared."""
    at = time.time() if now is None else now
    results = []
    active = service.list_clients(store)
    for client in active:
        try:
            result = evaluate(client, list(points.scan(zfs, client).points), at)
        except BulwarkError as exc:
            log.warning("RPO of client %s not evaluated: %s", client.name, exc)
            continue
        results.append(result)
        if result.stale:
            alerts.fire(
                store,
                NO_POINT_ALERT if result.last_good_at is None else STALE_ALERT,
                alert_key(client.name),
                subject=f"client:{client.name}",
                now=at,
                client=client.name,
                age=describe_age(result.age_seconds or 0),
                target=format_duration(result.target_seconds),
            )
        else:
            alerts.clear(store, alert_key(client.name), now=at)
    alerts.clear_missing(store, CATEGORY, {alert_key(c.name) for c in active}, now=at)
    return results
