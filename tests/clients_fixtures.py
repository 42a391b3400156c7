"""Fixtures for clients, recovery points and restores: always on the local zfs-fuse.

These tests read and write files in client datasets and clones through this machine's file system, so they use
the local zfs-fuse daemon (``zfs_daemon``) directly, whatever other ZFS implementations the driver's own tests
are parametrized over. Pools are made and destroyed here, on sparse files under the test's ``tmp_path``.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from appliance import provision, users
from appliance.clients import service
from appliance.clients.model import Client, ClientSettings
from appliance.daemon import daemon_state
from appliance.jobs import base, queue
from appliance.jobs.worker import Worker
from appliance.store import Store
from appliance.system import settings
from appliance.system.paths import Paths
from appliance.system.runner import CommandResult, LocalRunner, Service, local_runner
from appliance.system.settings import ApplianceSettings, PoolConfig
from appliance.zfs import pools
from appliance.zfs.host import ZfsHost

REPO = Path(__file__).resolve().parents[1]
BULWARK = str(REPO / ".venv/bin/bulwark")
POOL_FILE_SIZE = 256 * 1024 * 1024


@pytest.fixture(scope="session")
def local_zfs(zfs_daemon: Any) -> ZfsHost:
    """The zfs-fuse on this machine."""
    return ZfsHost.detect(local_runner())


def destroy_pool(runner: LocalRunner, name: str, search_dir: Path) -> None:
    """Destroy ``name`` whether imported or exported (found again in ``search_dir``), or already gone."""
    for attempt in range(1, 41):
        listed = runner.run(["zpool", "list", "-H", "-o", "name", name], ok_codes=range(256))
        if listed.returncode != 0:
            found = runner.run(["zpool", "import", "-d", str(search_dir)], ok_codes=range(256))
            if name not in {p.name for p in pools.parse_import_list(found.out)}:
                return
            runner.run(["zpool", "import", "-d", str(search_dir), name], ok_codes=range(256))
            continue
        if runner.run(["zpool", "destroy", "-f", name], ok_codes=range(256)).returncode == 0:
            return
        time.sleep(0.01 * attempt)  # a mount still settling ("pool is busy")
    raise RuntimeError(f"could not destroy test pool {name}")


@dataclass(frozen=True)
class LocalPool:
    host: ZfsHost
    name: str
    mountpoint: Path
    devices: Path


@pytest.fixture
def local_pool(local_zfs: ZfsHost, tmp_path: Path) -> Iterator[LocalPool]:
    """A fresh pool on the local zfs-fuse, kept out of the cache file, destroyed afterwards."""
    name = f"bwt{secrets.token_hex(4)}"
    devices = tmp_path / "devices"
    devices.mkdir()
    device = devices / "dev.img"
    with device.open("wb") as fh:
        fh.truncate(POOL_FILE_SIZE)
    mountpoint = tmp_path / "mnt" / name
    try:
        local_zfs.zpool("create", "-o", "cachefile=none", "-m", str(mountpoint), name, str(device), subject=name)
        yield LocalPool(local_zfs, name, mountpoint, devices)
    finally:
        destroy_pool(local_runner(), name, devices)


@dataclass
class ClientEnv:
    """A database set up for a pool, the pool, and helpers to run what bulwarkd would run."""

    store: Store
    zfs: ZfsHost
    pool: LocalPool
    _stop: Any = field(default=None)

    def add(self, name: str, kind: str = "smb", **raw: Any) -> Client:
        raw.setdefault("schedule", "off")
        return service.create_client(self.store, self.zfs, name, ClientSettings.build(kind=kind, **raw), by="test")

    def live(self, client: str, area: str = "share") -> Path:
        return self.pool.mountpoint / "clients" / client / area

    def run_jobs(self) -> list[queue.JobRecord]:
        """Run every queued job to its end in this thread, as a worker of the daemon does."""
        import threading

        worker = Worker(0, self.store, self.zfs, threading.Event(), threading.Event())
        done = []
        while (job := queue.claim(self.store, base.REGISTRY.keys())) is not None:
            worker.execute(job)
            done.append(queue.get(self.store, job.id))
        return done


@pytest.fixture
def client_env(local_pool: LocalPool, tmp_path: Path) -> Iterator[ClientEnv]:
    import appliance.clients.jobs  # noqa: F401  (registers the job kinds)

    store = Store.open(tmp_path / "bulwark.db")
    settings.save(
        store,
        ApplianceSettings(
            pool=PoolConfig(name=local_pool.name, layout="file", mountpoint=str(local_pool.mountpoint)),
            initialized_at=time.time(),
        ),
    )
    try:
        yield ClientEnv(store, local_pool.host, local_pool)
    finally:
        store.close()


# -- a whole appliance: bulwark init, the CLI, a real daemon -------------------------------------------------


@dataclass
class Appliance:
    data_dir: Path
    pool_name: str
    daemons: list[Service] = field(default_factory=list)

    @property
    def paths(self) -> Paths:
        return Paths(self.data_dir)

    def cli(self, *args: str, ok_codes: tuple[int, ...] = (0,), timeout: float = 120) -> CommandResult:
        return local_runner().run(
            [BULWARK, "--data-dir", str(self.data_dir), *args], ok_codes=ok_codes, timeout=timeout
        )

    def open_store(self) -> Store:
        return Store.open(self.paths.db)

    def start_daemon(self, *argv: str, log_name: str = "daemon.log") -> Service:
        """``bulwark daemon`` (or ``argv``, a Python program given the data dir), waited for until its heartbeat."""
        cmd = list(argv) if argv else [BULWARK, "--data-dir", str(self.data_dir), "daemon"]
        log = (self.data_dir.parent / log_name).open("ab")
        proc = local_runner().spawn(
            cmd, stdout=log, stderr=log, inherit_env=True, env={"PYTHONPATH": str(REPO)}, cwd=str(REPO)
        )
        self.daemons.append(proc)
        store = self.open_store()
        try:
            deadline = time.monotonic() + 60
            while not (daemon_state(store)["running"] and daemon_state(store)["pid"] == proc.pid):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (self.data_dir.parent / log_name).read_text(errors="replace")
                    pytest.fail(f"the daemon did not start:\n{log_text[-3000:]}")
                time.sleep(0.1)
        finally:
            store.close()
        return proc

    def kill_daemon(self, proc: Service) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.stop(timeout=10) == -signal.SIGKILL

    def stop_daemons(self) -> None:
        for proc in self.daemons:
            if proc.poll() is None:
                proc.stop(timeout=30)


def initialize(data_dir: Path, pool_name: str, *, use_existing_pool: bool = False) -> provision.InitResult:
    return provision.initialize(
        Paths(data_dir),
        local_runner(),
        pool_name=pool_name,
        pool_file_size="256M",
        hostname="bulwark-test",
        use_existing_pool=use_existing_pool,
    )


@pytest.fixture
def appliance(
    local_zfs: ZfsHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Appliance]]:
    """Make initialized appliances (``bulwark init`` with a file-backed pool of a unique name); their daemons
    are stopped and their pools destroyed afterwards, wherever the test moved the pool files."""
    monkeypatch.setenv(users.WEAK_KDF_ENV, "1")
    made: list[Appliance] = []
    pools_made: list[str] = []

    def make(name: str = "data", *, pool_name: str | None = None, adopt: bool = False) -> Appliance:
        app = Appliance(tmp_path / name, pool_name or f"bwt{secrets.token_hex(4)}")
        initialize(app.data_dir, app.pool_name, use_existing_pool=adopt)
        made.append(app)
        pools_made.append(app.pool_name)
        return app

    try:
        yield make
    finally:
        for app in made:
            app.stop_daemons()
        for name in dict.fromkeys(pools_made):
            for app in made:
                destroy_pool(local_runner(), name, app.paths.pool_dir)


def python_daemon(program: str, data_dir: Path, *args: str) -> list[str]:
    """argv for a Python program (run with this interpreter) that gets the data dir and ``args``."""
    return [sys.executable, "-c", program, str(data_dir), *args]
