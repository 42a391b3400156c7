"""``/agent/v1``: the agent protocol over HTTPS (docs/agent-protocol.md).

Outside the browser session and CSRF gate (webui/identity.py lets ``/agent/`` through): every route but
``enroll`` authenticates the agent credential here, and a credential reaches only its own client.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from appliance.clients import browse, download, points
from appliance.clients.errors import BrowseSessionNotFound
from appliance.ingest import PROTOCOL_VERSION, agent_settings, credentials, jobs, limits, manifest
from appliance.ingest.credentials import Credential
from appliance.ingest.errors import AgentUnauthorized, ClientOutOfSpace, EnrollCodeInvalid, ProtocolError
from appliance.ingest.files import MAX_PART, Area
from appliance.system.errors import BulwarkError
from webui import state
from webui.permissions import PUBLIC, requires

bp = Blueprint("agent", __name__, url_prefix="/agent/v1")
MAX_JSON = 512 * 1024 * 1024  # a manifest of a few million entries


@bp.before_request
def authenticate() -> None:
    request.max_content_length = MAX_PART + 1024 * 1024 if request.method == "PUT" else MAX_JSON
    version = request.headers.get("Bulwark-Protocol", str(PROTOCOL_VERSION))
    if version != str(PROTOCOL_VERSION):
        raise ProtocolError(f"this appliance speaks protocol {PROTOCOL_VERSION}, the agent sent {version[:16]!r}")
    limits.check_address(state.store(), request.remote_addr or "")  # 429 after too many failures
    if request.endpoint == "agent.enroll":
        return
    g.agent = credentials.authenticate(state.store(), request.headers.get("Authorization", ""))


@bp.errorhandler(BulwarkError)
def error(exc: BulwarkError) -> Response:
    body: dict[str, Any] = {"error": exc.to_dict()}
    if hasattr(exc, "missing"):
        body["missing"] = exc.missing
    resp = jsonify(body)
    resp.status_code = exc.http_status
    if isinstance(exc, AgentUnauthorized):
        resp.headers["WWW-Authenticate"] = "BulwarkAgent"
    if isinstance(exc, AgentUnauthorized | EnrollCodeInvalid):
        limits.record_failure(state.store(), request.remote_addr or "")
    return resp


@bp.errorhandler(OSError)
def os_error(exc: OSError) -> Response:
    """A full pool or quota while content is written: a clear error (what arrived stays, no point changes)."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        raise exc
    cred = g.get("agent")
    return error(ClientOutOfSpace(cred.client if cred is not None else "?", exc.strerror))


def _agent() -> Credential:
    cred: Credential = g.agent
    return cred


def _json() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ProtocolError("the request body must be a JSON object")
    return body


@bp.post("/enroll")
@requires(PUBLIC)
def enroll() -> Any:
    body = _json()
    cred, secret = credentials.redeem(
        state.store(), body.get("code", ""), body.get("hostname", ""), address=request.remote_addr or ""
    )
    return jsonify(
        {
            "agent_id": cred.id,
            "secret": secret,
            "client": cred.client,
            "protocol": PROTOCOL_VERSION,
            "appliance": socket.gethostname(),
        }
    ), 201


@bp.get("/hello")
@requires(PUBLIC)
def hello() -> Any:
    cred = _agent()
    settings = agent_settings.for_agent(state.store(), cred.client)
    return jsonify({"protocol": PROTOCOL_VERSION, "client": cred.client, "agent_id": cred.id, "settings": settings})


@bp.post("/jobs")
@requires(PUBLIC)
def open_job() -> Any:
    body = _json()
    if body.get("kind", "files") != "files":
        raise ProtocolError("this route opens 'files' jobs; image jobs are opened at /images/jobs")
    job, base, prepare = jobs.open_job(state.store(), state.zfs(), _agent())
    return jsonify(
        {"job": job.id, "base_point": job.base_point, "manifest": manifest.to_json(base), "prepare": prepare}
    ), 201


@bp.post("/jobs/<job_id>/missing")
@requires(PUBLIC)
def missing(job_id: str) -> Any:
    cred = _agent()
    jobs.get_job(state.store(), cred, job_id, open_only=True)
    hashes = _json().get("hashes")
    if not isinstance(hashes, list):
        raise ProtocolError("'hashes' must be a list")
    area = jobs.files_area(state.store(), state.zfs(), jobs.active_client(state.store(), cred))
    need, partial = area.have(hashes, area.load_manifest())
    return jsonify({"missing": need, "partial": partial})


