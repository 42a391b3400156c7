"""Clients: the list (usage, points, RPO light, next run), adding one, a client's page with its settings, its
recovery-point timeline and table (pin, unpin, destroy, browse), the retention preview and pruning, taking a
point now, removing (data kept), reattaching and destroying its data (typed confirmation, admins only).

Everything that takes time (points, pruning, restores) is a job: the page sends the person to the job's page,
where the progress bar follows it. Browsing and restoring files are in :mod:`webui.client_browse`.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from flask import Blueprint, flash, redirect, request, url_for
from werkzeug.wrappers import Response

import appliance.clients.jobs as client_jobs
from appliance.clients import overview, points, removal, service
from appliance.clients.model import KINDS, ClientSettings
from appliance.retention import DEFAULT_SPEC
from appliance.system.durations import format_duration
from appliance.system.errors import BulwarkError, InvalidInput
from webui import client_browse, state, timeline
from webui.client_common import client_rows, problem, quota_text, rpo_light, shown, to_job
from webui.permissions import requires
from webui.render import is_htmx, render

bp = Blueprint("clients", __name__, url_prefix="/clients")
bp.register_blueprint(client_browse.bp)

SETTINGS_FIELDS = ("kind", "quota", "rpo", "schedule", "window", "retention", "lock", "notes")
NEW_CLIENT_DEFAULTS = {
    "name": "",
    "kind": "smb",
    "quota": "none",
    "rpo": "1d",
    "schedule": "every 1h",
    "window": "",
    "retention": DEFAULT_SPEC,
    "lock": "0",
    "notes": "",
}
NAME = "<string(maxlength=32):name>"


@bp.app_template_filter("when_exact")
def when_exact(value: float | None) -> str:
    """A time to the second, in the appliance's time zone."""
    if not value:
        return "—"
    return datetime.datetime.fromtimestamp(value, state.timezone()).strftime("%Y-%m-%d %H:%M:%S")


@bp.app_template_filter("shown")
def shown_filter(value: str) -> str:
    return shown(value)


# -- the list and adding a client ------------------------------------------------------------------------


def _list_page(*, error: BulwarkError | str | None = None, form: dict[str, str] | None = None) -> str:
    rows = client_rows()
    return render(
        "clients.html",
        rows=[r for r in rows if r[0].client.active],
        removed=[r for r in rows if not r[0].client.active],
        kinds=KINDS,
        form=form or NEW_CLIENT_DEFAULTS,
        problem=problem(error),
        now=time.time(),
    )


@bp.route("/")
@requires("view")
def index() -> Any:
    return _list_page()


def _blank_is_none(value: str) -> str | None:
    return value.strip() or None


@bp.route("/", methods=["POST"])
@requires("clients.manage")
def add() -> Any:
    form = {key: request.form.get(key, "") for key in NEW_CLIENT_DEFAULTS}
    name = form["name"].strip()
    try:
        settings = ClientSettings.build(
            kind=form["kind"],
            quota=_blank_is_none(form["quota"]),
            rpo=_blank_is_none(form["rpo"]),
            schedule=_blank_is_none(form["schedule"]),
            window=_blank_is_none(form["window"]),
            retention_spec=_blank_is_none(form["retention"]),
            lock=_blank_is_none(form["lock"]),
            notes=form["notes"].replace("\r\n", "\n"),
        )
        service.create_client(state.store(), state.zfs(), name, settings, by=state.actor())
    except BulwarkError as exc:
        return _list_page(error=exc, form=form), exc.http_status
    flash(f"Client {name} added. Its datasets are ready; take a first recovery point when data is there.")
    return redirect(url_for("clients.show", name=name))


# -- a client's page -------------------------------------------------------------------------------------


def settings_form(ov: overview.ClientOverview) -> dict[str, str]:
    s = ov.client.settings
    return {
        "kind": s.kind,
        "quota": quota_text(s.quota),
        "rpo": format_duration(s.rpo),
        "schedule": s.schedule,
        "window": s.window or "",
        "retention": s.retention,
        "lock": format_duration(s.lock),
        "notes": s.notes,
    }


