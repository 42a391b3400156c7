"""API: clients, their recovery points, retention (preview and pruning), and alerts.

Point ids contain ``@`` and may contain ``/`` (``images/0@bw-…``): they are the tail of the path
(``…/points/images/0@bw-…/pin``), percent-encoded or not.
"""

from __future__ import annotations

from typing import Any

from flask import request
from spectree import Response

import appliance.clients.jobs as client_jobs
from appliance import alerts
from appliance.clients import overview, points, removal, service
from appliance.clients.model import ClientSettings
from appliance.clients.overview import ClientOverview
from webui import state
from webui.api import bp, spec
from webui.api.schemas import ErrorBody, JobCreated
from webui.api.schemas_clients import (
    AlertList,
    AlertOut,
    AlertQuery,
    ClientCreate,
    ClientList,
    ClientListQuery,
    ClientOut,
    ClientUpdate,
    DestroyConfirmation,
    PointList,
    PointOut,
    PrunePlanOut,
    PrunePlanQuery,
    SnapshotRequest,
)
from webui.api.validation import json_body
from webui.client_common import rpo_light
from webui.permissions import requires

ERRORS = {
    "HTTP_400": ErrorBody,
    "HTTP_401": ErrorBody,
    "HTTP_403": ErrorBody,
    "HTTP_404": ErrorBody,
    "HTTP_409": ErrorBody,
    "HTTP_502": ErrorBody,
    "HTTP_503": ErrorBody,
}
NAME = "<string(maxlength=32):name>"
POINT = "<path:point>"
LIGHTS = {"ok": "green", "warn": "amber", "bad": "red", "": "grey"}


def client_out(ov: ClientOverview) -> ClientOut:
    data = ov.to_dict()
    if data["rpo_status"] is not None:
        data["rpo_status"]["light"] = LIGHTS[rpo_light(ov).colour]
    return ClientOut.model_validate(data)


def _one(name: str) -> ClientOut:
    return client_out(overview.overview(state.store(), state.zfs(), name))


@bp.route("/clients", methods=["GET"])
@requires("view")
@spec.validate(query=ClientListQuery, resp=Response(HTTP_200=ClientList, **ERRORS), tags=["clients"])
def list_clients() -> Any:
    """Clients with their usage, points, RPO status and next scheduled run (``all``: removed ones too)."""
    q: ClientListQuery = request.context.query  # type: ignore[attr-defined]
    store = state.store()
    if not service.list_clients(store, include_removed=q.all):
        return ClientList(clients=[])
    found = overview.overviews(store, state.zfs(), include_removed=q.all)
    return ClientList(clients=[client_out(ov) for ov in found])


@bp.route("/clients", methods=["POST"])
@requires("clients.manage")
@spec.validate(json=ClientCreate, resp=Response(HTTP_201=ClientOut, **ERRORS), tags=["clients"])
def create_client() -> Any:
    """Add a client: its datasets (by kind) with its settings as ZFS properties."""
    body: ClientCreate = request.context.json  # type: ignore[attr-defined]
    settings = ClientSettings.build(
        kind=body.kind,
        quota=body.quota,
        rpo=body.rpo,
        schedule=body.schedule,
        window=body.window,
        retention_spec=body.retention,
        lock=body.lock,
        notes=body.notes,
    )
    service.create_client(state.store(), state.zfs(), body.name, settings, by=state.actor())
    return _one(body.name), 201


@bp.route(f"/clients/{NAME}", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=ClientOut, **ERRORS), tags=["clients"])
def get_client(name: str) -> Any:
    """One client (removed ones too) with its usage, points, RPO status and next scheduled run."""
    return _one(name)


@bp.route(f"/clients/{NAME}", methods=["PATCH"])
@requires("clients.manage")
@spec.validate(json=ClientUpdate, resp=Response(HTTP_200=ClientOut, **ERRORS), tags=["clients"])
def update_client(name: str) -> Any:
    """Change settings; only the fields given change, and nothing changes if one of them is invalid."""
    body: ClientUpdate = request.context.json  # type: ignore[attr-defined]
    service.update_client(state.store(), state.zfs(), name, by=state.actor(), **body.model_dump(exclude_unset=True))
    return _one(name)


@bp.route(f"/clients/{NAME}/remove", methods=["POST"])
@requires("clients.manage")
@spec.validate(resp=Response(HTTP_200=ClientOut, **ERRORS), tags=["clients"])
def remove_client(name: str) -> Any:
    """Remove a client: nothing runs for it any more; its data and points are kept (reattach brings it back)."""
    removal.remove_client(state.store(), state.zfs(), name, by=state.actor())
    return _one(name)


@bp.route(f"/clients/{NAME}/reattach", methods=["POST"])
@requires("clients.manage")
@spec.validate(resp=Response(HTTP_200=ClientOut, **ERRORS), tags=["clients"])
def reattach_client(name: str) -> Any:
    """Bring a removed client back with its data (also one found on the pool but unknown here)."""
    removal.reattach_client(state.store(), state.zfs(), name, by=state.actor())
    return _one(name)


