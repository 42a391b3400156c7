"""Pool alerts from a real zfs-fuse pool: a mirror with one side taken offline is DEGRADED (critical alert),
and bringing it back clears the alert."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import alerts
from appliance.disks import health
from appliance.store import Store
from appliance.system.runner import local_runner
from appliance.zfs import pools
from appliance.zfs.host import ZfsHost
from tests.clients_fixtures import destroy_pool

pytestmark = pytest.mark.zfs


@pytest.fixture
def mirror(local_zfs: ZfsHost, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    name = f"bwt{secrets.token_hex(4)}"
    devices = [tmp_path / "m1.img", tmp_path / "m2.img"]
    for device in devices:
        with device.open("wb") as fh:
            fh.truncate(128 * 1024 * 1024)
    local_zfs.zpool("create", "-o", "cachefile=none", "-m", str(tmp_path / "mnt"), name, "mirror",
                    *map(str, devices), subject=name)  # fmt: skip
    try:
        yield name, [str(d) for d in devices]
    finally:
        destroy_pool(local_runner(), name, tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store.open(tmp_path / "bulwark.db")
    yield db
    db.close()


def test_degraded_pool_raises_and_clears(local_zfs: ZfsHost, mirror: tuple[str, list[str]], store: Store) -> None:
    name, devices = mirror
    assert health.check_pool(store, local_zfs, name) == []
    pools.offline_device(local_zfs, name, devices[1])
    t0 = time.time()
    for i in range(3):  # checked every minute by bulwarkd: one alert
        [finding] = health.check_pool(store, local_zfs, name, now=t0 + 60 * i)
    [alert] = alerts.list_alerts(store)
    assert (alert.key, alert.level, alert.count) == (f"pool:health:{name}", "critical", 3)
    assert alert.message.startswith(f"pool {name} is DEGRADED: One or more devices has been taken offline")
    pools.online_device(local_zfs, name, devices[1])
    assert health.check_pool(store, local_zfs, name, now=t0 + 240) == []
    assert alerts.list_alerts(store) == [] and alerts.get(store, alert.id).status() == "cleared"


def test_missing_pool_is_critical(local_zfs: ZfsHost, store: Store) -> None:
    [finding] = health.check_pool(store, local_zfs, "bwtnosuchpool")
    assert finding.params["health"] == "UNAVAILABLE"
    assert alerts.get_active(store, "pool:health:bwtnosuchpool") is not None
