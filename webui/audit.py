"""The audit trail page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from appliance import audit as audit_log
from webui import state
from webui.permissions import requires
from webui.render import render

bp = Blueprint("audit", __name__, url_prefix="/audit")
PAGE = 100


@bp.route("/")
@requires("audit.view")
def index() -> Any:
    before = request.args.get("before", type=int)
    actor = request.args.get("actor") or None
    action = request.args.get("action") or None
    entries = audit_log.entries(state.store(), limit=PAGE + 1, before_id=before, actor=actor, action_prefix=action)
    more = len(entries) > PAGE
    return render(
        "audit.html", "_audit_rows.html", entries=entries[:PAGE], more=more, actor=actor or "", action=action or ""
    )
