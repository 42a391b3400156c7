"""What people do with remote access (the CLI, the web UI and the API all call these): configure the jump host,
pin its key (a scanned key confirmed by its fingerprint, or a pasted key), switch the tunnel on or off, ask for a
reconnect now, and allow or block remote sessions on site."""

from __future__ import annotations

import time

from appliance.store import Store
from appliance.system import settings
from appliance.system.paths import Paths
from appliance.system.runner import Runner
from appliance.tunnel import config as tunnel_config
from appliance.tunnel import keys
from appliance.tunnel.config import TunnelConfig
from appliance.tunnel.errors import (
    HostKeyMismatch,
    NoPendingHostKey,
    OnSiteOnly,
    RemoteSwitchLocked,
    TunnelNotConfigured,
)
from appliance.tunnel.state import request_reconnect


def require_on_site(remote: bool) -> None:
    """Where the tunnel goes and which key it trusts are changed on site only: a session through the tunnel
    could otherwise point the tunnel elsewhere or pin a key of its choosing."""
    if remote:
        raise OnSiteOnly()


def _require(store: Store) -> TunnelConfig:
    cfg = tunnel_config.load(store)
    if cfg is None:
        raise TunnelNotConfigured()
    return cfg


def key_comment(store: Store) -> str:
    appliance = settings.load(store)
    return f"bulwark@{appliance.hostname if appliance else 'appliance'}"


def configure(
    store: Store,
    paths: Paths,
    runner: Runner,
    *,
    host: str,
    user: str,
    remote_port: int,
    port: int = tunnel_config.DEFAULT_SSH_PORT,
    alert_after: int | None = None,
    host_key: str | None = None,
    listen_port: int | None = None,
) -> TunnelConfig:
    """Save the jump host, make the appliance's key pair if it has none, and pin ``host_key`` if one is pasted.
    Everything is validated before anything is written."""
    tunnel_config.check_host(host)
    tunnel_config.check_user(user)
    pasted = keys.parse_public_key(host_key) if host_key else None
    if listen_port is not None:
        tunnel_config.check_listen_port(store, listen_port)
    keys.ensure_key_pair(paths, runner, key_comment(store))
    cfg = tunnel_config.configure(
        store,
        host=host,
        user=user,
        remote_port=remote_port,
        port=port,
        alert_after=alert_after,
        listen_port=listen_port,
    )
    if pasted is not None:
        cfg = tunnel_config.update(store, host_key=pasted.bare(), pending_host_key=None)
    return cfg


def scan(store: Store, runner: Runner) -> keys.PublicKey:
    """Ask the jump host for its key and keep it as pending (shown as a fingerprint to confirm)."""
    cfg = _require(store)
    key = keys.scan_host_key(runner, cfg.host, cfg.port)
    tunnel_config.update(store, pending_host_key=key.bare())
    return key


def trust(store: Store, fingerprint: str) -> keys.PublicKey:
    """Pin the pending key if ``fingerprint`` is its fingerprint (the person compared it with the MSP's)."""
    wanted = keys.check_fingerprint(fingerprint)
    cfg = _require(store)
    if not cfg.pending_host_key:
        raise NoPendingHostKey()
    pending = keys.parse_public_key(cfg.pending_host_key)
    if pending.fingerprint != wanted:
        raise HostKeyMismatch(pending.fingerprint, wanted)
    tunnel_config.update(store, host_key=pending.bare(), pending_host_key=None)
    return pending


def scan_and_trust(store: Store, runner: Runner, fingerprint: str) -> keys.PublicKey:
    """Scan, then pin only if the key shown has the expected fingerprint (given beforehand by the MSP)."""
    wanted = keys.check_fingerprint(fingerprint)
    key = scan(store, runner)
    if key.fingerprint != wanted:
        tunnel_config.update(store, pending_host_key=None)
        raise HostKeyMismatch(key.fingerprint, wanted)
    return trust(store, wanted)


def pin(store: Store, key_text: str) -> keys.PublicKey:
    """Pin a pasted key (``ssh-ed25519 AAAA…`` or a known_hosts line)."""
    key = keys.parse_public_key(key_text)
    _require(store)
    tunnel_config.update(store, host_key=key.bare(), pending_host_key=None)
    return key


def set_enabled(store: Store, enabled: bool) -> TunnelConfig:
    return tunnel_config.update(store, enabled=bool(enabled))


def set_alert_after(store: Store, seconds: int) -> TunnelConfig:
    return tunnel_config.update(store, alert_after=seconds)


def reconnect(store: Store) -> None:
    _require(store)
    request_reconnect(store, time.time())


def remove(store: Store) -> None:
    """Forget the jump host (the key pair stays, so the MSP's line stays valid if it is configured again)."""
    _require(store)
    tunnel_config.remove(store)


def set_remote_sessions(store: Store, allowed: bool, *, by: str, remote: bool) -> tunnel_config.RemoteSwitch:
    """The on-site switch. ``remote`` is whether the request came through the tunnel: then it is refused."""
    if remote:
        raise RemoteSwitchLocked()
    return tunnel_config.set_remote_sessions(store, allowed, by=by)


__all__ = [
    "configure",
    "pin",
    "reconnect",
    "remove",
    "scan",
    "scan_and_trust",
    "set_alert_after",
    "set_enabled",
    "set_remote_sessions",
    "trust",
]
