"""Recovery points on a real zfs-fuse pool: the snapshot job, the timeline, pins, locks (ZFS holds), pruning,
RPO alerts and the scheduler."""

from __future__ import annotations

import time

import pytest

from appliance import alerts
from appliance.clients import jobs, overview, points, rpo, scheduler, service
from appliance.clients.errors import AmbiguousPoint, PointLocked, PointNotFound, PointPinned
from appliance.jobs import queue
from appliance.system.errors import BulwarkError
from appliance.zfs import holds, properties, snapshots
from appliance.zfs.errors import DatasetBusy, SnapshotHeld
from tests.clients_fixtures import ClientEnv

pytestmark = pytest.mark.zfs


def snap(env: ClientEnv, name: str, **kwargs: object) -> queue.JobRecord:
    job_id = jobs.submit_snapshot(env.store, name, by="test", **kwargs)  # type: ignore[arg-type]
    done = {j.id: j for j in env.run_jobs()}
    assert done[job_id].state == "succeeded", done[job_id].error
    return done[job_id]


def test_snapshot_job_takes_a_point_of_each_dataset(client_env: ClientEnv) -> None:
    env = client_env
    env.add("acme", "both")
    (env.live("acme") / "a.txt").write_text("share data")
    (env.live("acme", "files") / "b.txt").write_text("agent data")
    job = snap(env, "acme")
    assert job.result is not None and len(job.result["points"]) == 2
    assert job.params["planned"].keys() == {"share", "files"}  # recorded before the snapshots were taken
    timeline = points.list_points(env.store, env.zfs, "acme")
    assert sorted(p.area for p in timeline) == ["files", "share"]
    for p in timeline:
        assert p.snapname.startswith("bw-") and p.snapname.endswith("-manual")
        assert (p.source, p.created_by, p.job_id, p.verified, p.pinned, p.locked_until) == (
            "manual",
            "test",
            job.id,
            "unverified",
            False,
            None,
        )
        assert p.referenced_bytes > 0 and abs(p.created_at - time.time()) < 60
    share_only = snap(env, "acme", areas=["share"])
    assert share_only.result is not None and [p.split("@")[0] for p in share_only.result["points"]] == ["share"]
    timeline = points.list_points(env.store, env.zfs, "acme")
    assert len(timeline) == 3
    assert [(p.created_at, p.seq) for p in timeline] == sorted(((p.created_at, p.seq) for p in timeline), reverse=True)
    assert len({p.snapname for p in timeline}) == 2  # same second, same source: a suffix keeps names apart
    both_names = {p.snapname for p in timeline if p.job_id == job.id}
    assert len(both_names) == 1  # one job, one name for its points of every dataset
    with pytest.raises(AmbiguousPoint):
        points.find(timeline, "acme", both_names.pop())
    bad = jobs.submit_snapshot(env.store, "acme", by="test", areas=["images"])
    [failed] = env.run_jobs()
    assert failed.id == bad and failed.state == "failed" and failed.error is not None
    assert failed.error["code"] == "no_live_dataset"


def test_external_snapshots_are_shown_but_never_managed(client_env: ClientEnv) -> None:
    env = client_env
    client = env.add("acme", retention_spec="last=1")
    snapshots.create(env.zfs, client.area_dataset("share"), "by-hand")
    snap(env, "acme")
    snap(env, "acme")
    timeline = points.list_points(env.store, env.zfs, "acme")
    external = [p for p in timeline if p.source == "external"]
    assert [p.id for p in external] == ["share@by-hand"] and not external[0].managed
    plan = points.prune_plan(env.store, env.zfs, "acme")
    assert len(plan.destroy) == 1 and plan.destroy[0].source == "manual"


def test_pin_is_a_hold_and_blocks_every_destroy(client_env: ClientEnv) -> None:
    env = client_env
    env.add("acme")
    snap(env, "acme")
    point = points.list_points(env.store, env.zfs, "acme")[0]
    pinned = points.pin(env.store, env.zfs, "acme", point.snapname, by="test")
    assert pinned.pinned and pinned.holds == 1
    assert points.pin(env.store, env.zfs, "acme", point.id, by="test").holds == 1  # idempotent
    with pytest.raises(PointPinned):
        points.destroy_point(env.store, env.zfs, "acme", point.id, by="test")
    with pytest.raises((SnapshotHeld, DatasetBusy)):
        snapshots.destroy(env.zfs, point.snapshot)  # even by hand, ZFS refuses
    unpinned = points.unpin(env.store, env.zfs, "acme", point.id, by="test")
    assert not unpinned.pinned and unpinned.holds == 0
    points.destroy_point(env.store, env.zfs, "acme", point.id, by="test")
    assert points.list_points(env.store, env.zfs, "acme") == []
    with pytest.raises(PointNotFound):
        points.destroy_point(env.store, env.zfs, "acme", point.id, by="test")


