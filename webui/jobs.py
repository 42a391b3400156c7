"""Jobs: start a scrub, follow progress live (bar and ETA), read the log, cancel."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, request, url_for
from werkzeug.wrappers import Response

from appliance.jobs import base, queue
from appliance.system.errors import BulwarkError
from webui import state
from webui.permissions import requires
from webui.render import is_htmx, render

bp = Blueprint("jobs", __name__, url_prefix="/jobs")


@bp.route("/")
@requires("view")
def index() -> str:
    return render("jobs.html", "_jobs_table.html", jobs=queue.list_jobs(state.store(), limit=100))


@bp.route("/<int:job_id>")
@requires("view")
def show(job_id: int) -> Any:
    try:
        job = queue.get(state.store(), job_id)
    except BulwarkError:
        abort(404, description=f"There is no job {job_id}.")
    return render("job.html", "_job_progress.html", job=job, log=queue.log_lines(state.store(), job_id))


def _to_job(job_id: int) -> Response:
    target = url_for("jobs.show", job_id=job_id)
    if is_htmx():
        resp = Response(status=204)
        resp.headers["HX-Redirect"] = target
        return resp
    return redirect(target)


@bp.route("/scrub", methods=["POST"])
@requires("jobs.run")
def scrub() -> Response:
    pool = state.appliance_settings().pool.name
    job_id = base.submit(state.store(), "pool.scrub", {"pool": pool}, created_by=state.actor())
    state.audit("pool.scrub", pool, job=job_id)
    return _to_job(job_id)


@bp.route("/<int:job_id>/cancel", methods=["POST"])
@requires("jobs.cancel")
def cancel(job_id: int) -> Response:
    try:
        queue.request_cancel(state.store(), job_id, by=state.actor())
    except BulwarkError as exc:
        abort(409, description=exc.message)
    state.audit("job.cancel", str(job_id))
    return redirect(request.referrer or url_for("jobs.show", job_id=job_id))
