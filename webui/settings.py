"""Appliance settings: name, time zone, sign-in security."""

from __future__ import annotations

import zoneinfo
from typing import Any

from flask import Blueprint, redirect, request, url_for

from appliance.system import settings
from appliance.system.errors import BulwarkError
from webui import state
from webui.permissions import requires
from webui.render import render

bp = Blueprint("settings", __name__, url_prefix="/settings")


def _page(error: str | None = None, saved: bool = False) -> str:
    return render(
        "settings.html",
        config=state.appliance_settings(),
        zones=sorted(zoneinfo.available_timezones()),
        error=error,
        saved=saved,
    )


@bp.route("/", methods=["GET"])
@requires("view")
def index() -> Any:
    return _page(saved=request.args.get("saved") == "1")


@bp.route("/", methods=["POST"])
@requires("settings.manage")
def save() -> Any:
    try:
        updated = settings.update(
            state.store(),
            hostname=request.form.get("hostname", "").strip().lower(),
            timezone=request.form.get("timezone", "").strip(),
            require_totp=request.form.get("require_totp") == "on",
        )
    except BulwarkError as exc:
        return _page(error=exc.message), exc.http_status
    state.audit(
        "settings.update", None, hostname=updated.hostname, timezone=updated.timezone, require_totp=updated.require_totp
    )
    return redirect(url_for("settings.index", saved=1))
