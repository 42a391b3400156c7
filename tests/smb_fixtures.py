"""A real smbd on a loopback port serving client shares of a fresh zfs-fuse pool, and its SMB accounts."""

from __future__ import annotations

import os
import secrets
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.clients.model import Client
from appliance.samba import accounts, server, shares
from appliance.system.runner import local_runner
from tests.clients_fixtures import ClientEnv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def open_path_to(path: Path) -> None:
    """Let the client accounts traverse the test's private temporary directories (smbd runs as them)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, stat.S_IMODE(mode) | 0o011)


@dataclass
class SmbEnv:
    env: ClientEnv
    smbd: server.Smbd
    port: int
    prefix: str
    clients_dir: Path

    def live(self, client: str) -> Path:
        return self.clients_dir / client / "share"

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.env.store

    def add(self, name: str, password: str, **raw: object) -> Client:
        client = self.env.add(name, **raw)
        shares.set_password(self.store, self.env.zfs, local_runner(), name, password, by="test")
        return client

    def account(self, name: str) -> str:
        return accounts.account_name(name, self.prefix)


@pytest.fixture
def smb_env(client_env: ClientEnv, tmp_path: Path) -> Iterator[SmbEnv]:
    open_path_to(client_env.pool.mountpoint)
    port = free_port()
    prefix = f"bt{secrets.token_hex(2)}-"
    runner = local_runner()
    shares.update_settings(
        client_env.store,
        None,
        runner,
        by="test",
        port=port,
        interfaces=["127.0.0.1"],
        account_prefix=prefix,
        quiet_seconds=10,
    )
    from appliance.clients import service

    service.ensure_clients_root(client_env.store, client_env.zfs)
    shares.apply(client_env.store, client_env.zfs, runner)
    smbd = server.Smbd(runner, shares.layout(client_env.store), tmp_path / "smbd.log")
    smbd.start()
    try:
        yield SmbEnv(client_env, smbd, port, prefix, client_env.pool.mountpoint / "clients")
    finally:
        smbd.stop()
        for line in open("/etc/passwd").read().splitlines():
            name = line.split(":", 1)[0]
            if name.startswith(prefix):
                accounts.remove(runner, shares.layout(client_env.store), name)
