"""Fixtures for the unit tier: a real database, a real initialized data directory without ZFS, and the web
app built on it with helpers to sign in as each role (tests/unit/web.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from flask import Flask

from appliance import provision, users
from appliance.store import Store
from appliance.system import settings, tls
from appliance.system.paths import Paths
from appliance.system.runner import local_runner
from appliance.system.settings import ApplianceSettings, PoolConfig
from appliance.zfs.host import ZfsHost
from tests.unit.web import Web, location
from tests.zfs_fixtures import FUSE, LocalFiles, PoolMaker, ZfsBackend
from webui import create_app
from webui.identity import SETUP_DONE_KEY

ADMIN_PASSWORD = "one-time-admin-pw"
ADMIN_NEW_PASSWORD = "admin-password-1"  # after the first-run password change (see finish_first_run)
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

    def finish_first_run(self) -> None:
        """What the first admin does once: replace the one-time password and finish the setup wizard."""
        db = self.open_store()
        try:
            users.set_password(db, "admin", ADMIN_NEW_PASSWORD)
            db.set_setting(SETUP_DONE_KEY, True)
        finally:
            db.close()

    def use_pool(self, name: str) -> None:
        """Point the appliance's settings at another pool (a real one made by a test)."""
        db = self.open_store()
        try:
            config = settings.load(db)
            assert config is not None
            settings.save(db, replace(config, pool=replace(config.pool, name=name)))
        finally:
            db.close()


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


# -- the web app on that directory ----------------------------------------------------------------------

ROLE_USERS = {"admin": "admin", "operator": "olivia", "viewer": "victor"}
PASSWORDS = {"admin": ADMIN_NEW_PASSWORD, "olivia": OPERATOR_PASSWORD, "victor": VIEWER_PASSWORD}


@pytest.fixture
def app(appliance_dir: ApplianceDir) -> Iterator[Flask]:
    """``create_app`` on the data directory, as the tests build it (``TESTING``: StrictUndefined)."""
    application = create_app({"DATA_DIR": str(appliance_dir.paths.data_dir), "TESTING": True})
    yield application
    application.extensions["bulwark.store"].close()


@pytest.fixture
def db(app: Flask) -> Store:
    """The app's own store (same file, this thread's connection)."""
    store: Store = app.extensions["bulwark.store"]
    return store


@pytest.fixture
def browser(app: Flask) -> Callable[..., Web]:
    """A new browser (its own cookies) on the app: ``browser()``, or ``browser(remote=True)`` for the tunnel."""

    def make(*, remote: bool = False) -> Web:
        return Web(app, remote=remote)

    return make


@pytest.fixture
def signed_in(appliance_dir: ApplianceDir, browser: Callable[..., Web]) -> Callable[[str], Web]:
    """``signed_in("admin" | "operator" | "viewer")``: a browser signed in with that role, the first run
    (password change, setup wizard) already done."""
    appliance_dir.finish_first_run()

    def sign_in(role: str) -> Web:
        web = browser()
        username = ROLE_USERS[role]
        response = web.sign_in(username, PASSWORDS[username])
        assert response.status_code == 302 and location(response) == "/", (role, response.status_code)
        return web

    return sign_in


@pytest.fixture(scope="module")
def zfs_pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A real zfs-fuse pool for one test module (web pages and API routes that show the pool), or None
    where ZFS cannot run on this machine (not root, no zfs-fuse): those tests then check less."""
    try:
        request.getfixturevalue("zfs_daemon")
    except pytest.skip.Exception:
        yield None
        return
    maker = PoolMaker(
        ZfsBackend(FUSE, ZfsHost.detect(local_runner()), LocalFiles(), None), tmp_path_factory.mktemp("zfs")
    )
    try:
        yield maker.create().name
    finally:
        maker.cleanup()


@pytest.fixture
def operator(signed_in: Callable[[str], Web]) -> Web:
    return signed_in("operator")


@pytest.fixture
def viewer(signed_in: Callable[[str], Web]) -> Web:
    return signed_in("viewer")


@pytest.fixture
def admin(signed_in: Callable[[str], Web]) -> Web:
    return signed_in("admin")
