"""Recovery points: snapshots of a client's child datasets, on one timeline.

A point is a snapshot of ``share``, ``files`` or ``images/<n>`` under the client's dataset, named
``bw-<UTC time>-<source>`` and described by ``bulwark:`` properties set in the same command that takes it
(source, who made it, its job, verification state, lock expiry). Snapshots that Bulwark did not take are shown
with source ``external`` and are never pruned.

Pins and immutability locks are ZFS user holds (tags ``bulwark-pin`` and ``bulwark-lock``), so no path, not even
``zfs destroy`` by hand, can destroy such a point. A property records the intent (``bulwark:pinned``,
``bulwark:locked-until``) and is written before the hold; :func:`reconcile_holds` makes the holds match the
intent after a crash between the two, and releases locks that have expired.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from appliance import retention
from appliance.clients import model, service
from appliance.clients.errors import (
    AmbiguousPoint,
    ClientRemoved,
    NoLiveDataset,
    PointInUse,
    PointLocked,
    PointNotFound,
    PointPinned,
)
from appliance.clients.model import Client
from appliance.store import Store
from appliance.system.errors import InvalidInput
from appliance.zfs import datasets, holds, names, properties, snapshots
from appliance.zfs.errors import DatasetBusy, HasDependentClones, HoldExists, HoldNotFound
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.points")

PREFIX = "bw-"
TAG_PIN = "bulwark-pin"
TAG_LOCK = "bulwark-lock"
P_SOURCE = "bulwark:source"
P_CREATED_BY = "bulwark:created-by"
P_JOB = "bulwark:job"
P_VERIFIED = "bulwark:verified"
P_PINNED = "bulwark:pinned"
P_LOCKED_UNTIL = "bulwark:locked-until"
EXTERNAL = "external"
VERIFIED_STATES = ("unverified", "verified", "failed")
_SCAN_PROPS: tuple[str, ...] = ("type", "creation", "used", "referenced", "userrefs", "createtxg")
_SCAN_PROPS += (P_SOURCE, P_CREATED_BY, P_JOB, P_VERIFIED, P_PINNED, P_LOCKED_UNTIL)


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RecoveryPoint:
    client: str
    area: str  # "share", "files", "images/0"
    snapshot: str  # full snapshot name
    created_at: float
    used_bytes: int
    referenced_bytes: int
    source: str  # smb, agent, manual, schedule, or external (not taken by Bulwark)
    created_by: str | None
    job_id: int | None
    pinned: bool
    locked_until: float | None
    verified: str
    holds: int
    seq: int  # createtxg: orders points of the same second

    @property
    def snapname(self) -> str:
        return self.snapshot.split("@", 1)[1]

    @property
    def dataset(self) -> str:
        return self.snapshot.split("@", 1)[0]

    @property
    def id(self) -> str:
        """The point's name within its client: ``share@bw-20260126T143400Z-manual``."""
        return f"{self.area}@{self.snapname}"

    @property
    def managed(self) -> bool:
        """Taken by Bulwark, so retention may prune it."""
        return self.source != EXTERNAL

    def locked(self, now: float | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (time.time() if now is None else now)

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "client": self.client,
            "area": self.area,
            "snapshot": self.snapshot,
            "created_at": self.created_at,
            "created": iso(self.created_at),
            "used_bytes": self.used_bytes,
            "referenced_bytes": self.referenced_bytes,
            "source": self.source,
            "created_by": self.created_by,
            "job_id": self.job_id,
            "pinned": self.pinned,
            "locked_until": self.locked_until,
            "locked": self.locked(now),
            "verified": self.verified,
            "holds": self.holds,
            "managed": self.managed,
        }


