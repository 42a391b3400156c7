"""ZFS fixtures: a zfs-fuse daemon for the session, and throw-away pools on sparse files.

The daemon: if ``zpool list`` already answers (a developer's daemon, or another session's), it is used and
left alone; otherwise ``zfs-fuse --no-daemon`` is started through the command runner and stopped by PID
at the end of the session. Pools are named ``bwt<8 hex>``, live on sparse files under the test's
``tmp_path`` with their mountpoints there too, are kept out of the daemon's cache file, and are
destroyed after each test whatever the test did to them (failed, exported, left clones mounted).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from appliance.system.runner import LocalRunner, Service, local_runner
from appliance.zfs import pools
from appliance.zfs.host import ZfsHost

T = TypeVar("T")
ZFS_FUSE = "/usr/sbin/zfs-fuse"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 30.0  # zfs-fuse takes a few seconds to exit
MiB = 1024 * 1024
POOL_FILE_SIZE = 256 * MiB


def zpool_answers(runner: LocalRunner) -> bool:
    return runner.run(["zpool", "list", "-H", "-o", "name"], ok_codes=range(256), timeout=10).returncode == 0


@dataclass(frozen=True)
class ZfsDaemon:
    started_here: bool
    service: Service | None


@pytest.fixture(scope="session")
def zfs_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZfsDaemon]:
    """A running zfs-fuse daemon (started here only if none answers)."""
    if os.geteuid() != 0:
        pytest.skip("ZFS tests need root (zfs-fuse mounts FUSE filesystems and owns /var/run/zfs)")
    if not os.access(ZFS_FUSE, os.X_OK):
        pytest.skip(f"zfs-fuse is not installed ({ZFS_FUSE}; Debian package zfs-fuse)")
    runner = local_runner()
    if zpool_answers(runner):
        yield ZfsDaemon(started_here=False, service=None)
        return
    log = tmp_path_factory.mktemp("zfs-fuse") / "zfs-fuse.log"
    with log.open("wb") as out:
        service = runner.spawn([ZFS_FUSE, "--no-daemon", "--no-kstat-mount"], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not zpool_answers(runner):
            if service.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"zfs-fuse did not start within {START_TIMEOUT:.0f} s:\n{log.read_text()}")
            time.sleep(0.05)
        yield ZfsDaemon(started_here=True, service=service)
    finally:
        service.stop(timeout=STOP_TIMEOUT)


@pytest.fixture(scope="session")
def zfs_host(zfs_daemon: ZfsDaemon) -> ZfsHost:
    return ZfsHost.detect(local_runner())


@dataclass(frozen=True)
class TestPool:
    """A pool made for one test."""

    __test__ = False  # (not a test class, despite its name)

    host: ZfsHost
    name: str
    directory: Path  # holds its device files
    mountpoint: Path
    devices: tuple[str, ...]

    def path(self, dataset: str = "") -> Path:
        """Where ``POOL/dataset`` is mounted (with the default, inherited mountpoints)."""
        return self.mountpoint / dataset if dataset else self.mountpoint

    def ds(self, relative: str) -> str:
        """The full name of a dataset of this pool."""
        return f"{self.name}/{relative}"


def new_pool_name() -> str:
    return f"bwt{secrets.token_hex(4)}"


def sparse_files(directory: Path, count: int, size: int = POOL_FILE_SIZE, prefix: str = "dev") -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for _ in range(count):
        path = directory / f"{prefix}-{secrets.token_hex(3)}.img"
        with path.open("wb") as fh:
            fh.truncate(size)
        paths.append(str(path))
    return paths


def destroy_pool_robustly(runner: LocalRunner, name: str, search_dir: Path) -> None:
    """Destroy ``name`` however a test left it: imported or exported, with mounts, clones or open files."""
    for attempt in range(1, 41):
        if runner.run(["zpool", "list", "-H", "-o", "name", name], ok_codes=range(256)).returncode != 0:
            listing = runner.run(["zpool", "import", "-d", str(search_dir)], ok_codes=range(256))
            if name not in {p.name for p in pools.parse_import_list(listing.out)}:
                return  # gone
            runner.run(["zpool", "import", "-d", str(search_dir), name], ok_codes=range(256))
            continue
        if runner.run(["zpool", "destroy", "-f", name], ok_codes=range(256)).returncode == 0:
            return
        time.sleep(0.01 * attempt)  # a mount still settling ("pool is busy")
    raise RuntimeError(f"could not destroy test pool {name}")


@dataclass
class PoolMaker:
    """Makes pools for one test and destroys them all afterwards."""

    host: ZfsHost
    directory: Path
    made: list[tuple[str, Path]] = field(default_factory=list)

    def files(self, count: int, size: int = POOL_FILE_SIZE) -> list[str]:
        return sparse_files(self.directory / "devices", count, size)

    def adopt(self, name: str, search_dir: Path | None = None) -> None:
        """Have a pool made by the test itself destroyed at the end."""
        self.made.append((name, search_dir or self.directory / "devices"))

    def create(self, layout: str = "single", devices: int = 1, size: int = POOL_FILE_SIZE) -> TestPool:
        """A pool made the quick way (not through the driver), kept out of the daemon's cache file so
        that a crashed daemon does not bring it back."""
        name = new_pool_name()
        files = self.files(devices, size)
        mountpoint = self.directory / "mnt" / name
        vdevs = files if layout in ("single", "stripe") else [layout, *files]
        self.adopt(name)
        self.host.zpool("create", "-o", "cachefile=none", "-m", str(mountpoint), name, *vdevs, subject=name)
        return TestPool(self.host, name, self.directory / "devices", mountpoint, tuple(files))

    def cleanup(self) -> None:
        for name, search_dir in reversed(self.made):
            destroy_pool_robustly(local_runner(), name, search_dir)


@pytest.fixture
def pool_maker(zfs_host: ZfsHost, tmp_path: Path) -> Iterator[PoolMaker]:
    maker = PoolMaker(zfs_host, tmp_path / "zfs")
    try:
        yield maker
    finally:
        maker.cleanup()


@pytest.fixture
def pool(pool_maker: PoolMaker) -> TestPool:
    """A fresh single-device pool (256 MiB sparse file) for one test."""
    return pool_maker.create()


def wait_for(what: str, check: Callable[[], T], timeout: float = 30.0, interval: float = 0.02) -> T:
    """Poll ``check()`` until it returns something true (and return that); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def write_random(path: Path, size: int) -> bytes:
    """Write ``size`` random bytes (incompressible) and return them."""
    data = os.urandom(size)
    path.write_bytes(data)
    return data
