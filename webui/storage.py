"""Storage: the pool's state, devices, scrubs and capacity over time."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, request

from appliance.disks import pool as pool_service
from appliance.jobs import queue
from appliance.system.errors import BulwarkError
from webui import charts, state
from webui.permissions import requires
from webui.render import render

bp = Blueprint("storage", __name__, url_prefix="/storage")
RANGES = {"1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "365d": 365 * 86400}


def pool_context(days: str = "30d") -> dict[str, Any]:
    config = state.appliance_settings()
    seconds = RANGES.get(days, RANGES["30d"])
    history = pool_service.samples(state.store(), config.pool.name, time.time() - seconds)
    chart = charts.capacity_chart(history, state.timezone())
    try:
        summary = pool_service.summary(state.zfs(), config.pool.name)
    except BulwarkError as exc:
        return {"pool": None, "pool_name": config.pool.name, "pool_error": exc, "chart": chart, "range": days}
    return {"pool": summary, "pool_name": config.pool.name, "pool_error": None, "chart": chart, "range": days}


@bp.route("/")
@requires("view")
def index() -> Any:
    days = request.args.get("range", "30d")
    scrubs = queue.list_jobs(state.store(), kind="pool.scrub", limit=10)
    return render("storage.html", "_pool.html", **pool_context(days), scrubs=scrubs, ranges=list(RANGES))
