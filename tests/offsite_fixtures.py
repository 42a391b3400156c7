"""Real servers for the offsite targets: OpenSSH's sshd serving SFTP only (its own user, host key and config on a
free loopback port) and moto's S3 server on loopback, each started and stopped by PID."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from appliance.offsite.targets.s3 import S3Config, S3Target
from appliance.offsite.targets.sftp import SftpConfig, SftpTarget
from appliance.system.paths import Paths
from appliance.system.runner import Service, local_runner
from tests.tunnel_fixtures import SSHD, free_port, new_host_key, wait_port

MOTO = str(Path(sys.executable).with_name("moto_server"))


@dataclass
class SftpServer:
    root: Path
    user: str
    port: int
    host_key: str
    host_key_path: Path
    client_key: str  # the private key that the server accepts
    service: Service | None = None

    def config(self, path: str = "repo") -> SftpConfig:
        return SftpConfig("127.0.0.1", self.port, self.user, f"{self.home}/{path}", self.host_key)

    @property
    def home(self) -> Path:
        return self.root / "home"

    def target(self, workdir: Path, name: str = "sftp", path: str = "repo") -> SftpTarget:
        return SftpTarget(name, self.config(path), self.client_key, workdir)

    def start(self) -> None:
        cfg = self.root / "sshd_config"
        cfg.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key_path}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.root}/authorized/%u",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    f"AllowUsers {self.user}",
                    "AllowTcpForwarding no",
                    "PermitTTY no",
                    "Subsystem sftp internal-sftp",
                    "ForceCommand internal-sftp",
                    "LogLevel INFO",
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        local_runner().run([SSHD, "-t", "-f", str(cfg)])
        with open(self.root / "sshd.log", "ab") as out:
            self.service = local_runner().spawn([SSHD, "-D", "-e", "-f", str(cfg)], stderr=out)
        wait_port(self.port)

    def stop(self) -> None:
        if self.service is None:
            return
        sessions = _descendants(self.service.pid)
        self.service.stop(timeout=5)
        for pid in sessions:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        self.service = None

    def restart_with_new_host_key(self) -> None:
        self.stop()
        self.host_key = new_host_key(self.host_key_path)
        self.start()


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                children = [int(p) for p in task.read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


@pytest.fixture
def sftp_server() -> Iterator[SftpServer]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create the SFTP account")
    runner = local_runner()
    user = f"bwo{secrets.token_hex(3)}"
    root = Path(tempfile.mkdtemp(prefix="bulwark-sftp-"))
    root.chmod(0o755)
    home = root / "home"
    home.mkdir()
    runner.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin", user])
    try:
        runner.run(["usermod", "-p", "*", user])
        runner.run(["chown", user, str(home)])
        (root / "authorized").mkdir()
        key = root / "client_key"
        runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bulwark", "-f", str(key)])
        (root / "authorized" / user).write_text(key.with_suffix(".pub").read_text())
        (root / "authorized" / user).chmod(0o644)
        host_key_path = root / "ssh_host_ed25519_key"
        server = SftpServer(root, user, free_port(), new_host_key(host_key_path), host_key_path, key.read_text())
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        runner.run(["userdel", user], ok_codes=range(256))
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class S3Server:
    endpoint: str

    def make_bucket(self, name: str, *, object_lock: bool = False) -> None:
        client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="test",
            aws_secret_access_key="test",
        )  # fmt: skip
        client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        if object_lock:
            client.put_object_lock_configuration(
                Bucket=name,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
                },
            )

    def config(self, bucket: str, prefix: str = "appliance-1") -> S3Config:
        return S3Config(bucket=bucket, endpoint=self.endpoint, region="us-east-1", prefix=prefix, access_key="test")

    def target(self, bucket: str, name: str = "s3", **kw: object) -> S3Target:
        return S3Target(name, self.config(bucket, **kw), "test")  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    if not os.access(MOTO, os.X_OK):
        pytest.skip(f"moto_server is not installed ({MOTO})")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("ab") as out:
        service = local_runner().spawn(
            [MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out, inherit_env=True
        )
    try:
        wait_port(port, timeout=30)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        service.stop(timeout=10)


def bucket_name() -> str:
    return f"bw-{secrets.token_hex(6)}"


# -- an appliance with a client, a data key and a local target, on zfs-fuse ---------------------------------------


PASSPHRASE = "correct horse battery staple"


@dataclass
class OffsiteEnv:
    env: Any  # tests.clients_fixtures.ClientEnv
    paths: Paths
    usb: Path

    @property
    def store(self) -> Any:
        return self.env.store

    @property
    def zfs(self) -> Any:
        return self.env.zfs

    def write(self, client: str, rel: str, data: bytes, area: str = "share") -> None:
        path = self.env.live(client, area) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def point(self, client: str, area: str = "share") -> str:
        """Take a recovery point now; its short snapshot name."""
        from appliance.clients import points, service

        c = service.get_client(self.store, client)
        existing = {p.snapname for p in points.scan(self.zfs, c).points}
        name = points.snapname_for(time.time(), "manual")
        attempt = 0
        while name in existing:
            attempt += 1
            name = points.snapname_for(time.time(), "manual", attempt)
        return points.take_point(self.zfs, c, area, name, source="manual", created_by="test").snapname

    def replicate(self, client: str = "acme", target: str = "usb") -> Any:
        from appliance.offsite.replicate import Replicator

        return Replicator(self.store, self.paths, self.zfs, client, target).run()


@pytest.fixture
def offsite_env(client_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OffsiteEnv]:
    from appliance.offsite import config, keys, upload
    from appliance.users import WEAK_KDF_ENV

    monkeypatch.setenv(WEAK_KDF_ENV, "1")
    monkeypatch.setattr(upload, "CHUNK_SIZE", 64 * 1024)
    paths = Paths(tmp_path)
    keys.init_key(client_env.store, paths, PASSPHRASE)
    usb = tmp_path / "usb"
    usb.mkdir()
    config.add_target(client_env.store, "usb", "local", {"path": str(usb)}, None, by="test")
    client_env.add("acme")
    yield OffsiteEnv(client_env, paths, usb)
