"""The replacement wizard in Chromium against a running appliance (bulwark run): the pool's device is
replaced by a loop device plugged through /dev/loop-control, bulwarkd runs the pool.replace job and the job
page follows it to the end. No hardware profile matches this machine (no DMI), so the wizard names the serial
number instead of lighting an LED. Screenshots: artifacts/screenshots/disks-replace-*.png."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from appliance import provision
from appliance.system.paths import Paths
from appliance.system.runner import local_runner
from appliance.zfs import status
from appliance.zfs.host import ZfsHost
from tests.e2e.conftest import SCREENSHOTS, Appliance, running_appliance
from tests.e2e.test_client_flow import Tab, sign_in_and_first_run, tab
from tests.integration.test_disk_hotplug import Loops

__all__ = ["tab"]  # fixture
pytestmark = pytest.mark.skipif(not os.path.exists("/dev/loop-control"), reason="no /dev/loop-control")


@pytest.fixture(scope="module")
def new_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A loop device on a sparse file; made before the appliance, so removed after its pool is destroyed."""
    loops = Loops()
    try:
        number = loops.add()
        backing = tmp_path_factory.mktemp("new-disk") / "new-disk.img"
        with backing.open("wb") as fh:
            fh.truncate(320 * 1024 * 1024)
        local_runner().run(["losetup", f"/dev/loop{number}", str(backing)])
        yield f"/dev/loop{number}"
    finally:
        loops.cleanup()


@pytest.fixture(scope="module")
def appliance(new_disk: str, tmp_path_factory: pytest.TempPathFactory, zfs_daemon: Any) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("replace"), pool_file_size="256M") as running:
        yield running


def _wait_resilvered(zfs: ZfsHost, pool: str, device: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = status.pool_status(zfs, pool)
        if device in [v.name for v in now.devices()] and not any(v.kind == "replacing" for v in now.root.walk()):
            return
        time.sleep(0.5)
    raise AssertionError(f"{device} never replaced the device of {pool}")


def test_replacement_wizard(appliance: Appliance, new_disk: str, tab: Tab) -> None:
    zfs = ZfsHost.detect(local_runner())
    original = str(provision.pool_file(Paths(appliance.data_dir), appliance.pool))
    name = new_disk.removeprefix("/dev/")
    page = tab.page
    sign_in_and_first_run(tab, appliance)
    page.goto(f"{appliance.url}/disks/")
    page.click("#replace-wizard")
    page.wait_for_selector("#replace-step-1")
    assert original in page.inner_text("#replace-step-1")
    page.screenshot(path=str(SCREENSHOTS / "disks-replace-1-pick.png"), full_page=True)

    page.click("#replace-step-1 a[role=button]")
    page.wait_for_selector("#replace-step-3")
    assert "not a disk the appliance sees" in page.inner_text("#replace-step-2")
    assert name in page.inner_text("#replace-step-3")
    page.check(f"input[name=new][value='{new_disk}']")
    page.screenshot(path=str(SCREENSHOTS / "disks-replace-2-choose.png"), full_page=True)

    page.click("#replace-start")  # the overwrite box not ticked: refused, nothing done
    assert "overwritten" in page.inner_text("body")
    page.go_back()
    page.check(f"input[name=new][value='{new_disk}']")
    page.check("input[name=confirm]")
    page.click("#replace-start")
    page.wait_for_selector("#job-progress .state-succeeded", timeout=60000)
    assert "resilvered" in page.inner_text("#job-progress")
    page.screenshot(path=str(SCREENSHOTS / "disks-replace-3-resilvered.png"), full_page=True)
    _wait_resilvered(zfs, appliance.pool, name)
    assert status.pool_status(zfs, appliance.pool).state == "ONLINE"
