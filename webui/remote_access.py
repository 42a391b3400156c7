"""The Remote access page: the tunnel's live state, the jump host and its pinned key, the line for the MSP, and
the on-site switch for remote sessions. Changes are made on site only; a remote session sees the page read-only
(it may ask for a reconnect)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, g, redirect, request, url_for

from appliance.system.durations import format_duration, parse_duration
from appliance.system.errors import BulwarkError, InvalidInput
from appliance.system.runner import local_runner
from appliance.tunnel import service, status
from webui import state
from webui.permissions import requires
from webui.render import render

bp = Blueprint("remote_access", __name__, url_prefix="/remote-access")


def _remote() -> bool:
    identity = g.get("identity")
    return bool(identity is not None and identity.remote)


def _page(error: str | None = None, message: str | None = None, form: dict[str, str] | None = None) -> str:
    report = status.report(state.store(), state.paths())
    return render(
        "remote_access.html",
        "_tunnel_status.html",
        t=report,
        now=time.time(),
        on_site=not _remote(),
        error=error,
        message=message,
        form=form or {},
        alert_after=format_duration(report["jump_host"]["alert_after"]) if report["jump_host"] else "15m",
    )


@bp.route("/", methods=["GET"])
@requires("view")
def index() -> Any:
    return _page(message=request.args.get("done"))


def _done(message: str) -> Any:
    return redirect(url_for("remote_access.index", done=message))


def _port(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not a number") from None


@bp.route("/configure", methods=["POST"])
@requires("tunnel.manage")
def configure() -> Any:
    form = {k: request.form.get(k, "").strip() for k in ("host", "port", "user", "remote_port", "alert_after")}
    try:
        service.require_on_site(_remote())
        cfg = service.configure(
            state.store(),
            state.paths(),
            local_runner(),
            host=form["host"],
            user=form["user"],
            remote_port=_port(form["remote_port"], "remote port"),
            port=_port(form["port"] or "22", "SSH port"),
            alert_after=parse_duration(form["alert_after"], what="alert delay") if form["alert_after"] else None,
        )
    except BulwarkError as exc:
        return _page(error=f"{exc.message} — {exc.hint}", form=form), exc.http_status
    state.audit("tunnel.configure", cfg.destination(), remote_port=cfg.remote_port)
    if cfg.host_key:
        return _done("Saved.")
    return _done("Saved. Now check the jump host's key: press 'Ask the jump host for its key'.")


@bp.route("/scan", methods=["POST"])
@requires("tunnel.manage")
def scan() -> Any:
    try:
        service.require_on_site(_remote())
        key = service.scan(state.store(), local_runner())
    except BulwarkError as exc:
        return _page(error=f"{exc.message} — {exc.hint}"), exc.http_status
    state.audit("tunnel.host_key.scan", key.fingerprint)
    return _done("The jump host showed its key: compare the fingerprint below with the one your MSP gave you.")


@bp.route("/trust", methods=["POST"])
@requires("tunnel.manage")
def trust() -> Any:
    pasted = request.form.get("host_key", "").strip()
    try:
        service.require_on_site(_remote())
        if pasted:
            key = service.pin(state.store(), pasted)
        else:
            key = service.trust(state.store(), request.form.get("fingerprint", ""))
    except BulwarkError as exc:
        return _page(error=f"{exc.message} — {exc.hint}"), exc.http_status
    state.audit("tunnel.host_key.pin", key.fingerprint)
    return _done(f"Jump host key {key.fingerprint} pinned.")


@bp.route("/switch", methods=["POST"])
@requires("tunnel.manage")
def switch() -> Any:
    enabled = request.form.get("enabled") == "1"
    try:
        service.require_on_site(_remote())
        service.set_enabled(state.store(), enabled)
    except BulwarkError as exc:
        return _page(error=f"{exc.message} — {exc.hint}"), exc.http_status
    state.audit("tunnel.enable" if enabled else "tunnel.disable")
    return _done("Remote access switched on." if enabled else "Remote access switched off.")


@bp.route("/reconnect", methods=["POST"])
@requires("tunnel.manage")
def reconnect() -> Any:
    try:
        service.reconnect(state.store())
    except BulwarkError as exc:
        return _page(error=f"{exc.message} — {exc.hint}"), exc.http_status
    state.audit("tunnel.reconnect")
    return _done("Reconnecting now.")


@bp.route("/remote-sessions", methods=["POST"])
@requires("remote.switch")
def remote_sessions() -> Any:
    allowed = request.form.get("allowed") == "1"
    try:
        service.set_remote_sessions(state.store(), allowed, by=state.actor(), remote=_remote())
    except BulwarkError as exc:
        return _page(error=f"{exc.message} — {exc.hint}"), exc.http_status
    state.audit("tunnel.remote_sessions", "allow" if allowed else "block")
    return _done("Remote sessions allowed." if allowed else "Remote sessions blocked: nothing gets through the tunnel.")