def _point(client: str, area: str, name: str, props: properties.PropertyMap) -> RecoveryPoint:
    snap = snapshots.from_properties(name, props)
    user = snap.user
    locked = user.get(P_LOCKED_UNTIL, "")
    job = user.get(P_JOB, "")
    source = user.get(P_SOURCE, EXTERNAL)
    created_txg = props.get("createtxg")
    return RecoveryPoint(
        client=client,
        area=area,
        snapshot=name,
        created_at=float(snap.creation),
        used_bytes=snap.used,
        referenced_bytes=snap.referenced,
        source=source if source in model.SOURCES else EXTERNAL,
        created_by=user.get(P_CREATED_BY),
        job_id=int(job) if job.isdigit() else None,
        pinned=user.get(P_PINNED) == "yes",
        locked_until=float(locked) if locked.isdigit() else None,
        verified=user.get(P_VERIFIED, "unverified") if user.get(P_VERIFIED) in VERIFIED_STATES else "unverified",
        holds=snap.holds,
        seq=int(created_txg.value) if created_txg is not None and created_txg.value.isdigit() else 0,
    )


@dataclass(frozen=True)
class Scan:
    """A client's datasets and points as ZFS has them now (one ``zfs get -r``)."""

    client: Client
    areas: tuple[str, ...]  # datasets that hold points: share, files, images/<n>
    points: tuple[RecoveryPoint, ...]  # newest first


def scan(zfs: ZfsHost, client: Client) -> Scan:
    found = properties.get(zfs, [client.dataset], _SCAN_PROPS, recursive=True)
    prefix = client.dataset + "/"
    areas = sorted(
        n[len(prefix) :]
        for n, p in found.items()
        if n.startswith(prefix) and "@" not in n and n[len(prefix) :] != "images" and p["type"].value == "filesystem"
    )
    points = [
        _point(client.name, n.split("@", 1)[0][len(prefix) :], n, p)
        for n, p in found.items()
        if "@" in n and n.split("@", 1)[0][len(prefix) :] in areas and n.startswith(prefix)
    ]
    points.sort(key=lambda p: (p.created_at, p.seq, p.snapshot), reverse=True)
    return Scan(client, tuple(areas), tuple(points))


def list_points(store: Store, zfs: ZfsHost, name: str) -> list[RecoveryPoint]:
    """The client's timeline: points of all its datasets, newest first."""
    return list(scan(zfs, service.get_client(store, name)).points)


def find(points: Iterable[RecoveryPoint], client: str, ref: str) -> RecoveryPoint:
    """The point ``ref`` (``share@NAME``, or just ``NAME`` when only one dataset has it)."""
    if not isinstance(ref, str) or not ref or len(ref) > 300:
        raise InvalidInput("a point is named 'AREA@NAME' (e.g. share@bw-20260126T143400Z-manual) or 'NAME'")
    matches = [p for p in points if (p.id == ref if "@" in ref else p.snapname == ref)]
    if not matches:
        raise PointNotFound(client, ref)
    if len(matches) > 1:
        raise AmbiguousPoint(ref, client, ", ".join(p.id for p in matches))
    return matches[0]


def get_point(store: Store, zfs: ZfsHost, name: str, ref: str) -> RecoveryPoint:
    return find(list_points(store, zfs, name), name, ref)


def load(zfs: ZfsHost, client: str, area: str, snapshot: str) -> RecoveryPoint:
    """One point, read from ZFS."""
    found = properties.get(zfs, [snapshot], _SCAN_PROPS)
    if snapshot not in found:
        raise PointNotFound(client, f"{area}@{snapshot.split('@', 1)[-1]}")
    return _point(client, area, snapshot, found[snapshot])


def refresh(zfs: ZfsHost, point: RecoveryPoint) -> RecoveryPoint:
    return load(zfs, point.client, point.area, point.snapshot)


# -- taking points -----------------------------------------------------------------------------------