@bp.put("/jobs/<job_id>/content/<digest>")
@requires(PUBLIC)
def content(job_id: str, digest: str) -> Any:
    cred = _agent()
    store = state.store()
    job = jobs.get_job(store, cred, job_id, open_only=True)
    manifest.check_hash(digest)
    try:
        offset = int(request.args.get("offset", "0"))
        total = int(request.headers.get("Bulwark-Size", ""))
    except ValueError:
        raise ProtocolError("offset and the Bulwark-Size header must be integers") from None
    if offset < 0 or total < 0 or offset > total:
        raise ProtocolError("offset and size must satisfy 0 <= offset <= size")
    final = request.args.get("final") == "1"
    area = jobs.files_area(store, state.zfs(), jobs.active_client(store, cred))
    held = area.receive(digest, offset, total, final, request.stream, request.headers.get("Content-Encoding", ""))
    jobs.add_sent(store, job, request.content_length or 0)
    return jsonify({"hash": digest, "received": held, "complete": final})


@bp.put("/jobs/<job_id>/pack")
@requires(PUBLIC)
def pack(job_id: str) -> Any:
    cred = _agent()
    store = state.store()
    job = jobs.get_job(store, cred, job_id, open_only=True)
    area = jobs.files_area(store, state.zfs(), jobs.active_client(store, cred))
    staged = area.receive_pack(request.get_data(cache=False), request.headers.get("Content-Encoding", ""))
    jobs.add_sent(store, job, request.content_length or 0)
    return jsonify({"staged": staged})


@bp.put("/jobs/<job_id>/delta/<digest>")
@requires(PUBLIC)
def delta(job_id: str, digest: str) -> Any:
    cred = _agent()
    store = state.store()
    job = jobs.get_job(store, cred, job_id, open_only=True)
    manifest.check_hash(digest)
    try:
        size = int(request.headers.get("Bulwark-Size", ""))
    except ValueError:
        raise ProtocolError("the Bulwark-Size header must be an integer") from None
    base_path = manifest.check_path(request.args.get("base", ""))
    area = jobs.files_area(store, state.zfs(), jobs.active_client(store, cred))
    base = {e.path: e for e in area.load_manifest()}.get(base_path)
    if base is None or base.type != "f":
        raise ProtocolError(f"{base_path!r} is not a file of the last backup; send the whole content")
    body = request.get_data(cache=False)
    area.receive_delta(digest, size, base, body, request.headers.get("Content-Encoding", ""))
    jobs.add_sent(store, job, len(body))
    return jsonify({"hash": digest, "complete": True})


@bp.post("/jobs/<job_id>/prepare")
@requires(PUBLIC)
def prepare(job_id: str) -> Any:
    return jsonify(jobs.prepare(state.store(), state.zfs(), _agent(), job_id, _json().get("manifest")))


@bp.post("/jobs/<job_id>/commit")
@requires(PUBLIC)
def commit(job_id: str) -> Any:
    body = _json()
    stats: dict[str, Any] = body["stats"] if isinstance(body.get("stats"), dict) else {}
    return jsonify(jobs.commit(state.store(), state.zfs(), _agent(), job_id, body.get("manifest"), stats))


@bp.get("/points")
@requires(PUBLIC)
def list_points() -> Any:
    cred = _agent()
    found = [p for p in points.list_points(state.store(), state.zfs(), cred.client) if p.area == "files"]
    return jsonify({"points": [{"id": p.id, "created_at": p.created_at, "source": p.source} for p in found]})


@bp.post("/restores")
@requires(PUBLIC)
def open_restore() -> Any:
    cred = _agent()
    ref = _json().get("point", "latest")
    if not isinstance(ref, str) or not ref:
        raise ProtocolError("'point' must be a point name or 'latest'")
    store, zfs = state.store(), state.zfs()
    if ref == "latest":
        latest = jobs.last_point(store, zfs, cred.client)
        if latest is None:
            raise ProtocolError("this client has no recovery point made by an agent yet")
        ref = latest
    if not ref.startswith("files@"):
        ref = f"files@{ref}"
    session = browse.open_session(store, zfs, cred.client, ref, by=f"agent:{cred.id}")
    stored = Area.read_manifest(Path(session.mountpoint))
    return jsonify({"session": session.id, "point": ref, "manifest": stored}), 201


def _session(sid: str) -> browse.BrowseSession:
    cred = _agent()
    session = browse.get_session(state.store(), sid[:64])
    if session.client != cred.client:
        raise BrowseSessionNotFound(sid[:64])
    return session


@bp.get("/restores/<session_id>/content")
@requires(PUBLIC)
def restore_content(session_id: str) -> Any:
    session = _session(session_id)
    rel = manifest.check_path(request.args.get("path", ""))
    found = download.read_file(Path(session.mountpoint), rel)
    browse.touch(state.store(), session.id)
    return Response(found.chunks, mimetype="application/octet-stream", headers={"Content-Length": str(found.size)})


@bp.delete("/restores/<session_id>")
@requires(PUBLIC)
def close_restore(session_id: str) -> Any:
    session = _session(session_id)
    browse.close_session(state.store(), state.zfs(), session.id)
    return jsonify({"closed": session.id})


from webui import agent_images, agent_ops  # noqa: E402,F401  (their routes and hooks sit on this blueprint)