def test_locked_points_cannot_be_destroyed_by_any_path(client_env: ClientEnv) -> None:
    env = client_env
    env.add("acme", lock="1d", retention_spec="last=1")
    snap(env, "acme")
    snap(env, "acme")
    older, newer = sorted(points.list_points(env.store, env.zfs, "acme"), key=lambda p: p.seq)
    for p in (older, newer):
        assert p.locked() and p.holds == 1
        assert p.locked_until is not None and abs(p.locked_until - (p.created_at + 86400)) < 5
    # the service
    with pytest.raises(PointLocked):
        points.destroy_point(env.store, env.zfs, "acme", older.id, by="test")
    # retention: the plan keeps it, and the prune job leaves it
    assert points.prune_plan(env.store, env.zfs, "acme").destroy == []
    jobs.submit_prune(env.store, "acme", by="test")
    [prune] = env.run_jobs()
    assert prune.state == "succeeded" and prune.result == {"client": "acme", "destroyed": [], "skipped": {}, "kept": 2}
    # ZFS itself, even when the property is gone
    with pytest.raises((SnapshotHeld, DatasetBusy)):
        snapshots.destroy(env.zfs, older.snapshot)
    properties.inherit(env.zfs, older.snapshot, points.P_LOCKED_UNTIL)
    forged = points.refresh(env.zfs, older)
    assert not forged.locked() and forged.holds == 1
    with pytest.raises(SnapshotHeld):
        snapshots.destroy(env.zfs, forged.snapshot)
    assert len(points.list_points(env.store, env.zfs, "acme")) == 2


def test_locks_expire_and_shortening_applies_to_new_points(client_env: ClientEnv) -> None:
    env = client_env
    env.add("acme", lock="2h")
    snap(env, "acme")
    [first] = points.list_points(env.store, env.zfs, "acme")
    service.update_client(env.store, env.zfs, "acme", by="test", lock="0")
    snap(env, "acme")
    second = next(p for p in points.list_points(env.store, env.zfs, "acme") if p.id != first.id)
    assert second.locked_until is None and second.holds == 0
    assert points.refresh(env.zfs, first).locked_until == first.locked_until  # the old point keeps its lock
    # three hours later the lock has expired: the periodic reconciliation releases the hold
    later = time.time() + 3 * 3600
    report = points.reconcile_holds(env.store, env.zfs, now=later)
    assert report.fixed == [f"acme/{first.id}"]
    assert points.refresh(env.zfs, first).holds == 0
    points.destroy(env.zfs, points.refresh(env.zfs, first), now=later)


def test_holds_follow_the_recorded_intent_after_a_crash(client_env: ClientEnv) -> None:
    """A crash between writing the property and taking the hold: reconciliation takes the hold."""
    env = client_env
    env.add("acme")
    snap(env, "acme")
    [point] = points.list_points(env.store, env.zfs, "acme")
    properties.set_properties(env.zfs, point.snapshot, {points.P_PINNED: "yes"})
    assert points.refresh(env.zfs, point).holds == 0
    assert points.reconcile_holds(env.store, env.zfs).fixed == [f"acme/{point.id}"]
    assert points.refresh(env.zfs, point).holds == 1
    # and the other way round: the pin was cleared, the hold stayed
    properties.inherit(env.zfs, point.snapshot, points.P_PINNED)
    points.reconcile_holds(env.store, env.zfs)
    assert points.refresh(env.zfs, point).holds == 0
    # a hold of another tag is left alone
    holds.hold(env.zfs, point.snapshot, "replication")
    points.reconcile_holds(env.store, env.zfs)
    assert points.refresh(env.zfs, point).holds == 1
    holds.release(env.zfs, point.snapshot, "replication")


def test_prune_job_applies_retention_and_twice_changes_nothing(client_env: ClientEnv) -> None:
    env = client_env
    env.add("acme", retention_spec="last=3")
    for i in range(6):
        (env.live("acme") / f"f{i}").write_text(str(i))
        snap(env, "acme")
    oldest = sorted(points.list_points(env.store, env.zfs, "acme"), key=lambda p: p.seq)[0]
    points.pin(env.store, env.zfs, "acme", oldest.id, by="test")
    preview = points.prune_plan(env.store, env.zfs, "acme")
    assert preview.summary() == "these 2 of 6 points of acme will be removed"
    doomed = [p.id for p in preview.destroy]
    jobs.submit_prune(env.store, "acme", by="test")
    [job] = env.run_jobs()
    assert job.state == "succeeded" and job.result is not None and job.result["destroyed"] == doomed
    assert job.progress_done == job.progress_total == 2
    left = points.list_points(env.store, env.zfs, "acme")
    assert len(left) == 4 and oldest.id in {p.id for p in left}
    # what a stricter policy would remove, before it is saved
    stricter = points.prune_plan(env.store, env.zfs, "acme", spec="last=1")
    assert len(stricter.destroy) == 2 and oldest.id not in {p.id for p in stricter.destroy}
    assert service.get_client(env.store, "acme").settings.retention == "last=3"
    assert points.prune_plan(env.store, env.zfs, "acme").destroy == []
    jobs.submit_prune(env.store, "acme", by="test")
    [again] = env.run_jobs()
    assert again.result is not None and again.result["destroyed"] == []


