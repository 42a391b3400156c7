"""Jobs: start a scrub, follow progress live, cancel."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, redirect, request, url_for
from werkzeug.wrappers import Response

from appliance.jobs import base, queue
from appliance.system.errors import BulwarkError
from webui import state
from webui.render import is_htmx, render

bp = Blueprint("jobs", __name__, url_prefix="/jobs")


@bp.route("/")
def index() -> str:
    return render("jobs.html", "_jobs_table.html", jobs=queue.list_jobs(state.store(), limit=100))


@bp.route("/<int:job_id>")
def show(job_id: int) -> Any:
    try:
        job = queue.get(state.store(), job_id)
    except BulwarkError:
        abort(404, description=f"There is no job {job_id}.")
    return render("job.html", "_job_progress.html", job=job, log=queue.log_lines(state.store(), job_id))


@bp.route("/scrub", methods=["POST"])
def scrub() -> Response:
    if g.user.role == "viewer":
        abort(403, description="Viewers cannot start jobs.")
    pool = state.appliance_settings().pool.name
    job_id = base.submit(state.store(), "pool.scrub", {"pool": pool}, created_by=f"user:{g.user.username}")
    state.store().audit(f"user:{g.user.username}", "pool.scrub", pool, job=job_id)
    target = url_for("jobs.show", job_id=job_id)
    if is_htmx():
        resp = Response(status=204)
        resp.headers["HX-Redirect"] = target
        return resp
    return redirect(target)


@bp.route("/<int:job_id>/cancel", methods=["POST"])
def cancel(job_id: int) -> Response:
    if g.user.role == "viewer":
        abort(403, description="Viewers cannot cancel jobs.")
    try:
        queue.request_cancel(state.store(), job_id, by=f"user:{g.user.username}")
    except BulwarkError as exc:
        abort(409, description=exc.message)
    state.store().audit(f"user:{g.user.username}", "job.cancel", str(job_id))
    return redirect(request.referrer or url_for("jobs.show", job_id=job_id))
