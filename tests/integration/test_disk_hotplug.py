"""Hot-plug with real kernel uevents: loop devices added and removed through /dev/loop-control are seen by
the disk monitor within 2 s, and a loop device that backs a pool vdev disappearing raises the critical alert
at once (cleared when it comes back)."""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance import alerts
from appliance.disks import inventory
from appliance.disks.monitor import DiskMonitor, missing_key
from appliance.store import Store
from appliance.system.runner import local_runner
from appliance.zfs import pools, status
from appliance.zfs.host import ZfsHost
from tests.clients_fixtures import destroy_pool

LOOP_CTL_ADD, LOOP_CTL_REMOVE = 0x4C80, 0x4C81
WITHIN = 2.0

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/loop-control"), reason="no /dev/loop-control")


def _loop_control(request: int, number: int) -> None:
    fd = os.open("/dev/loop-control", os.O_RDWR)
    try:
        fcntl.ioctl(fd, request, number)
    finally:
        os.close(fd)


class Loops:
    """Loop devices made by one test, removed at the end whatever happened."""

    def __init__(self) -> None:
        self.made: list[int] = []

    def add(self) -> int:
        for number in range(180, 256):
            if not Path(f"/sys/block/loop{number}").exists():
                _loop_control(LOOP_CTL_ADD, number)
                self.made.append(number)
                return number
        raise RuntimeError("no free loop device number")

    def remove(self, number: int) -> None:
        for attempt in range(50):  # the kernel releases a just-detached device asynchronously
            try:
                _loop_control(LOOP_CTL_REMOVE, number)
                break
            except OSError:
                time.sleep(0.02 * (attempt + 1))
        else:
            raise RuntimeError(f"loop{number} stays busy")
        self.made.remove(number)

    def cleanup(self) -> None:
        runner = local_runner()
        for number in list(self.made):
            runner.run(["losetup", "-d", f"/dev/loop{number}"], ok_codes=range(256))
            self.remove(number)


@pytest.fixture
def loops() -> Iterator[Loops]:
    made = Loops()
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store.open(tmp_path / "bulwark.db")
    yield db
    db.close()


def wait_for(check: Callable[[], bool], timeout: float = WITHIN) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"not within {timeout} s")


def test_inventory_follows_add_change_remove(loops: Loops, store: Store, tmp_path: Path) -> None:
    monitor = DiskMonitor(store, dict)
    monitor.start()
    try:
        number = loops.add()
        name = f"loop{number}"
        wait_for(lambda: monitor.get(name) is not None)
        image = tmp_path / "disk.img"
        with image.open("wb") as fh:
            fh.truncate(64 * 1024 * 1024)
        local_runner().run(["losetup", f"/dev/{name}", str(image)])
        wait_for(lambda: (d := monitor.get(name)) is not None and d.size_bytes == 64 * 1024 * 1024)
        disk = monitor.get(name)
        assert disk is not None and disk.backing_file == str(image) and disk.kind == "loop" and disk.pool is None
        local_runner().run(["losetup", "-d", f"/dev/{name}"])
        wait_for(lambda: (d := monitor.get(name)) is not None and d.size_bytes == 0)
        loops.remove(number)
        wait_for(lambda: monitor.get(name) is None)
        assert alerts.list_alerts(store) == []  # not a pool member: no alert
    finally:
        monitor.stop()


def test_pool_member_removed_raises_critical_alert(
    local_zfs: ZfsHost, loops: Loops, store: Store, tmp_path: Path
) -> None:
    pool = f"bwt{secrets.token_hex(4)}"
    numbers = [loops.add(), loops.add()]
    runner = local_runner()
    for number in numbers:
        image = tmp_path / f"loop{number}.img"
        with image.open("wb") as fh:
            fh.truncate(128 * 1024 * 1024)
        runner.run(["losetup", f"/dev/loop{number}", str(image)])
    local_zfs.zpool("create", "-o", "cachefile=none", "-m", str(tmp_path / "mnt"), pool, "mirror",
                    *[f"/dev/loop{n}" for n in numbers], subject=pool)  # fmt: skip
    monitor = DiskMonitor(store, lambda: inventory.memberships([status.pool_status(local_zfs, pool)]))
    try:
        monitor.start()
        victim = f"loop{numbers[1]}"
        disk = monitor.get(victim)
        assert disk is not None and disk.pool is not None
        assert (disk.pool.pool, disk.pool.vdev, disk.pool.state) == (pool, "mirror-0", "ONLINE")
        pools.offline_device(local_zfs, pool, f"/dev/{victim}")  # zfs-fuse closes it; then it can go
        runner.run(["losetup", "-d", f"/dev/{victim}"])
        loops.remove(numbers[1])
        took = wait_for(lambda: bool(alerts.list_alerts(store)))
        [alert] = alerts.list_alerts(store)
        assert (alert.key, alert.level, alert.category) == (missing_key(victim), "critical", "disk")
        assert f"disk {victim}" in alert.message and f"of pool {pool}, vdev mirror-0" in alert.message
        assert "replace it" in alert.message
        assert took < WITHIN
        # the disk comes back (same slot): the alert clears
        _loop_control(LOOP_CTL_ADD, numbers[1])
        loops.made.append(numbers[1])
        wait_for(lambda: alerts.list_alerts(store) == [])
        assert alerts.get(store, alert.id).status() == "cleared"
    finally:
        monitor.stop()
        destroy_pool(runner, pool, tmp_path)
