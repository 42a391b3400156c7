"""Per-process access to the appliance's state from request handlers."""

from __future__ import annotations

import threading

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
