"""The whole appliance, as a user meets it: `bulwark init`, `bulwark run` over HTTPS, a browser.

Everything is real: zfs-fuse with a file-backed pool, gunicorn serving TLS, the daemon running jobs,
Chromium driven by Playwright. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.system import tls
from appliance.system.runner import Service, local_runner

ROOT = Path(__file__).resolve().parents[2]
BULWARK = str(ROOT / ".venv/bin/bulwark")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"

pytestmark = [pytest.mark.zfs, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Appliance:
    data_dir: Path
    pool: str
    port: int
    password: str
    fingerprint: str
    service: Service
    log: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def cli(self, *args: str, ok_codes=(0,)):
        return local_runner().run([BULWARK, "--data-dir", str(self.data_dir), *args], ok_codes=ok_codes, timeout=60)


def _get(url: str) -> tuple[int, str, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:  # noqa: S310 - our own test URL
        return resp.status, resp.geturl(), resp.read()


def _wait_https(port: int, service: Service, log: Path, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            pytest.fail(f"bulwark run exited early ({service.proc.returncode}):\n{log.read_text()}")
        try:
            _get(f"https://127.0.0.1:{port}/login")
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"the web UI did not answer within {timeout} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def appliance(tmp_path_factory, zfs_daemon):
    tmp = tmp_path_factory.mktemp("appliance")
    data_dir = tmp / "data"
    pool = f"bwe{secrets.token_hex(4)}"
    port = free_port()
    runner = local_runner()
    init = runner.run(
        [
            BULWARK,
            "--data-dir",
            str(data_dir),
            "init",
            "--pool-name",
            pool,
            "--pool-file-size",
            "512M",
            "--port",
            str(port),
            "--json",
        ],
        timeout=120,
    )
    info = json.loads(init.out)
    log = tmp / "run.log"
    service = None
    try:
        with open(log, "wb") as out:
            service = runner.spawn(
                [BULWARK, "--data-dir", str(data_dir), "run"], stdout=out, stderr=out, inherit_env=True
            )
        _wait_https(port, service, log)
        yield Appliance(
            data_dir, pool, port, info["admin"]["one_time_password"], info["tls_fingerprint_sha256"], service, log
        )
    finally:
        if service is not None and service.poll() is None:
            service.stop(timeout=30, sig=signal.SIGINT)
        runner.run(["zpool", "destroy", pool], ok_codes=(0, 1))


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
    code, url, body = _get(appliance.url + "/")
    assert code == 200 and url.endswith("/login?next=/")
    assert b"Sign in" in body
    pem = ssl.get_server_certificate(("127.0.0.1", appliance.port))
    assert tls.fingerprint(pem.encode()) == appliance.fingerprint


def test_browser_first_login_dashboard_and_scrub(appliance):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    new_password = "a much better password"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(appliance.url + "/")
            page.screenshot(path=str(SCREENSHOTS / "e2e-login.png"), full_page=True)

            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", "not the password")
            page.click("text=Sign in >> nth=-1")
            assert "Wrong user name or password" in page.content()

            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", appliance.password)
            page.click("main button[type=submit]")
            page.wait_for_url("**/password")
            page.screenshot(path=str(SCREENSHOTS / "e2e-first-login-password.png"), full_page=True)
            page.fill("input[name=current]", appliance.password)
            page.fill("input[name=new]", new_password)
            page.fill("input[name=confirm]", new_password)
            page.click("text=Save password")
            page.wait_for_url(appliance.url + "/")

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
