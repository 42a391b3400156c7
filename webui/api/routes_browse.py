"""API: browsing recovery points (sessions on read-only clones), downloading a file or a streamed zip, and
restoring files into a client's live data (a job).

A browse session belongs to the user or token that opened it; to anyone else it does not exist. It ends with
``DELETE /browse/{sid}`` or after 30 minutes unused (a running download keeps it alive).
"""

from __future__ import annotations

from typing import Any

from flask import request
from spectree import Response

import appliance.clients.jobs as client_jobs
from appliance.clients import browse
from webui import state
from webui.api import bp, spec
from webui.api.routes_clients import ERRORS, NAME
from webui.api.schemas import Done, JobCreated
from webui.api.schemas_clients import (
    BrowseListing,
    BrowseOpen,
    BrowseQuery,
    BrowseSessionOut,
    EntryOut,
    FileQuery,
    RestoreRequest,
    ZipRequest,
)
from webui.api.validation import streamed
from webui.client_common import file_response, is_utf8, own_session, shown, zip_response
from webui.permissions import requires

SID = "<string(maxlength=64):sid>"
STREAM_ERRORS = {key: value for key, value in ERRORS.items() if key != "HTTP_503"}


@bp.route(f"/clients/{NAME}/browse", methods=["POST"])
@requires("restore.run")
@spec.validate(json=BrowseOpen, resp=Response(HTTP_201=BrowseSessionOut, **ERRORS), tags=["restore"])
def open_browse(name: str) -> Any:
    """Open a browse session of a point (a read-only clone; the same person and point reuse theirs)."""
    body: BrowseOpen = request.context.json  # type: ignore[attr-defined]
    session = browse.open_session(state.store(), state.zfs(), name, body.point, by=state.actor())
    return BrowseSessionOut.model_validate(session.to_dict()), 201


@bp.route(f"/browse/{SID}", methods=["GET"])
@requires("restore.run")
@spec.validate(query=BrowseQuery, resp=Response(HTTP_200=BrowseListing, **ERRORS), tags=["restore"])
def browse_folder(sid: str) -> Any:
    """A folder of the session's point (``path`` relative to its root), folders first."""
    q: BrowseQuery = request.context.query  # type: ignore[attr-defined]
    session = own_session(sid)
    entries = browse.browse(state.store(), session.id, q.path)
    return BrowseListing(
        session=BrowseSessionOut.model_validate(browse.get_session(state.store(), session.id).to_dict()),
        path=q.path,
        entries=[
            EntryOut(
                name=shown(e.name),
                path=shown(e.path),
                type=e.type,  # type: ignore[arg-type]
                size=e.size,
                mtime=e.mtime,
                target=None if e.target is None else shown(e.target),
                utf8=is_utf8(e.path),
            )
            for e in entries
        ],
    )


@bp.route(f"/browse/{SID}/file", methods=["GET"])
@requires("restore.run")
@streamed(
    query=FileQuery,
    resp=Response(HTTP_200=(None, "The file's bytes (application/octet-stream), streamed"), **STREAM_ERRORS),
    tags=["restore"],
)
def download_file(sid: str) -> Any:
    """One file of the session's point, streamed, with its size and name (Content-Disposition)."""
    q: FileQuery = request.context.query  # type: ignore[attr-defined]
    return file_response(own_session(sid), q.path)


@bp.route(f"/browse/{SID}/zip", methods=["POST"])
@requires("restore.run")
@streamed(
    json=ZipRequest,
    resp=Response(HTTP_200=(None, "A zip (application/zip), streamed: no size cap"), **STREAM_ERRORS),
    tags=["restore"],
)
def download_zip(sid: str) -> Any:
    """Files and folders of the session's point as a zip, streamed however large (``""`` is the whole point).
    Paths are checked before the first byte."""
    body: ZipRequest = request.context.json  # type: ignore[attr-defined]
    return zip_response(own_session(sid), body.paths, compress=body.compress)


@bp.route(f"/browse/{SID}", methods=["DELETE"])
@requires("restore.run")
@spec.validate(resp=Response(HTTP_200=Done, **ERRORS), tags=["restore"])
def close_browse(sid: str) -> Any:
    """End a browse session now (its clone is destroyed)."""
    session = own_session(sid)
    browse.close_session(state.store(), state.zfs(), session.id)
    return Done()


@bp.route(f"/clients/{NAME}/restore", methods=["POST"])
@requires("restore.run")
@spec.validate(json=RestoreRequest, resp=Response(HTTP_202=JobCreated, **ERRORS), tags=["restore"])
def restore(name: str) -> Any:
    """Restore files and folders of a point into the client's live data under ``target`` (a job). Files that
    are newer in the live data are kept unless ``overwrite``; nothing is ever rolled back."""
    body: RestoreRequest = request.context.json  # type: ignore[attr-defined]
    job = client_jobs.submit_restore(
        state.store(),
        state.zfs(),
        name,
        body.point,
        body.paths,
        body.target,
        overwrite=body.overwrite,
        by=state.actor(),
    )
    return JobCreated(job=job), 202
