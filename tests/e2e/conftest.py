"""The whole appliance for end-to-end tests: ``bulwark init`` and ``bulwark run`` on a real zfs-fuse file
pool, HTTPS on a free port, and Chromium driven by Playwright (Debian's /usr/bin/chromium)."""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.system.runner import CommandResult, Service, local_runner

ROOT = Path(__file__).resolve().parents[2]
BULWARK = str(ROOT / ".venv/bin/bulwark")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Appliance:
    data_dir: Path
    pool: str
    port: int
    password: str  # the admin's one-time password from `bulwark init`
    fingerprint: str
    service: Service
    log: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def cli(self, *args: str, ok_codes: tuple[int, ...] = (0,), stdin: str | None = None) -> CommandResult:
        return local_runner().run(
            [BULWARK, "--data-dir", str(self.data_dir), *args],
            ok_codes=ok_codes,
            timeout=60,
            input=stdin.encode() if stdin is not None else None,
        )


def https_get(url: str) -> tuple[int, str, bytes]:
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
            https_get(f"https://127.0.0.1:{port}/login")
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"the web UI did not answer within {timeout} s:\n{log.read_text()}")


@contextlib.contextmanager
def running_appliance(tmp: Path, *, pool_file_size: str = "512M", init_args: Sequence[str] = ()) -> Iterator[Appliance]:
    """``bulwark init`` (a file-backed pool named bwe…) then ``bulwark run``; stopped with Ctrl-C (SIGINT)
    and the pool destroyed at the end."""
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
            pool_file_size,
            "--port",
            str(port),
            "--json",
            *init_args,
        ],
        timeout=120,
    )
    info = json.loads(init.out)
    smb_prefix = f"{pool}-"  # SMB: a free loopback port, and Unix accounts this test can find and remove
    runner.run(
        [BULWARK, "--data-dir", str(data_dir), "smb", "configure", "--port", str(free_port()),
         "--interface", "127.0.0.1", "--account-prefix", smb_prefix],
        timeout=60,
    )  # fmt: skip
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
        for user in Path("/etc/passwd").read_text().splitlines():
            if user.startswith(smb_prefix):
                runner.run(["userdel", user.split(":", 1)[0]], ok_codes=range(256))
        for attempt in range(1, 21):  # zfs-fuse may find the pool busy while its mounts settle
            if runner.run(["zpool", "destroy", "-f", pool], ok_codes=range(256)).returncode == 0:
                break
            if runner.run(["zpool", "list", pool], ok_codes=range(256)).returncode != 0:
                break
            time.sleep(0.1 * attempt)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for a test module (Playwright's driver and the browser stop at its end)."""
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()
