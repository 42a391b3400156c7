"""The dashboard: the pool's real state, the daemon, and recent jobs."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint

from appliance.daemon import daemon_state
from appliance.disks import pool as pool_service
from appliance.jobs import queue
from appliance.system.errors import BulwarkError
from appliance.zfs import units
from webui import state
from webui.render import render

bp = Blueprint("dashboard", __name__)


def pool_context() -> dict[str, Any]:
    config = state.appliance_settings()
    try:
        summary = pool_service.summary(state.zfs(), config.pool.name)
    except BulwarkError as exc:
        return {"pool": None, "pool_name": config.pool.name, "pool_error": exc}
    history = pool_service.samples(state.store(), config.pool.name, time.time() - 30 * 86400)
    return {"pool": summary, "pool_name": config.pool.name, "pool_error": None, "history": history}


@bp.app_template_filter("size")
def size_filter(value: int | None) -> str:
    return "—" if value is None else units.format_size(int(value))


@bp.app_template_filter("when")
def when_filter(value: float | None) -> str:
    if not value:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(value))


@bp.route("/")
def index() -> str:
    return render(
        "dashboard.html",
        **pool_context(),
        daemon=daemon_state(state.store()),
        jobs=queue.list_jobs(state.store(), limit=8),
        zfs_caps=state.zfs().caps,
        settings=state.appliance_settings(),
    )


@bp.route("/partials/pool")
def pool_partial() -> str:
    return render("_pool.html", **pool_context())