def test_prune_skips_a_point_in_use(client_env: ClientEnv) -> None:
    from appliance.clients import browse

    env = client_env
    env.add("acme", retention_spec="last=1")
    snap(env, "acme")
    snap(env, "acme")
    oldest = sorted(points.list_points(env.store, env.zfs, "acme"), key=lambda p: p.seq)[0]
    session = browse.open_session(env.store, env.zfs, "acme", oldest.id, by="test")
    jobs.submit_prune(env.store, "acme", by="test")
    [job] = env.run_jobs()
    assert job.state == "succeeded" and job.result is not None
    assert list(job.result["skipped"]) == [oldest.id] and "in use" in job.result["skipped"][oldest.id]
    browse.close_session(env.store, env.zfs, session.id)
    jobs.submit_prune(env.store, "acme", by="test")
    [job] = env.run_jobs()
    assert job.result is not None and job.result["destroyed"] == [oldest.id]


def test_rpo_staleness_raises_and_clears_an_alert(client_env: ClientEnv) -> None:
    env = client_env
    env.add("acme", rpo="1h")
    now = time.time()
    assert rpo.status(env.store, env.zfs, "acme", now).state == "no_point"
    summary = overview.overview(env.store, env.zfs, "acme").to_dict()
    assert (summary["points"], summary["last_point"], summary["rpo_status"]["state"]) == (0, None, "no_point")
    assert overview.overview(env.store, None, "acme").usage is None
    [status] = rpo.check_all(env.store, env.zfs, now=now + 2 * 3600)
    assert status.state == "stale" and "no good recovery point yet" in status.message()
    assert [a.key for a in alerts.list_alerts(env.store)] == ["rpo:acme"]
    snap(env, "acme")
    [status] = rpo.check_all(env.store, env.zfs, now=time.time() + 60)
    assert status.state == "ok" and status.last_good_point is not None
    assert alerts.list_alerts(env.store) == []
    [status] = rpo.check_all(env.store, env.zfs, now=time.time() + 3 * 3600)
    assert status.stale and "3.0 h old (RPO target 1h)" in status.message()
    # a point whose verification failed does not count as good
    [point] = points.list_points(env.store, env.zfs, "acme")
    points.set_verified(env.store, env.zfs, "acme", point.id, "failed")
    assert rpo.status(env.store, env.zfs, "acme").last_good_at is None


def test_scheduler_queues_once_per_fire_time_and_once_after_downtime(client_env: ClientEnv) -> None:
    env = client_env
    client = env.add("acme", schedule="every 5m")
    env.add("dc01", "agent", schedule="every 5m")  # an agent's points come from the agent
    start = client.created_at
    assert scheduler.tick(env.store, now=start + 1) == []  # no fire time since it was added
    first = start - start % 300 + 300
    [job] = scheduler.tick(env.store, now=first + 2)
    assert scheduler.tick(env.store, now=first + 3) == []
    assert queue.get(env.store, job).params["source"] == "schedule"
    # the daemon was down for 5 hours: 60 fire times missed, but the job is still queued: nothing more
    assert scheduler.tick(env.store, now=first + 5 * 3600 + 10) == []
    [done] = env.run_jobs()[:1]
    assert done.state == "succeeded"
    prune = queue.list_jobs(env.store, kind=jobs.PRUNE)
    assert len(prune) == 1 and prune[0].state == "succeeded"  # a scheduled point is followed by pruning
    # down again for a day: one run, not 288
    later = first + 30 * 3600 + 10
    assert len(scheduler.tick(env.store, now=later)) == 1
    assert scheduler.tick(env.store, now=later + 1) == []
    status = scheduler.status(env.store, "acme", now=later)
    assert status.next_run == later - later % 300 + 300
    assert [p.source for p in points.list_points(env.store, env.zfs, "acme")] == ["schedule"]
    with pytest.raises(BulwarkError):
        scheduler.status(env.store, "nobody")
