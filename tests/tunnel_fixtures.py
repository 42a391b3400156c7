"""A real OpenSSH jump host for the remote-access tests: its own Unix user (made and removed here), its own host
key, its own sshd config on a free loopback port, started and stopped by PID.

Its sshd allows every kind of forwarding and TTYs, so that what stops the appliance's key from running a command
or opening another forward is the key line's own restrictions (the line ``bulwark tunnel pubkey`` prints)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyotp
import pytest
import requests

from appliance import provision, users
from appliance.auth import totp
from appliance.store import Store
from appliance.system import settings, tls
from appliance.system.paths import Paths
from appliance.system.runner import Service, local_runner
from appliance.system.settings import ApplianceSettings, PoolConfig

SSHD = "/usr/sbin/sshd"
TECH = "tech"  # the operator who signs in through the tunnel
TECH_PASSWORD = "correct horse battery staple 7"  # noqa: S105 - a test account
META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, *, up: bool = True, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} did not become {'reachable' if up else 'free'} within {timeout} s")


def new_host_key(path: Path) -> str:
    """An ed25519 host key; returns its public line ``ssh-ed25519 AAAA…``."""
    for p in (path, path.with_name(path.name + ".pub")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    local_runner().run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jump", "-f", str(path)])
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


class JumpHost:
    """sshd on 127.0.0.1:``port`` for the Unix user ``user``; ``authorized`` holds that user's keys."""

    def __init__(self, root: Path, user: str) -> None:
        self.root = root
        self.user = user
        self.port = free_port()
        self.host_key_path = root / "ssh_host_ed25519_key"
        self.host_key = new_host_key(self.host_key_path)
        self.keys_dir = root / "authorized"
        self.keys_dir.mkdir()
        self.authorized = self.keys_dir / user
        self.authorized.write_text("")
        self.authorized.chmod(0o644)  # sshd reads it as the user
        self.drop = root / "drop"  # a folder the user could write to, if the key could run a command
        self.drop.mkdir()
        self.drop.chmod(0o1777)
        self.config = root / "sshd_config"
        self.log = root / "sshd.log"
        self.service: Service | None = None
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key_path}",
                    f"PidFile {root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.keys_dir}/%u",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    f"AllowUsers {user}",
                    "AllowTcpForwarding yes",
                    "PermitTTY yes",
                    "X11Forwarding no",
                    "ClientAliveInterval 5",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)
        local_runner().run([SSHD, "-t", "-f", str(self.config)])
        with open(self.log, "ab") as out:
            self.service = local_runner().spawn([SSHD, "-D", "-e", "-f", str(self.config)], stderr=out)
        wait_port(self.port)

    def stop(self) -> None:
        """Stop the listener and every session it started (each session is its own process, in the same group
        only until it forks: kill the children by PID too)."""
        if self.service is None:
            return
        sessions = self.sessions()
        self.service.stop(timeout=5)
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.service = None
        wait_port(self.port, up=False)

    def sessions(self) -> list[int]:
        """PIDs of the per-connection sshd processes under our listener (the privileged one of each connection
        and its unprivileged child, which holds the socket)."""
        if self.service is None:
            return []
        found: list[int] = []
        todo = [self.service.pid]
        while todo:
            pid = todo.pop()
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    children = [int(p) for p in task.read_text().split()]
                    found += children
                    todo += children
        return found

    def kill_sessions(self) -> list[int]:
        killed = self.sessions()
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return killed

    def change_host_key(self) -> str:
        """A new host key, and sshd restarted with it (as a man in the middle, or a reinstalled host, would be)."""
        self.stop()
        self.host_key = new_host_key(self.host_key_path)
        self.start()
        return self.host_key


@pytest.fixture
def jump_user() -> Iterator[str]:
    """A Unix user for the tunnel on the jump host, removed at the end (``UsePAM no`` needs it unlocked)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create the jump host's user")
    user = f"bwj{secrets.token_hex(3)}"
    runner = local_runner()
    runner.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh", user])
    try:
        runner.run(["usermod", "-p", "*", user])
        yield user
    finally:
        for pid in processes_of(user):  # a session the test could not end (never a process of anyone else)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while runner.run(["userdel", user], ok_codes=range(256)).returncode != 0:
            if time.monotonic() > deadline:
                pytest.fail(f"the jump host's user {user} could not be removed")
            time.sleep(0.2)


def processes_of(user: str) -> list[int]:
    """PIDs running as ``user`` (read from /proc)."""
    import pwd

    uid = str(pwd.getpwnam(user).pw_uid)
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith("Uid:") and line.split()[1] == uid:
                    found.append(int(status.parent.name))
    return found


@pytest.fixture
def jump_host(jump_user: str) -> Iterator[JumpHost]:
    # Not under pytest's temporary folder (0700, root's): sshd reads the user's authorized keys as that user.
    root = Path(tempfile.mkdtemp(prefix="bulwark-jump-"))
    root.chmod(0o755)
    try:
        host = JumpHost(root, jump_user)
        host.start()
        try:
            yield host
        finally:
            host.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sign_in(
    base: str, code: Callable[[], str], *, host_header: str | None = None
) -> tuple[requests.Session, list[str]]:
    """Sign in as ``tech`` over HTTPS at ``base``; returns the session and the pages seen on the way."""
    web = requests.Session()
    if host_header:
        web.headers["Host"] = host_header
    pages = []
    login = web.get(f"{base}/login", timeout=10, verify=False)
    pages.append(login.text)
    csrf = META_CSRF.search(login.text)
    assert csrf, login.text[:500]
    answer = web.post(
        f"{base}/login",
        data={"username": TECH, "password": TECH_PASSWORD, "csrf_token": csrf.group(1)},
        allow_redirects=False,
        timeout=10,
        verify=False,
    )
    pages.append(answer.headers.get("Location", ""))
    if answer.headers.get("Location", "").endswith("/login/totp"):
        form = web.get(f"{base}/login/totp", timeout=10, verify=False)
        pages.append(form.text)
        token = META_CSRF.search(form.text)
        assert token
        answer = web.post(
            f"{base}/login/totp",
            data={"code": code(), "csrf_token": token.group(1)},
            allow_redirects=False,
            timeout=10,
            verify=False,
        )
        pages.append(answer.headers.get("Location", ""))
    assert answer.status_code == 302, (answer.status_code, answer.text[:500])
    return web, pages


def make_appliance(root: Path) -> tuple[Paths, str]:
    """The data directory as ``bulwark init`` leaves it (no pool: the tunnel does not need one), with an
    operator ``tech`` who has a second factor."""
    paths = Paths(root / "data")
    paths.make_dirs()
    tls.create_self_signed(paths.tls_cert, paths.tls_key, "bulwark-test")
    provision._write_secret(paths.secret_key)
    store = Store.open(paths.db)
    try:
        settings.save(
            store,
            ApplianceSettings(
                pool=PoolConfig(name="bwtunnel", layout="file"),
                hostname="site-a",
                initialized_at=time.time(),
            ),
        )
        store.set_setting("setup.completed", True)
        user = users.create_user(store, TECH, TECH_PASSWORD, "operator")
        secret = totp.new_secret()
        totp.enable(store, user.id, secret, pyotp.TOTP(secret).now())
    finally:
        store.close()
    return paths, secret
