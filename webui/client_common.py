"""What the client pages, the dashboard and the API share: the RPO traffic light, quota text, browse sessions
that belong to the person asking, and streamed downloads (never buffered, no size cap)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from flask import Response, redirect, stream_with_context, url_for

from appliance import alerts
from appliance.clients import browse, download, overview, service
from appliance.clients.browse import BrowseSession
from appliance.clients.errors import BrowseSessionNotFound
from appliance.clients.overview import ClientOverview
from appliance.system.durations import format_duration
from appliance.system.errors import BulwarkError
from webui import state
from webui.render import is_htmx

AMBER_FRACTION = 0.75  # a point older than this share of the RPO target turns the light amber
_QUOTA_UNITS = (("E", 1024**6), ("P", 1024**5), ("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024))


@dataclass(frozen=True)
class RpoLight:
    """The RPO state of a client as a traffic light: ``ok`` (green), ``warn`` (amber), ``bad`` (red) or ``""``
    (grey: the client is removed, nothing is expected of it)."""

    colour: str
    label: str
    age: float | None  # seconds since the last good point
    target: int
    text: str

    @property
    def target_text(self) -> str:
        return format_duration(self.target)


def problem(error: BulwarkError | str | None) -> dict[str, str] | None:
    """What went wrong and what to do next, for a page's error box."""
    if error is None:
        return None
    if isinstance(error, BulwarkError):
        return {"message": error.message, "hint": error.hint}
    return {"message": error, "hint": ""}


def rpo_light(ov: ClientOverview) -> RpoLight:
    target = ov.client.settings.rpo
    target_text = format_duration(target)
    if not ov.client.active:
        return RpoLight("", "removed", None, target, "removed: nothing runs for it")
    if ov.rpo is None:
        reason = (ov.error or {}).get("message", "its datasets could not be read")
        return RpoLight("bad", "unknown", None, target, f"unknown: {reason}")
    age = ov.rpo.age_seconds
    if ov.rpo.state == "no_point":
        return RpoLight("warn", "no point yet", None, target, f"no recovery point yet (target {target_text})")
    if ov.rpo.state == "stale" or age is None:
        what = "no good recovery point" if age is None else "last good point too old"
        return RpoLight("bad", "stale", age, target, f"{what} (target {target_text})")
    if age > AMBER_FRACTION * target:
        return RpoLight("warn", "due soon", age, target, f"within target {target_text}, close to it")
    return RpoLight("ok", "ok", age, target, f"within target {target_text}")


def quota_text(quota: int | None) -> str:
    """A quota as the settings form shows it: ``none``, ``500G``, ``1536M`` (exact), or bytes."""
    if quota is None:
        return "none"
    for suffix, size in _QUOTA_UNITS:
        if quota % size == 0:
            return f"{quota // size}{suffix}"
    return str(quota)


def client_rows(*, include_removed: bool = True) -> list[tuple[ClientOverview, RpoLight]]:
    """Clients (removed ones last) with their RPO lights, for the list page and the dashboard."""
    store = state.store()
    if not service.list_clients(store, include_removed=include_removed):
        return []  # no ZFS needed to say there is nothing
    found = overview.overviews(store, state.zfs(), include_removed=include_removed)
    found.sort(key=lambda ov: (not ov.client.active, ov.client.name))
    return [(ov, rpo_light(ov)) for ov in found]


def dashboard_context() -> dict[str, Any]:
    """The dashboard's clients (active ones) against their RPO, and the active alerts."""
    rows = client_rows(include_removed=False)
    return {"client_rows": rows, "alerts": alerts.list_alerts(state.store(), active_only=True, limit=20)}


def to_job(job_id: int) -> Response:
    """Send the browser to the job's page, where its progress bar follows it (htmx: by HX-Redirect)."""
    target = url_for("jobs.show", job_id=job_id)
    if is_htmx():
        response = Response(status=204)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)  # type: ignore[return-value]


# -- browse sessions and downloads ---------------------------------------------------------------------------


def own_session(sid: str, client: str | None = None) -> BrowseSession:
    """The browse session ``sid`` if the person asking opened it (and it is of ``client``); anyone else is told
    it does not exist, as is everyone once it has expired."""
    if not isinstance(sid, str) or not 1 <= len(sid) <= 64:
        raise BrowseSessionNotFound("?")
    session = browse.get_session(state.store(), sid)
    if session.created_by != state.actor() or (client is not None and session.client != client):
        raise BrowseSessionNotFound(sid)
    return session


def shown(text: str) -> str:
    """A name from the disk as text that can be shown and sent (bytes that are not UTF-8 become U+FFFD)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def is_utf8(text: str) -> bool:
    """Whether ``text`` (a name from the disk) is valid UTF-8, so that a browser can send it back unchanged."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def attachment(filename: str) -> str:
    """A Content-Disposition for a download: an ASCII fallback name and the exact name (RFC 6266, RFC 5987).
    Nothing from the name can end the header or add another (quotes, control characters, CR/LF)."""
    name = shown(filename) or "download"
    fallback = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.+ ") else "_" for ch in name)[:150]
    fallback = fallback.strip(" .") or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _streamed(chunks: Iterator[bytes], mimetype: str, filename: str) -> Response:
    response = Response(stream_with_context(chunks), mimetype=mimetype)
    response.headers["Content-Disposition"] = attachment(filename)
    response.headers["Cache-Control"] = "no-store"
    return response


def file_response(session: BrowseSession, path: str) -> Response:
    """One file of the session's point, streamed chunk by chunk (raises before the first byte on a bad path)."""
    got = browse.stream_file(state.store(), session.id, path)
    response = _streamed(got.chunks, "application/octet-stream", got.name)
    response.headers["Content-Length"] = str(got.size)
    response.last_modified = datetime.datetime.fromtimestamp(got.mtime, datetime.UTC)
    return response


def zip_response(session: BrowseSession, paths: list[str], *, compress: bool) -> Response:
    """Files and folders of the session's point as a zip, streamed (no size cap, never held in memory)."""
    chunks = browse.stream_zip(state.store(), session.id, paths, compress=compress)
    name = download.zip_name(session.client, session.snapshot.split("@", 1)[1], paths)
    return _streamed(chunks, "application/zip", name)
