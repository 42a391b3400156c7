"""API: disks — the inventory with SMART verdicts, one disk's SMART detail and history, reading SMART now,
and starting self-tests."""

from __future__ import annotations

from typing import Any

from flask import request
from spectree import Response

from appliance.disks import overview
from appliance.system.errors import BulwarkError
from appliance.system.runner import local_runner
from webui import state
from webui.api import bp, spec
from webui.api.schemas import ErrorBody
from webui.api.schemas_disks import DiskDetail, DiskList, DiskOut, DiskQuery, SelfTestOut, SelfTestRequest
from webui.permissions import requires

ERRORS = {"HTTP_400": ErrorBody, "HTTP_401": ErrorBody, "HTTP_403": ErrorBody, "HTTP_404": ErrorBody}


def _pool() -> tuple[Any, str | None]:
    try:
        return state.zfs(), state.appliance_settings().pool.name
    except BulwarkError:
        return None, None


@bp.route("/disks", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=DiskList, **ERRORS), tags=["disks"])
def list_disks() -> Any:
    """Every disk with model, serial, WWN, size, links, pool membership and its last SMART verdict."""
    zfs, pool = _pool()
    return DiskList(disks=[DiskOut.model_validate(d) for d in overview.disks(state.store(), zfs, pool)])


@bp.route("/disks/<disk>", methods=["GET"])
@requires("view")
@spec.validate(query=DiskQuery, resp=Response(HTTP_200=DiskDetail, **ERRORS), tags=["disks"])
def get_disk(disk: str) -> Any:
    """One disk: its last SMART report (attributes, NVMe/SCSI health, self-test log) and its history."""
    q: DiskQuery = request.context.query  # type: ignore[attr-defined]
    zfs, pool = _pool()
    return DiskDetail.model_validate(overview.detail(state.store(), zfs, pool, disk, days=q.days))


@bp.route("/disks/<disk>/smart", methods=["POST"])
@requires("jobs.run")
@spec.validate(resp=Response(HTTP_200=DiskDetail, HTTP_502=ErrorBody, **ERRORS), tags=["disks"])
def read_smart(disk: str) -> Any:
    """Read SMART from the disk now (instead of waiting for bulwarkd's next poll) and return the detail."""
    reading = overview.read_now(state.store(), local_runner(), disk)
    state.audit("disk.smart_read", disk, verdict=reading.verdict.verdict)
    zfs, pool = _pool()
    return DiskDetail.model_validate(overview.detail(state.store(), zfs, pool, disk))


@bp.route("/disks/<disk>/selftest", methods=["POST"])
@requires("jobs.run")
@spec.validate(json=SelfTestRequest, resp=Response(HTTP_200=SelfTestOut, **ERRORS), tags=["disks"])
def start_self_test(disk: str) -> Any:
    """Start a short or long SMART self-test inside the drive; the result shows in a later SMART reading."""
    body: SelfTestRequest = request.context.json  # type: ignore[attr-defined]
    error = overview.start_test(state.store(), local_runner(), disk, body.kind, state.actor())
    state.audit("disk.self_test", disk, kind=body.kind, error=error)
    return SelfTestOut(started=error is None, error=error)
