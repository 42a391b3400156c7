"""The dashboard: pool health and capacity, clients against their RPO, alerts, running jobs."""

from __future__ import annotations

import datetime

from flask import Blueprint

from appliance.daemon import daemon_state
from appliance.jobs import queue
from appliance.zfs import units
from webui import client_common, state
from webui.permissions import requires
from webui.render import render
from webui.storage import pool_context

bp = Blueprint("dashboard", __name__)


@bp.app_template_filter("size")
def size_filter(value: int | None) -> str:
    return "—" if value is None else units.format_size(int(value))


@bp.app_template_filter("when")
def when_filter(value: float | None) -> str:
    """A time as the appliance's time zone shows it."""
    if not value:
        return "—"
    return datetime.datetime.fromtimestamp(value, state.timezone()).strftime("%Y-%m-%d %H:%M")


@bp.app_template_filter("duration")
def duration_filter(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 90:
        return f"{s} s"
    if s < 5400:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} days"


@bp.route("/")
@requires("view")
def index() -> str:
    return render(
        "dashboard.html",
        **pool_context("7d"),
        daemon=daemon_state(state.store()),
        running=queue.list_jobs(state.store(), states=("running", "queued"), limit=10),
        recent=queue.list_jobs(state.store(), limit=6),
        zfs_caps=state.zfs().caps,
        settings=state.appliance_settings(),
        **client_common.dashboard_context(),
    )


@bp.route("/partials/pool")
@requires("view")
def pool_partial() -> str:
    return render("_pool.html", **pool_context("7d"))
