"""The job kinds of clients: take recovery points, prune them, restore files into live data.

All three survive a crash of the daemon (kill -9): the queue requeues an interrupted job with attempts left
(``MAX_ATTEMPTS``), and the attempt after it continues instead of starting over:

* ``client.snapshot`` records the snapshot names it is about to take in its parameters first, so a retry
  finds a snapshot already taken (its ``bulwark:job`` property names this job) and takes only the missing;
* ``client.prune`` recomputes the plan from what ZFS has, so points already removed are simply not in it;
* ``client.restore`` copies again, skipping the files already restored (same size and time).

Locks: ``dataset:<pool>/clients/<name>`` for the jobs that write a client's data or take its points (one
writer at a time, so a point never captures a half-done restore), ``client:<name>:prune`` for pruning.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from appliance.clients import browse, model, points, restore, service
from appliance.clients.errors import ClientRemoved, NoLiveDataset, PointInUse, PointLocked, PointPinned
from appliance.clients.model import Client
from appliance.clients.paths import clean_relative
from appliance.jobs import base, queue
from appliance.jobs.base import JobContext
from appliance.store import Store
from appliance.system.errors import Conflict, InvalidInput
from appliance.system.runner import local_runner
from appliance.zfs import datasets, units
from appliance.zfs.errors import DatasetNotFound, SnapshotHeld
from appliance.zfs.host import ZfsHost

MAX_ATTEMPTS = 3
SNAPSHOT = "client.snapshot"
PRUNE = "client.prune"
RESTORE = "client.restore"
TRIGGERED_SOURCES = ("manual", "schedule", "smb")


def _client_params(params: dict[str, Any]) -> tuple[str, str]:
    name = model.check_name(params.get("client", ""))
    dataset = params.get("dataset", "")
    if not isinstance(dataset, str) or not dataset.endswith(f"/clients/{name}"):
        raise InvalidInput("the job's dataset must be the client's dataset")
    return name, dataset


def _by(params: dict[str, Any]) -> str:
    by = params.get("created_by", "system")
    if not isinstance(by, str) or not by or len(by) > 200 or not by.isprintable():
        raise InvalidInput("created_by must be a short printable text")
    return by


def _active_client(store: Store, name: str) -> Client:
    client = service.get_client(store, name)
    if not client.active:
        raise ClientRemoved(name)
    return client


class SnapshotJob:
    """Take a recovery point of each of a client's datasets (or of the ones asked for)."""

    name = SNAPSHOT
    title = "Take recovery points"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        name, dataset = _client_params(params)
        source = params.get("source", "manual")
        if source not in TRIGGERED_SOURCES:
            raise InvalidInput(f"snapshot source {source!r} must be one of {', '.join(TRIGGERED_SOURCES)}")
        areas = params.get("areas")
        if areas is not None:
            if not isinstance(areas, list) or not areas or not all(isinstance(a, str) for a in areas):
                raise InvalidInput("areas must be a list of dataset names such as ['share']")
            areas = [clean_relative(a) for a in areas]
        out = {"client": name, "dataset": dataset, "source": source, "areas": areas, "created_by": _by(params)}
        if "planned" in params:
            out["planned"] = params["planned"]
        return out

    def resource(self, params: dict[str, Any]) -> str | None:
        return f"dataset:{params['dataset']}"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        params = ctx.job.params
        client = _active_client(ctx.store, params["client"])
        found = points.scan(ctx.zfs, client)
        planned: dict[str, str] = params.get("planned") or {}
        writing: list[str] = params.get("open_for_writing") or []
        if not planned and client.kind in ("smb", "both"):
            from appliance.samba import activity  # never a point of a share while a file is open for writing

            if params["source"] != "schedule":
                activity.refuse_if_writing(ctx.store, ctx.zfs, local_runner(), client)
            else:  # the schedule takes it anyway, and the point is marked
                writing = activity.writing_now(ctx.store, ctx.zfs, local_runner(), client)
                ctx.remember(open_for_writing=writing)
        if not planned:
            planned = self._plan(client, found, params["source"], params["areas"])
            ctx.remember(planned=planned)  # durably, before any snapshot exists
            ctx.log("planned " + ", ".join(f"{a}@{s}" for a, s in planned.items()))
        existing = {p.snapshot: p for p in found.points}
        taken, earlier = [], []
        for i, (area, snapname) in enumerate(sorted(planned.items())):
            ctx.check_cancelled()
            full = f"{client.area_dataset(area)}@{snapname}"
            point = existing.get(full)
            if point is not None:
                if point.job_id != ctx.job.id:
                    raise Conflict(f"snapshot {full} exists but was not taken by job {ctx.job.id}")
                points.enforce_holds(ctx.zfs, point)
                earlier.append(point.id)
                ctx.log(f"{point.id} was taken by an earlier attempt of this job")
            else:
                point = points.take_point(
                    ctx.zfs,
                    client,
                    area,
                    snapname,
                    source=params["source"],
                    created_by=params["created_by"],
                    job_id=ctx.job.id,
                )
                taken.append(point.id)
                if area == "share" and writing:
                    from appliance.samba import activity

                    activity.mark_open_files(ctx.zfs, point.snapshot, writing)
                    ctx.log(f"{point.id} taken while files were open for writing: {', '.join(writing[:5])}")
                lock = f", locked until {points.iso(point.locked_until)}" if point.locked_until else ""
                ctx.log(f"took {point.id}{lock}")
            ctx.progress(i + 1, len(planned), point.id, force=True)
        if "share" in planned:
            from appliance.samba import versions  # Previous Versions follow the share's points

            versions.sync_if_served(ctx.store, ctx.zfs, client)
        if params["source"] == "schedule":
            prune = submit_prune_once(ctx.store, client.name, by="schedule")
            if prune is not None:
                ctx.log(f"queued pruning as job {prune}")
        return {"client": client.name, "points": sorted(taken + earlier), "taken_earlier": earlier}

    @staticmethod
    def _plan(client: Client, found: points.Scan, source: str, areas: list[str] | None) -> dict[str, str]:
        if areas is None:
            wanted = list(found.areas) if source == "manual" else ["share"]
        else:
            wanted = areas
        for area in wanted:
            points.check_area(client, area, found.areas)
        if not wanted:
            raise NoLiveDataset(client.name, "share/files", client.kind)
        now = time.time()
        taken = {p.snapshot for p in found.points}
        planned = {}
        for area in wanted:
            attempt = 0
            while f"{client.area_dataset(area)}@{points.snapname_for(now, source, attempt)}" in taken:
                attempt += 1
            planned[area] = points.snapname_for(now, source, attempt)
        return planned


