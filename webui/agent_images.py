"""``/agent/v1/images``: image backups and image restores (docs/agent-protocol.md, "Image backup").

The routes sit on the agent blueprint, so the agent credential check, the protocol version check and the
JSON error format of webui/agent_ingest.py apply to them unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Response, jsonify, request

from appliance.clients import browse
from appliance.clients.errors import BrowseSessionNotFound
from appliance.ingest import image_jobs, images
from appliance.ingest.errors import ImageNotFound, ProtocolError
from webui import state
from webui.agent_ingest import _agent, _json, bp
from webui.permissions import PUBLIC, requires


@bp.get("/images")
@requires(PUBLIC)
def list_images() -> Any:
    return jsonify({"images": image_jobs.list_images(state.store(), state.zfs(), _agent().client)})


@bp.post("/images/jobs")
@requires(PUBLIC)
def open_image_job() -> Any:
    return jsonify(image_jobs.open_job(state.store(), state.zfs(), _agent(), _json())), 201


@bp.get("/images/jobs/<job_id>/map")
@requires(PUBLIC)
def job_map(job_id: str) -> Any:
    data = image_jobs.block_map(state.store(), state.zfs(), _agent(), job_id)
    return Response(data, mimetype="application/octet-stream")


@bp.put("/images/jobs/<job_id>/blocks")
@requires(PUBLIC)
def job_blocks(job_id: str) -> Any:
    body = request.get_data(cache=False)
    encoding = request.headers.get("Content-Encoding", "")
    written = image_jobs.receive(state.store(), state.zfs(), _agent(), job_id, body, encoding)
    return jsonify({"written": written})


@bp.post("/images/jobs/<job_id>/commit")
@requires(PUBLIC)
def job_commit(job_id: str) -> Any:
    return jsonify(image_jobs.commit(state.store(), state.zfs(), _agent(), job_id, _json()))


@bp.post("/images/restores")
@requires(PUBLIC)
def open_image_restore() -> Any:
    cred = _agent()
    body = _json()
    ref, name = body.get("point", "latest"), body.get("image")
    if not isinstance(ref, str) or not ref:
        raise ProtocolError("'point' must be a point name or 'latest'")
    store, zfs = state.store(), state.zfs()
    if "@" in ref:
        area = ref.split("@", 1)[0]
        if not area.startswith("images/"):
            raise ProtocolError(f"{ref!r} is not a point of an image (images/NAME@…)")
        name = area.split("/", 1)[1]
    if name is None:
        known = image_jobs.list_images(store, zfs, cred.client)
        if len(known) != 1:
            names = ", ".join(i["image"] for i in known) or "none yet"
            raise ProtocolError(f"name the image to restore (this client's images: {names})")
        name = known[0]["image"]
    name = images.check_name(name)
    if ref == "latest":
        latest = image_jobs.last_point(store, zfs, cred.client, name)
        if latest is None:
            raise ImageNotFound(name)
        ref = latest
    elif "@" not in ref:
        ref = f"{image_jobs.area(name)}@{ref}"
    session = browse.open_session(store, zfs, cred.client, ref, by=f"agent:{cred.id}")
    info = images.Image.read_info(Path(session.mountpoint))
    if not info:
        browse.close_session(store, zfs, session.id)
        raise ProtocolError(f"point {ref} holds no committed image")
    return jsonify({"session": session.id, "point": ref, "image": name, **_public(info)}), 201


def _public(info: dict[str, Any]) -> dict[str, Any]:
    keys = ("size", "block_size", "map", "source", "consistency", "committed_at")
    return {k: info.get(k) for k in keys}


def _session(sid: str) -> tuple[browse.BrowseSession, dict[str, Any]]:
    cred = _agent()
    session = browse.get_session(state.store(), sid[:64])
    if session.client != cred.client or not session.point.startswith("images/"):
        raise BrowseSessionNotFound(sid[:64])
    browse.touch(state.store(), session.id)
    return session, images.Image.read_info(Path(session.mountpoint))


@bp.get("/images/restores/<session_id>/map")
@requires(PUBLIC)
def restore_map(session_id: str) -> Any:
    session, _ = _session(session_id)
    data = (Path(session.mountpoint) / images.IMAGE_MAP).read_bytes()
    return Response(data, mimetype="application/octet-stream")


@bp.get("/images/restores/<session_id>/blocks")
@requires(PUBLIC)
def restore_blocks(session_id: str) -> Any:
    session, info = _session(session_id)
    try:
        index, count = int(request.args.get("index", "")), int(request.args.get("count", "1"))
    except ValueError:
        raise ProtocolError("index and count must be integers") from None
    data = images.read_blocks(Path(session.mountpoint), int(info["size"]), index, count)
    return Response(data, mimetype="application/octet-stream", headers={"Content-Length": str(len(data))})
