"""What raises alerts besides the clients: the pool (recorded ``zpool status`` outputs of real pools) and jobs
(run by a real worker)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from appliance import alerts
from appliance.disks import health
from appliance.jobs import base, queue
from appliance.jobs.worker import Worker
from appliance.store import Store
from appliance.system.errors import Conflict
from appliance.zfs import status
from appliance.zfs.pools import Pool

DATA = Path(__file__).resolve().parents[1] / "data" / "zfs-fuse-0.7.0"
GiB = 1024**3


def pool(health_text: str = "ONLINE", used_percent: float = 10.0) -> Pool:
    size = 100 * GiB
    alloc = int(size * used_percent / 100)
    return Pool("fzmirror", health_text, size, alloc, size - alloc, "1", None, True)


def recorded(name: str) -> status.PoolStatus:
    [parsed] = status.parse_status((DATA / f"{name}.out").read_text())
    return parsed


def test_healthy_pool_has_no_findings() -> None:
    assert health.findings(pool(), recorded("zpool_status_mirror"), "fzmirror") == []


def test_degraded_pool_is_critical() -> None:
    [finding] = health.findings(pool("DEGRADED"), recorded("zpool_status_degraded"), "fzmirror")
    assert (finding.key, finding.level, finding.cls.name) == ("pool:health:fzmirror", "critical", "pool.health")
    message = finding.cls.message(**finding.params)
    assert message.startswith("pool fzmirror is DEGRADED: One or more devices has been taken offline")


def test_device_with_checksum_errors() -> None:
    [finding] = health.findings(pool(), recorded("zpool_status_repaired"), "fzmirror")
    assert finding.key == "pool:errors:fzmirror:/tmp/bwrec-pz7fw8vk/m2.img" and finding.level == "warning"
    assert finding.cls.message(**finding.params) == (
        "device /tmp/bwrec-pz7fw8vk/m2.img of pool fzmirror (ONLINE) has 0 read, 0 write and 633 checksum errors"
    )


@pytest.mark.parametrize(("percent", "level"), [(79.9, None), (80, "info"), (90.5, "warning"), (95, "critical")])
def test_capacity_thresholds(percent: float, level: str | None) -> None:
    found = health.findings(pool(used_percent=percent), recorded("zpool_status_mirror"), "fzmirror")
    assert [f.level for f in found] == ([level] if level else [])
    if level:
        assert found[0].key == "pool:capacity:fzmirror"
        assert f"is {percent:.0f}% full" in found[0].cls.message(**found[0].params)


def test_pool_that_cannot_be_read_is_critical() -> None:
    [finding] = health.findings(None, None, "tank", "Pool tank was not found.")
    assert finding.cls.message(**finding.params) == "pool tank is UNAVAILABLE: Pool tank was not found."


# -- jobs ------------------------------------------------------------------------------------------------------


class FlakyJob:
    """A job kind for this test: fails while its resource is listed in ``broken``."""

    name = "test.flaky"
    title = "Flaky test job"
    broken: set[str] = set()

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def resource(self, params: dict[str, Any]) -> str | None:
        return f"thing:{params['thing']}"

    def run(self, ctx: base.JobContext) -> dict[str, Any]:
        if ctx.job.params["thing"] in self.broken:
            raise Conflict(f"thing {ctx.job.params['thing']} is broken")
        return {}


FLAKY = base.register(FlakyJob())


def run(store: Store, thing: str) -> queue.JobRecord:
    job_id = base.submit(store, "test.flaky", {"thing": thing}, created_by="test")
    job = queue.claim(store, ["test.flaky"])
    assert job is not None and job.id == job_id
    Worker(0, store, None, threading.Event(), threading.Event()).execute(job)  # type: ignore[arg-type]
    return queue.get(store, job_id)


def test_a_failed_job_raises_one_alert_until_the_same_kind_succeeds_on_the_same_resource(store: Store) -> None:
    FlakyJob.broken = {"a", "b"}
    assert run(store, "a").state == "failed"
    assert run(store, "a").state == "failed"
    assert run(store, "b").state == "failed"
    found = {a.key: a for a in alerts.list_alerts(store, category="jobs")}
    assert set(found) == {"job:test.flaky:thing:a", "job:test.flaky:thing:b"}
    assert found["job:test.flaky:thing:a"].count == 2
    assert found["job:test.flaky:thing:a"].message == "Flaky test job failed (thing:a): Conflict: thing a is broken"
    FlakyJob.broken = {"b"}
    assert run(store, "a").state == "succeeded"
    assert [a.key for a in alerts.list_alerts(store, category="jobs")] == ["job:test.flaky:thing:b"]