class PruneJob:
    """Remove the points a client's retention policy no longer keeps (never pinned or locked ones)."""

    name = PRUNE
    title = "Prune recovery points"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        name = model.check_name(params.get("client", ""))
        return {"client": name, "created_by": _by(params)}

    def resource(self, params: dict[str, Any]) -> str | None:
        return f"client:{params['client']}:prune"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        client = _active_client(ctx.store, ctx.job.params["client"])
        plan = points.plan_for(client, points.scan(ctx.zfs, client), time.time(), service.timezone(ctx.store))
        doomed = plan.destroy
        ctx.log(plan.summary())
        destroyed, skipped = [], {}
        ctx.progress(0, len(doomed), plan.summary(), force=True)
        for i, point in enumerate(doomed):
            ctx.check_cancelled()
            try:
                points.destroy(ctx.zfs, point)
            except DatasetNotFound:
                destroyed.append(point.id)  # gone already
            except (PointInUse, PointPinned, PointLocked, SnapshotHeld) as exc:  # protected since the plan
                skipped[point.id] = exc.message
                ctx.log(f"kept {point.id}: {exc.message}", "warning")
            else:
                destroyed.append(point.id)
            ctx.progress(i + 1, len(doomed), f"removed {i + 1} of {len(doomed)}")
        ctx.progress(len(doomed), len(doomed), "done", force=True)
        return {"client": client.name, "destroyed": destroyed, "skipped": skipped, "kept": plan.kept}


