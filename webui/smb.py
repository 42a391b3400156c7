"""SMB: the appliance's smbd and its settings (/smb/), and each client's share section, shown inside the client's
page (loaded by htmx from /smb/clients/NAME; the same URL is a full page without JavaScript): the connection
details to copy, a password set or generated (shown once), encryption, Previous Versions, files open now, and the
"backup finished" trigger."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, request, url_for

from appliance.samba import activity, restore_share, shares, views
from appliance.samba.conf import PROTOCOLS
from appliance.system.errors import BulwarkError, InvalidInput
from appliance.system.runner import local_runner
from webui import state
from webui.client_common import problem, to_job
from webui.permissions import requires
from webui.render import render

bp = Blueprint("smb", __name__, url_prefix="/smb")
NAME = "<string(maxlength=32):name>"


def _hostname() -> str:
    return state.appliance_settings().hostname


def _overview_page(*, error: BulwarkError | None = None, status: int = 200) -> tuple[str, int]:
    data = views.overview(state.store(), _hostname())
    return render("smb.html", **data, protocols=PROTOCOLS, problem=problem(error)), status


@bp.route("/")
@requires("view")
def index() -> Any:
    return _overview_page()


@bp.route("/settings", methods=["POST"])
@requires("settings.manage")
def save_settings() -> Any:
    form = request.form
    try:
        changes: dict[str, Any] = {
            "port": _int(form.get("port", ""), "the port"),
            "quiet_seconds": _int(form.get("quiet_seconds", ""), "the quiet time"),
            "min_protocol": form.get("min_protocol", ""),
            "interfaces": form.get("interfaces", "").split(),
        }
        store = state.store()
        zfs = state.zfs() if shares.layout(store).conf.exists() else None
        shares.update_settings(store, zfs, local_runner(), by=state.actor(), **changes)
    except BulwarkError as exc:
        return _overview_page(error=exc, status=exc.http_status)
    flash("SMB settings saved. A new port or interface list takes effect when the appliance restarts.")
    return redirect(url_for("smb.index"))


def _int(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidInput(f"{what} must be a whole number") from None


def share_page(
    name: str, *, error: BulwarkError | None = None, password: str | None = None, status: int = 200
) -> tuple[str, int]:
    detail = views.share_detail(state.store(), state.zfs(), local_runner(), name, _hostname())
    context = {"name": name, "share": detail, "problem": problem(error), "password": password}
    return render("smb_client.html", "_smb_section.html", **context), status


@bp.route(f"/clients/{NAME}")
@requires("view")
def client_share(name: str) -> Any:
    try:
        return share_page(name)
    except BulwarkError as exc:  # e.g. an agent-only client: the section says why there is no share
        return render("smb_client.html", "_smb_section.html", name=name, share=None, problem=problem(exc)), 200


@bp.route(f"/clients/{NAME}/password", methods=["POST"])
@requires("clients.manage")
def client_password(name: str) -> Any:
    given = request.form.get("password", "")
    try:
        secret = shares.set_password(state.store(), state.zfs(), local_runner(), name, given or None, by=state.actor())
    except BulwarkError as exc:
        return share_page(name, error=exc, status=exc.http_status)
    return share_page(name, password=None if given else secret)


@bp.route(f"/clients/{NAME}/share", methods=["POST"])
@requires("clients.manage")
def client_options(name: str) -> Any:
    changes = {
        "encrypt": request.form.get("encrypt") == "on",
        "previous_versions": request.form.get("previous_versions") == "on",
        "comment": request.form.get("comment", "").strip(),
    }
    try:
        shares.set_share_options(state.store(), state.zfs(), local_runner(), name, by=state.actor(), **changes)
    except BulwarkError as exc:
        return share_page(name, error=exc, status=exc.http_status)
    flash("Share settings saved; the share's connections were kept.")
    return redirect(url_for("clients.show", name=name) + "#smb")


@bp.route(f"/clients/{NAME}/trigger", methods=["POST"])
@requires("jobs.run")
def client_trigger(name: str) -> Any:
    try:
        job = activity.trigger(state.store(), state.zfs(), local_runner(), name, by=state.actor())
    except BulwarkError as exc:
        return share_page(name, error=exc, status=exc.http_status)
    return to_job(job)


@bp.route(f"/clients/{NAME}/restore-share", methods=["POST"])
@requires("restore.run")
def client_restore_share(name: str) -> Any:
    point = request.form.get("point", "")
    try:
        if point:
            restore_share.publish(state.store(), state.zfs(), local_runner(), name, point, by=state.actor())
        else:
            restore_share.unpublish(state.store(), state.zfs(), local_runner(), name, by=state.actor())
    except BulwarkError as exc:
        return share_page(name, error=exc, status=exc.http_status)
    flash(f"Restore share {'published: ' + point if point else 'removed'}.")
    return redirect(url_for("clients.show", name=name) + "#smb")
