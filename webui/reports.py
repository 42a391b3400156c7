"""Reports: the appliance summary across clients, each client's printable SLA report, and report mails on a
schedule. Made from the history bulwarkd records (no ZFS command runs here)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, request, url_for

from appliance.alerts import channels
from appliance.clients import service
from appliance.reports import render as report_render
from appliance.reports import schedule, sla
from appliance.system.errors import BulwarkError, NotFound
from webui import state
from webui.permissions import requires
from webui.render import render

bp = Blueprint("reports", __name__, url_prefix="/reports")
DAY_CHOICES = (7, 30, 90, 365)


def _days() -> int:
    try:
        days = int(request.args.get("days", sla.DEFAULT_DAYS))
    except ValueError:
        days = sla.DEFAULT_DAYS
    return min(max(days, 1), 400)


def _schedules_context() -> dict[str, Any]:
    return {
        "schedules": schedule.list_schedules(state.store()),
        "mail_channels": [c for c in channels.list_channels(state.store()) if c.kind == "email"],
        "channel_names": {c.id: c.name for c in channels.list_channels(state.store())},
        "clients": [c.name for c in service.list_clients(state.store())],
        "periods": list(schedule.PERIODS),
    }


@bp.route("/")
@requires("view")
def index() -> Any:
    days = _days()
    summary = sla.summary(state.store(), days=days)
    body = report_render.summary_body(summary, link=lambda name: url_for("reports.client", client=name, days=days))
    return render(
        "reports.html",
        body=body,
        days=days,
        day_choices=DAY_CHOICES,
        error=request.args.get("error"),
        message=request.args.get("message"),
        **_schedules_context(),
    )


@bp.route("/clients/<client>")
@requires("view")
def client(client: str) -> Any:
    days = _days()
    try:
        report = sla.client_report(state.store(), client, days=days)
    except NotFound:
        abort(404, description=f"There is no client {client}.")
    return render(
        "report_client.html", report=report, body=report_render.client_body(report), days=days, day_choices=DAY_CHOICES
    )


@bp.route("/schedules", methods=["POST"])
@requires("alerts.manage")
def schedule_add() -> Any:
    try:
        made = schedule.add(
            state.store(),
            request.form.get("client") or None,
            request.form.get("channel", ""),
            request.form.get("every", "weekly"),
        )
    except BulwarkError as exc:
        return redirect(url_for("reports.index", error=f"{exc.message} {exc.hint}"))
    state.audit("report.schedule", made.client or "summary", every=made.every, channel=made.channel_id)
    return redirect(url_for("reports.index", message="Report mail scheduled: the first one goes out now."))


@bp.route("/schedules/<int:schedule_id>/delete", methods=["POST"])
@requires("alerts.manage")
def schedule_delete(schedule_id: int) -> Any:
    try:
        schedule.delete(state.store(), schedule_id)
    except BulwarkError as exc:
        abort(404, description=exc.message)
    state.audit("report.unschedule", str(schedule_id))
    return redirect(url_for("reports.index", message="Report mail stopped."))
