"""kill -9 of bulwarkd during a snapshot or a prune job: after a restart, the job table and ZFS agree.

The first daemon is the real one (``appliance.daemon.Daemon``) with the ZFS driver slowed down at one point so the
test can kill it there; the second is ``bulwark daemon`` itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from appliance.clients import jobs, points, service
from appliance.clients.model import ClientSettings
from appliance.jobs import base, queue
from appliance.store import Store
from appliance.zfs import snapshots
from appliance.zfs.host import ZfsHost
from tests.clients_fixtures import Appliance, python_daemon

pytestmark = [pytest.mark.zfs, pytest.mark.slow]

SLOW_DAEMON = """
import sys, time
from pathlib import Path
from appliance import provision
from appliance.daemon import Daemon
from appliance.store import Store
from appliance.system import logs
from appliance.system.paths import Paths
from appliance.system.runner import local_runner
from appliance.zfs import snapshots

data_dir, where, delay = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
real_create, real_destroy = snapshots.create, snapshots.destroy

def create(*args, **kwargs):
    if where == "before-snapshot":
        time.sleep(delay)
    made = real_create(*args, **kwargs)
    if where == "after-snapshot":
        time.sleep(delay)
    return made

def destroy(*args, **kwargs):
    real_destroy(*args, **kwargs)
    if where == "prune":
        time.sleep(delay)

snapshots.create, snapshots.destroy = create, destroy
logs.configure("INFO")
paths = Paths(data_dir)
store = Store.open(paths.db)
config = provision.load_settings(paths, store)
runner = local_runner()
zfs, _ = provision.connect_zfs(paths, runner)
Daemon(store=store, zfs=zfs, pool_name=config.pool.name, runner=runner).start()
while True:
    time.sleep(1)
"""


def wait(what: str, check: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def final(store: Store, job_id: int, timeout: float = 90.0) -> queue.JobRecord:
    wait(f"job {job_id} to end", lambda: queue.get(store, job_id).state in queue.FINAL_STATES, timeout)
    return queue.get(store, job_id)


def messages(store: Store, job_id: int) -> list[str]:
    return [line["message"] for line in queue.log_lines(store, job_id)]


@pytest.fixture
def setup(appliance: Callable[..., Appliance], local_zfs: ZfsHost) -> tuple[Appliance, Store]:
    app = appliance()
    store = app.open_store()
    for name, spec in (("acme", "last=24"), ("shop", "last=2")):
        settings = ClientSettings.build(kind="smb", schedule="off", retention_spec=spec)
        service.create_client(store, local_zfs, name, settings, by="test")
    return app, store


def planned_snapshot(store: Store, job_id: int) -> str | None:
    planned = queue.get(store, job_id).params.get("planned")
    return None if not planned else f"{service.get_client(store, 'acme').dataset}/share@{planned['share']}"


@pytest.mark.parametrize("where", ["before-snapshot", "after-snapshot"])
def test_kill_during_a_snapshot_job(setup: tuple[Appliance, Store], local_zfs: ZfsHost, where: str) -> None:
    app, store = setup
    job_id = jobs.submit_snapshot(store, "acme", by="test")
    first = app.start_daemon(*python_daemon(SLOW_DAEMON, app.data_dir, where, "60"))
    if where == "before-snapshot":
        wait("the planned name to be recorded", lambda: planned_snapshot(store, job_id))
        time.sleep(0.5)  # inside the slowed-down snapshot call now
    else:
        wait("the snapshot", lambda: (s := planned_snapshot(store, job_id)) and snapshots.exists(local_zfs, s))
    snapshot = planned_snapshot(store, job_id)
    assert snapshot is not None
    assert queue.get(store, job_id).state == "running"
    app.kill_daemon(first)
    assert snapshots.exists(local_zfs, snapshot) == (where == "after-snapshot")

    app.start_daemon()  # the real 'bulwark daemon'
    job = final(store, job_id)
    assert job.state == "succeeded" and job.attempts == 2
    timeline = points.list_points(store, local_zfs, "acme")
    assert [p.snapshot for p in timeline] == [snapshot]  # one point: neither lost nor taken twice
    assert timeline[0].job_id == job_id
    log = messages(store, job_id)
    assert any("interrupted (the daemon stopped while it ran); queued again" in m for m in log)
    note = next(m for m in log if m.startswith("after the interruption"))
    if where == "after-snapshot":
        assert "exists (complete)" in note
        assert job.result is not None and job.result["taken_earlier"] == [timeline[0].id]
        assert any("taken by an earlier attempt" in m for m in log)
    else:
        assert "was not taken" in note
        assert job.result is not None and job.result["taken_earlier"] == []


def test_kill_with_no_attempt_left_marks_the_job_interrupted(
    setup: tuple[Appliance, Store], local_zfs: ZfsHost
) -> None:
    app, store = setup
    client = service.get_client(store, "acme")
    job_id = base.submit(
        store,
        jobs.SNAPSHOT,
        {"client": "acme", "dataset": client.dataset, "source": "manual", "created_by": "test"},
        created_by="test",
        max_attempts=1,
    )
    first = app.start_daemon(*python_daemon(SLOW_DAEMON, app.data_dir, "after-snapshot", "60"))
    wait("the snapshot", lambda: (s := planned_snapshot(store, job_id)) and snapshots.exists(local_zfs, s))
    app.kill_daemon(first)
    app.start_daemon()
    wait("the restart's recovery", lambda: queue.get(store, job_id).state != "running")
    job = queue.get(store, job_id)
    assert job.state == "interrupted" and job.error is not None
    assert job.error["code"] == "interrupted" and "daemon stopped while it ran" in job.error["message"]
    wait("the note", lambda: any(m.startswith("after the interruption") for m in messages(store, job_id)))
    note = next(m for m in messages(store, job_id) if m.startswith("after the interruption"))
    # the job table says what ZFS has: the point exists and is complete
    [point] = points.list_points(store, local_zfs, "acme")
    assert f"{point.id} exists (complete)" in note and "it is interrupted" in note


def test_kill_during_a_prune_job(setup: tuple[Appliance, Store], local_zfs: ZfsHost) -> None:
    app, store = setup
    client = service.get_client(store, "shop")
    for i in range(10):
        points.take_point(local_zfs, client, "share", f"bw-test-{i:02d}", source="manual", created_by="test")
    plan = points.prune_plan(store, local_zfs, "shop")
    keep = sorted(
        p.snapshot for p in points.list_points(store, local_zfs, "shop") if p.id not in {d.id for d in plan.destroy}
    )
    assert len(plan.destroy) == 8 and len(keep) == 2
    job_id = jobs.submit_prune(store, "shop", by="test")
    first = app.start_daemon(*python_daemon(SLOW_DAEMON, app.data_dir, "prune", "0.5"))
    wait("three points to be removed", lambda: len(points.list_points(store, local_zfs, "shop")) <= 7)
    app.kill_daemon(first)
    left = len(points.list_points(store, local_zfs, "shop"))
    assert 2 < left <= 7
    assert queue.get(store, job_id).state == "running"

    app.start_daemon()
    job = final(store, job_id)
    assert job.state == "succeeded" and job.attempts == 2
    assert sorted(p.snapshot for p in points.list_points(store, local_zfs, "shop")) == keep
    assert job.result is not None and len(job.result["destroyed"]) == left - 2  # the rest of the plan
    assert any("queued again" in m for m in messages(store, job_id))
    # the other client was not touched
    assert len(points.list_points(store, local_zfs, "acme")) == 0
