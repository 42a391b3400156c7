"""The first-run wizard: after the one-time password is changed, an admin names the appliance, picks
its time zone and sees the pool it will use."""

from __future__ import annotations

import zoneinfo
from typing import Any

from flask import Blueprint, redirect, request, url_for

from appliance.disks import pool as pool_service
from appliance.system import settings
from appliance.system.errors import BulwarkError
from webui import state
from webui.identity import SETUP_DONE_KEY
from webui.permissions import requires
from webui.render import render

bp = Blueprint("setup", __name__, url_prefix="/setup")


@bp.route("/", methods=["GET", "POST"])
@requires("settings.manage")
def index() -> Any:
    config = state.appliance_settings()
    error = None
    if request.method == "POST":
        try:
            settings.update(
                state.store(),
                hostname=request.form.get("hostname", "").strip().lower(),
                timezone=request.form.get("timezone", "").strip(),
            )
        except BulwarkError as exc:
            error = exc.message
        else:
            state.store().set_setting(SETUP_DONE_KEY, True)
            state.audit(
                "setup.completed", None, hostname=request.form.get("hostname"), timezone=request.form.get("timezone")
            )
            return redirect(url_for("dashboard.index"))
    try:
        summary = pool_service.summary(state.zfs(), config.pool.name)
        pool_error = None
    except BulwarkError as exc:
        summary, pool_error = None, exc
    zones = sorted(zoneinfo.available_timezones())
    return render("setup.html", config=config, zones=zones, summary=summary, pool_error=pool_error, error=error), (
        400 if error else 200
    )
