"""Per-process access to the appliance's state from request handlers."""

from __future__ import annotations

import threading
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app

from appliance.store import Store
from appliance.system import settings
from appliance.system.paths import Paths
from appliance.system.runner import local_runner
from appliance.system.settings import ApplianceSettings
from appliance.zfs.host import ZfsHost

_zfs_lock = threading.Lock()
_zfs: ZfsHost | None = None


def store() -> Store:
    value: Store = current_app.extensions["bulwark.store"]
    return value


def paths() -> Paths:
    value: Paths = current_app.extensions["bulwark.paths"]
    return value


def appliance_settings() -> ApplianceSettings:
    config = settings.load(store())
    assert config is not None, "create_app refuses an uninitialized data dir"
    return config


def zfs() -> ZfsHost:
    """The ZFS host, detected once per process."""
    global _zfs
    with _zfs_lock:
        if _zfs is None:
            _zfs = ZfsHost.detect(local_runner())
        return _zfs


def audit(action: str, target: str | None = None, **details: object) -> None:
    """Record a change made by the current identity, with the address it came from."""
    from flask import g, request

    identity = g.get("identity")
    actor = identity.actor if identity is not None else f"anonymous@{request.remote_addr}"
    if identity is not None and identity.remote:
        details.setdefault("remote", True)  # made through the MSP tunnel
    store().audit(actor, action, target, address=request.remote_addr, **details)


def actor() -> str:
    """The current identity as recorded in jobs and the audit log (``user:alice``, ``token:3:ci``)."""
    from flask import g

    identity = g.get("identity")
    return identity.actor if identity is not None else "anonymous"


def timezone() -> ZoneInfo:
    """The appliance's time zone (read once per request)."""
    from flask import g

    zone: ZoneInfo | None = g.get("timezone")
    if zone is None:
        try:
            zone = ZoneInfo(appliance_settings().timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        g.timezone = zone
    return zone