def snapname_for(when: float, source: str, attempt: int = 0) -> str:
    stamp = dt.datetime.fromtimestamp(int(when), dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{PREFIX}{stamp}-{source}" + (f"-{attempt + 1}" if attempt else "")


def check_area(client: Client, area: str, areas: Iterable[str]) -> str:
    if area == "images" or area not in set(areas):
        raise NoLiveDataset(client.name, area, client.kind)
    return area


def take_point(
    zfs: ZfsHost,
    client: Client,
    area: str,
    snapname: str,
    *,
    source: str,
    created_by: str,
    job_id: int | None = None,
    verified: str = "unverified",
    now: float | None = None,
) -> RecoveryPoint:
    """Snapshot ``area`` of ``client`` as a recovery point (its properties set atomically with it), then hold it
    if the client has a lock period. Refuses a removed client."""
    if not client.active:
        raise ClientRemoved(client.name)
    if source not in model.SOURCES:
        raise InvalidInput(f"point source {source!r} must be one of {', '.join(model.SOURCES)}")
    if verified not in VERIFIED_STATES:
        raise InvalidInput(f"verification state {verified!r} must be one of {', '.join(VERIFIED_STATES)}")
    at = time.time() if now is None else now
    props = {P_SOURCE: source, P_CREATED_BY: created_by, P_VERIFIED: verified}
    if job_id is not None:
        props[P_JOB] = str(job_id)
    if client.settings.lock:
        props[P_LOCKED_UNTIL] = str(int(at) + client.settings.lock)
    snap = snapshots.create(zfs, client.area_dataset(area), names.component(snapname), props)
    return enforce_holds(zfs, load(zfs, client.name, area, snap.name), at)


def set_verified(store: Store, zfs: ZfsHost, name: str, ref: str, state: str) -> RecoveryPoint:
    """Record the outcome of a verification of a point."""
    if state not in VERIFIED_STATES:
        raise InvalidInput(f"verification state {state!r} must be one of {', '.join(VERIFIED_STATES)}")
    point = get_point(store, zfs, name, ref)
    properties.set_properties(zfs, point.snapshot, {P_VERIFIED: state})
    return refresh(zfs, point)


# -- pins, locks, holds ------------------------------------------------------------------------------


def _hold(zfs: ZfsHost, snapshot: str, tag: str) -> bool:
    try:
        holds.hold(zfs, snapshot, tag)
    except HoldExists:
        return False
    return True


def _release(zfs: ZfsHost, snapshot: str, tag: str) -> bool:
    try:
        holds.release(zfs, snapshot, tag)
    except HoldNotFound:
        return False
    return True


def enforce_holds(zfs: ZfsHost, point: RecoveryPoint, now: float | None = None) -> RecoveryPoint:
    """Make the point's holds match its properties: a pin hold iff pinned, a lock hold iff locked now.

    zfs-fuse cannot list hold tags, so the hold count decides whether anything needs doing; holds of other
    tags (not Bulwark's) make it try the releases each time, which is harmless."""
    at = time.time() if now is None else now
    expected = int(point.pinned) + int(point.locked(at))
    if point.holds == expected:
        return point
    changed = False
    if point.pinned:
        changed |= _hold(zfs, point.snapshot, TAG_PIN)
    else:
        changed |= _release(zfs, point.snapshot, TAG_PIN)
    if point.locked(at):
        changed |= _hold(zfs, point.snapshot, TAG_LOCK)
    else:
        changed |= _release(zfs, point.snapshot, TAG_LOCK)
    return refresh(zfs, point) if changed else point


def pin(store: Store, zfs: ZfsHost, name: str, ref: str, *, by: str) -> RecoveryPoint:
    """Keep a point forever (until unpinned): retention skips it and ZFS refuses to destroy it."""
    point = get_point(store, zfs, name, ref)
    if not point.pinned:
        properties.set_properties(zfs, point.snapshot, {P_PINNED: "yes"})
        store.audit(by, "point.pin", f"{name}/{point.id}")
    return enforce_holds(zfs, refresh(zfs, point))


def unpin(store: Store, zfs: ZfsHost, name: str, ref: str, *, by: str) -> RecoveryPoint:
    point = get_point(store, zfs, name, ref)
    if point.pinned:
        properties.inherit(zfs, point.snapshot, P_PINNED)
        store.audit(by, "point.unpin", f"{name}/{point.id}")
    return enforce_holds(zfs, refresh(zfs, point))


def check_destroyable(point: RecoveryPoint, now: float) -> None:
    if point.pinned:
        raise PointPinned(point.id)
    if point.locked(now):
        assert point.locked_until is not None
        raise PointLocked(point.id, iso(point.locked_until))


def destroy(zfs: ZfsHost, point: RecoveryPoint, now: float | None = None) -> None:
    """Destroy one point unless it is pinned or locked; ZFS holds refuse it in any case."""
    at = time.time() if now is None else now
    check_destroyable(point, at)
    if point.holds:
        point = enforce_holds(zfs, point, at)  # releases an expired lock's hold
    if point.area == "share":
        from appliance.samba import versions  # its Previous Versions clone goes first

        versions.release(zfs, point.client, point.snapshot)
    try:
        snapshots.destroy(zfs, point.snapshot)
    except (HasDependentClones, DatasetBusy) as exc:
        raise PointInUse(point.id) from exc


def destroy_point(store: Store, zfs: ZfsHost, name: str, ref: str, *, by: str) -> RecoveryPoint:
    """What a person asks for: destroy one point (refused for pinned and locked points)."""
    point = get_point(store, zfs, name, ref)
    destroy(zfs, point)
    store.audit(by, "point.destroy", f"{name}/{point.id}")
    return point


@dataclass(frozen=True)
class HoldReport:
    checked: int
    fixed: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "fixed": self.fixed}


