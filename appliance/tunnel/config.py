"""The tunnel's settings: the MSP jump host, the pinned host key, the alert delay, and the on-site switch that
allows or blocks remote sessions. Stored as JSON in the ``settings`` table; validated strictly, because the host
and user name reach ``ssh``'s command line."""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from appliance.store import Store
from appliance.system import settings
from appliance.system.errors import InvalidInput

CONFIG_KEY = "tunnel.config"
SWITCH_KEY = "tunnel.remote_sessions"
DEFAULT_SSH_PORT = 22
DEFAULT_LOCAL_PORT = 8444  # the web UI's loopback listener the jump host's port leads to
# The tunnel listener port the web server was started with (set by ``bulwark run``/``bulwark web`` for its
# workers): requests arriving there are remote even while the configured port is being changed.
LISTENER_ENV = "BULWARK_TUNNEL_LISTENER"
DEFAULT_ALERT_AFTER = 15 * 60
MIN_ALERT_AFTER = 1
MAX_ALERT_AFTER = 7 * 86400

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


def check_host(host: str) -> str:
    """A DNS name or an IP address; never anything ``ssh`` could read as an option."""
    if not isinstance(host, str) or not host or len(host) > 253:
        raise InvalidInput("the jump host must be a host name or an IP address")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(host) or host.replace(".", "").isdigit():
        raise InvalidInput(f"jump host {host!r} must be a host name (letters, digits, '-', '.') or an IP address")
    return host.lower()


def check_user(user: str) -> str:
    if not isinstance(user, str) or not _USER.fullmatch(user):
        raise InvalidInput(
            f"user {user!r} must be 1 to 32 lowercase letters, digits, '_', '.' or '-', starting with a letter or '_'"
        )
    return user


def check_remote_port(port: int) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 1024 <= port <= 65535:
        raise InvalidInput(f"remote port {port!r} must be a number from 1024 to 65535 (unprivileged on the jump host)")
    return port


def check_alert_after(seconds: int) -> int:
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not MIN_ALERT_AFTER <= seconds <= MAX_ALERT_AFTER:
        raise InvalidInput("the down-alert delay must be from 1 second to 7 days")
    return seconds


@dataclass(frozen=True)
class TunnelConfig:
    """Where the tunnel goes. ``host_key`` is the pinned jump host key (``ssh-ed25519 AAAA…``); until one is
    pinned the tunnel does not start. ``pending_host_key`` is a scanned key waiting for confirmation."""

    host: str
    user: str
    remote_port: int
    port: int = DEFAULT_SSH_PORT
    enabled: bool = True
    alert_after: int = DEFAULT_ALERT_AFTER
    host_key: str | None = None
    pending_host_key: str | None = None
    changed_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TunnelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def identity(self) -> tuple[object, ...]:
        """What a running tunnel depends on: a change restarts it."""
        return (self.host, self.port, self.user, self.remote_port, self.host_key)

    def destination(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def load(store: Store) -> TunnelConfig | None:
    data = store.get_setting(CONFIG_KEY)
    return None if data is None else TunnelConfig.from_json(data)


def save(store: Store, config: TunnelConfig) -> TunnelConfig:
    stamped = replace(config, changed_at=time.time())
    store.set_setting(CONFIG_KEY, stamped.to_json())
    return stamped


def configure(
    store: Store,
    *,
    host: str,
    user: str,
    remote_port: int,
    port: int = DEFAULT_SSH_PORT,
    alert_after: int | None = None,
    listen_port: int | None = None,
) -> TunnelConfig:
    """Set the jump host (validated). A new host or port forgets the pinned key: it must be confirmed again.
    ``listen_port`` chooses the web UI's tunnel listener (default: the one set already, else 8444)."""
    host = check_host(host)
    user = check_user(user)
    check_remote_port(remote_port)
    settings.check_port(port)
    if alert_after is not None:
        check_alert_after(alert_after)
    if listen_port is not None:
        check_listen_port(store, listen_port)
    current = load(store)
    if current is None:
        new = TunnelConfig(host=host, user=user, remote_port=remote_port, port=port)
    else:
        same_host = current.host == host and current.port == port
        new = replace(
            current,
            host=host,
            user=user,
            remote_port=remote_port,
            port=port,
            host_key=current.host_key if same_host else None,
            pending_host_key=current.pending_host_key if same_host else None,
        )
    if alert_after is not None:
        new = replace(new, alert_after=alert_after)
    if listen_port is not None:
        settings.update(store, tunnel_listen_port=listen_port)
    ensure_local_listener(store)
    return save(store, new)


def check_listen_port(store: Store, port: int) -> int:
    """The tunnel listener's port: a valid port that is not the web UI's own (the listener marks every request
    arriving on it as remote) and, unless it is the listener already, that no other program holds."""
    settings.check_port(port)
    appliance = settings.load(store)
    if appliance is not None and port == appliance.web_port:
        raise InvalidInput(f"the tunnel listener cannot be the web UI's port {port}; choose another port")
    if (appliance is None or port != appliance.tunnel_listen_port) and port_taken(port):
        raise InvalidInput(f"port {port} on 127.0.0.1 is used by another program; choose another listener port")
    return port


def port_taken(port: int) -> bool:
    """Whether 127.0.0.1:``port`` cannot be bound now (another program listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def ensure_local_listener(store: Store) -> int:
    """The web UI's tunnel listener port, chosen (8444) if none is set yet. ``bulwark run`` binds it."""
    appliance = settings.load(store)
    if appliance is None:
        raise InvalidInput("the appliance is not initialized")
    if appliance.tunnel_listen_port is None:
        appliance = settings.update(store, tunnel_listen_port=DEFAULT_LOCAL_PORT)
    assert appliance.tunnel_listen_port is not None
    return appliance.tunnel_listen_port


def local_port(store: Store) -> int | None:
    appliance = settings.load(store)
    return None if appliance is None else appliance.tunnel_listen_port


def update(store: Store, **changes: Any) -> TunnelConfig:
    current = load(store)
    if current is None:
        from appliance.tunnel.errors import TunnelNotConfigured

        raise TunnelNotConfigured()
    if "alert_after" in changes:
        check_alert_after(changes["alert_after"])
    return save(store, replace(current, **changes))


def remove(store: Store) -> None:
    with store.write() as conn:
        conn.execute("DELETE FROM settings WHERE key = ?", (CONFIG_KEY,))


# -- the on-site switch ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteSwitch:
    allowed: bool = True
    changed_by: str | None = None
    changed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def remote_switch(store: Store) -> RemoteSwitch:
    data = store.get_setting(SWITCH_KEY)
    return RemoteSwitch() if not data else RemoteSwitch(**data)


def remote_sessions_allowed(store: Store) -> bool:
    return remote_switch(store).allowed


def set_remote_sessions(store: Store, allowed: bool, *, by: str) -> RemoteSwitch:
    """Allow or block every request arriving through the tunnel. Callers check that the change is made on site."""
    switch = RemoteSwitch(allowed=bool(allowed), changed_by=by, changed_at=time.time())
    store.set_setting(SWITCH_KEY, switch.to_dict())
    return switch
