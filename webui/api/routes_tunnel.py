"""API: MSP remote access — the tunnel's status, its configuration, the appliance's public key, pinning the jump
host's key, on/off/reconnect, and the on-site switch for remote sessions. Changes are refused through the tunnel
itself (except a reconnect)."""

from __future__ import annotations

from typing import Any

from flask import g, request
from spectree import Response

from appliance.system.errors import InvalidInput
from appliance.system.runner import local_runner
from appliance.tunnel import config as tunnel_config
from appliance.tunnel import keys, service, status
from appliance.tunnel.errors import TunnelNotConfigured
from webui import state
from webui.api import bp, spec
from webui.api.schemas import Done, ErrorBody
from webui.api.schemas_tunnel import (
    HostKeyOut,
    PublicKeyOut,
    RemoteSessionsOut,
    RemoteSessionsRequest,
    TrustRequest,
    TunnelConfigure,
    TunnelStatus,
)
from webui.permissions import requires

ERRORS = {"HTTP_400": ErrorBody, "HTTP_401": ErrorBody, "HTTP_403": ErrorBody, "HTTP_404": ErrorBody}
CHANGE_ERRORS = {**ERRORS, "HTTP_409": ErrorBody, "HTTP_502": ErrorBody}


def remote() -> bool:
    identity = g.get("identity")
    return bool(identity is not None and identity.remote)


def _status() -> TunnelStatus:
    return TunnelStatus.model_validate(status.report(state.store(), state.paths()))


@bp.route("/tunnel", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=TunnelStatus, **ERRORS), tags=["remote access"])
def tunnel_status() -> Any:
    """The tunnel's state (connected, connecting, down, disabled), last error, counters and configuration."""
    return _status()


@bp.route("/tunnel", methods=["POST"])
@requires("tunnel.manage")
@spec.validate(json=TunnelConfigure, resp=Response(HTTP_200=TunnelStatus, **CHANGE_ERRORS), tags=["remote access"])
def tunnel_configure() -> Any:
    """Set the jump host (on site only); makes the appliance's key pair the first time and pins a pasted key."""
    service.require_on_site(remote())
    body: TunnelConfigure = request.context.json  # type: ignore[attr-defined]
    cfg = service.configure(
        state.store(),
        state.paths(),
        local_runner(),
        host=body.host,
        user=body.user,
        remote_port=body.remote_port,
        port=body.port,
        alert_after=body.alert_after,
        host_key=body.host_key,
    )
    state.audit("tunnel.configure", cfg.destination(), remote_port=cfg.remote_port)
    return _status()


@bp.route("/tunnel", methods=["DELETE"])
@requires("tunnel.manage")
@spec.validate(resp=Response(HTTP_200=Done, **CHANGE_ERRORS), tags=["remote access"])
def tunnel_remove() -> Any:
    """Forget the jump host (on site only); the key pair is kept."""
    service.require_on_site(remote())
    service.remove(state.store())
    state.audit("tunnel.remove")
    return Done()


@bp.route("/tunnel/pubkey", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=PublicKeyOut, **ERRORS), tags=["remote access"])
def tunnel_pubkey() -> Any:
    """The appliance's public key and the restricted authorized_keys line for the jump host."""
    if not keys.has_key_pair(state.paths()):
        return PublicKeyOut(key=None, fingerprint=None, authorized_keys_line=None)
    key = keys.public_key(state.paths())
    cfg = tunnel_config.load(state.store())
    line = keys.authorized_keys_line(key, cfg.remote_port) if cfg else None
    return PublicKeyOut(key=key.line(), fingerprint=key.fingerprint, authorized_keys_line=line)


@bp.route("/tunnel/host-key/scan", methods=["POST"])
@requires("tunnel.manage")
@spec.validate(resp=Response(HTTP_200=HostKeyOut, **CHANGE_ERRORS), tags=["remote access"])
def tunnel_scan() -> Any:
    """Ask the jump host for its key; it waits as pending until its fingerprint is confirmed (on site only)."""
    service.require_on_site(remote())
    key = service.scan(state.store(), local_runner())
    state.audit("tunnel.host_key.scan", key.fingerprint)
    return HostKeyOut(type=key.type, fingerprint=key.fingerprint, key=key.bare())


@bp.route("/tunnel/host-key/trust", methods=["POST"])
@requires("tunnel.manage")
@spec.validate(json=TrustRequest, resp=Response(HTTP_200=HostKeyOut, **CHANGE_ERRORS), tags=["remote access"])
def tunnel_trust() -> Any:
    """Pin the pending key by its ``fingerprint``, or a pasted ``key`` (on site only)."""
    service.require_on_site(remote())
    body: TrustRequest = request.context.json  # type: ignore[attr-defined]
    if (body.fingerprint is None) == (body.key is None):
        raise InvalidInput("send either 'fingerprint' (of the scanned key) or 'key' (pasted)")
    if body.fingerprint is not None:
        key = service.trust(state.store(), body.fingerprint)
    else:
        key = service.pin(state.store(), body.key or "")
    state.audit("tunnel.host_key.pin", key.fingerprint)
    return HostKeyOut(type=key.type, fingerprint=key.fingerprint, key=key.bare())


def _switch(enabled: bool) -> Any:
    service.require_on_site(remote())
    service.set_enabled(state.store(), enabled)
    state.audit("tunnel.enable" if enabled else "tunnel.disable")
    return _status()


@bp.route("/tunnel/enable", methods=["POST"])
@requires("tunnel.manage")
@spec.validate(resp=Response(HTTP_200=TunnelStatus, **CHANGE_ERRORS), tags=["remote access"])
def tunnel_enable() -> Any:
    """Switch the tunnel on (on site only)."""
    return _switch(True)


@bp.route("/tunnel/disable", methods=["POST"])
@requires("tunnel.manage")
@spec.validate(resp=Response(HTTP_200=TunnelStatus, **CHANGE_ERRORS), tags=["remote access"])
def tunnel_disable() -> Any:
    """Switch the tunnel off (on site only)."""
    return _switch(False)


@bp.route("/tunnel/reconnect", methods=["POST"])
@requires("tunnel.manage")
@spec.validate(resp=Response(HTTP_200=Done, **CHANGE_ERRORS), tags=["remote access"])
def tunnel_reconnect() -> Any:
    """Try to connect now instead of at the end of the backoff."""
    if tunnel_config.load(state.store()) is None:
        raise TunnelNotConfigured()
    service.reconnect(state.store())
    state.audit("tunnel.reconnect")
    return Done()


@bp.route("/tunnel/remote-sessions", methods=["POST"])
@requires("remote.switch")
@spec.validate(
    json=RemoteSessionsRequest, resp=Response(HTTP_200=RemoteSessionsOut, **CHANGE_ERRORS), tags=["remote access"]
)
def tunnel_remote_sessions() -> Any:
    """The on-site switch: allow or block every request through the tunnel. Refused through the tunnel."""
    body: RemoteSessionsRequest = request.context.json  # type: ignore[attr-defined]
    switch = service.set_remote_sessions(state.store(), body.allowed, by=state.actor(), remote=remote())
    state.audit("tunnel.remote_sessions", "allow" if body.allowed else "block")
    return RemoteSessionsOut.model_validate(switch.to_dict())
