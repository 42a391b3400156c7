"""Offsite in Chromium against a real running appliance (`bulwark init` + `bulwark run` on a zfs-fuse file pool):
create the data key, download the recovery kit, add a USB-folder target, schedule a client, replicate twice with
the progress shown, verify, and see "offsite verified" with the backlog chart. Screenshots:
artifacts/screenshots/offsite-*.png."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.offsite import kit
from tests.e2e.conftest import SCREENSHOTS, Appliance, running_appliance
from tests.e2e.test_client_flow import Tab, clients_removed_afterwards, share_of, sign_in_and_first_run

pytestmark = [pytest.mark.zfs, pytest.mark.slow]
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, zfs_daemon: object) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("offsite")) as running:
        yield running


class OffsiteTab(Tab):
    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SCREENSHOTS / f"offsite-{name}.png"), full_page=True)

    def wait_text(self, pattern: str, timeout: float = 90) -> None:
        self.page.wait_for_function(
            "p => new RegExp(p).test(document.querySelector('main').innerText)", arg=pattern, timeout=timeout * 1000
        )


@pytest.fixture
def tab(chromium: Any, appliance: Appliance) -> Iterator[OffsiteTab]:
    opened = OffsiteTab(chromium, appliance)
    yield opened
    opened.context.close()
    assert not opened.errors, opened.errors


def test_offsite_story(tab: OffsiteTab, appliance: Appliance, tmp_path: Path) -> None:
    page = tab.page
    with clients_removed_afterwards(appliance):
        sign_in_and_first_run(tab, appliance)
        appliance.cli("client", "add", "acme", "--kind", "smb", "--schedule", "off")
        (share_of(appliance, "acme") / "report.txt").write_text("numbers")
        (share_of(appliance, "acme") / "disk.img").write_bytes(os.urandom(6_000_000))
        appliance.cli("snapshot", "create", "acme", "--wait")

        tab.goto("/offsite/")
        assert "Step 1 of 2: create the data key" in tab.main_text()
        tab.shot("1-no-key")
        page.fill("#keys input[name=passphrase]", PASSPHRASE)
        page.fill("#keys input[name=confirm]", PASSPHRASE)
        page.click("#keys button[type=submit]")
        page.wait_for_selector("#kit-step")
        tab.shot("2-download-kit")
        with page.expect_download() as download:
            page.click("#kit-step button")
        kit_path = tmp_path / "kit.txt"
        download.value.save_as(kit_path)
        assert kit.parse(kit_path.read_text())["keys"]
        tab.goto("/offsite/")
        assert page.locator("#kit-step").count() == 0

        usb = tmp_path / "usb"
        usb.mkdir()
        page.fill("#targets input[name=name]", "usb")
        page.fill("#targets input[name=path]", str(usb))
        page.click(".target-form button[type=submit]")
        tab.wait_text("Target usb added")
        page.select_option("#policy select[name=client]", "acme")
        page.fill("#policy input[name=interval]", "6h")
        page.fill("#policy textarea[name=bandwidth]", "weekdays 08:00-18:00=20480")
        page.click("#policy button[type=submit]")
        tab.wait_text("Replication of acme to usb saved")

        page.click("#offsite-acme-usb button:has-text('Replicate now')")
        tab.wait_text("Last sent\\s+\\d{4}-")
        (share_of(appliance, "acme") / "report.txt").write_text("numbers, revised")
        appliance.cli("snapshot", "create", "acme", "--wait")
        tab.goto("/offsite/")
        page.click("#offsite-acme-usb button:has-text('Replicate now')")
        tab.shot("3-replicating")
        tab.wait_text("2 streams")
        page.click("#offsite-acme-usb button:has-text('Verify')")
        tab.wait_text("offsite verified")
        tab.goto("/offsite/")
        text = tab.main_text()
        assert re.search(r"offsite verified \d{4}-", text) and "2 streams" in text
        assert page.locator("#offsite-acme-usb svg").count() == 1
        tab.shot("4-verified")
        assert any(p.name == "config" for p in usb.iterdir())
        # the product's own removal (it also takes down the share's Previous Versions clones)
        appliance.cli("client", "remove", "acme", "--destroy-data", "--confirm", "acme")
