"""Clients, recovery points and restores in Chromium against a real running appliance (`bulwark init` and
`bulwark run` on a zfs-fuse file pool, HTTPS, the daemon running the jobs).

One story, in order: the first sign-in and wizard, adding a client through the UI, files written into its share
on disk, two recovery points taken through the UI (each job watched to success), the timeline, the retention
preview (htmx), browsing the older point, a file and a zip downloaded and checked, a folder restored into the
live share (the lost file back, the newer file kept), a pinned point whose destruction is refused, and the
dashboard's RPO table. Screenshots: artifacts/screenshots/clients-*.png.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.system.runner import local_runner
from tests.e2e.conftest import SCREENSHOTS, Appliance, running_appliance

pytestmark = [pytest.mark.zfs, pytest.mark.slow]

PASSWORD = "client flow passphrase"
REPORT_V1 = b"quarterly report, first version\n"
REPORT_V2 = b"quarterly report, second version (newer)\n"
DATA = bytes(range(256)) * 2048  # 512 KiB


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, zfs_daemon: object) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("clients")) as running:
        yield running


class Tab:
    """A browser tab that records script errors and Content-Security-Policy violations."""

    def __init__(self, chromium: Any, appliance: Appliance) -> None:
        self.appliance = appliance
        self.context = chromium.new_context(
            ignore_https_errors=True, viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "console",
            lambda m: (
                m.type == "error"
                and "Failed to load resource" not in m.text  # a 400/409 answer, which the tests ask for
                and self.errors.append(m.text)
            ),
        )

    def goto(self, path: str) -> Any:
        return self.page.goto(self.appliance.url + path)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SCREENSHOTS / f"clients-{name}.png"), full_page=True)

    def main_text(self) -> str:
        text: str = self.page.locator("main").inner_text()
        return text

    def wait_for_job(self, timeout: float = 60) -> str:
        """On a job's page: wait until its badge says it ended; returns the final state."""
        self.page.wait_for_url("**/jobs/*")
        self.page.wait_for_selector(
            "#job-progress .badge:is(.state-succeeded, .state-failed, .state-cancelled, .state-interrupted)",
            timeout=timeout * 1000,
        )
        state: str = self.page.locator("#job-progress .badge").inner_text()
        return state


@pytest.fixture
def tab(chromium: Any, appliance: Appliance) -> Iterator[Tab]:
    opened = Tab(chromium, appliance)
    yield opened
    opened.context.close()
    assert not opened.errors, opened.errors


@contextlib.contextmanager
def clients_removed_afterwards(appliance: Appliance) -> Iterator[None]:
    """Whatever happens, no client dataset or browse clone (and so no mount) outlives the test."""
    try:
        yield
    finally:
        runner = local_runner()
        for dataset in (f"{appliance.pool}/previous-versions", f"{appliance.pool}/browse", f"{appliance.pool}/clients"):
            for attempt in range(1, 41):  # holds first: a pinned point refuses to go
                listed = runner.run(
                    ["zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-r", dataset], ok_codes=range(256)
                )
                for snapshot in listed.out.split():
                    for tag in ("bulwark-pin", "bulwark-lock"):
                        runner.run(["zfs", "release", tag, snapshot], ok_codes=range(256))
                runner.run(["zfs", "unmount", dataset], ok_codes=range(256))
                if runner.run(["zfs", "destroy", "-r", dataset], ok_codes=range(256), timeout=120).returncode == 0:
                    break
                if runner.run(["zfs", "list", dataset], ok_codes=range(256)).returncode != 0:
                    break
                time.sleep(0.05 * attempt)


def test_client_story(tab: Tab, appliance: Appliance) -> None:
    """The whole story in one test (the pool's mounts are checked after each test)."""
    with clients_removed_afterwards(appliance):
        sign_in_and_first_run(tab, appliance)
        add_a_client(tab, appliance)
        take_two_points(tab, appliance)
        browse_the_older_point_and_download(tab, appliance)
        restore_a_folder_into_the_live_share(tab, appliance)
        pinned_point_cannot_be_destroyed(tab, appliance)
        dashboard_rpo_table(tab, appliance)
        remove_and_destroy_the_client(tab, appliance)


def share_of(appliance: Appliance, client: str) -> Path:
    return appliance.data_dir / "mnt" / appliance.pool / "clients" / client / "share"


