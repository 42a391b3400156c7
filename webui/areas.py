"""Areas of the appliance whose pages are not built yet: each says so plainly (no fake data)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from webui.permissions import requires
from webui.render import render

NOT_YET: dict[str, tuple[str, str]] = {}  # (the Disks page is webui/disks.py)


def _make(area: str) -> Blueprint:
    bp = Blueprint(area, __name__, url_prefix=f"/{area}")
    title, text = NOT_YET[area]

    @bp.route("/")
    @requires("view")
    def index() -> Any:
        return render("not_yet.html", title=title, text=text)

    return bp


blueprints = [_make(area) for area in NOT_YET]
