"""The whole appliance, as a user meets it: `bulwark init`, `bulwark run` over HTTPS, a browser.

Everything is real: zfs-fuse with a file-backed pool, gunicorn serving TLS, the daemon running jobs,
Chromium driven by Playwright. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.system import tls
from appliance.system.runner import local_runner
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, Appliance, https_get, running_appliance

pytestmark = [pytest.mark.zfs, pytest.mark.slow]


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, zfs_daemon: object) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("appliance")) as running:
        yield running


def test_init_reported_a_file_backed_pool(appliance):
    assert (appliance.data_dir / "pool" / f"{appliance.pool}.img").exists()
    assert len(appliance.password) >= 20


def test_status_json_reports_pool_online(appliance):
    deadline = time.monotonic() + 15
    while True:
        status = json.loads(appliance.cli("status", "--json").out)
        if status["daemon"]["running"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status["zfs"]["implementation"] == "zfs-fuse"
    assert status["pool"]["name"] == appliance.pool
    assert status["pool"]["health"] == "ONLINE"
    assert status["pool"]["size_bytes"] > 400 * 1024 * 1024
    assert 0 < status["pool"]["alloc_bytes"] < status["pool"]["size_bytes"]
    assert status["pool"]["free_bytes"] > 0
    assert status["web"]["port"] == appliance.port
    assert status["daemon"]["running"] is True
    assert status["version"]


def test_https_serves_login_with_the_init_certificate(appliance):
    code, url, body = https_get(appliance.url + "/")
    assert code == 200 and url.endswith("/login?next=/")
    assert b"Sign in" in body
    pem = ssl.get_server_certificate(("127.0.0.1", appliance.port))
    assert tls.fingerprint(pem.encode()) == appliance.fingerprint


def test_browser_first_login_wizard_dashboard_and_scrub(appliance):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    new_password = "a much better password"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(appliance.url + "/")
            page.screenshot(path=str(SCREENSHOTS / "e2e-login.png"), full_page=True)

            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", "not the password")
            page.click("#sign-in")
            assert "Wrong user name or password" in page.content()

            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", appliance.password)
            page.click("#sign-in")
            page.wait_for_url("**/password")
            page.screenshot(path=str(SCREENSHOTS / "e2e-first-login-password.png"), full_page=True)
            page.fill("input[name=current]", appliance.password)
            page.fill("input[name=new]", new_password)
            page.fill("input[name=confirm]", new_password)
            page.click("text=Save password")

            # The first-run wizard comes before anything else.
            page.wait_for_url("**/setup/")
            assert appliance.pool in page.locator("main").inner_text()
            page.fill("input[name=hostname]", "e2e-box")
            page.select_option("select[name=timezone]", "Europe/Berlin")
            page.click("#finish-setup")
            page.wait_for_url(appliance.url + "/")
            assert page.locator("h1").inner_text() == "e2e-box"

            card = page.locator("#pool-card")
            assert appliance.pool in card.inner_text()
            assert "ONLINE" in card.inner_text()
            page.screenshot(path=str(SCREENSHOTS / "e2e-dashboard.png"), full_page=True)

            page.click("text=Scrub now")
            page.wait_for_url("**/jobs/*")
            page.wait_for_selector("#job-progress .badge.state-succeeded", timeout=30000)
            page.screenshot(path=str(SCREENSHOTS / "e2e-scrub-job.png"), full_page=True)
            assert "scrub completed" in page.content()
            assert not errors, errors
        finally:
            browser.close()

    # The one-time password is spent; the new one works.
    result = appliance.cli("user", "list", "--json")
    assert json.loads(result.out) == [{"username": "admin", "role": "admin"}]


def test_ctrl_c_stops_everything(appliance):
    children = local_runner().run(["ps", "-o", "pid=", "--ppid", str(appliance.service.pid)], ok_codes=(0, 1))
    gunicorn = children.out.split()
    assert gunicorn, "bulwark run should have a gunicorn child"
    code = appliance.service.stop(timeout=30, sig=signal.SIGINT)
    assert code == 0, appliance.log.read_text()
    assert "Bulwark stopped." in appliance.log.read_text()
    for pid in gunicorn:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", appliance.port), timeout=1).close()
    status = json.loads(appliance.cli("status", "--json").out)
    assert status["pool"]["health"] == "ONLINE"  # the pool stays; only the services stopped
    assert status["daemon"]["running"] is False
    assert os.path.exists(appliance.data_dir / "bulwark.db")
