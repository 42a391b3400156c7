"""Making sure a ZFS implementation is running: the kernel module, or the zfs-fuse daemon.

On an appliance with OpenZFS the kernel module is loaded by the OS. Where it is missing (development
machines, CI, the embedded default) Bulwark starts zfs-fuse, which then runs as a system service of its
own: it keeps pools imported across restarts of Bulwark and is not stopped when Bulwark stops.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from appliance.system.errors import CommandFailed, CommandNotFound, ExternalCommandError
from appliance.system.runner import Runner
from appliance.zfs.errors import ZfsNotRunning

log = logging.getLogger("bulwark.zfs")
KERNEL_MODULE = Path("/sys/module/zfs")
START_TIMEOUT = 20.0


def kernel_zfs_loaded() -> bool:
    return KERNEL_MODULE.exists()


def responding(runner: Runner) -> bool:
    """True when ``zpool list`` gets an answer from a ZFS implementation."""
    try:
        runner.run(["zpool", "list", "-H", "-o", "name"], timeout=15)
    except (CommandFailed, CommandNotFound):
        return False
    return True


def ensure_running(runner: Runner, pidfile: Path) -> str:
    """Return "kernel", "zfs-fuse" (already running) or "started" (zfs-fuse started now)."""
    if kernel_zfs_loaded():
        return "kernel"
    if responding(runner):
        return "zfs-fuse"
    log.info("no ZFS is answering; starting zfs-fuse")
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    try:
        # zfs-fuse daemonizes: this returns once the daemon is forked; then wait for it to answer.
        runner.run(["zfs-fuse", "--pidfile", str(pidfile)], timeout=30)
    except CommandNotFound:
        raise ZfsNotRunning("neither the zfs kernel module nor zfs-fuse is installed") from None
    except CommandFailed as exc:
        if not responding(runner):
            raise ZfsNotRunning(f"zfs-fuse failed to start: {exc.stderr.strip() or exc}") from exc
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if responding(runner):
            return "started"
        time.sleep(0.2)
    raise ZfsNotRunning(f"zfs-fuse did not answer within {START_TIMEOUT:.0f} s")


def zfs_fuse_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


__all__ = ["ExternalCommandError", "ensure_running", "kernel_zfs_loaded", "responding", "zfs_fuse_pid"]
