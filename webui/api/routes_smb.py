"""API: SMB — the server and its settings, each client's share (options, password, open files) and the explicit
"backup finished" trigger for a backup's post-job script."""

from __future__ import annotations

from typing import Any

from flask import request
from spectree import Response

from appliance.clients import service
from appliance.samba import activity, restore_share, shares, views
from appliance.system.runner import local_runner
from webui import state
from webui.api import bp, spec
from webui.api.schemas import ErrorBody, JobCreated
from webui.api.schemas_smb import (
    PasswordOut,
    PasswordRequest,
    RestoreShareRequest,
    ShareDetail,
    ShareUpdate,
    SmbOverview,
    SmbSettingsOut,
    SmbSettingsUpdate,
)
from webui.permissions import requires

ERRORS = {"HTTP_400": ErrorBody, "HTTP_401": ErrorBody, "HTTP_403": ErrorBody, "HTTP_404": ErrorBody}
CHANGE_ERRORS = {**ERRORS, "HTTP_409": ErrorBody, "HTTP_502": ErrorBody, "HTTP_503": ErrorBody}
NAME = "<string(maxlength=32):name>"


def _hostname() -> str:
    return state.appliance_settings().hostname


@bp.route("/smb", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=SmbOverview, **ERRORS), tags=["smb"])
def smb_overview() -> Any:
    """smbd's state (port, running), the appliance-wide SMB settings and every client share."""
    return SmbOverview.model_validate(views.overview(state.store(), _hostname()))


@bp.route("/smb/settings", methods=["PATCH"])
@requires("settings.manage")
@spec.validate(json=SmbSettingsUpdate, resp=Response(HTTP_200=SmbSettingsOut, **CHANGE_ERRORS), tags=["smb"])
def smb_settings() -> Any:
    """Change the port, interfaces, minimum protocol, quiet time or account prefix (a new port or interface
    takes effect when the appliance restarts)."""
    body: SmbSettingsUpdate = request.context.json  # type: ignore[attr-defined]
    changes = body.model_dump(exclude_none=True)
    store = state.store()
    zfs = state.zfs() if shares.layout(store).conf.exists() else None
    new = shares.update_settings(store, zfs, local_runner(), by=state.actor(), **changes)
    return SmbSettingsOut.model_validate(new.to_dict())


def _detail(name: str) -> ShareDetail:
    data = views.share_detail(state.store(), state.zfs(), local_runner(), name, _hostname())
    return ShareDetail.model_validate(data)


@bp.route(f"/clients/{NAME}/smb", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=ShareDetail, **ERRORS), tags=["smb"])
def share_get(name: str) -> Any:
    """The client's share: connection details, options, files open now, Previous Versions."""
    return _detail(name)


@bp.route(f"/clients/{NAME}/smb", methods=["PATCH"])
@requires("clients.manage")
@spec.validate(json=ShareUpdate, resp=Response(HTTP_200=ShareDetail, **CHANGE_ERRORS), tags=["smb"])
def share_update(name: str) -> Any:
    """Change the share's encryption, comment or Previous Versions (checked as a whole smb.conf first)."""
    body: ShareUpdate = request.context.json  # type: ignore[attr-defined]
    changes = body.model_dump(exclude_none=True)
    shares.set_share_options(state.store(), state.zfs(), local_runner(), name, by=state.actor(), **changes)
    return _detail(name)


@bp.route(f"/clients/{NAME}/smb/password", methods=["POST"])
@requires("clients.manage")
@spec.validate(json=PasswordRequest, resp=Response(HTTP_200=PasswordOut, **CHANGE_ERRORS), tags=["smb"])
def share_password(name: str) -> Any:
    """Set the SMB account's password, or generate one (returned in this response only)."""
    body: PasswordRequest = request.context.json  # type: ignore[attr-defined]
    store = state.store()
    secret = shares.set_password(store, state.zfs(), local_runner(), name, body.password, by=state.actor())
    info = shares.connection(store, service.get_client(store, name), _hostname())
    return PasswordOut(unc=info["unc"], user=info["user"], password=None if body.password else secret)


@bp.route(f"/clients/{NAME}/smb/trigger", methods=["POST"])
@requires("jobs.run")
@spec.validate(resp=Response(HTTP_202=JobCreated, **CHANGE_ERRORS), tags=["smb"])
def share_trigger(name: str) -> Any:
    """Backup finished: a recovery point of the share now (a job). 409 while a file is open for writing."""
    job = activity.trigger(state.store(), state.zfs(), local_runner(), name, by=state.actor())
    return JobCreated(job=job), 202


@bp.route(f"/clients/{NAME}/smb/restore-share", methods=["PUT"])
@requires("restore.run")
@spec.validate(json=RestoreShareRequest, resp=Response(HTTP_200=ShareDetail, **CHANGE_ERRORS), tags=["smb"])
def restore_share_publish(name: str) -> Any:
    """Publish one recovery point of the share read-only as \\\\appliance\\CLIENT-restore (replacing any)."""
    body: RestoreShareRequest = request.context.json  # type: ignore[attr-defined]
    restore_share.publish(state.store(), state.zfs(), local_runner(), name, body.point, by=state.actor())
    return _detail(name)


@bp.route(f"/clients/{NAME}/smb/restore-share", methods=["DELETE"])
@requires("restore.run")
@spec.validate(resp=Response(HTTP_200=ShareDetail, **CHANGE_ERRORS), tags=["smb"])
def restore_share_remove(name: str) -> Any:
    """Remove the client's restore share."""
    restore_share.unpublish(state.store(), state.zfs(), local_runner(), name, by=state.actor())
    return _detail(name)
