"""Remote access end to end in the real appliance: ``bulwark init`` and ``bulwark run`` (bulwarkd in its process,
gunicorn as its child) and a real OpenSSH jump host on loopback (tests/tunnel_fixtures.py). Everything is set up
through the public surfaces only — ``bulwark user add``, the Account page's second factor, ``bulwark tunnel
configure|pubkey|scan|trust`` — and everything is observed through them: ``bulwark tunnel status --json``, the
sign-in pages, the audit page, ``/metrics``. Nothing is restarted by hand: ``bulwark run`` binds the newly set
tunnel listener itself, and bulwarkd's supervisor brings the tunnel up, down and up again."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests
import urllib3

from appliance.tunnel import keys
from appliance.tunnel.status import listening
from tests.e2e.conftest import Appliance, running_appliance
from tests.tunnel_fixtures import (
    META_CSRF,
    TECH,
    TECH_PASSWORD,
    JumpHost,
    free_port,
    jump_host,
    jump_user,
    sign_in,
    wait_port,
)

__all__ = ["jump_host", "jump_user"]  # fixtures
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

SECRET = re.compile(r'<code id="totp-secret">([A-Z2-7]+)</code>')
REMOTE_LOGIN_ROW = re.compile(r'<span class="badge warn">remote</span></td><td>login</td>')


def tunnel_status(app: Appliance) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(app.cli("tunnel", "status", "--json").out)
    return report


def wait_status(app: Appliance, check: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    report = tunnel_status(app)
    while not check(report):
        if time.monotonic() > deadline:
            raise AssertionError(f"tunnel state not reached in {timeout} s: {json.dumps(report, indent=1)}")
        time.sleep(0.2)
        report = tunnel_status(app)
    return report


def enroll_totp(web: requests.Session, base: str) -> pyotp.TOTP:
    """Turn on the second factor on the Account page, as a person with an authenticator app would."""
    page = web.get(f"{base}/account/totp", timeout=10, verify=False)
    secret, csrf = SECRET.search(page.text), META_CSRF.search(page.text)
    assert secret and csrf, page.text[:500]
    authenticator = pyotp.TOTP(secret.group(1))
    # The previous step's code (accepted for clock drift): the sign-in through the tunnel uses the current one.
    code = authenticator.at(time.time() - authenticator.interval)
    done = web.post(
        f"{base}/account/totp",
        data={"code": code, "csrf_token": csrf.group(1)},
        allow_redirects=False,
        timeout=10,
        verify=False,
    )
    assert done.status_code == 302 and done.headers["Location"].endswith("/account/"), done.text[:500]
    return authenticator


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line names ``text`` (the appliance's data directory: its ssh, gunicorn, itself)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes() and alive(int(cmdline.parent.name)):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def configure_args(jump: JumpHost, remote_port: int, listen_port: int) -> list[str]:
    return [
        "tunnel", "configure", "--host", "127.0.0.1", "--port", str(jump.port), "--user", jump.user,
        "--remote-port", str(remote_port), "--listen-port", str(listen_port), "--alert-after", "2s", "--no-scan",
    ]  # fmt: skip


def configure_tunnel(app: Appliance, jump: JumpHost, remote_port: int, listen_port: int) -> None:
    """``bulwark tunnel configure``, the printed line into the jump host user's authorized_keys, then the jump
    host's key scanned, compared with the key the jump host really has, and pinned with ``bulwark tunnel trust``."""
    out = app.cli(*configure_args(jump, remote_port, listen_port)).out
    assert "jump host key not pinned yet" in out
    line = app.cli("tunnel", "pubkey").out.strip()
    assert line == out.strip().splitlines()[-1]
    assert line.startswith(f'restrict,port-forwarding,permitlisten="127.0.0.1:{remote_port}",')
    jump.authorized.write_text(line + "\n")
    assert tunnel_status(app)["jump_host"]["host_key_fingerprint"] is None  # nothing trusted yet

    scanned = json.loads(app.cli("tunnel", "scan", "--json").out)
    assert scanned["fingerprint"] == keys.parse_public_key(jump.host_key).fingerprint
    assert "pinned" in app.cli("tunnel", "trust", scanned["fingerprint"]).out