def point_rows(tab: Tab) -> list[str]:
    rows: list[str] = tab.page.locator("table.points tbody tr").all_inner_texts()
    return rows


def sign_in_and_first_run(tab: Tab, appliance: Appliance) -> None:
    page = tab.page
    tab.goto("/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", appliance.password)
    page.click("#sign-in")
    page.wait_for_url("**/password")
    page.fill("input[name=current]", appliance.password)
    page.fill("input[name=new]", PASSWORD)
    page.fill("input[name=confirm]", PASSWORD)
    page.click("text=Save password")
    page.wait_for_url("**/setup/")
    page.fill("input[name=hostname]", "clients-e2e")
    page.select_option("select[name=timezone]", "Europe/Berlin")
    page.click("#finish-setup")
    page.wait_for_url(appliance.url + "/")
    card = page.locator("#rpo-card").inner_text()
    assert "No clients are protected yet." in card
    assert page.locator("header .areas a").all_inner_texts()[:2] == ["Dashboard", "Clients"]


def add_a_client(tab: Tab, appliance: Appliance) -> None:
    page = tab.page
    page.click("header .areas >> text=Clients")
    page.wait_for_url("**/clients/")
    assert page.locator("#no-clients").count() == 1
    page.fill("#add-client input[name=name]", "Bad_Name")
    page.evaluate("document.querySelector('#add-client input[name=name]').removeAttribute('pattern')")
    page.click("#add-client-button")
    assert "must be 1 to 32 lowercase letters" in tab.main_text()  # and the form keeps what was typed
    page.fill("#add-client input[name=name]", "acme")
    page.fill("#add-client input[name=quota]", "200M")
    page.fill("#add-client input[name=rpo]", "1h")
    page.fill("#add-client input[name=schedule]", "off")
    page.fill("#add-client input[name=retention]", "last=5,daily=7")
    page.fill("#add-client textarea[name=notes]", "file server, 2nd floor")
    page.click("#add-client-button")
    page.wait_for_url("**/clients/acme")
    assert "Client acme added." in tab.main_text()
    assert "No recovery points yet." in tab.main_text()
    assert share_of(appliance, "acme").is_dir()


def take_two_points(tab: Tab, appliance: Appliance) -> None:
    from playwright.sync_api import expect

    page = tab.page
    share = share_of(appliance, "acme")
    (share / "docs" / "sub").mkdir(parents=True)
    (share / "docs" / "report.txt").write_bytes(REPORT_V1)
    (share / "docs" / "sub" / "data.bin").write_bytes(DATA)
    (share / "readme.txt").write_text("hello from acme\n")
    os.utime(share / "docs" / "report.txt", (time.time() - 3600, time.time() - 3600))

    page.click("#take-point")
    assert tab.wait_for_job() == "succeeded", tab.main_text()
    assert "took share@bw-" in tab.main_text()

    (share / "docs" / "report.txt").write_bytes(REPORT_V2)  # changed after the first point, and newer
    time.sleep(1.1)  # a new second: a new snapshot name
    tab.goto("/clients/acme")
    page.click("#take-point")
    assert tab.wait_for_job() == "succeeded", tab.main_text()
    tab.shot("04-snapshot-job")

    tab.goto("/clients/acme")
    assert page.locator("#timeline svg a.mark").count() == 2
    assert "2 recovery points from" in page.locator("#timeline figcaption").inner_text()
    rows = point_rows(tab)
    assert len(rows) == 2 and all("share" in r and "manual" in r for r in rows)
    assert page.locator("#protection .badge").inner_text() == "ok"
    tab.shot("02-client-detail-timeline")

    # The retention preview answers as one types (htmx), and saves nothing.
    page.fill("#preview-spec", "last=1")
    expect(page.locator("#prune-preview")).to_contain_text("With last=1", timeout=10000)
    assert "this 1 of 2 points of acme will be removed" in page.locator("#prune-preview").inner_text()
    tab.goto("/clients/")
    row = page.locator("table.clients tbody tr").inner_text()
    assert "acme" in row and "smb" in row and "2" in row and "ok" in row
    tab.shot("01-client-list")


