"""Browsing a recovery point and restoring from it: a browse session (a read-only clone of the point, closed
by the person or after 30 minutes unused), folders with breadcrumbs, one file or a selection as a streamed
zip, and a restore of the selection into the client's live data (a job; newer files there are kept unless
the person asks to overwrite them).

Paths come from the browser and are never trusted: the service refuses ``..``, absolute paths and symbolic
links that lead out of the point, and the page says why. A session belongs to whoever opened it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, request, url_for

import appliance.clients.jobs as client_jobs
from appliance.clients import browse
from appliance.clients.browse import BrowseSession
from appliance.clients.paths import clean_relative
from appliance.system.errors import BulwarkError, InvalidInput
from webui import state
from webui.client_common import file_response, is_utf8, own_session, problem, to_job, zip_response
from webui.permissions import requires
from webui.render import render

bp = Blueprint("browse", __name__, url_prefix="/<string(maxlength=32):name>/browse")
SID = "<string(maxlength=64):sid>"


def _parent(path: str) -> str:
    try:
        return clean_relative(path).rpartition("/")[0]
    except BulwarkError:
        return ""


def browse_page(
    session: BrowseSession,
    path: str,
    *,
    error: BulwarkError | str | None = None,
    status: int = 200,
) -> tuple[str, int]:
    """A folder of the point: its entries, breadcrumbs, and the download and restore forms."""
    shown_problem = problem(error)
    try:
        folder = clean_relative(path)
        entries = browse.browse(state.store(), session.id, folder)
    except BulwarkError as exc:
        if shown_problem is None:
            shown_problem, status = problem(exc), exc.http_status
        folder = ""
        entries = browse.browse(state.store(), session.id, "")
    crumbs = [("", session.point.split("@", 1)[0])]
    parts = folder.split("/") if folder else []
    crumbs += [("/".join(parts[: i + 1]), part) for i, part in enumerate(parts)]
    page = render(
        "browse.html",
        session=browse.get_session(state.store(), session.id),
        client=session.client,
        folder=folder,
        crumbs=crumbs,
        entries=[(e, is_utf8(e.path)) for e in entries],
        problem=shown_problem,
        idle_minutes=browse.SESSION_IDLE // 60,
    )
    return page, status


@bp.route("/", methods=["POST"])
@requires("restore.run")
def open_point(name: str) -> Any:
    """Open a browse session of the point named in the form (a read-only clone), then show its root."""
    from webui.clients import detail_page

    try:
        session = browse.open_session(state.store(), state.zfs(), name, request.form.get("point", ""), by=state.actor())
    except BulwarkError as exc:
        return detail_page(name, error=exc, status=exc.http_status)
    return redirect(url_for("clients.browse.page", name=name, sid=session.id))


@bp.route(f"/{SID}")
@requires("restore.run")
def page(name: str, sid: str) -> Any:
    return browse_page(own_session(sid, name), request.args.get("path", ""))


@bp.route(f"/{SID}/file")
@requires("restore.run")
def file(name: str, sid: str) -> Any:
    """One file, streamed as a download."""
    session = own_session(sid, name)
    path = request.args.get("path", "")
    try:
        return file_response(session, path)
    except BulwarkError as exc:
        return browse_page(session, _parent(path), error=exc, status=exc.http_status)


def _selection() -> list[str]:
    paths = request.form.getlist("paths")
    if not paths:
        raise InvalidInput("select at least one file or folder")
    if len(paths) > 1000:
        raise InvalidInput("select at most 1000 files or folders (or their folder)")
    return paths


@bp.route(f"/{SID}/zip", methods=["POST"])
@requires("restore.run")
def zip_download(name: str, sid: str) -> Any:
    """The selected files and folders as a zip, streamed however large."""
    session = own_session(sid, name)
    folder = request.form.get("folder", "")
    try:
        return zip_response(session, _selection(), compress=request.form.get("compress") == "on")
    except BulwarkError as exc:
        return browse_page(session, folder, error=exc, status=exc.http_status)


@bp.route(f"/{SID}/restore", methods=["POST"])
@requires("restore.run")
def restore(name: str, sid: str) -> Any:
    """Restore the selection into the client's live data at the folder given (a job)."""
    session = own_session(sid, name)
    folder = request.form.get("folder", "")
    try:
        job = client_jobs.submit_restore(
            state.store(),
            state.zfs(),
            name,
            session.point,
            _selection(),
            request.form.get("target", "").strip(),
            overwrite=request.form.get("overwrite") == "on",
            by=state.actor(),
        )
    except BulwarkError as exc:
        return browse_page(session, folder, error=exc, status=exc.http_status)
    return to_job(job)


@bp.route(f"/{SID}/close", methods=["POST"])
@requires("restore.run")
def close(name: str, sid: str) -> Any:
    """End the session now (its clone is destroyed)."""
    session = own_session(sid, name)
    browse.close_session(state.store(), state.zfs(), session.id)
    flash(f"Browsing of {session.point} ended.")
    return redirect(url_for("clients.show", name=name))