class RestoreJob:
    """Copy files and folders of a point into the client's live data at a chosen folder."""

    name = RESTORE
    title = "Restore files"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        name, dataset = _client_params(params)
        point = params.get("point", "")
        if not isinstance(point, str) or "@" not in point:
            raise InvalidInput("the point must be given as AREA@NAME")
        paths = params.get("paths")
        if not isinstance(paths, list) or not paths or len(paths) > 1000:
            raise InvalidInput("give between 1 and 1000 paths to restore")
        overwrite = params.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise InvalidInput("overwrite must be true or false")
        return {
            "client": name,
            "dataset": dataset,
            "point": point,
            "paths": [clean_relative(p) for p in paths],
            "target": clean_relative(params.get("target", "")),
            "overwrite": overwrite,
            "created_by": _by(params),
        }

    def resource(self, params: dict[str, Any]) -> str | None:
        return f"dataset:{params['dataset']}"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        params = ctx.job.params
        client = _active_client(ctx.store, params["client"])
        point = points.find(points.scan(ctx.zfs, client).points, client.name, params["point"])
        live = datasets.get_dataset(ctx.zfs, client.area_dataset(point.area))
        if not live.mounted or live.mountpoint is None:
            raise NoLiveDataset(client.name, f"{point.area} (not mounted)", client.kind)
        source_root = browse.clone_point(ctx.store, ctx.zfs, point, f"job-{ctx.job.id}", f"job:{ctx.job.id}")
        try:
            total = restore.total_bytes(source_root, params["paths"])
            done = 0

            def on_bytes(n: int) -> None:
                nonlocal done
                done += n
                ctx.progress(done, total, f"{units.format_size(done)} of {units.format_size(total)}")

            ctx.log(f"restoring {', '.join(params['paths'])} of {point.id} to /{params['target']} ({total} bytes)")
            result = restore.restore_tree(
                source_root,
                params["paths"],
                Path(live.mountpoint),
                params["target"],
                overwrite=params["overwrite"],
                on_bytes=on_bytes,
                check_cancelled=ctx.check_cancelled,
            )
        finally:
            browse.destroy_clone(ctx.zfs, f"{browse.browse_root(ctx.store)}/job-{ctx.job.id}")
        ctx.progress(total, total, "done", force=True)
        ctx.log(
            f"copied {result.copied} file(s) ({result.replaced} replaced), {result.unchanged} unchanged, "
            f"{result.skipped_newer} newer at the destination kept, {len(result.conflicts)} conflict(s)"
        )
        return {"client": client.name, "point": point.id, **result.to_dict()}


for _kind in (SnapshotJob(), PruneJob(), RestoreJob()):
    base.register(_kind)


# -- what the UI, API and CLI call -----------------------------------------------------------------------


def submit_snapshot(store: Store, name: str, *, by: str, source: str = "manual", areas: list[str] | None = None) -> int:
    """Queue recovery points of a client (all its datasets, or ``areas``); returns the job id."""
    client = _active_client(store, name)
    job = base.submit(
        store,
        SNAPSHOT,
        {"client": name, "dataset": client.dataset, "source": source, "areas": areas, "created_by": by},
        created_by=by,
        max_attempts=MAX_ATTEMPTS,
    )
    store.audit(by, "client.snapshot", name, job=job, source=source)
    return job


def submit_prune(store: Store, name: str, *, by: str) -> int:
    _active_client(store, name)
    job = base.submit(store, PRUNE, {"client": name, "created_by": by}, created_by=by, max_attempts=MAX_ATTEMPTS)
    store.audit(by, "client.prune", name, job=job)
    return job


def submit_prune_once(store: Store, name: str, *, by: str) -> int | None:
    """Queue pruning unless a prune of this client is already waiting to run."""
    waiting = [j for j in queue.list_jobs(store, states=("queued",), kind=PRUNE) if j.params.get("client") == name]
    return None if waiting else submit_prune(store, name, by=by)


def submit_restore(
    store: Store,
    zfs: ZfsHost,
    name: str,
    ref: str,
    paths: list[str],
    target: str,
    *,
    overwrite: bool = False,
    by: str,
) -> int:
    """Queue a restore of ``paths`` of point ``ref`` into the client's live data under ``target``."""
    client = _active_client(store, name)
    point = points.get_point(store, zfs, name, ref)
    params = {
        "client": name,
        "dataset": client.dataset,
        "point": point.id,
        "paths": paths,
        "target": target,
        "overwrite": overwrite,
        "created_by": by,
    }
    job = base.submit(store, RESTORE, params, created_by=by, max_attempts=MAX_ATTEMPTS)
    store.audit(by, "client.restore", name, job=job, point=point.id, paths=paths, to=target, overwrite=overwrite)
    return job