def test_bulwark_run_brings_the_tunnel_up_and_keeps_it(tmp_path: Path, jump_host: JumpHost) -> None:
    listen_port, remote_port = free_port(), free_port()
    with running_appliance(tmp_path) as app:
        lan = app.url
        # An operator with a second factor, set up on the LAN (where the code is not demanded).
        app.cli("user", "add", TECH, "--role", "operator", "--password-stdin", stdin=TECH_PASSWORD + "\n")
        lan_web, lan_pages = sign_in(lan, lambda: pytest.fail("the LAN sign-in asked for a code"))
        assert "remote-access tunnel" not in lan_pages[0]
        authenticator = enroll_totp(lan_web, lan)
        assert not listening(listen_port)

        configure_tunnel(app, jump_host, remote_port, listen_port)

        # (1) bulwarkd's supervisor brings the tunnel up; (2) `bulwark run` bound the new listener by itself.
        report = wait_status(app, lambda r: r["state"] == "connected" and r["local_listener"] is True, timeout=30)
        first_ssh = report["pid"]
        assert first_ssh and alive(first_ssh) and report["last_error"] is None
        assert report["presented_host_key"] == keys.parse_public_key(jump_host.host_key).fingerprint
        assert report["local_port"] == listen_port and listening(listen_port)
        assert "the tunnel listener is now port" in app.log.read_text()
        assert jump_host.sessions(), "the jump host has no session from the appliance"
        wait_port(remote_port)

        # (3) Through the jump host's forwarded port: a remote session, which must give its code.
        remote = f"https://127.0.0.1:{remote_port}"
        remote_web, pages = sign_in(remote, lambda: authenticator.now())
        assert "remote-access tunnel" in pages[0]
        assert pages[1].endswith("/login/totp"), "a remote sign-in must ask for the second factor"
        home = remote_web.get(f"{remote}/jobs/", timeout=10, verify=False).text
        assert "Remote session through the MSP tunnel" in home and "(operator, remote)" in home
        audit = lan_web.get(f"{lan}/audit/", params={"action": "login"}, timeout=10, verify=False).text
        assert len(REMOTE_LOGIN_ROW.findall(audit)) == 1, "the remote sign-in must be marked remote in the audit"
        assert audit.count("<td>login</td>") == 2  # the LAN sign-in too, unmarked

        # (4) /metrics carries the tunnel's state.
        metrics = requests.get(f"{lan}/metrics", timeout=10, verify=False).text
        assert 'bulwark_tunnel_state{state="connected"} 1.0' in metrics
        assert 'bulwark_tunnel_state{state="down"} 0.0' in metrics
        since = re.search(r"^bulwark_tunnel_connected_since_seconds (\S+)$", metrics, re.M)
        assert since and float(since.group(1)) > 0

        # The listener moves while the tunnel is up: `bulwark run` rebinds it, bulwarkd restarts ssh towards it.
        moved_port = free_port()
        out = app.cli(*configure_args(jump_host, remote_port, moved_port)).out
        assert f"jump host key {report['presented_host_key']} still pinned" in out
        moved = wait_status(
            app, lambda r: r["state"] == "connected" and r["pid"] != first_ssh and r["local_listener"] is True
        )
        assert moved["local_port"] == moved_port and not listening(listen_port) and not alive(first_ssh)
        wait_port(remote_port)
        assert "remote-access tunnel" in requests.get(f"{remote}/login", timeout=10, verify=False).text
        still = remote_web.get(f"{remote}/jobs/", timeout=10, verify=False).text  # the session is still remote
        assert "Remote session through the MSP tunnel" in still and "(operator, remote)" in still
        second_ssh = moved["pid"]

        # (5) The jump host goes away: the daemon notices; it comes back: the daemon reconnects by itself.
        jump_host.stop()
        down = wait_status(app, lambda r: r["state"] in ("down", "connecting") and r["last_error"] is not None)
        assert not alive(second_ssh), "the ssh of the lost connection must be gone"
        assert down["connected_since"] is None
        metrics = requests.get(f"{lan}/metrics", timeout=10, verify=False).text
        assert 'bulwark_tunnel_state{state="connected"} 0.0' in metrics
        jump_host.start()
        back = wait_status(app, lambda r: r["state"] == "connected", timeout=30)
        assert back["pid"] != second_ssh and back["reconnects"] >= 2
        wait_port(remote_port)
        again = requests.get(f"{remote}/login", timeout=10, verify=False)
        assert again.status_code == 200 and "remote-access tunnel" in again.text

        # (6) Stopping the appliance stops its ssh: no process of this appliance is left.
        ssh_pids = {first_ssh, second_ssh, back["pid"]}
        assert app.service.stop(timeout=30, sig=signal.SIGINT) == 0, app.log.read_text()[-3000:]
        assert not [pid for pid in ssh_pids if alive(pid)], "an ssh of the appliance outlived it"
        assert processes_mentioning(str(app.data_dir)) == []
        deadline = time.monotonic() + 5
        while jump_host.sessions() and time.monotonic() < deadline:  # sshd ends the session once ssh has gone
            time.sleep(0.1)
        assert not jump_host.sessions(), "the jump host still has the appliance's session"
        stopped = tunnel_status(app)
        assert stopped["state"] == "down" and "bulwarkd is not running" in stopped["last_error"]
