"""Fixtures for the unit tier: a real database, and a real initialized data directory without ZFS."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance import provision, users
from appliance.store import Store
from appliance.system import settings, tls
from appliance.system.paths import Paths
from appliance.system.settings import ApplianceSettings, PoolConfig

ADMIN_PASSWORD = "one-time-admin-pw"
OPERATOR_PASSWORD = "operator-password-1"
VIEWER_PASSWORD = "viewer-password-1"
POOL_NAME = "tank"
HOSTNAME = "bulwark-test"
REPO = Path(__file__).resolve().parents[2]

Spawn = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def weak_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2id parameters, so that tests that hash passwords stay fast."""
    monkeypatch.setenv(users.WEAK_KDF_ENV, "1")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh database migrated to the latest schema."""
    db = Store.open(tmp_path / "bulwark.db")
    yield db
    db.close()


@pytest.fixture
def spawn_python() -> Iterator[Spawn]:
    """Start ``python -c CODE ARGS…`` (this interpreter, the repository importable) with piped text I/O.

    Every child is waited for at the end; one still running is killed first, so none is left behind."""
    children: list[subprocess.Popen[str]] = []

    def spawn(code: str, *args: object) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        return child

    yield spawn
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate()


@dataclass(frozen=True)
class ApplianceDir:
    """An initialized data directory as ``bulwark init`` leaves it, minus the pool."""

    paths: Paths
    fingerprint: str

    def open_store(self) -> Store:
        return Store.open(self.paths.db)


@pytest.fixture
def appliance_dir(tmp_path: Path, weak_kdf: None) -> ApplianceDir:
    """Build the data directory from the same pieces ``provision.initialize`` uses, without ZFS.

    Users: ``admin`` (one-time password, must change it), ``olivia`` (operator), ``victor`` (viewer)."""
    paths = Paths(tmp_path / "data")
    paths.make_dirs()
    fingerprint = tls.create_self_signed(paths.tls_cert, paths.tls_key, HOSTNAME)
    provision._write_secret(paths.secret_key)
    db = Store.open(paths.db)
    try:
        users.create_user(db, "admin", ADMIN_PASSWORD, "admin", must_change=True)
        users.create_user(db, "olivia", OPERATOR_PASSWORD, "operator")
        users.create_user(db, "victor", VIEWER_PASSWORD, "viewer")
        settings.save(
            db,
            ApplianceSettings(
                pool=PoolConfig(
                    name=POOL_NAME,
                    layout="file",
                    devices=[str(provision.pool_file(paths, POOL_NAME))],
                    mountpoint=str(paths.data_dir / "mnt" / POOL_NAME),
                ),
                hostname=HOSTNAME,
                initialized_at=time.time(),
            ),
        )
    finally:
        db.close()
    return ApplianceDir(paths=paths, fingerprint=fingerprint)
