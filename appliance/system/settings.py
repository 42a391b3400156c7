"""The appliance's own settings, typed, stored in the database's ``settings`` table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApplianceSettings:
        pool = PoolConfig(**data["pool"])
        rest = {k: v for k, v in data.items() if k != "pool"}
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
