"""The history reports are made from, recorded by ``bulwarkd`` every few minutes: every recovery point seen
(kept after retention prunes it, with when it went) and each client's storage use over time."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from appliance.clients import points, service
from appliance.clients.model import Client
from appliance.clients.points import RecoveryPoint
from appliance.store import Store
from appliance.system.errors import BulwarkError
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.reports")
USAGE_INTERVAL = 3600.0  # one storage sample per client per hour
KEEP_SECONDS = 400 * 86400
SAMPLED_KEY = "reports.sampled_at"


@dataclass(frozen=True)
class PointSeen:
    snapshot: str
    client: str
    area: str
    created_at: float
    source: str
    verified: str
    gone_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "client": self.client,
            "area": self.area,
            "created_at": self.created_at,
            "source": self.source,
            "verified": self.verified,
            "gone_at": self.gone_at,
        }


def record_points(store: Store, client: str, found: list[RecoveryPoint], now: float) -> None:
    """Remember the client's points as seen now; those no longer there are marked gone."""
    with store.write() as conn:
        conn.executemany(
            "INSERT INTO point_history (snapshot, client, area, created_at, source, verified, first_seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (snapshot) DO UPDATE SET verified = excluded.verified, "
            "gone_at = NULL",
            [(p.snapshot, client, p.area, p.created_at, p.source, p.verified, now) for p in found],
        )
        live = {p.snapshot for p in found}
        for row in conn.execute(
            "SELECT snapshot FROM point_history WHERE client = ? AND gone_at IS NULL", (client,)
        ).fetchall():
            if row["snapshot"] not in live:
                conn.execute("UPDATE point_history SET gone_at = ? WHERE snapshot = ?", (now, row["snapshot"]))


def record_usage(store: Store, client: str, used_bytes: int, count: int, now: float) -> None:
    with store.write() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO client_usage_samples (client, at, used_bytes, points) VALUES (?, ?, ?, ?)",
            (client, now, used_bytes, count),
        )
        conn.execute("DELETE FROM client_usage_samples WHERE client = ? AND at < ?", (client, now - KEEP_SECONDS))


def _last_usage_at(store: Store, client: str) -> float | None:
    row = store.query_one("SELECT MAX(at) AS at FROM client_usage_samples WHERE client = ?", (client,))
    return None if row is None or row["at"] is None else float(row["at"])


def sample_client(store: Store, zfs: ZfsHost, client: Client, now: float, *, usage: bool | None = None) -> None:
    found = list(points.scan(zfs, client).points)
    record_points(store, client.name, found, now)
    last = _last_usage_at(store, client.name)
    if usage or (usage is None and (last is None or now - last >= USAGE_INTERVAL)):
        record_usage(store, client.name, service.usage(zfs, client).used_bytes, len(found), now)


def sample(store: Store, zfs: ZfsHost, *, now: float | None = None, usage: bool | None = None) -> int:
    """Record every active client's points (and, hourly, its storage use). Returns the clients sampled."""
    at = time.time() if now is None else now
    done = 0
    for client in service.list_clients(store):
        try:
            sample_client(store, zfs, client, at, usage=usage)
            done += 1
        except BulwarkError as exc:
            log.warning("history of client %s not recorded: %s", client.name, exc)
    store.set_setting(SAMPLED_KEY, at)
    return done


def points_seen(store: Store, client: str, since: float = 0.0, until: float | None = None) -> list[PointSeen]:
    rows = store.query(
        "SELECT * FROM point_history WHERE client = ? AND created_at >= ? AND created_at <= ? ORDER BY created_at",
        (client, since, until if until is not None else 1e18),
    )
    return [
        PointSeen(r["snapshot"], r["client"], r["area"], r["created_at"], r["source"], r["verified"], r["gone_at"])
        for r in rows
    ]


def usage_samples(store: Store, client: str, since: float, until: float | None = None) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT at, used_bytes, points FROM client_usage_samples WHERE client = ? AND at >= ? AND at <= ? ORDER BY at",
        (client, since, until if until is not None else 1e18),
    )
    return [dict(r) for r in rows]


def last_good(store: Store) -> dict[str, float]:
    """Each client's newest recorded point that did not fail verification (and was not seen to go)."""
    rows = store.query(
        "SELECT client, MAX(created_at) AS at FROM point_history WHERE verified != 'failed' AND gone_at IS NULL "
        "GROUP BY client"
    )
    return {r["client"]: float(r["at"]) for r in rows}


def sampled_at(store: Store) -> float | None:
    """When bulwarkd last recorded the clients' points (None: never)."""
    value = store.get_setting(SAMPLED_KEY)
    return None if value is None else float(value)
