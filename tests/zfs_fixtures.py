"""ZFS fixtures: the driver's integration tests run against two implementations, and throw-away pools.

``zfs_backend`` (and ``zfs_host``, ``pool_maker``, ``pool`` on top of it) is parametrized: every test that
uses it runs once on **zfs-fuse** on this machine and once on **OpenZFS 2.3** in the test machine
(``tests/openzfs_vm.py``; those runs carry the ``openzfs`` marker). A test reaches files where the ZFS runs
through ``pool.fs`` (:class:`LocalFiles` here, :class:`~tests.openzfs_vm.GuestFiles` in the machine), never
with Python's own file functions on pool paths.

zfs-fuse: if ``zpool list`` already answers (a developer's daemon, or another session's), it is used and left
alone; otherwise ``zfs-fuse --no-daemon`` is started through the command runner and stopped by PID at the end
of the session. Pools are named ``bwt<8 hex>``, live on sparse files in a directory of the test's own (under
its ``tmp_path`` here, under ``/tmp`` in the machine) with their mountpoints there too, are kept out of the
cache file, and are destroyed after each test whatever the test did to them (failed, exported, left clones
mounted). In the machine, a test that leaves a pool the fixture does not know about fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from appliance.system.runner import Runner, Service, local_runner
from appliance.zfs import datasets, pools, snapshots
from appliance.zfs.host import ZfsHost
from tests.openzfs_vm import GuestFiles, openzfs_vm

__all__ = ["openzfs_vm"]  # (a fixture: registered with this plugin)

T = TypeVar("T")
ZFS_FUSE = "/usr/sbin/zfs-fuse"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 30.0  # zfs-fuse takes a few seconds to exit
MiB = 1024 * 1024
POOL_FILE_SIZE = 256 * MiB
FUSE, OPENZFS = "zfs-fuse", "openzfs"
BACKENDS = [FUSE, pytest.param(OPENZFS, marks=pytest.mark.openzfs)]
# For tests of one implementation only (features of OpenZFS, and their refusal on zfs-fuse):
only_openzfs = pytest.mark.parametrize("zfs_backend", [BACKENDS[1]], indirect=True)
only_zfs_fuse = pytest.mark.parametrize("zfs_backend", [FUSE], indirect=True)


def zpool_answers(runner: Runner) -> bool:
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


# -- files where the ZFS runs ---------------------------------------------------------------------------


class Files(Protocol):
    """File operations on the machine where the pools are (paths as that machine sees them)."""

    def write(self, path: Path, data: bytes) -> None: ...
    def write_random(self, path: Path, size: int) -> None: ...
    def overwrite_random(self, path: Path, offset: int, size: int) -> None: ...
    def read(self, path: Path) -> bytes: ...
    def exists(self, path: Path) -> bool: ...
    def ismount(self, path: Path) -> bool: ...
    def listdir(self, path: Path) -> list[str]: ...
    def unlink(self, path: Path) -> None: ...
    def rename(self, path: Path, target: Path) -> None: ...
    def mkdir(self, path: Path) -> None: ...
    def remove_tree(self, path: Path) -> None: ...
    def sparse(self, paths: list[Path], size: int) -> None: ...
    def size_and_blocks(self, path: Path) -> tuple[int, int]: ...
    def tree(self, path: Path) -> dict[str, str]: ...
    def hold_open(self, path: Path) -> contextlib.AbstractContextManager[None]: ...


class LocalFiles:
    """Files on this machine (zfs-fuse)."""

    def write(self, path: Path, data: bytes) -> None:
        path.write_bytes(data)

    def write_random(self, path: Path, size: int) -> None:
        write_random(path, size)

    def overwrite_random(self, path: Path, offset: int, size: int) -> None:
        with path.open("r+b") as device:
            device.seek(offset)
            device.write(os.urandom(size))

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def exists(self, path: Path) -> bool:
        return path.exists()

    def ismount(self, path: Path) -> bool:
        return os.path.ismount(path)

    def listdir(self, path: Path) -> list[str]:
        return os.listdir(path)

    def unlink(self, path: Path) -> None:
        path.unlink()

    def rename(self, path: Path, target: Path) -> None:
        path.rename(target)

    def mkdir(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)

    def remove_tree(self, path: Path) -> None:
        pass  # (pytest removes tmp_path)

    def sparse(self, paths: list[Path], size: int) -> None:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as fh:
                fh.truncate(size)

    def size_and_blocks(self, path: Path) -> tuple[int, int]:
        st = path.stat()
        return st.st_size, st.st_blocks

    def tree(self, path: Path) -> dict[str, str]:
        return {f: hashlib.sha256((path / f).read_bytes()).hexdigest() for f in sorted(os.listdir(path))}

    @contextlib.contextmanager
    def hold_open(self, path: Path) -> Iterator[None]:
        with path.open("ab"):
            yield


# -- the two implementations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ZfsBackend:
    """One ZFS implementation for the tests: its host, its files, and where per-test directories go."""

    name: str  # FUSE or OPENZFS
    host: ZfsHost
    fs: Files
    scratch: Path | None  # per-test directories: None for the test's tmp_path (here)
    disks: tuple[str, ...] = ()  # whole disks the tests may use (the machine's /dev/vdX)


@pytest.fixture(scope="session", params=BACKENDS)
def zfs_backend(request: pytest.FixtureRequest) -> ZfsBackend:
    if request.param == FUSE:
        request.getfixturevalue("zfs_daemon")
        return ZfsBackend(FUSE, ZfsHost.detect(local_runner()), LocalFiles(), None)
    vm = request.getfixturevalue("openzfs_vm")
    assert vm.runner is not None
    return ZfsBackend(OPENZFS, ZfsHost.detect(vm.runner), GuestFiles(vm.runner), Path("/tmp"), tuple(vm.disk_paths))


@pytest.fixture(scope="session")
def zfs_host(zfs_backend: ZfsBackend) -> ZfsHost:
    return zfs_backend.host


@dataclass(frozen=True)
class TestPool:
    """A pool made for one test."""

    __test__ = False  # (not a test class, despite its name)

    host: ZfsHost
    name: str
    directory: Path  # holds its device files
    mountpoint: Path
    devices: tuple[str, ...]
    fs: Files

    def path(self, dataset: str = "") -> Path:
        """Where ``POOL/dataset`` is mounted (with the default, inherited mountpoints)."""
        return self.mountpoint / dataset if dataset else self.mountpoint

    def ds(self, relative: str) -> str:
        """The full name of a dataset of this pool."""
        return f"{self.name}/{relative}"

    def snapshot_files(self, snapshot: str) -> dict[str, str]:
        """SHA-256 of the files of ``snapshot`` (a snapshot of this pool), read through a new clone that is
        destroyed again (zfs-fuse has no .zfs/snapshot, and its FUSE cache can be stale after a receive)."""
        check = self.ds(f"check-{secrets.token_hex(3)}")
        snapshots.clone(self.host, snapshot, check)
        try:
            return self.fs.tree(self.path(check.split("/", 1)[1]))
        finally:
            datasets.destroy(self.host, check)


def new_pool_name() -> str:
    return f"bwt{secrets.token_hex(4)}"


def imported(runner: Runner) -> set[str]:
    return set(runner.run(["zpool", "list", "-H", "-o", "name"], timeout=60).out.split())


def destroy_pools_robustly(runner: Runner, made: list[tuple[str, Path]]) -> None:
    """Destroy pools however a test left them: imported or exported (found again in the directory of their
    device files), with mounts, clones or open files, or already gone."""
    if not made:
        return
    live = imported(runner)
    exported: dict[Path, list[str]] = {}
    for name, search_dir in made:
        if name in live:
            _destroy(runner, name)
        else:
            exported.setdefault(search_dir, []).append(name)
    for search_dir, names in exported.items():
        listing = runner.run(["zpool", "import", "-d", str(search_dir)], ok_codes=range(256))
        found = {p.name for p in pools.parse_import_list(listing.out)}
        for name in names:
            if name in found:
                runner.run(["zpool", "import", "-d", str(search_dir), name], ok_codes=range(256))
                _destroy(runner, name)


def _destroy(runner: Runner, name: str) -> None:
    for attempt in range(1, 41):
        result = runner.run(["zpool", "destroy", "-f", name], ok_codes=range(256))
        if result.returncode == 0 or "no such pool" in result.err:
            return
        time.sleep(0.01 * attempt)  # a mount still settling ("pool is busy")
    raise RuntimeError(f"could not destroy test pool {name}")


@dataclass
class PoolMaker:
    """Makes pools for one test and destroys them all afterwards."""

    backend: ZfsBackend
    directory: Path
    made: list[tuple[str, Path]] = field(default_factory=list)

    @property
    def host(self) -> ZfsHost:
        return self.backend.host

    @property
    def fs(self) -> Files:
        return self.backend.fs

    @property
    def implementation(self) -> str:
        return self.backend.name

    def files(self, count: int, size: int = POOL_FILE_SIZE) -> list[str]:
        paths = [self.directory / "devices" / f"dev-{secrets.token_hex(3)}.img" for _ in range(count)]
        self.fs.sparse(paths, size)
        return [str(p) for p in paths]

    def adopt(self, name: str, search_dir: Path | None = None) -> None:
        """Have a pool made by the test itself destroyed at the end."""
        self.made.append((name, search_dir or self.directory / "devices"))

    def create(self, layout: str = "single", devices: int = 1, size: int = POOL_FILE_SIZE) -> TestPool:
        """A pool made the quick way (not through the driver), kept out of the cache file so that a crashed
        daemon does not bring it back."""
        name = new_pool_name()
        files = self.files(devices, size)
        mountpoint = self.directory / "mnt" / name
        vdevs = files if layout in ("single", "stripe") else [layout, *files]
        self.adopt(name)
        self.host.zpool("create", "-o", "cachefile=none", "-m", str(mountpoint), name, *vdevs, subject=name)
        return TestPool(self.host, name, self.directory / "devices", mountpoint, tuple(files), self.fs)

    def cleanup(self) -> None:
        destroy_pools_robustly(self.host.runner, list(reversed(self.made)))


@pytest.fixture
def pool_maker(zfs_backend: ZfsBackend, tmp_path: Path) -> Iterator[PoolMaker]:
    local = zfs_backend.scratch is None
    directory = tmp_path / "zfs" if local else (zfs_backend.scratch or Path()) / f"bwt-{secrets.token_hex(4)}"
    maker = PoolMaker(zfs_backend, directory)
    try:
        yield maker
    finally:
        maker.cleanup()
        # (here the hygiene fixture of conftest.py checks for pools left behind; in the machine, where only the
        # tests of this session make pools and each destroys its own, any pool still there was left behind)
        left = set() if local else imported(zfs_backend.host.runner)
        destroy_pools_robustly(zfs_backend.host.runner, [(name, directory / "devices") for name in sorted(left)])
        maker.fs.remove_tree(directory)
    if left:
        pytest.fail(f"the test left pools behind in the OpenZFS machine: {sorted(left)} (destroyed now)")


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
    """Write ``size`` random bytes (incompressible) to a file on this machine and return them."""
    data = os.urandom(size)
    path.write_bytes(data)
    return data