def browse_the_older_point_and_download(tab: Tab, appliance: Appliance) -> None:
    page = tab.page
    tab.goto("/clients/acme")
    page.locator("#point-1 button[data-action=browse]").click()  # the older point
    page.wait_for_url("**/browse/*")
    assert "docs/" in tab.main_text() and "readme.txt" in tab.main_text()
    page.click("a.folder >> text=docs/")
    page.wait_for_url("**path=docs")
    assert page.locator("#crumbs [aria-current=page]").inner_text() == "docs"
    tab.shot("03-browse")

    with page.expect_download() as info:
        page.click("a.file >> text=report.txt")
    download = info.value
    assert download.suggested_filename == "report.txt"
    assert Path(download.path()).read_bytes() == REPORT_V1  # the point's version, not the live one

    page.check("input[name=paths][value='docs/report.txt']")
    page.check("input[name=paths][value='docs/sub']")
    with page.expect_download() as info:
        page.click("#download-zip")
    download = info.value
    assert download.suggested_filename.startswith("acme-bw-") and download.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(Path(download.path()).read_bytes())) as archive:
        assert sorted(archive.namelist()) == ["report.txt", "sub/", "sub/data.bin"]
        assert archive.read("report.txt") == REPORT_V1 and archive.read("sub/data.bin") == DATA


def restore_a_folder_into_the_live_share(tab: Tab, appliance: Appliance) -> None:
    page = tab.page
    share = share_of(appliance, "acme")
    (share / "docs" / "sub" / "data.bin").unlink()  # lost since the point
    page.click("#crumbs >> text=share")  # back to the point's root
    page.wait_for_selector("input[name=paths][value=docs]")
    page.check("input[name=paths][value=docs]")
    assert page.locator("#restore-target").input_value() == ""
    assert not page.locator("#restore-overwrite").is_checked()
    page.click("#restore-selected")
    assert tab.wait_for_job() == "succeeded", tab.main_text()
    assert "1 newer at the destination kept" in tab.main_text()
    tab.shot("05-restore-job")
    assert (share / "docs" / "sub" / "data.bin").read_bytes() == DATA  # came back
    assert (share / "docs" / "report.txt").read_bytes() == REPORT_V2  # newer: not overwritten

    page.go_back()
    page.wait_for_url("**/browse/*")
    page.click("#close-browse")
    page.wait_for_url("**/clients/acme")
    assert "Browsing of share@" in tab.main_text()


def pinned_point_cannot_be_destroyed(tab: Tab, appliance: Appliance) -> None:
    page = tab.page
    tab.goto("/clients/acme")
    page.locator("#point-1 button[data-action=pin]").click()
    page.wait_for_url("**/clients/acme*")
    assert "is pinned: retention keeps it" in tab.main_text()
    assert "pinned" in point_rows(tab)[1]
    assert page.locator("#timeline circle[r='9.5']").count() == 1  # the pin ring
    page.locator("#point-1 details summary").click()
    page.locator("#point-1 button[data-action=destroy]").click()
    alert = page.locator("[role=alert]").inner_text()
    assert "is pinned and cannot be destroyed." in alert and "Unpin it first" in alert
    tab.shot("06-destroy-refused")
    assert len(point_rows(tab)) == 2


def dashboard_rpo_table(tab: Tab, appliance: Appliance) -> None:
    page = tab.page
    tab.goto("/")
    card = page.locator("#rpo-card")
    assert card.locator("tbody tr").count() == 1
    assert "acme" in card.inner_text() and card.locator(".badge.ok").inner_text() == "ok"
    assert "No active alerts." in page.locator("#alerts-card").inner_text()
    tab.shot("07-dashboard-rpo")


def remove_and_destroy_the_client(tab: Tab, appliance: Appliance) -> None:
    page = tab.page
    tab.goto("/clients/acme")
    page.click("#remove-client")
    page.wait_for_url("**/clients/acme")
    assert "Client acme is removed" in tab.main_text() and share_of(appliance, "acme").is_dir()  # data kept
    page.click("#lifecycle summary")
    page.fill("input[name=confirm]", "acme")
    page.click("#destroy-client")
    alert = page.locator("[role=alert]").inner_text()  # the pinned point protects the data
    assert "has 1 pinned and 0 locked recovery point(s); its data was not destroyed" in alert
    page.locator("#point-1 button[data-action=unpin]").click()
    page.wait_for_url("**/clients/acme*")
    page.click("#lifecycle summary")
    page.fill("input[name=confirm]", "acme")
    page.click("#destroy-client")
    page.wait_for_url("**/clients/")
    assert "The data of client acme and all its recovery points were destroyed." in tab.main_text()
    assert not share_of(appliance, "acme").exists()
