"""The appliance's own settings, typed, stored in the database's ``settings`` table."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from appliance.store import Store
from appliance.system.errors import InvalidInput

KEY = "appliance"
DEFAULT_WEB_PORT = 8443


@dataclass(frozen=True)
class PoolConfig:
    name: str
    layout: str  # "file" for the embedded file-backed pool, else a zpool layout
    devices: list[str] = field(default_factory=list)
    mountpoint: str | None = None

    @property
    def file_backed(self) -> bool:
        return self.layout == "file"


@dataclass(frozen=True)
class ApplianceSettings:
    pool: PoolConfig
    web_port: int = DEFAULT_WEB_PORT
    hostname: str = "bulwark"
    timezone: str = "UTC"
    initialized_at: float = 0.0
    require_totp: bool = False  # a second factor for every sign-in (remote ones always need it)
    tunnel_listen_port: int | None = None  # local listener the remote-access tunnel forwards to

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApplianceSettings:
        pool = PoolConfig(**data["pool"])
        known = {f.name for f in fields(cls)}
        rest = {k: v for k, v in data.items() if k != "pool" and k in known}
        return cls(pool=pool, **rest)


def check_port(port: int) -> int:
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidInput(f"port {port!r} must be a number from 1 to 65535")
    return port


def load(store: Store) -> ApplianceSettings | None:
    data = store.get_setting(KEY)
    return None if data is None else ApplianceSettings.from_json(data)


def save(store: Store, settings: ApplianceSettings) -> None:
    store.set_setting(KEY, settings.to_json())


_HOSTNAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}")  # the API's pattern too (webui/api/schemas.py)


def check_hostname(name: str) -> str:
    """A host name as DNS and TLS certificates take it: lowercase letters, digits, '.' and '-'."""
    if not isinstance(name, str) or not _HOSTNAME.fullmatch(name):
        raise InvalidInput(
            f"host name {name!r} must be 1 to 63 lowercase letters, digits, '.' and '-', "
            "starting with a letter or digit"
        )
    return name


def check_timezone(name: str) -> str:
    import zoneinfo

    if not isinstance(name, str) or name not in zoneinfo.available_timezones():
        raise InvalidInput(f"time zone {name!r} is not known; use a name like 'Europe/Berlin' or 'UTC'")
    return name


def update(store: Store, **changes: Any) -> ApplianceSettings:
    """Change some settings (validated) and save them."""
    current = load(store)
    if current is None:
        raise InvalidInput("the appliance is not initialized")
    if "hostname" in changes:
        check_hostname(changes["hostname"])
    if "timezone" in changes:
        check_timezone(changes["timezone"])
    if "web_port" in changes:
        check_port(changes["web_port"])
    if changes.get("tunnel_listen_port") is not None:
        check_port(changes["tunnel_listen_port"])
    updated = replace(current, **changes)
    save(store, updated)
    return updated
