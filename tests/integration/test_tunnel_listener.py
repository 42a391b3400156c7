"""``bulwark web`` (the web UI alone, systemd's bulwark-web unit next to bulwarkd's) follows the tunnel listener
set with ``bulwark tunnel configure --listen-port`` by itself: the new port answers (and its requests are remote)
without a restart by hand, a changed port moves the listener, and a port another program holds never stops the
web UI — it runs on and takes the port once it is free."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import urllib3

from appliance import users
from appliance.cli import main as cli_main
from appliance.system.paths import Paths
from appliance.system.runner import Service, local_runner
from appliance.tunnel.status import listening
from tests.e2e.conftest import BULWARK
from tests.tunnel_fixtures import free_port, make_appliance, wait_port

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

REMOTE_BANNER = "remote-access tunnel"  # what the sign-in page says to a request through the tunnel


def login_page(port: int) -> str:
    answer = requests.get(f"https://127.0.0.1:{port}/login", timeout=10, verify=False)
    assert answer.status_code == 200
    return answer.text


def set_listener(paths: Paths, port: int, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = cli_main(
        ["--data-dir", str(paths.data_dir), "tunnel", "configure", "--host", "jump.msp.example", "--user", "site-a",
         "--remote-port", "20001", "--listen-port", str(port), "--no-scan"]
    )  # fmt: skip
    return code, capsys.readouterr().err


def start_web(paths: Paths, lan: int, log: Path) -> Service:
    with open(log, "ab") as out:
        web = local_runner().spawn(
            [BULWARK, "--data-dir", str(paths.data_dir), "web", "--port", str(lan), "--bind", "127.0.0.1",
             "--web-workers", "1"],
            stdout=out, stderr=out, inherit_env=True,
        )  # fmt: skip
    wait_port(lan, timeout=30)
    return web


def wait_log(log: Path, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{log.read_text()}"
        time.sleep(0.1)


@pytest.fixture
def weak_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(users.WEAK_KDF_ENV, "1")  # for the users made here and for `bulwark web`, which inherits it


@pytest.fixture
def appliance(tmp_path: Path, weak_kdf: None) -> Iterator[Paths]:
    paths, _ = make_appliance(tmp_path)
    yield paths


def test_bulwark_web_follows_the_tunnel_listener(
    appliance: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lan, first, second = free_port(), free_port(), free_port()
    log = tmp_path / "web.log"
    web = start_web(appliance, lan, log)
    try:
        assert REMOTE_BANNER not in login_page(lan)
        assert set_listener(appliance, first, capsys)[0] == 0
        wait_port(first, timeout=20)  # no restart by hand
        assert REMOTE_BANNER in login_page(first) and REMOTE_BANNER not in login_page(lan)
        assert web.poll() is None, "bulwark web must keep running while it restarts gunicorn"

        assert set_listener(appliance, second, capsys)[0] == 0  # moved: the old port closes, the new one answers
        wait_port(second, timeout=20)
        wait_port(first, up=False)
        assert REMOTE_BANNER in login_page(second)
    finally:
        assert web.stop(timeout=30, sig=signal.SIGTERM) == 0, log.read_text()
    assert not listening(lan) and not listening(second)

    # Started while another program holds the listener's port: the LAN is served, the problem logged; the port
    # is taken as soon as it is free.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", second))
        squatter.listen()
        web = start_web(appliance, lan, log)
        try:
            wait_log(log, f"the tunnel listener port {second} cannot be used")
            assert REMOTE_BANNER not in login_page(lan)
        except BaseException:
            web.stop(timeout=30)
            raise
    try:
        wait_port(second, timeout=20)
        assert REMOTE_BANNER in login_page(second)
        assert log.read_text().count(f"the tunnel listener port {second} cannot be used") == 1  # said once
        code, err = set_listener(appliance, lan, capsys)  # the LAN port is never the listener
        assert code != 0 and "is used by another program" in err
    finally:
        assert web.stop(timeout=30, sig=signal.SIGTERM) == 0, log.read_text()
