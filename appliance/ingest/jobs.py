"""Agent backup jobs: opened, fed, then committed into a recovery point (or left with none)."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.clients import points, service
from appliance.clients.model import Client
from appliance.ingest import manifest
from appliance.ingest.credentials import Credential
from appliance.ingest.errors import JobNotFound, JobNotOpen, MissingContent
from appliance.ingest.files import Area
from appliance.store import Store
from appliance.zfs import datasets
from appliance.zfs.host import ZfsHost


@dataclass(frozen=True)
class Job:
    id: str
    client: str
    agent_id: str
    state: str
    base_point: str | None
    point: str | None
    bytes_sent: int


def _job(row: Any) -> Job:
    return Job(
        row["id"], row["client"], row["agent_id"], row["state"], row["base_point"], row["point"], row["bytes_sent"]
    )


_MOUNTS: dict[str, Path] = {}  # per process: a dataset's mount directory, checked to be still mounted


def mounted_root(zfs: ZfsHost, name: str) -> Path:
    """The mount directory of dataset ``name``, mounting it if needed (remembered while it stays mounted)."""
    known = _MOUNTS.get(name)
    if known is not None and os.path.ismount(known):
        return known
    ds = datasets.get_dataset(zfs, name)
    if not ds.mounted:
        datasets.mount(zfs, ds.name)
        ds = datasets.get_dataset(zfs, ds.name)
    assert ds.mountpoint is not None
    _MOUNTS[name] = Path(ds.mountpoint)
    return _MOUNTS[name]


def files_area(store: Store, zfs: ZfsHost, client: Client) -> Area:
    return Area(mounted_root(zfs, client.area_dataset("files")))


def active_client(store: Store, cred: Credential) -> Client:
    client = service.get_client(store, cred.client)
    points.check_area(client, "files", ("files",) if client.kind in ("agent", "both") else ())
    if not client.active:
        from appliance.clients.errors import ClientRemoved

        raise ClientRemoved(client.name)
    return client


def last_point(store: Store, zfs: ZfsHost, client: str) -> str | None:
    found = [p for p in points.list_points(store, zfs, client) if p.area == "files" and p.source == "agent"]
    return max(found, key=lambda p: (p.created_at, p.seq)).id if found else None


def open_job(store: Store, zfs: ZfsHost, cred: Credential) -> tuple[Job, list[manifest.Entry], bool]:
    """A new job for the credential's client; an earlier open job of the client is marked aborted (what it
    staged stays and is not asked for again)."""
    client = active_client(store, cred)
    area = files_area(store, zfs, client)
    base = area.load_manifest()
    job_id = f"j-{secrets.token_hex(8)}"
    now = time.time()
    with store.write() as db:
        db.execute(
            "UPDATE agent_jobs SET state = 'aborted', error = 'superseded by a new job', finished_at = ?"
            " WHERE client = ? AND kind = 'files' AND state = 'open'",
            (now, client.name),
        )
        db.execute(
            "INSERT INTO agent_jobs (id, client, agent_id, kind, state, base_point, started_at)"
            " VALUES (?, ?, ?, 'files', 'open', ?, ?)",
            (job_id, client.name, cred.id, last_point(store, zfs, client.name), now),
        )
    return get_job(store, cred, job_id), base, area.recovering()  # recovering: a prepare writes ahead


def get_job(store: Store, cred: Credential, job_id: str, *, open_only: bool = False) -> Job:
    row = store.query_one("SELECT * FROM agent_jobs WHERE id = ? AND client = ?", (str(job_id)[:64], cred.client))
    if row is None:
        raise JobNotFound(str(job_id)[:64])
    job = _job(row)
    if open_only and job.state != "open":
        raise JobNotOpen(job.id, job.state)
    return job


def add_sent(store: Store, job: Job, count: int) -> None:
    with store.write() as db:
        db.execute("UPDATE agent_jobs SET bytes_sent = bytes_sent + ? WHERE id = ?", (count, job.id))


def prepare(store: Store, zfs: ZfsHost, cred: Credential, job_id: str, raw_manifest: Any) -> dict[str, Any]:
    """The job's manifest ahead of its commit: where the commit would write every file anyway, the files whose
    content arrived in packs are written now, while the rest arrives (see :mod:`appliance.ingest.placing`)."""
    job = get_job(store, cred, job_id, open_only=True)
    entries = manifest.parse(raw_manifest)
    area = files_area(store, zfs, active_client(store, cred))
    with area.locked():
        written = area.prepare(entries)
    return {"job": job.id, "written": written}


def commit(
    store: Store, zfs: ZfsHost, cred: Credential, job_id: str, raw_manifest: Any, stats: dict[str, Any]
) -> dict[str, Any]:
    """Check the manifest, make sure every content arrived (else MissingContent with the list), apply it and
    take the recovery point. Nothing in the tree changes if the manifest or any content is refused."""
    job = get_job(store, cred, job_id, open_only=True)
    client = active_client(store, cred)
    entries = manifest.parse(raw_manifest)
    area = files_area(store, zfs, client)
    with area.locked():
        base = area.load_manifest()
        missing = area.gather(entries, base)
        if missing:
            exc = MissingContent(len(missing))
            exc.missing = missing  # type: ignore[attr-defined]
            raise exc
        kept_ahead = len(area.plan.placed) if area.plan is not None else 0
        area.apply(entries, base)
        area.finish(entries)
        taken = {p.snapshot for p in points.list_points(store, zfs, client.name)}
        now = time.time()
        attempt = 0
        while f"{client.area_dataset('files')}@{points.snapname_for(now, 'agent', attempt)}" in taken:
            attempt += 1
        point = points.take_point(
            zfs,
            client,
            "files",
            points.snapname_for(now, "agent", attempt),
            source="agent",
            created_by=f"agent:{cred.id}",
            verified="verified",
        )
    files = sum(1 for e in entries if e.type == "f")
    scanned = sum(e.size for e in entries if e.type == "f")
    with store.write() as db:
        db.execute(
            "UPDATE agent_jobs SET state = 'committed', point = ?, files = ?, bytes_scanned = ?, finished_at = ?"
            " WHERE id = ?",
            (point.id, files, scanned, time.time(), job.id),
        )
    store.audit(f"agent:{cred.id}", "agent.backup", f"client:{client.name}", point=point.id, job=job.id)
    done = get_job(store, cred, job.id)
    return {
        "job": job.id,
        "point": point.id,
        "files": files,
        "bytes_scanned": scanned,
        "bytes_sent": done.bytes_sent,
        "written_ahead": kept_ahead,
    }