def reconcile_holds(store: Store, zfs: ZfsHost, now: float | None = None) -> HoldReport:
    """Every client's points: add missing pin/lock holds, release the holds of expired locks."""
    at = time.time() if now is None else now
    checked, fixed = 0, []
    for client in service.list_clients(store, include_removed=True):
        if not datasets.exists(zfs, client.dataset):
            continue
        for point in scan(zfs, client).points:
            checked += 1
            after = enforce_holds(zfs, point, at)
            if after.holds != point.holds:
                fixed.append(f"{client.name}/{point.id}")
    if fixed:
        log.info("holds corrected on %d point(s): %s", len(fixed), ", ".join(fixed[:20]))
    return HoldReport(checked, fixed)


# -- retention --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrunePlan:
    client: str
    policy: retention.RetentionPolicy
    plans: dict[str, retention.RetentionPlan]  # per area: each source's points form their own series
    points: dict[str, RecoveryPoint]  # by id
    now: float

    @property
    def destroy(self) -> list[RecoveryPoint]:
        """Points to remove, oldest first."""
        doomed = [self.points[i] for plan in self.plans.values() for i in plan.destroy]
        return sorted(doomed, key=lambda p: (p.created_at, p.seq))

    @property
    def kept(self) -> int:
        return sum(len(plan.keep) for plan in self.plans.values())

    def summary(self) -> str:
        n = len(self.destroy)
        total = n + self.kept
        if n == 0:
            return f"all {total} point{'s' if total != 1 else ''} of {self.client} will be kept"
        points = f"point{'s' if total != 1 else ''}"
        return f"{'this' if n == 1 else 'these'} {n} of {total} {points} of {self.client} will be removed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "policy": self.policy.to_dict(),
            "now": self.now,
            "summary": self.summary(),
            "destroy": [p.to_dict(self.now) for p in self.destroy],
            "keep_count": self.kept,
            "areas": {area: plan.to_dict() for area, plan in self.plans.items()},
        }


def candidates(points: Iterable[RecoveryPoint]) -> list[retention.Candidate]:
    return [retention.Candidate(p.id, p.created_at, p.pinned, p.locked_until, p.seq) for p in points if p.managed]


def plan_for(
    client: Client, found: Scan, now: float, timezone: str, policy: retention.RetentionPolicy | None = None
) -> PrunePlan:
    policy = client.settings.policy if policy is None else policy
    by_area: dict[str, list[RecoveryPoint]] = {}
    for p in found.points:
        by_area.setdefault(p.area, []).append(p)
    plans = {area: retention.plan(candidates(pts), policy, now, timezone) for area, pts in sorted(by_area.items())}
    return PrunePlan(client.name, policy, plans, {p.id: p for p in found.points}, now)


def prune_plan(
    store: Store, zfs: ZfsHost, name: str, now: float | None = None, *, spec: str | None = None
) -> PrunePlan:
    """The preview: which points the client's retention policy removes now ("these 12 points will be removed").
    With ``spec``, what that policy would remove instead (before a person saves a new policy)."""
    client = service.get_client(store, name)
    policy = None if spec is None else retention.parse_spec(spec)
    return plan_for(client, scan(zfs, client), time.time() if now is None else now, service.timezone(store), policy)
