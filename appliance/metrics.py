"""``/metrics`` in the Prometheus text format, so that an MSP's Prometheus and Alertmanager watch a fleet.

Figures are read when scraped, cheaply: the pool from ``zpool list`` and ``zpool status`` (two short
commands), everything else from the database (client points as ``bulwarkd`` last recorded them, every minute;
jobs; alerts; the outbox; disks' SMART verdicts and temperatures as bulwarkd last polled them). The families
are listed in docs/alerts.md (section /metrics).

Access: without a token configured, ``/metrics`` is open on the appliance's port like a node exporter; with
one (``bulwark metrics token``), a scrape must send ``Authorization: Bearer <token>``. Only the token's SHA-256
is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

import appliance
from appliance import alerts
from appliance.alerts import outbox
from appliance.clients import service
from appliance.daemon import daemon_state
from appliance.disks import polling as disk_polling
from appliance.offsite import metrics as offsite_metrics
from appliance.reports import history
from appliance.store import Store
from appliance.system import settings
from appliance.system.errors import BulwarkError
from appliance.tunnel import metrics as tunnel_metrics
from appliance.zfs import pools, status
from appliance.zfs.host import ZfsHost

TOKEN_KEY = "metrics.token_sha256"  # noqa: S105  (a settings key, not a secret)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0)
HEALTHS = ("ONLINE", "DEGRADED", "FAULTED", "OFFLINE", "UNAVAIL", "REMOVED", "SUSPENDED")


# -- the bearer token ------------------------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(store: Store) -> str:
    """Make (or replace) the scrape token; returns it, the only time it is seen."""
    token = "bwm_" + secrets.token_urlsafe(32)
    store.set_setting(TOKEN_KEY, _digest(token))
    return token


def clear_token(store: Store) -> None:
    store.set_setting(TOKEN_KEY, None)


def token_required(store: Store) -> bool:
    return bool(store.get_setting(TOKEN_KEY))


def allowed(store: Store, authorization: str | None) -> bool:
    """Whether a scrape with this Authorization header may read the metrics."""
    expected = store.get_setting(TOKEN_KEY)
    if not expected:
        return True
    presented = (authorization or "").removeprefix("Bearer ").strip()
    return bool(presented) and hmac.compare_digest(_digest(presented), str(expected))


# -- the collector ---------------------------------------------------------------------------------------------


class ApplianceCollector(Collector):
    def __init__(self, store: Store, zfs: ZfsHost | None, now: float | None = None) -> None:
        self.store = store
        self.zfs = zfs
        self.now = now

    def collect(self) -> Iterator[Metric]:
        now = time.time() if self.now is None else self.now
        config = settings.load(self.store)
        info = InfoMetricFamily("bulwark_appliance", "The appliance and its software version")
        info.add_metric([], {"hostname": config.hostname if config else "", "version": appliance.__version__})
        yield info
        running = 1 if daemon_state(self.store)["running"] else 0
        yield GaugeMetricFamily("bulwark_daemon_up", "1 while bulwarkd's heartbeat is fresh", value=running)
        yield from self._pool(config.pool.name if config else None)
        yield from self._disks()
        yield from self._clients(now)
        yield from self._jobs()
        yield from self._alerts(now)
        yield from tunnel_metrics.families(self.store, now)
        yield from offsite_metrics.families(self.store)

    def _pool(self, name: str | None) -> Iterator[Metric]:
        up = GaugeMetricFamily("bulwark_pool_up", "1 if the pool could be read from ZFS", labels=["pool"])
        health = GaugeMetricFamily("bulwark_pool_health", "1 for the pool's current health", labels=["pool", "health"])
        size = GaugeMetricFamily("bulwark_pool_size_bytes", "Pool size", labels=["pool"])
        alloc = GaugeMetricFamily("bulwark_pool_allocated_bytes", "Pool space allocated", labels=["pool"])
        free = GaugeMetricFamily("bulwark_pool_free_bytes", "Pool space free", labels=["pool"])
        ratio = GaugeMetricFamily("bulwark_pool_capacity_ratio", "Allocated share of the pool (0-1)", labels=["pool"])
        vdev = GaugeMetricFamily(
            "bulwark_pool_vdev_state", "1 for each pool device's current state (zpool status)",
            labels=["pool", "vdev", "kind", "state"],
        )  # fmt: skip
        errors = CounterMetricFamily(
            "bulwark_pool_vdev_errors", "Read, write and checksum errors of each pool device since the last "
            "'zpool clear' (zpool status)", labels=["pool", "vdev", "type"],
        )  # fmt: skip
        if name is not None and self.zfs is not None:
            try:
                pool = pools.get_pool(self.zfs, name)
                pool_status = status.pool_status(self.zfs, name)
            except BulwarkError:
                up.add_metric([name], 0)
            else:
                up.add_metric([name], 1)
                for h in sorted({*HEALTHS, pool.health}):
                    health.add_metric([name, h], int(pool.health == h))
                size.add_metric([name], pool.size_bytes)
                alloc.add_metric([name], pool.alloc_bytes)
                free.add_metric([name], pool.free_bytes)
                ratio.add_metric([name], round(pool.alloc_bytes / pool.size_bytes, 6) if pool.size_bytes else 0)
                for top in (pool_status.root, *pool_status.groups):
                    for device in top.walk():
                        if device.state is None:
                            continue
                        kind = "pool" if device is pool_status.root else device.kind
                        vdev.add_metric([name, device.name, kind, device.state], 1)
                        for kind, count in (("read", device.read_errors), ("write", device.write_errors),
                                            ("checksum", device.checksum_errors)):  # fmt: skip
                            errors.add_metric([name, device.name, kind], count)
        elif name is not None:
            up.add_metric([name], 0)
        yield from (up, health, size, alloc, free, ratio, vdev, errors)

    def _disks(self) -> Iterator[Metric]:
        healthy = GaugeMetricFamily(
            "bulwark_disk_smart_healthy",
            "1 if a disk's SMART verdict is healthy, 0 if warning, failing or unknown (bulwarkd's last poll)",
            labels=["disk", "serial"],
        )
        verdict = GaugeMetricFamily(
            "bulwark_disk_smart_verdict", "1 for a disk's current SMART verdict", labels=["disk", "serial", "verdict"]
        )
        temperature = GaugeMetricFamily(
            "bulwark_disk_temperature_celsius", "Disk temperature from SMART (bulwarkd's last poll)",
            labels=["disk", "serial"],
        )  # fmt: skip
        for row in disk_polling.latest(self.store):
            labels = [row["name"], row["serial"]]
            healthy.add_metric(labels, int(row["verdict"] == "healthy"))
            verdict.add_metric([*labels, row["verdict"]], 1)
            if row["temperature"] is not None:
                temperature.add_metric(labels, row["temperature"])
        yield from (healthy, verdict, temperature)

    def _clients(self, now: float) -> Iterator[Metric]:
        last = GaugeMetricFamily(
            "bulwark_client_last_recovery_point_timestamp_seconds",
            "When the client's newest good recovery point was taken (as bulwarkd last recorded, every minute)",
            labels=["client"],
        )
        age = GaugeMetricFamily(
            "bulwark_client_last_recovery_point_age_seconds", "Age of the newest good recovery point", labels=["client"]
        )
        target = GaugeMetricFamily("bulwark_client_rpo_target_seconds", "The client's RPO target", labels=["client"])
        met = GaugeMetricFamily(
            "bulwark_client_rpo_met", "1 if the newest good point is within the RPO target (or the client is new)",
            labels=["client"],
        )  # fmt: skip
        used = GaugeMetricFamily(
            "bulwark_client_used_bytes", "Space used by the client's data and points (hourly sample)", labels=["client"]
        )
        newest = history.last_good(self.store)
        for client in service.list_clients(self.store):
            target.add_metric([client.name], client.settings.rpo)
            at = newest.get(client.name)
            if at is not None:
                last.add_metric([client.name], at)
                age.add_metric([client.name], max(0.0, now - at))
                ok = now - at <= client.settings.rpo
            else:
                ok = now - client.created_at <= client.settings.rpo
            met.add_metric([client.name], int(ok))
            samples = history.usage_samples(self.store, client.name, now - 2 * history.USAGE_INTERVAL - 600, now)
            if samples:
                used.add_metric([client.name], samples[-1]["used_bytes"])
        sampled = GaugeMetricFamily(
            "bulwark_client_history_timestamp_seconds", "When bulwarkd last recorded the clients' recovery points"
        )
        at = history.sampled_at(self.store)
        if at is not None:
            sampled.add_metric([], at)
        yield from (last, age, target, met, used, sampled)

    def _jobs(self) -> Iterator[Metric]:
        current = GaugeMetricFamily("bulwark_jobs", "Jobs by state now", labels=["state"])
        for state, n in self._job_counts().items():
            current.add_metric([state], n)
        yield current
        finished = CounterMetricFamily("bulwark_jobs_finished", "Jobs that ended, by kind and outcome",
                                       labels=["kind", "state"])  # fmt: skip
        for row in self.store.query(
            "SELECT kind, state, COUNT(*) AS n FROM jobs WHERE state IN ('succeeded', 'failed', 'interrupted', "
            "'cancelled') GROUP BY kind, state ORDER BY kind, state"
        ):
            finished.add_metric([row["kind"], row["state"]], row["n"])
        yield finished
        durations = HistogramMetricFamily(
            "bulwark_job_duration_seconds", "How long jobs that ended ran, by kind", labels=["kind"]
        )
        rows: dict[str, list[float]] = {}
        for row in self.store.query(
            "SELECT kind, finished_at - started_at AS d FROM jobs WHERE finished_at IS NOT NULL AND started_at IS NOT "
            "NULL"
        ):
            rows.setdefault(row["kind"], []).append(max(0.0, float(row["d"])))
        for kind, values in sorted(rows.items()):
            buckets = [(str(b), sum(1 for v in values if v <= b)) for b in DURATION_BUCKETS]
            buckets.append(("+Inf", len(values)))
            durations.add_metric([kind], buckets, sum_value=sum(values))
        yield durations
        success = GaugeMetricFamily(
            "bulwark_job_last_success_timestamp_seconds", "When a job of each kind last succeeded", labels=["kind"]
        )
        for row in self.store.query(
            "SELECT kind, MAX(finished_at) AS at FROM jobs WHERE state = 'succeeded' GROUP BY kind ORDER BY kind"
        ):
            success.add_metric([row["kind"]], row["at"])
        yield success

    def _job_counts(self) -> dict[str, int]:
        from appliance.jobs import queue

        return queue.counts(self.store)

    def _alerts(self, now: float) -> Iterator[Metric]:
        open_alerts = GaugeMetricFamily(
            "bulwark_alerts_open", "Open alerts by level and status", labels=["level", "status"]
        )
        found: dict[tuple[str, str], int] = {
            (level, s): 0 for level in alerts.LEVELS for s in ("active", "acknowledged", "snoozed")
        }
        for alert in alerts.list_alerts(self.store, limit=100000, now=now):
            key = (alert.level, alert.status(now))
            found[key] = found.get(key, 0) + 1
        for (level, s), n in sorted(found.items()):
            open_alerts.add_metric([level, s], n)
        yield open_alerts
        notes = GaugeMetricFamily("bulwark_alert_notifications", "Notifications in the outbox by state",
                                  labels=["state"])  # fmt: skip
        for state, n in outbox.counts(self.store).items():
            notes.add_metric([state], n)
        yield notes


def exposition(store: Store, zfs: ZfsHost | None, now: float | None = None) -> bytes:
    """The whole page, in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ApplianceCollector(store, zfs, now))
    return generate_latest(registry)


def families(text: str) -> dict[str, Any]:
    """Parse an exposition (for tests and ``bulwark metrics show``): family name → family."""
    from prometheus_client.parser import text_string_to_metric_families

    return {family.name: family for family in text_string_to_metric_families(text)}