def detail_page(
    name: str,
    *,
    error: BulwarkError | str | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    """The client's page (also after a refused change, with the reason and what to do next)."""
    store, zfs = state.store(), state.zfs()
    ov = overview.overview(store, zfs, name)
    now = time.time()
    timeline_points: list[points.RecoveryPoint] = []
    plan, scan_error = None, None
    try:
        found = points.scan(zfs, ov.client)
    except BulwarkError as exc:
        scan_error = exc
    else:
        timeline_points = list(found.points)
        plan = points.plan_for(ov.client, found, now, service.timezone(store))
    page = render(
        "client.html",
        ov=ov,
        light=rpo_light(ov),
        points=timeline_points,
        chart=timeline.timeline_chart(timeline_points, state.timezone(), now),
        plan=plan,
        plan_error=None,
        spec=None,
        scan_error=problem(scan_error),
        problem=problem(error),
        form=form or settings_form(ov),
        kinds=KINDS,
        now=now,
        zone=str(state.timezone()),
    )
    return page, status


@bp.route(f"/{NAME}")
@requires("view")
def show(name: str) -> Any:
    return detail_page(name)


@bp.route(f"/{NAME}/settings", methods=["POST"])
@requires("clients.manage")
def save_settings(name: str) -> Any:
    form = {key: request.form.get(key, "") for key in SETTINGS_FIELDS}
    changes: dict[str, Any] = {"kind": form["kind"], "notes": form["notes"].replace("\r\n", "\n")}
    changes["quota"] = _blank_is_none(form["quota"])
    changes["window"] = _blank_is_none(form["window"])
    for key in ("rpo", "schedule", "retention", "lock"):  # blank: left as it is
        if form[key].strip():
            changes[key] = form[key].strip()
    try:
        service.update_client(state.store(), state.zfs(), name, by=state.actor(), **changes)
    except BulwarkError as exc:
        return detail_page(name, error=exc, form=form, status=exc.http_status)
    flash("Settings saved.")
    return redirect(url_for("clients.show", name=name))


@bp.route(f"/{NAME}/snapshot", methods=["POST"])
@requires("jobs.run")
def snapshot(name: str) -> Any:
    """Take a recovery point of each of the client's datasets now (a job)."""
    try:
        job = client_jobs.submit_snapshot(state.store(), name, by=state.actor())
    except BulwarkError as exc:
        return detail_page(name, error=exc, status=exc.http_status)
    return to_job(job)


@bp.route(f"/{NAME}/prune", methods=["POST"])
@requires("jobs.run")
def prune(name: str) -> Any:
    """Remove the points the retention policy no longer keeps (a job)."""
    try:
        job = client_jobs.submit_prune(state.store(), name, by=state.actor())
    except BulwarkError as exc:
        return detail_page(name, error=exc, status=exc.http_status)
    return to_job(job)


@bp.route(f"/{NAME}/prune-plan")
@requires("view")
def prune_plan(name: str) -> Any:
    """What pruning would remove now: with the saved policy, or with the SPEC typed in (not saved)."""
    spec = request.args.get("spec", "").strip()[:500] or None
    plan, plan_error = None, None
    service.get_client(state.store(), name)  # a bad or unknown client name is not a bad SPEC
    try:
        plan = points.prune_plan(state.store(), state.zfs(), name, spec=spec)
    except InvalidInput as exc:
        plan_error = problem(exc)
    ov = overview.overview(state.store(), None, name)
    context: dict[str, Any] = {"ov": ov, "plan": plan, "plan_error": plan_error, "spec": spec, "now": time.time()}
    if is_htmx():
        return render("client_prune.html", "_prune_plan.html", **context)
    return render("client_prune.html", **context), 400 if plan_error else 200


# -- points ----------------------------------------------------------------------------------------------


def _point_action(name: str, action: str) -> Any:
    ref = request.form.get("point", "")
    by = state.actor()
    try:
        if not ref:
            raise InvalidInput("choose a recovery point")
        if action == "pin":
            point = points.pin(state.store(), state.zfs(), name, ref, by=by)
            flash(f"Recovery point {point.id} is pinned: retention keeps it and nothing can destroy it.")
        elif action == "unpin":
            point = points.unpin(state.store(), state.zfs(), name, ref, by=by)
            flash(f"Recovery point {point.id} is unpinned: retention decides about it again.")
        else:
            point = points.destroy_point(state.store(), state.zfs(), name, ref, by=by)
            flash(f"Recovery point {point.id} was destroyed.")
    except BulwarkError as exc:
        return detail_page(name, error=exc, status=exc.http_status)
    return redirect(url_for("clients.show", name=name) + "#points")


@bp.route(f"/{NAME}/points/pin", methods=["POST"])
@requires("clients.manage")
def pin_point(name: str) -> Any:
    return _point_action(name, "pin")


@bp.route(f"/{NAME}/points/unpin", methods=["POST"])
@requires("clients.manage")
def unpin_point(name: str) -> Any:
    return _point_action(name, "unpin")


@bp.route(f"/{NAME}/points/destroy", methods=["POST"])
@requires("clients.destroy")
def destroy_point(name: str) -> Any:
    return _point_action(name, "destroy")


# -- remove, reattach, destroy ---------------------------------------------------------------------------


@bp.route(f"/{NAME}/remove", methods=["POST"])
@requires("clients.manage")
def remove(name: str) -> Response | tuple[str, int]:
    try:
        removal.remove_client(state.store(), state.zfs(), name, by=state.actor())
    except BulwarkError as exc:
        return detail_page(name, error=exc, status=exc.http_status)
    flash(f"Client {name} is removed: nothing runs for it any more, and its data and points are kept.")
    return redirect(url_for("clients.show", name=name))


@bp.route(f"/{NAME}/reattach", methods=["POST"])
@requires("clients.manage")
def reattach(name: str) -> Response | tuple[str, int]:
    try:
        removal.reattach_client(state.store(), state.zfs(), name, by=state.actor())
    except BulwarkError as exc:
        return detail_page(name, error=exc, status=exc.http_status)
    flash(f"Client {name} is active again, with its data and points.")
    return redirect(url_for("clients.show", name=name))


@bp.route(f"/{NAME}/destroy", methods=["POST"])
@requires("clients.destroy")
def destroy(name: str) -> Response | tuple[str, int]:
    try:
        removal.destroy_client(
            state.store(), state.zfs(), name, confirm=request.form.get("confirm", "").strip(), by=state.actor()
        )
    except BulwarkError as exc:
        return detail_page(name, error=exc, status=exc.http_status)
    flash(f"The data of client {name} and all its recovery points were destroyed.")
    return redirect(url_for("clients.index"))
