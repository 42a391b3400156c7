"""Remote access against a real OpenSSH jump host on loopback (tests/tunnel_fixtures.py) and the real web UI
under gunicorn with its tunnel listener: the tunnel's supervisor (the thread bulwarkd runs) keeps a real
``ssh -N -R`` up; requests through the jump host's forwarded port are remote sessions; the appliance's key can do
nothing else; a changed host key stops the tunnel with an alert; killed sessions and a dead sshd reconnect with
backoff; ``bulwark tunnel status --json`` follows each state."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests
import urllib3

from appliance import alerts, server, users
from appliance.cli import main as cli_main
from appliance.daemon import HEARTBEAT_KEY
from appliance.store import Store
from appliance.system import settings
from appliance.system.paths import Paths
from appliance.system.runner import Service, local_runner
from appliance.tunnel import keys
from appliance.tunnel import status as tunnel_status
from appliance.tunnel.supervisor import Backoff, Supervisor
from tests.tunnel_fixtures import (
    TECH,
    JumpHost,
    free_port,
    jump_host,
    jump_user,
    make_appliance,
    sign_in,
    wait_port,
)

__all__ = ["jump_host", "jump_user"]  # fixtures
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


@dataclass
class Site:
    """An appliance's data directory, its web UI (LAN port and tunnel listener) and, once started, its tunnel."""

    paths: Paths
    store: Store
    lan_port: int
    listen_port: int
    web: Service
    totp_secret: str
    stop: threading.Event
    supervisor: Supervisor | None = None

    def cli(self, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli_main(["--data-dir", str(self.paths.data_dir), *args])
        out, err = capsys.readouterr()
        return code, out, err

    def start_tunnel(self) -> Supervisor:
        self.supervisor = Supervisor(
            self.store,
            local_runner(),
            self.paths,
            self.stop,
            backoff=Backoff(base=0.5, cap=4.0, stable_after=60.0),
            poll=0.1,
            sample_every=0.5,
        )
        self.supervisor.start()
        return self.supervisor

    def code(self) -> str:
        """The authenticator's code now, usable again (as if the next one: one code is accepted only once)."""
        return self.code_for(TECH, self.totp_secret)

    def code_for(self, username: str, secret: str) -> str:
        with self.store.write() as conn:
            conn.execute("UPDATE users SET totp_last_step = NULL WHERE username = ?", (username,))
        return pyotp.TOTP(secret).now()

    def status(self) -> dict[str, Any]:
        # bulwarkd's heartbeat, which the real daemon writes every 5 s (the supervisor here runs without it)
        self.store.set_setting(HEARTBEAT_KEY, {"pid": os.getpid(), "at": time.time(), "started_at": time.time()})
        return tunnel_status.report(self.store, self.paths)

    def wait_for(self, check: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        report = self.status()
        while time.monotonic() < deadline:
            report = self.status()
            if check(report):
                return report
            time.sleep(0.1)
        raise AssertionError(f"tunnel state not reached in {timeout} s: {json.dumps(report, indent=1)}")


@pytest.fixture
def site(tmp_path: Path, weak_kdf: None) -> Iterator[Site]:
    paths, secret = make_appliance(tmp_path)
    store = Store.open(paths.db)
    listen_port = free_port()
    settings.update(store, tunnel_listen_port=listen_port)
    lan_port = free_port()
    web = server.start_web(
        local_runner(),
        paths,
        server.WebOptions(port=lan_port, bind="127.0.0.1", workers=1, tunnel_port=listen_port),
    )
    stop = threading.Event()
    s = Site(paths, store, lan_port, listen_port, web, secret, stop)
    try:
        assert server.wait_until_listening(lan_port, web), "the web UI did not start"
        wait_port(listen_port)
        yield s
    finally:
        stop.set()
        if s.supervisor is not None:
            s.supervisor.join(15)
            assert not s.supervisor.is_alive()
        web.stop(timeout=15)
        store.close()


@pytest.fixture
def weak_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(users.WEAK_KDF_ENV, "1")


def configure(site: Site, jump: JumpHost, capsys: pytest.CaptureFixture[str], remote_port: int) -> str:
    """``bulwark tunnel configure`` with the jump host's fingerprint given beforehand; installs the printed line."""
    fingerprint = keys.parse_public_key(jump.host_key).fingerprint
    code, out, err = site.cli(
        "tunnel",
        "configure",
        "--host",
        "127.0.0.1",
        "--port",
        str(jump.port),
        "--user",
        jump.user,
        "--remote-port",
        str(remote_port),
        "--host-key-fingerprint",
        fingerprint,
        "--alert-after",
        "2s",
        capsys=capsys,
    )
    assert code == 0, err
    assert f"jump host key {fingerprint}" in out
    line = out.strip().splitlines()[-1]
    assert line.startswith(
        f'restrict,port-forwarding,permitlisten="127.0.0.1:{remote_port}",permitopen="127.0.0.1:1",'
        'command="/bin/false" ssh-ed25519 '
    )
    code, pubkey_out, _ = site.cli("tunnel", "pubkey", capsys=capsys)
    assert code == 0 and pubkey_out.strip() == line
    jump.authorized.write_text(line + "\n")
    return line


def cli_status(site: Site, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    site.status()  # heartbeat
    code, out, err = site.cli("tunnel", "status", "--json", capsys=capsys)
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_tunnel_up_and_remote_sessions_through_it(
    site: Site, jump_host: JumpHost, capsys: pytest.CaptureFixture[str]
) -> None:
    remote_port = free_port()
    configure(site, jump_host, capsys, remote_port)
    key = keys.private_key_path(site.paths)
    assert key.stat().st_mode & 0o777 == 0o600 and key.parent.stat().st_mode & 0o777 == 0o700

    assert cli_status(site, capsys)["state"] == "connecting"  # configured; bulwarkd not yet at it
    site.start_tunnel()
    report = site.wait_for(lambda r: r["state"] == "connected")
    assert report["connected_since"] and report["pid"] and report["last_error"] is None
    assert report["local_listener"] is True
    assert report["presented_host_key"] == keys.parse_public_key(jump_host.host_key).fingerprint
    wait_port(remote_port)

    # Through the jump host's forwarded port: the sign-in page says it is remote and asks for the code.
    base = f"https://127.0.0.1:{remote_port}"
    web, pages = sign_in(base, site.code)
    assert "remote-access tunnel" in pages[0]
    assert pages[1].endswith("/login/totp"), "a remote sign-in must ask for the second factor"
    home = web.get(f"{base}/jobs/", timeout=10, verify=False).text
    assert "Remote session through the MSP tunnel" in home and "(operator, remote)" in home
    logins = site.store.query("SELECT * FROM audit WHERE action = 'login' ORDER BY id")
    assert json.loads(logins[-1]["details"]) == {"remote": True}

    # A Host header naming the LAN port changes nothing: what counts is the listener the request arrived on.
    _, spoofed = sign_in(base, site.code, host_header=f"127.0.0.1:{site.lan_port}")
    assert pages[1].endswith("/login/totp") and spoofed[1].endswith("/login/totp")

    # On the LAN the same account signs in without being asked (TOTP is optional there) and is not remote.
    _, lan_pages = sign_in(f"https://127.0.0.1:{site.lan_port}", site.code)
    assert "remote-access tunnel" not in lan_pages[0]

    report = site.wait_for(lambda r: r["bytes_received"] > 2000 and r["bytes_sent"] > 2000)
    cli = cli_status(site, capsys)
    assert cli["state"] == "connected" and cli["jump_host"]["user"] == jump_host.user
    assert cli["reconnects"] == 0 and cli["bytes_sent"] > 0


def test_remote_sessions_switched_off_on_site(
    site: Site, jump_host: JumpHost, capsys: pytest.CaptureFixture[str]
) -> None:
    remote_port = free_port()
    configure(site, jump_host, capsys, remote_port)
    site.start_tunnel()
    site.wait_for(lambda r: r["state"] == "connected")
    wait_port(remote_port)
    base = f"https://127.0.0.1:{remote_port}"
    assert requests.get(f"{base}/login", verify=False, timeout=10).status_code == 200

    code, out, _ = site.cli("tunnel", "remote-sessions", "block", capsys=capsys)
    assert code == 0 and "BLOCKED" in out
    blocked = requests.get(f"{base}/login", verify=False, timeout=10)
    assert blocked.status_code == 403 and "switched off at the site" in blocked.text
    api = requests.get(f"{base}/api/v1/tunnel", verify=False, timeout=10)
    assert api.status_code == 403 and api.json()["error"]["code"] == "remote_sessions_blocked"
    assert requests.get(f"https://127.0.0.1:{site.lan_port}/login", verify=False, timeout=10).status_code == 200
    assert cli_status(site, capsys)["remote_sessions"]["allowed"] is False

    site.cli("tunnel", "remote-sessions", "allow", capsys=capsys)
    assert requests.get(f"{base}/login", verify=False, timeout=10).status_code == 200


def ssh_with_appliance_key(
    site: Site, jump: JumpHost, *extra: str, timeout: float = 10
) -> subprocess.CompletedProcess[str]:
    known = site.paths.data_dir / "tunnel" / "known_hosts"
    argv = [
        "ssh", "-F", "/dev/null", "-i", str(keys.private_key_path(site.paths)), "-p", str(jump.port),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known}",
        "-o", "HostKeyAlias=bulwark-jump", "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
        *extra,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603


def test_the_appliance_key_can_do_nothing_else(
    site: Site, jump_host: JumpHost, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    remote_port = free_port()
    configure(site, jump_host, capsys, remote_port)
    keys.write_known_hosts(site.paths, jump_host.host_key)
    target = f"{jump_host.user}@127.0.0.1"

    marker = jump_host.drop / "ran"
    ran = ssh_with_appliance_key(site, jump_host, target, f"touch {marker}; echo PWNED")
    assert "PWNED" not in ran.stdout and ran.returncode != 0 and not marker.exists()
    tty = ssh_with_appliance_key(site, jump_host, "-tt", target, "echo PWNED")
    assert "PWNED" not in tty.stdout

    other = ssh_with_appliance_key(
        site, jump_host, "-o", "ExitOnForwardFailure=yes", "-N", "-R", f"127.0.0.1:{free_port()}:127.0.0.1:22", target
    )
    assert other.returncode == 255 and "remote port forwarding failed" in other.stderr
    wildcard = ssh_with_appliance_key(
        site, jump_host, "-o", "ExitOnForwardFailure=yes", "-N", "-R", f"0.0.0.0:{remote_port}:127.0.0.1:22", target
    )
    assert wildcard.returncode == 255 and "remote port forwarding failed" in wildcard.stderr

    stdio = ssh_with_appliance_key(site, jump_host, "-W", f"127.0.0.1:{jump_host.port}", target)
    assert stdio.returncode == 255 and "SSH-2.0" not in stdio.stdout
    local_port = free_port()
    proc = subprocess.Popen(  # noqa: S603
        ["ssh", "-F", "/dev/null", "-i", str(keys.private_key_path(site.paths)), "-p", str(jump_host.port),
         "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", f"UserKnownHostsFile={site.paths.data_dir / 'tunnel' / 'known_hosts'}",
         "-o", "HostKeyAlias=bulwark-jump", "-o", "StrictHostKeyChecking=yes",
         "-N", "-L", f"127.0.0.1:{local_port}:127.0.0.1:{jump_host.port}", target],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_port(local_port)
        import socket

        with socket.create_connection(("127.0.0.1", local_port), timeout=5) as conn:
            conn.settimeout(3)
            try:
                banner = conn.recv(100)
            except TimeoutError:
                banner = b""
        assert b"SSH-2.0" not in banner, "a local forward through the jump host must be refused"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "administratively prohibited" in err
    assert "PWNED" not in jump_host.log.read_text()


def test_changed_host_key_stops_the_tunnel_and_alerts(
    site: Site, jump_host: JumpHost, capsys: pytest.CaptureFixture[str]
) -> None:
    remote_port = free_port()
    configure(site, jump_host, capsys, remote_port)
    pinned = keys.parse_public_key(jump_host.host_key).fingerprint
    site.start_tunnel()
    site.wait_for(lambda r: r["state"] == "connected")

    new_key = jump_host.change_host_key()  # the jump host (or someone in between) now shows another key
    presented = keys.parse_public_key(new_key).fingerprint
    report = site.wait_for(lambda r: r["blocked"] == "host_key_changed")
    assert report["state"] == "down" and report["next_attempt_at"] is None
    assert "CHANGED" in report["last_error"] and report["presented_host_key"] == presented
    alert = alerts.get_active(site.store, "tunnel:host_key")
    assert alert is not None and alert.level == "critical" and presented in alert.message and pinned in alert.message

    # No silent reconnect: no ssh runs, and the jump host sees no new connection attempt for a while.
    sessions_log = jump_host.log.read_text().count("Connection from")
    time.sleep(3)
    assert jump_host.log.read_text().count("Connection from") == sessions_log
    assert site.status()["pid"] is None and cli_status(site, capsys)["blocked"] == "host_key_changed"

    # A person compares the new fingerprint with the MSP and pins it: the tunnel comes back, the alert clears.
    code, out, _ = site.cli("tunnel", "scan", capsys=capsys)
    assert code == 0 and presented in out
    code, _, err = site.cli("tunnel", "trust", "SHA256:" + "A" * 43, capsys=capsys)
    assert code == 3 and "not the expected" in err  # a wrong fingerprint pins nothing
    code, _, _ = site.cli("tunnel", "trust", presented, capsys=capsys)
    assert code == 0
    site.wait_for(lambda r: r["state"] == "connected")
    assert alerts.get_active(site.store, "tunnel:host_key") is None


def test_killed_sessions_and_a_dead_jump_host_reconnect_with_backoff(
    site: Site, jump_host: JumpHost, capsys: pytest.CaptureFixture[str]
) -> None:
    remote_port = free_port()
    configure(site, jump_host, capsys, remote_port)
    site.start_tunnel()
    first = site.wait_for(lambda r: r["state"] == "connected")

    # The server side of the session is killed: ssh notices at once and comes back within seconds.
    killed_at = time.monotonic()
    assert jump_host.kill_sessions()
    again = site.wait_for(lambda r: r["state"] == "connected" and r["reconnects"] >= 1, timeout=10)
    assert time.monotonic() - killed_at < 6
    assert again["connected_since"] > first["connected_since"]
    wait_port(remote_port)
    assert requests.get(f"https://127.0.0.1:{remote_port}/login", verify=False, timeout=10).status_code == 200

    # The whole jump host goes away: down, with a growing wait between attempts, and an alert after 2 s.
    jump_host.stop()
    closed = site.wait_for(lambda r: r["state"] == "down")
    assert "closed the connection" in closed["last_error"]
    down = site.wait_for(lambda r: r["state"] == "down" and "refused" in r["last_error"])
    assert "sshd runs on the jump host" in down["last_error_hint"] and down["next_attempt_at"]
    # Each wait lies in [½, 1] of base × 2^(failures−1), capped (base 0.5 s, cap 4 s here): it grows, with jitter.
    backoff = Backoff(base=0.5, cap=4.0)
    seen = down["failures_in_a_row"]
    waits = []
    for _ in range(3):
        r = site.wait_for(lambda r: r["state"] == "down" and r["failures_in_a_row"] > seen, timeout=15)  # noqa: B023
        seen = r["failures_in_a_row"]
        wait = r["next_attempt_at"] - r["last_error_at"]
        step = min(backoff.cap, backoff.base * 2 ** (seen - 1))
        assert step / 2 - 0.01 <= wait <= step + 0.01, (seen, wait)
        waits.append(wait)
    assert seen >= 3 and len(set(waits)) == 3  # jitter: never the same wait twice
    alert = site.wait_for(lambda r: alerts.get_active(site.store, "tunnel:down") is not None, timeout=10)
    assert alert["state"] in ("down", "connecting")
    assert cli_status(site, capsys)["state"] in ("down", "connecting")

    jump_host.start()
    back = site.wait_for(lambda r: r["state"] == "connected", timeout=15)
    assert back["reconnects"] >= 4 and back["failures_in_a_row"] > 0
    assert alerts.get_active(site.store, "tunnel:down") is None


def test_disable_enable_and_status_states(site: Site, jump_host: JumpHost, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_status(site, capsys)["state"] == "disabled"  # not configured
    code, _, err = site.cli("tunnel", "pubkey", capsys=capsys)
    assert code == 4 and "not configured" in err
    remote_port = free_port()
    configure(site, jump_host, capsys, remote_port)
    jump_host.authorized.write_text("")  # the MSP has not added the key yet
    site.start_tunnel()
    refused = site.wait_for(lambda r: r["state"] == "down" and r["last_error"] is not None)
    assert (
        "refused the appliance's key" in refused["last_error"] and "bulwark tunnel pubkey" in refused["last_error_hint"]
    )

    code, out, _ = site.cli("tunnel", "pubkey", capsys=capsys)
    jump_host.authorized.write_text(out)
    site.cli("tunnel", "reconnect", capsys=capsys)
    site.wait_for(lambda r: r["state"] == "connected", timeout=8)

    site.cli("tunnel", "disable", capsys=capsys)
    off = site.wait_for(lambda r: r["state"] == "disabled")
    assert off["pid"] is None
    assert cli_status(site, capsys)["state"] == "disabled"
    wait_port(remote_port, up=False)
    site.cli("tunnel", "enable", capsys=capsys)
    site.wait_for(lambda r: r["state"] == "connected")
