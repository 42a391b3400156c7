"""Hot-plug: a udev monitor that keeps the disk inventory current from kernel uevents.

``bulwarkd`` runs one :class:`DiskMonitor`. An ``add``, ``change`` or ``remove`` of a block device is in the
inventory as soon as the event arrives (well within 2 s); a disk that was a pool member disappearing raises
a critical alert at once — before ZFS itself notices on its next I/O — and the disk coming back clears it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pyudev  # type: ignore[import-untyped]

from appliance import alerts
from appliance.disks import inventory
from appliance.disks.inventory import Disk, Membership
from appliance.store import Store

log = logging.getLogger(__name__)

CATEGORY = "disk"
MEMBER_MISSING = alerts.declare(
    "disk.member_missing",
    level="critical",
    category=CATEGORY,
    title="Pool disk disappeared",
    template="disk {disk} ({identity}) of pool {pool}, vdev {vdev}, disappeared: {advice}",
)
ADVICE = (
    "check its cable and power; if it was pulled by mistake put it back, otherwise replace it "
    "(Disks page) before another disk of that vdev fails"
)

MembersSource = Callable[[], dict[str, Membership]]


def missing_key(name: str) -> str:
    return f"disk:missing:{name}"


class DiskMonitor:
    """The current inventory, kept by a udev observer thread."""

    def __init__(self, store: Store, members: MembersSource, *, source: str = "kernel") -> None:
        self.store = store
        self._members_source = members
        self._source = source
        self._lock = threading.Lock()
        self._disks: dict[str, Disk] = {}
        self._members: dict[str, Membership] = {}
        self._observer: pyudev.MonitorObserver | None = None
        self.events = 0
        self.updated_at = 0.0

    # -- reading ----------------------------------------------------------------------------------------

    def disks(self) -> list[Disk]:
        with self._lock:
            return sorted(self._disks.values(), key=lambda d: (d.kind == "loop", len(d.name), d.name))

    def get(self, name: str) -> Disk | None:
        with self._lock:
            return self._disks.get(name)

    # -- life cycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        context = pyudev.Context()
        monitor = pyudev.Monitor.from_netlink(context, source=self._source)
        monitor.filter_by(subsystem="block")
        monitor.start()  # listen before the scan, so that nothing between the two is missed
        self.refresh(context)
        self._observer = pyudev.MonitorObserver(monitor, callback=self._on_event, name="bulwark-udev")
        self._observer.start()
        log.info("disk monitor started: %d disks", len(self._disks))

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.send_stop()
            self._observer.join(timeout=5)
            self._observer = None

    def refresh(self, context: pyudev.Context | None = None) -> None:
        """Rescan everything and re-read pool membership (bulwarkd does this every minute)."""
        members = self._read_members()
        disks = {d.name: d for d in inventory.scan(context, members)}
        with self._lock:
            self._members = members
            self._disks = disks
            self.updated_at = time.time()
        for disk in disks.values():
            if disk.pool is not None:
                alerts.clear(self.store, missing_key(disk.name))

    def _read_members(self) -> dict[str, Membership]:
        try:
            return self._members_source()
        except Exception as exc:  # noqa: BLE001 — no pool must not stop the inventory
            log.warning("pool membership unavailable: %s", exc)
            with self._lock:
                return dict(self._members)

    # -- events ----------------------------------------------------------------------------------------

    def _on_event(self, device: pyudev.Device) -> None:
        try:
            self.handle(device.action or "", device)
        except Exception:  # the observer thread must survive anything one event does
            log.exception("udev event for %s", getattr(device, "sys_name", "?"))

    def handle(self, action: str, device: pyudev.Device) -> None:
        name = device.sys_name
        self.events += 1
        if action == "remove":
            with self._lock:
                gone = self._disks.pop(name, None)
                self.updated_at = time.time()
            if gone is not None:
                log.info("disk %s removed", name)
                if gone.pool is not None:
                    self._raise_missing(gone, gone.pool)
            return
        if action not in ("add", "change", "online", "bind"):
            return
        with self._lock:
            members = dict(self._members)
        disk = inventory.from_device(device, members)
        if disk is None:
            return
        with self._lock:
            self._disks[name] = disk
            self.updated_at = time.time()
        log.info("disk %s %s", name, action)
        if disk.pool is not None:
            alerts.clear(self.store, missing_key(name))

    def _raise_missing(self, disk: Disk, member: Membership) -> None:
        identity = " ".join(filter(None, (disk.model, disk.serial))) or disk.backing_file or "no serial"
        alerts.fire(
            self.store,
            MEMBER_MISSING,
            missing_key(disk.name),
            subject=f"disk:{disk.name}",
            disk=disk.name,
            identity=identity,
            pool=member.pool,
            vdev=member.vdev,
            advice=ADVICE,
        )
        log.warning("pool %s lost disk %s", member.pool, disk.name)