@bp.route(f"/clients/{NAME}", methods=["DELETE"])
@requires("clients.destroy")
@spec.validate(json=DestroyConfirmation, resp=Response(HTTP_200=ClientOut, **ERRORS), tags=["clients"])
def destroy_client(name: str) -> Any:
    """Destroy a removed client's data and every point; ``confirm`` must be its name. Refused while any point
    is pinned or locked. Answers with the client as it was."""
    body = json_body(DestroyConfirmation)
    before = _one(name)
    removal.destroy_client(state.store(), state.zfs(), name, confirm=body.confirm, by=state.actor())
    return before


# -- recovery points ------------------------------------------------------------------------------------


@bp.route(f"/clients/{NAME}/points", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=PointList, **ERRORS), tags=["points"])
def list_points(name: str) -> Any:
    """The client's recovery points of all its datasets, newest first."""
    found = points.list_points(state.store(), state.zfs(), name)
    return PointList(client=name, points=[PointOut.model_validate(p.to_dict()) for p in found])


@bp.route(f"/clients/{NAME}/points", methods=["POST"])
@requires("jobs.run")
@spec.validate(json=SnapshotRequest, resp=Response(HTTP_202=JobCreated, **ERRORS), tags=["points"])
def take_points(name: str) -> Any:
    """Take recovery points now (a job; all the client's datasets unless ``areas`` names some)."""
    body: SnapshotRequest = request.context.json  # type: ignore[attr-defined]
    job = client_jobs.submit_snapshot(state.store(), name, by=state.actor(), areas=body.areas)
    return JobCreated(job=job), 202


@bp.route(f"/clients/{NAME}/points/{POINT}/pin", methods=["POST"])
@requires("clients.manage")
@spec.validate(resp=Response(HTTP_200=PointOut, **ERRORS), tags=["points"])
def pin_point(name: str, point: str) -> Any:
    """Pin a point: retention keeps it and a ZFS hold makes every destroy fail, until it is unpinned."""
    return PointOut.model_validate(points.pin(state.store(), state.zfs(), name, point, by=state.actor()).to_dict())


@bp.route(f"/clients/{NAME}/points/{POINT}/pin", methods=["DELETE"])
@requires("clients.manage")
@spec.validate(resp=Response(HTTP_200=PointOut, **ERRORS), tags=["points"])
def unpin_point(name: str, point: str) -> Any:
    """Unpin a point (retention decides about it again)."""
    return PointOut.model_validate(points.unpin(state.store(), state.zfs(), name, point, by=state.actor()).to_dict())


@bp.route(f"/clients/{NAME}/points/{POINT}", methods=["DELETE"])
@requires("clients.destroy")
@spec.validate(resp=Response(HTTP_200=PointOut, **ERRORS), tags=["points"])
def destroy_point(name: str, point: str) -> Any:
    """Destroy one point (refused for pinned and locked points, and while it is browsed or restored from)."""
    gone = points.destroy_point(state.store(), state.zfs(), name, point, by=state.actor())
    return PointOut.model_validate(gone.to_dict())


# -- retention -------------------------------------------------------------------------------------------


@bp.route(f"/clients/{NAME}/prune-plan", methods=["GET"])
@requires("view")
@spec.validate(query=PrunePlanQuery, resp=Response(HTTP_200=PrunePlanOut, **ERRORS), tags=["points"])
def prune_plan(name: str) -> Any:
    """Which points pruning removes now ("these N points will be removed"), with the saved policy or ``spec``."""
    q: PrunePlanQuery = request.context.query  # type: ignore[attr-defined]
    plan = points.prune_plan(state.store(), state.zfs(), name, spec=q.spec or None)
    return PrunePlanOut.model_validate(plan.to_dict())


@bp.route(f"/clients/{NAME}/prune", methods=["POST"])
@requires("jobs.run")
@spec.validate(resp=Response(HTTP_202=JobCreated, **ERRORS), tags=["points"])
def prune(name: str) -> Any:
    """Remove the points the retention policy no longer keeps (a job)."""
    return JobCreated(job=client_jobs.submit_prune(state.store(), name, by=state.actor())), 202


# -- alerts ----------------------------------------------------------------------------------------------


@bp.route("/alerts", methods=["GET"])
@requires("view")
@spec.validate(query=AlertQuery, resp=Response(HTTP_200=AlertList, **ERRORS), tags=["alerts"])
def list_alerts() -> Any:
    """Alerts, newest first: the active ones, or (``all``) cleared ones too."""
    q: AlertQuery = request.context.query  # type: ignore[attr-defined]
    found = alerts.list_alerts(state.store(), active_only=not q.all, category=q.category, limit=q.limit)
    return AlertList(alerts=[AlertOut.model_validate(a.to_dict()) for a in found])
