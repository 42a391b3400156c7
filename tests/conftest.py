"""Fixtures shared by every tier of tests.

Hygiene (as borg's and Cockpit's test suites do it): every test gets its own data directory, and a test
fails if it leaves behind a child process, a mount, a loop device or an imported ZFS pool. The checks
read /proc and /sys only; the pool check runs ``zpool list`` just for tests that use ZFS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.system.runner import local_runner

# ZFS fixtures (zfs_daemon, zfs_host, pool_maker, pool) for the integration and e2e tiers; clients fixtures
# (local_zfs, local_pool, client_env, appliance) on the local zfs-fuse.
pytest_plugins = ["tests.zfs_fixtures", "tests.clients_fixtures", "tests.offsite_fixtures", "tests.unit.api_fixtures"]

ZFS_SOCKET = Path("/var/run/zfs/zfs_socket")
# A developer's appliance may run its own pool on the shared zfs-fuse daemon: never ours, never checked.
FOREIGN_POOLS = {"bulwark"}
SETTLE_SECONDS = 2.0  # FUSE unmounts finish asynchronously; a leftover mount gets this long to go


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``BULWARK_DATA_DIR`` for each test."""
    path = tmp_path / "bulwark-data"
    path.mkdir()
    monkeypatch.setenv("BULWARK_DATA_DIR", str(path))
    return path


# -- what a test could leave behind --------------------------------------------------------------------


def child_pids() -> set[int]:
    """Processes whose parent is this test process (any of its threads)."""
    pids: set[int] = set()
    for children in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in children.read_text().split())
    return pids


def mounts() -> dict[str, tuple[str, str]]:
    """Mount id → (mount point, filesystem type), from /proc/self/mountinfo."""
    out: dict[str, tuple[str, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        fstype = fields[fields.index("-") + 1]
        out[fields[0]] = (fields[4], fstype)
    return out


def loop_devices() -> dict[str, str]:
    """Attached loop devices → their backing files."""
    out: dict[str, str] = {}
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            out[backing.parent.parent.name] = backing.read_text().strip()
    return out


def zfs_running() -> bool:
    if not ZFS_SOCKET.exists():
        return False
    result = local_runner().run(["zpool", "list", "-H", "-o", "name"], ok_codes=range(256), timeout=10)
    return result.returncode == 0


def imported_pools() -> set[str]:
    result = local_runner().run(["zpool", "list", "-H", "-o", "name"], timeout=30)
    return {line for line in result.out.splitlines() if line} - FOREIGN_POOLS


def pool_is_ours(pool: str, basetemp: Path) -> bool:
    """A pool made by this test session has its devices under the session's temporary directory
    (other sessions may share the zfs-fuse daemon and make pools of their own meanwhile)."""
    result = local_runner().run(["zpool", "status", pool], ok_codes=range(256), timeout=30)
    return str(basetemp) in result.out


def destroy_leftover_pool(pool: str) -> None:
    for attempt in range(1, 21):  # zfs-fuse may find a pool "busy" while its mounts settle
        if local_runner().run(["zpool", "destroy", "-f", pool], ok_codes=range(256), timeout=60).returncode == 0:
            return
        time.sleep(0.01 * attempt)


def _under(path: str, root: Path) -> bool:
    return path == str(root) or path.startswith(str(root) + "/")


def _leftover_mounts(before: dict[str, tuple[str, str]], basetemp: Path) -> list[tuple[str, str]]:
    # ZFS mounts of other users of a shared zfs-fuse daemon come and go; only those under our own
    # temporary directory are ours. Any other new mount is a leftover of the test. Deepest first.
    left = [
        (point, fstype)
        for mount_id, (point, fstype) in mounts().items()
        if mount_id not in before and (not fstype.startswith("fuse") or _under(point, basetemp))
    ]
    return sorted(left, key=lambda m: m[0].count("/"), reverse=True)


@pytest.fixture(autouse=True)
def hygiene(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the test if it leaves a child process, a mount, a loop device or a pool behind."""
    basetemp = tmp_path_factory.getbasetemp()
    uses_zfs = "zfs_daemon" in request.fixturenames or request.node.get_closest_marker("zfs") is not None
    check_pools = uses_zfs and zfs_running()
    children_before = child_pids()
    mounts_before = mounts()
    loops_before = loop_devices()
    pools_before = imported_pools() if check_pools else set()

    yield

    problems: list[str] = []
    leaked = child_pids() - children_before
    for pid in sorted(leaked):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            problems.append(f"child process {pid} still running: {cmdline.strip()}")
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    if check_pools and zfs_running():
        for pool in sorted(imported_pools() - pools_before):
            if pool_is_ours(pool, basetemp):
                problems.append(f"ZFS pool left behind: {pool} (destroyed now)")
                destroy_leftover_pool(pool)
    deadline = time.monotonic() + SETTLE_SECONDS
    while (left := _leftover_mounts(mounts_before, basetemp)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for point, fstype in left:
        problems.append(f"mount left behind: {point} ({fstype}) (unmounted now)")
        local_runner().run(["umount", "--lazy", point], ok_codes=range(256), timeout=30)
    for dev, backing in loop_devices().items():
        if dev not in loops_before and _under(backing, basetemp):
            problems.append(f"loop device left behind: /dev/{dev} → {backing} (detached now)")
            local_runner().run(["losetup", "--detach", f"/dev/{dev}"], ok_codes=range(256), timeout=30)
    if problems:
        pytest.fail("the test left things behind:\n  " + "\n  ".join(problems), pytrace=False)
