"""API: jobs."""

from __future__ import annotations

from typing import Any

from flask import request
from spectree import Response

from appliance.jobs import queue
from webui import state
from webui.api import bp, spec
from webui.api.schemas import Done, ErrorBody, JobDetail, JobList, JobOut, JobQuery, LogLine
from webui.permissions import requires

ERRORS = {"HTTP_400": ErrorBody, "HTTP_401": ErrorBody, "HTTP_403": ErrorBody, "HTTP_404": ErrorBody}


@bp.route("/jobs", methods=["GET"])
@requires("view")
@spec.validate(query=JobQuery, resp=Response(HTTP_200=JobList, **ERRORS), tags=["jobs"])
def list_jobs() -> Any:
    """Jobs, newest first."""
    q: JobQuery = request.context.query  # type: ignore[attr-defined]
    found = queue.list_jobs(state.store(), states=[q.state] if q.state else [], kind=q.kind, limit=q.limit)
    return JobList(jobs=[JobOut.model_validate(j.to_dict()) for j in found])


@bp.route("/jobs/<int:job_id>", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=JobDetail, **ERRORS), tags=["jobs"])
def get_job(job_id: int) -> Any:
    """One job with its progress, result or error, and log."""
    job = queue.get(state.store(), job_id)
    return JobDetail(
        **job.to_dict(), log=[LogLine.model_validate(line) for line in queue.log_lines(state.store(), job_id)]
    )


@bp.route("/jobs/<int:job_id>/cancel", methods=["POST"])
@requires("jobs.cancel")
@spec.validate(resp=Response(HTTP_200=Done, HTTP_409=ErrorBody, **ERRORS), tags=["jobs"])
def cancel_job(job_id: int) -> Any:
    """Cancel a queued job, or ask a running one to stop."""
    queue.request_cancel(state.store(), job_id, by=state.actor())
    state.audit("job.cancel", str(job_id))
    return Done()
