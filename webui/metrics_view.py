"""``/metrics`` for Prometheus: outside the sign-in (scrapers have no session), protected by the optional
bearer token configured on the Alerts → Channels page or with ``bulwark metrics token``."""

from __future__ import annotations

from flask import Blueprint, Response, request

from appliance import metrics
from webui import state
from webui.permissions import PUBLIC, requires

bp = Blueprint("metrics", __name__)


@bp.route("/metrics")
@requires(PUBLIC)  # no session: the bearer token (when one is set) is checked here
def scrape() -> Response:
    if not metrics.allowed(state.store(), request.headers.get("Authorization")):
        response = Response("a valid bearer token is required for /metrics\n", status=401, mimetype="text/plain")
        response.headers["WWW-Authenticate"] = 'Bearer realm="bulwark-metrics"'
        return response
    try:
        zfs = state.zfs()
    except Exception:  # noqa: BLE001  (no ZFS here: the pool families say so with bulwark_pool_up 0)
        zfs = None
    response = Response(metrics.exposition(state.store(), zfs), mimetype="text/plain")
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    response.headers["Cache-Control"] = "no-store"
    return response
