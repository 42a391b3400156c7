"""The disks part of ``bulwarkd``: the udev monitor, SMART polling and scheduled self-tests, in one object the
daemon starts, ticks and stops."""

from __future__ import annotations

import logging

from appliance.disks import inventory, polling
from appliance.disks.inventory import Membership
from appliance.disks.monitor import DiskMonitor
from appliance.store import Store
from appliance.system.runner import Runner
from appliance.zfs import status
from appliance.zfs.host import ZfsHost

log = logging.getLogger(__name__)


class DiskService:
    def __init__(self, store: Store, zfs: ZfsHost, pool_name: str, runner: Runner) -> None:
        self.store = store
        self.zfs = zfs
        self.pool_name = pool_name
        self.runner = runner
        self.monitor = DiskMonitor(store, self.members)
        self.started = False

    def members(self) -> dict[str, Membership]:
        return inventory.memberships([status.pool_status(self.zfs, self.pool_name)])

    def start(self) -> None:
        try:
            self.monitor.start()
            self.started = True
        except OSError as exc:  # no netlink socket (a container without uevents): inventory by polling only
            log.warning("udev monitor unavailable, disks are rescanned every minute instead: %s", exc)

    def stop(self) -> None:
        self.monitor.stop()

    def refresh(self) -> None:
        """Every minute: pool membership (and everything else) read again."""
        self.monitor.refresh()

    def poll_smart(self) -> None:
        polling.poll(self.store, self.runner, self.monitor.disks())

    def run_selftests(self) -> None:
        polling.run_due_tests(self.store, self.runner, self.monitor.disks())
