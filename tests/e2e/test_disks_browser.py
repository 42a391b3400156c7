"""The Disks page in Chromium against a running appliance (bulwark run): this machine's real disks with their
real SMART state (virtio and loop devices have none: unknown / no SMART), a loop device plugged through
/dev/loop-control appearing and disappearing on the open page, and a disk's SMART detail with trend charts
from readings of a recorded real failing drive stored for that disk. Screenshots: artifacts/screenshots/disks-*.png.

The appliance's own bulwarkd cannot be given a replaying smartctl (it runs the system's), so the failing
readings are parsed from the recording and stored by the same code bulwarkd uses (polling.record)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.disks import inventory, polling, smart
from appliance.disks.verdict import judge
from appliance.store import Store
from tests.e2e.conftest import SCREENSHOTS, Appliance, running_appliance
from tests.e2e.test_client_flow import Tab, sign_in_and_first_run, tab

__all__ = ["tab"]  # fixture

DATA = Path(__file__).resolve().parents[1] / "data" / "smart"
LOOP_CTL_ADD, LOOP_CTL_REMOVE = 0x4C80, 0x4C81
REAL = [d for d in inventory.scan() if d.kind != "loop"]


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, zfs_daemon: Any) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("disks")) as running:
        yield running


def _loop_control(request: int, number: int) -> None:
    fd = os.open("/dev/loop-control", os.O_RDWR)
    try:
        fcntl.ioctl(fd, request, number)
    finally:
        os.close(fd)


@pytest.mark.skipif(not REAL, reason="no block device other than loop devices")
def test_disks_page_hotplug_and_detail(appliance: Appliance, tab: Tab) -> None:
    disk = REAL[0]
    store = Store.open(appliance.data_dir / "bulwark.db")
    number = next(n for n in range(200, 256) if not Path(f"/sys/block/loop{n}").exists())
    plugged = False
    try:
        page = tab.page
        sign_in_and_first_run(tab, appliance)
        # bulwarkd reads SMART of every disk when it starts: the real answer here is "unknown"
        deadline = time.monotonic() + 30
        while not any(r["name"] == disk.name for r in polling.latest(store)) and time.monotonic() < deadline:
            time.sleep(0.2)
        page.goto(f"{appliance.url}/disks/")
        row = page.locator(f"#disk-{disk.name}")
        assert "unknown" in row.inner_text() and "could not be read" in row.inner_text()
        page.screenshot(path=str(SCREENSHOTS / "disks-1-inventory.png"), full_page=True)

        _loop_control(LOOP_CTL_ADD, number)  # plugged: the open page shows it on its next refresh (5 s)
        plugged = True
        page.wait_for_selector(f"#disk-loop{number}", timeout=8000)
        assert "no SMART" in page.inner_text(f"#disk-loop{number}")
        page.screenshot(path=str(SCREENSHOTS / "disks-2-plugged.png"), full_page=True)
        _loop_control(LOOP_CTL_REMOVE, number)
        plugged = False
        page.wait_for_selector(f"#disk-loop{number}", state="detached", timeout=8000)

        doc = json.loads((DATA / "ata_hitachi_hds721050dle630_failing.json").read_text())
        now = time.time()
        for i, (temp, pending) in enumerate(((31, 0), (36, 3), (25, 8))):
            doc["temperature"]["current"] = temp
            for attr in doc["ata_smart_attributes"]["table"]:
                if attr["id"] == 197:  # the recorded value, reached over three readings
                    attr["raw"] = {"value": pending, "string": str(pending)}
            report = smart.parse(doc)
            reading = polling.Reading(polling.disk_key(disk, report), disk, report, judge(report))
            polling.record(store, reading, now=now - 7200 + 3600 * i)
        page.goto(f"{appliance.url}/disks/")
        assert "failing" in page.inner_text(f"#disk-{disk.name}")
        page.screenshot(path=str(SCREENSHOTS / "disks-3-failing.png"), full_page=True)
        page.click(f"#disk-{disk.name} a")
        page.wait_for_selector("#disk-trends svg")
        assert "self-assessment is FAILED" in page.inner_text("#disk-verdict")
        assert page.locator("#trend-temperature svg").count() == 1 and page.locator("#trend-197 svg").count() == 1
        assert "Reallocated_Sector_Ct" in page.inner_text("#disk-attributes")
        page.screenshot(path=str(SCREENSHOTS / "disks-4-detail.png"), full_page=True)
    finally:
        if plugged:
            _loop_control(LOOP_CTL_REMOVE, number)
        store.close()
