"""Notification channels: e-mail over SMTP, webhooks and syslog, each with a level filter and quiet hours.

A channel's settings are validated here into a plain dict (``config``); its one secret (the SMTP password or
the webhook's HMAC key) is kept apart, in its own column, and never leaves this module in full: what the UI,
the API and the CLI show is :meth:`Channel.to_dict`, which says only whether a secret is set.

Quiet hours are a window such as ``22:00-07:00`` or ``mon-fri 19:00-08:00`` in the appliance's time zone.
During them only critical alerts go out at once; the others are held until the window ends, and dropped then
if nobody needs them any more (the alert cleared, was acknowledged or snoozed meanwhile).
"""

from __future__ import annotations

import json
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from appliance import schedules
from appliance.alerts.classes import LEVELS
from appliance.store import Store
from appliance.system.errors import AlreadyExists, InvalidInput, NotFound

KINDS = ("email", "webhook", "syslog")
NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
_EMAIL = re.compile(r"[^@\s<>,;\"']+@[^@\s<>,;\"']+\.[^@\s<>,;\"']+")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
SECURITY = ("starttls", "tls", "none")
FACILITIES = {
    "kern": 0, "user": 1, "daemon": 3, "auth": 4, "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip
MASK = "********"
MAX_QUIET_SEARCH = 8 * 86400


class ChannelNotFound(NotFound):
    """There is no alert channel {}."""

    code = "channel_not_found"
    hint = "List channels with 'bulwark channel list' or on the Alerts page."


class InvalidChannel(InvalidInput):
    """Invalid channel setting: {}"""

    code = "invalid_channel"


@dataclass(frozen=True)
class Channel:
    id: int
    name: str
    kind: str
    enabled: bool
    min_level: str
    notify_cleared: bool
    quiet_hours: str | None
    config: dict[str, Any]
    secret: str | None = field(repr=False)  # never in repr, logs or to_dict
    created_at: float
    updated_at: float
    last_success_at: float | None
    last_failure_at: float | None
    last_error: str | None

    def accepts(self, level: str) -> bool:
        return LEVELS.index(level) >= LEVELS.index(self.min_level)

    def quiet_until(self, now: float, tz: str) -> float | None:
        """The end of the quiet hours ``now`` falls in, or None outside them."""
        return quiet_end(schedules.parse_window(self.quiet_hours), now, tz)

    def target(self) -> str:
        """Where it delivers, for lists (no secret in it)."""
        c = self.config
        if self.kind == "email":
            return ", ".join(c["to"])
        if self.kind == "webhook":
            return str(c["url"])
        return f"{c['transport']}://{c['host']}:{c['port']}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "enabled": self.enabled,
            "min_level": self.min_level,
            "notify_cleared": self.notify_cleared,
            "quiet_hours": self.quiet_hours,
            "config": dict(self.config),
            "secret": MASK if self.secret else None,
            "secret_set": bool(self.secret),
            "target": self.target(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_success_at": self.last_success_at,
            "last_failure_at": self.last_failure_at,
            "last_error": self.last_error,
        }


def quiet_end(window: schedules.Window | None, now: float, tz: str) -> float | None:
    if window is None or not window.contains(now, tz):
        return None
    at = (int(now) // 60 + 1) * 60
    while at - now < MAX_QUIET_SEARCH:
        if not window.contains(at, tz):
            return float(at)
        at += 60
    return now + MAX_QUIET_SEARCH  # quiet all the time: hold for at most this long


# -- validation ----------------------------------------------------------------------------------------------


def _text(config: dict[str, Any], key: str, *, required: bool = True, limit: int = 255) -> str:
    value = config.get(key)
    if value is None or value == "":
        if required:
            raise InvalidChannel(f"{key} is required")
        return ""
    if not isinstance(value, str) or len(value) > limit or any(ord(ch) < 32 for ch in value):
        raise InvalidChannel(f"{key} must be text of at most {limit} characters, on one line")
    return value.strip()


def _port(config: dict[str, Any], default: int) -> int:
    value = config.get("port", default)
    if value in (None, ""):
        return default
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise InvalidChannel(f"port {value!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise InvalidChannel(f"port {port} is not between 1 and 65535")
    return port


def _bool(config: dict[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if isinstance(value, bool):
        return value
    if value in ("on", "true", "1", "yes", 1):
        return True
    if value in ("", "off", "false", "0", "no", 0, None):
        return False
    raise InvalidChannel(f"{key} must be true or false")


def _host(config: dict[str, Any]) -> str:
    host = _text(config, "host")
    if not _HOST.fullmatch(host):
        raise InvalidChannel(f"host {host!r} is not a host name or address")
    return host


def _ca(config: dict[str, Any]) -> str:
    pem = config.get("ca_pem") or ""
    if not pem:
        return ""
    if not isinstance(pem, str) or len(pem) > 64 * 1024 or "-----BEGIN CERTIFICATE-----" not in pem:
        raise InvalidChannel("ca_pem must be a PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise InvalidChannel(f"ca_pem is not a certificate that can be trusted: {exc}") from None
    return pem.strip() + "\n"


def _addresses(value: Any, key: str) -> list[str]:
    items = value if isinstance(value, list) else re.split(r"[,\s;]+", value or "") if isinstance(value, str) else None
    if items is None:
        raise InvalidChannel(f"{key} must be a list of e-mail addresses")
    out = [a.strip() for a in items if isinstance(a, str) and a.strip()]
    if not out:
        raise InvalidChannel(f"{key} needs at least one e-mail address")
    for address in out:
        if not _EMAIL.fullmatch(address):
            raise InvalidChannel(f"{address!r} is not an e-mail address")
    return out[:20]


def check_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The channel's settings, validated and normalized (no secret among them)."""
    if not isinstance(config, dict):
        raise InvalidChannel("the settings must be an object")
    if kind == "email":
        security = config.get("security") or "starttls"
        if security not in SECURITY:
            raise InvalidChannel(f"security must be one of {', '.join(SECURITY)}")
        sender = _text(config, "from")
        if not _EMAIL.fullmatch(sender):
            raise InvalidChannel(f"from {sender!r} is not an e-mail address")
        return {
            "host": _host(config),
            "port": _port(config, 465 if security == "tls" else 587),
            "security": security,
            "username": _text(config, "username", required=False),
            "from": sender,
            "to": _addresses(config.get("to"), "to"),
            "verify_tls": _bool(config, "verify_tls", True),
            "ca_pem": _ca(config),
        }
    if kind == "webhook":
        url = _text(config, "url", limit=2000)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidChannel(f"url {url!r} must be an http:// or https:// address")
        return {"url": url, "verify_tls": _bool(config, "verify_tls", True), "ca_pem": _ca(config)}
    if kind == "syslog":
        transport = config.get("transport") or "udp"
        if transport not in ("udp", "tcp"):
            raise InvalidChannel("transport must be udp or tcp")
        facility = config.get("facility") or "local0"
        if facility not in FACILITIES:
            raise InvalidChannel(f"facility must be one of {', '.join(FACILITIES)}")
        return {"host": _host(config), "port": _port(config, 514), "transport": transport, "facility": facility}
    raise InvalidChannel(f"kind {kind!r} must be one of {', '.join(KINDS)}")


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidChannel(f"name {name!r} must be 1-32 lowercase letters, digits or '-', starting with a letter")
    return name


def check_level(level: Any) -> str:
    if level not in LEVELS:
        raise InvalidChannel(f"level {level!r} must be one of {', '.join(LEVELS)}")
    return str(level)


def check_quiet_hours(text: Any) -> str | None:
    try:
        window = schedules.parse_window(text)
    except InvalidInput as exc:
        raise InvalidChannel(f"quiet hours: {exc.args[-1] if exc.args else exc}") from None
    return None if window is None else window.text


def check_secret(secret: Any) -> str:
    if not isinstance(secret, str) or not 1 <= len(secret) <= 512 or any(ord(ch) < 32 for ch in secret):
        raise InvalidChannel("the secret must be 1 to 512 characters on one line")
    return secret


# -- storage -------------------------------------------------------------------------------------------------


def _channel(row: Any) -> Channel:
    return Channel(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        enabled=bool(row["enabled"]),
        min_level=row["min_level"],
        notify_cleared=bool(row["notify_cleared"]),
        quiet_hours=row["quiet_hours"],
        config=json.loads(row["config"]),
        secret=row["secret"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_success_at=row["last_success_at"],
        last_failure_at=row["last_failure_at"],
        last_error=row["last_error"],
    )


def from_row(row: Any) -> Channel:
    return _channel(row)


def list_channels(store: Store) -> list[Channel]:
    return [_channel(r) for r in store.query("SELECT * FROM alert_channels ORDER BY name")]


def get(store: Store, ref: str | int) -> Channel:
    """A channel by name or id."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        row = store.query_one("SELECT * FROM alert_channels WHERE id = ?", (int(ref),))
    else:
        row = store.query_one("SELECT * FROM alert_channels WHERE name = ?", (ref,))
    if row is None:
        raise ChannelNotFound(ref)
    return _channel(row)


def create(
    store: Store,
    name: str,
    kind: str,
    config: dict[str, Any],
    *,
    secret: str | None = None,
    min_level: str = "warning",
    notify_cleared: bool = True,
    quiet_hours: str | None = None,
    enabled: bool = True,
    now: float | None = None,
) -> Channel:
    """Add a channel (everything is validated before anything is written)."""
    name = check_name(name)
    checked = check_config(kind, config)
    level = check_level(min_level)
    quiet = check_quiet_hours(quiet_hours)
    key = check_secret(secret) if secret else None
    at = time.time() if now is None else now
    with store.write() as conn:
        if conn.execute("SELECT 1 FROM alert_channels WHERE name = ?", (name,)).fetchone():
            raise AlreadyExists(f"alert channel {name}")
        cur = conn.execute(
            "INSERT INTO alert_channels (name, kind, enabled, min_level, notify_cleared, quiet_hours, config, "
            "secret, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, kind, int(enabled), level, int(notify_cleared), quiet, json.dumps(checked), key, at, at),
        )
        channel_id = int(cur.lastrowid or 0)
    return get(store, channel_id)


UNCHANGED = object()


def update(
    store: Store,
    ref: str | int,
    *,
    config: dict[str, Any] | None = None,
    secret: Any = UNCHANGED,
    min_level: str | None = None,
    notify_cleared: bool | None = None,
    quiet_hours: Any = UNCHANGED,
    enabled: bool | None = None,
    now: float | None = None,
) -> Channel:
    """Change a channel. ``secret``: a new one, ``None`` to remove it, or left out to keep it."""
    channel = get(store, ref)
    checked = check_config(channel.kind, {**channel.config, **config}) if config is not None else channel.config
    level = check_level(min_level) if min_level is not None else channel.min_level
    quiet = check_quiet_hours(quiet_hours) if quiet_hours is not UNCHANGED else channel.quiet_hours
    key = channel.secret if secret is UNCHANGED else (check_secret(secret) if secret else None)
    with store.write() as conn:
        conn.execute(
            "UPDATE alert_channels SET config = ?, secret = ?, min_level = ?, notify_cleared = ?, quiet_hours = ?, "
            "enabled = ?, updated_at = ? WHERE id = ?",
            (
                json.dumps(checked),
                key,
                level,
                int(channel.notify_cleared if notify_cleared is None else notify_cleared),
                quiet,
                int(channel.enabled if enabled is None else enabled),
                time.time() if now is None else now,
                channel.id,
            ),
        )
    return get(store, channel.id)


def delete(store: Store, ref: str | int) -> Channel:
    """Remove a channel with its queued notifications (its failure alert, if any, clears)."""
    from appliance.alerts import engine  # (engine → outbox → channels: imported late, at call time)

    channel = get(store, ref)
    with store.write() as conn:
        conn.execute("DELETE FROM alert_channels WHERE id = ?", (channel.id,))
    engine.clear(store, failure_key(channel.id))
    return channel


def failure_key(channel_id: int) -> str:
    """The dedup key of the alert a failing channel raises."""
    return f"channel:{channel_id}"


def record_result(store: Store, channel_id: int, error: str | None, at: float) -> None:
    with store.write() as conn:
        if error is None:
            conn.execute(
                "UPDATE alert_channels SET last_success_at = ?, last_error = NULL WHERE id = ?", (at, channel_id)
            )
        else:
            conn.execute(
                "UPDATE alert_channels SET last_failure_at = ?, last_error = ? WHERE id = ?",
                (at, error[:500], channel_id),
            )
