"""``/agent/v1`` operations (docs/agent-protocol.md, "Operation"): the client's agent settings served to the
agent, the backup window and the rate limits enforced, progress and failure reports of open jobs.

The routes and hooks sit on the agent blueprint, after its credential check (webui/agent_ingest.py), so
``g.agent`` is the authenticated credential here.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request

from appliance.ingest import agent_settings, limits, progress
from appliance.ingest.agent_settings import OutsideBackupWindow
from appliance.ingest.credentials import Credential
from appliance.ingest.limits import RateLimited
from webui import state
from webui.agent_ingest import _agent, _json, bp
from webui.permissions import PUBLIC, requires

OPENS_JOB = frozenset({"agent.open_job", "agent.open_image_job"})


@bp.before_request
def limit_requests() -> None:
    """Runs after the credential check: one credential's requests at once, then, for a request that opens a job,
    the backup window and the cap of open jobs."""
    cred: Credential | None = g.get("agent")
    if cred is None:  # enrollment
        return
    limits.IN_FLIGHT.acquire(cred.id)
    g.agent_slot = cred.id
    if request.endpoint in OPENS_JOB:
        store = state.store()
        agent_settings.check_open_now(store, cred.client)
        limits.check_open_jobs(store, cred.id)


@bp.teardown_request
def release_slot(_exc: BaseException | None) -> None:
    slot = g.pop("agent_slot", None)
    if slot is not None:
        limits.IN_FLIGHT.release(slot)


def _retry_later(exc: RateLimited | OutsideBackupWindow, extra: dict[str, Any] | None = None) -> Response:
    resp = jsonify({"error": {**exc.to_dict(), "retry_after": exc.retry_after, **(extra or {})}})
    resp.status_code = exc.http_status
    resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


@bp.errorhandler(RateLimited)
def rate_limited(exc: RateLimited) -> Response:
    return _retry_later(exc)


@bp.errorhandler(OutsideBackupWindow)
def outside_window(exc: OutsideBackupWindow) -> Response:
    return _retry_later(exc, {"opens_at": exc.opens_at})


@bp.post("/jobs/<job_id>/progress")
@requires(PUBLIC)
def report_progress(job_id: str) -> Any:
    return jsonify(progress.record(state.store(), _agent(), job_id, _json()))


@bp.post("/jobs/<job_id>/fail")
@requires(PUBLIC)
def report_failure(job_id: str) -> Any:
    return jsonify(progress.fail(state.store(), _agent(), job_id, _json()))
