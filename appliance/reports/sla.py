"""SLA figures of a client over a period, and the appliance summary across clients.

The RPO is *met* at a moment when the newest good recovery point taken before it is at most the RPO target
old; in the first target-long stretch after the client was added it is met without a point (nothing could be
expected yet). :func:`rpo_met_fraction` is the share of the period in which it was met: the union of the
intervals ``[point, point + target]`` (and ``[added, added + target]``) over the period, divided by its length.
A point whose verification failed is not good. Points pruned since still count: they existed then.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from appliance import alerts
from appliance.clients import service
from appliance.clients.model import Client
from appliance.reports import chart, history
from appliance.store import Store
from appliance.system import settings
from appliance.system.durations import format_duration

DEFAULT_DAYS = 30


def covered(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """The length of the union of ``intervals`` within ``[start, end]`` (pure)."""
    total, reach = 0.0, start
    for a, b in sorted(intervals):
        a, b = max(a, reach), min(b, end)
        if b > a:
            total += b - a
            reach = b
    return total


def rpo_met_fraction(good_times: list[float], target: float, start: float, end: float, added_at: float) -> float | None:
    """The share of ``[start, end]`` (from when the client was added) in which the RPO was met; None for an
    empty period."""
    begin = max(start, added_at)
    if end <= begin:
        return None
    intervals = [(t, t + target) for t in good_times] + [(added_at, added_at + target)]
    return covered(intervals, begin, end) / (end - begin)


def longest_gap(good_times: list[float], start: float, end: float, added_at: float) -> float:
    """The longest stretch of the period without a new good point (pure)."""
    marks = sorted({max(start, added_at), *[t for t in good_times if start <= t <= end], end})
    return max((b - a for a, b in zip(marks, marks[1:], strict=False)), default=0.0)


@dataclass(frozen=True)
class ClientReport:
    client: str
    kind: str
    hostname: str
    timezone: str
    start: float
    end: float
    generated_at: float
    rpo_target: int
    points_made: int
    points_by_source: dict[str, int]
    verification: dict[str, int]
    rpo_met_percent: float | None
    longest_gap_seconds: float
    last_good_at: float | None
    rpo_state: str  # ok, stale, no_point
    used_bytes: int | None
    used_change_bytes: int | None
    usage: list[dict[str, Any]] = field(default_factory=list)
    open_alerts: list[dict[str, Any]] = field(default_factory=list)
    alerts_in_period: int = 0
    history_since: float | None = None

    @property
    def days(self) -> int:
        return max(1, round((self.end - self.start) / 86400))

    def when(self, epoch: float | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if epoch is None:
            return "—"
        return dt.datetime.fromtimestamp(epoch, _zone(self.timezone)).strftime(fmt)

    def chart_svg(self) -> str:
        return chart.usage_svg(
            self.usage, self.start, self.end, _zone(self.timezone), f"Storage used by {self.client} over time"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "kind": self.kind,
            "appliance": self.hostname,
            "period": {"start": self.start, "end": self.end, "days": self.days},
            "generated_at": self.generated_at,
            "rpo_target_seconds": self.rpo_target,
            "rpo_target": format_duration(self.rpo_target),
            "points_made": self.points_made,
            "points_by_source": self.points_by_source,
            "verification": self.verification,
            "rpo_met_percent": self.rpo_met_percent,
            "longest_gap_seconds": round(self.longest_gap_seconds, 1),
            "last_good_at": self.last_good_at,
            "rpo_state": self.rpo_state,
            "used_bytes": self.used_bytes,
            "used_change_bytes": self.used_change_bytes,
            "usage": self.usage,
            "open_alerts": self.open_alerts,
            "alerts_in_period": self.alerts_in_period,
            "history_since": self.history_since,
        }


def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return dt.UTC


def _facts(store: Store) -> tuple[str, str]:
    config = settings.load(store)
    return (config.hostname, config.timezone) if config is not None else ("bulwark", "UTC")


def client_report(store: Store, name: str, *, days: int = DEFAULT_DAYS, now: float | None = None) -> ClientReport:
    """The report of client ``name`` over the last ``days`` days, from the recorded history."""
    client = service.get_client(store, name)
    return build(store, client, days=days, now=now)


def build(store: Store, client: Client, *, days: int = DEFAULT_DAYS, now: float | None = None) -> ClientReport:
    end = time.time() if now is None else now
    start = end - days * 86400
    hostname, tz = _facts(store)
    seen = history.points_seen(store, client.name, 0.0, end)
    made = [p for p in seen if p.created_at >= start]
    good_all = [p.created_at for p in seen if p.verified != "failed"]
    by_source: dict[str, int] = {}
    verification = {"verified": 0, "unverified": 0, "failed": 0}
    for p in made:
        by_source[p.source] = by_source.get(p.source, 0) + 1
        verification[p.verified] = verification.get(p.verified, 0) + 1
    target = client.settings.rpo
    fraction = rpo_met_fraction(good_all, target, start, end, client.created_at)
    live_good = [p.created_at for p in seen if p.verified != "failed" and p.gone_at is None]
    last_good = max(live_good, default=None)
    if last_good is None:
        state = "stale" if end - client.created_at > target else "no_point"
    else:
        state = "stale" if end - last_good > target else "ok"
    usage = history.usage_samples(store, client.name, start, end)
    subject = f"client:{client.name}"
    open_alerts = [a.to_dict(end) for a in alerts.list_alerts(store, limit=1000) if a.subject == subject]
    row = store.query_one(
        "SELECT COUNT(*) AS n FROM alerts WHERE subject = ? AND raised_at >= ? AND raised_at <= ?",
        (subject, start, end),
    )
    first = store.query_one("SELECT MIN(first_seen_at) AS at FROM point_history WHERE client = ?", (client.name,))
    return ClientReport(
        client=client.name,
        kind=client.kind,
        hostname=hostname,
        timezone=tz,
        start=start,
        end=end,
        generated_at=end,
        rpo_target=target,
        points_made=len(made),
        points_by_source=dict(sorted(by_source.items())),
        verification=verification,
        rpo_met_percent=None if fraction is None else round(100 * fraction, 2),
        longest_gap_seconds=longest_gap(good_all, start, end, client.created_at),
        last_good_at=last_good,
        rpo_state=state,
        used_bytes=usage[-1]["used_bytes"] if usage else None,
        used_change_bytes=usage[-1]["used_bytes"] - usage[0]["used_bytes"] if len(usage) >= 2 else None,
        usage=usage,
        open_alerts=open_alerts,
        alerts_in_period=int(row["n"]) if row else 0,
        history_since=None if first is None or first["at"] is None else float(first["at"]),
    )


@dataclass(frozen=True)
class Summary:
    hostname: str
    timezone: str
    generated_at: float
    days: int
    clients: list[ClientReport]
    alert_counts: dict[str, Any]
    pool: dict[str, Any] | None

    def when(self, epoch: float | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if epoch is None:
            return "—"
        return dt.datetime.fromtimestamp(epoch, _zone(self.timezone)).strftime(fmt)

    @property
    def rpo_met_percent(self) -> float | None:
        values = [c.rpo_met_percent for c in self.clients if c.rpo_met_percent is not None]
        return round(sum(values) / len(values), 2) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "appliance": self.hostname,
            "generated_at": self.generated_at,
            "days": self.days,
            "rpo_met_percent": self.rpo_met_percent,
            "clients": [
                {k: v for k, v in c.to_dict().items() if k not in ("usage", "open_alerts")} for c in self.clients
            ],
            "alerts": self.alert_counts,
            "pool": self.pool,
        }


def summary(store: Store, *, days: int = DEFAULT_DAYS, now: float | None = None) -> Summary:
    """Every active client's report figures, the open alerts, and the pool's last recorded capacity."""
    end = time.time() if now is None else now
    hostname, tz = _facts(store)
    reports = [build(store, c, days=days, now=end) for c in service.list_clients(store)]
    row = store.query_one("SELECT * FROM pool_samples ORDER BY at DESC LIMIT 1")
    pool = None if row is None else {k: row[k] for k in row.keys()}  # noqa: SIM118
    return Summary(hostname, tz, end, days, reports, alerts.counts(store, now=end), pool)
