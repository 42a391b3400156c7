"""smbd: validate and install smb.conf, start and supervise smbd, reload it without dropping sessions.

The configuration is written to a temporary file next to smb.conf, checked with ``testparm -s`` (which exits 0 on
an unknown parameter and only warns on stderr, so that warning is an error here), and renamed into place; only
then is smbd told to reload (``smbcontrol smbd reload-config``: existing sessions stay connected and pick up the
new share definitions). A configuration that fails the check is never installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.samba.conf import Layout
from appliance.system.errors import BulwarkError, CommandFailed, ExternalCommandError
from appliance.system.runner import LocalRunner, Runner, Service

log = logging.getLogger("bulwark.samba")

_TESTPARM_PROBLEMS = re.compile(
    r"Unknown parameter|Ignoring unknown parameter|Invalid|Error loading|syntax error", re.I
)


class SambaConfigRejected(ExternalCommandError):
    """testparm refused the generated smb.conf: {}"""

    code = "samba_config_rejected"
    hint = "Nothing was changed; the running configuration is still the previous one. Report this message."


class SambaNotRunning(BulwarkError):
    """smbd is not running ({})."""

    code = "samba_not_running"
    http_status = 503
    retryable = True
    hint = "Start the appliance with 'bulwark run' (it starts smbd), then try again."


def prepare_dirs(layout: Layout) -> None:
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.state_dir, 0o755)  # noqa: S103 - smbd's children (as the client accounts) read smb.conf
    for d in layout.dirs():
        d.mkdir(exist_ok=True)
    os.chmod(layout.dir("private"), 0o700)


def testparm(runner: Runner, path: Path) -> None:
    """Check a configuration file; raise :class:`SambaConfigRejected` on any error or unknown parameter."""
    result = runner.run(["testparm", "-s", str(path)], ok_codes=range(256), timeout=60)
    problems = [line.strip() for line in result.err.splitlines() if _TESTPARM_PROBLEMS.search(line)]
    if result.returncode != 0 or problems:
        raise SambaConfigRejected("; ".join(problems) or result.err.strip() or f"exit status {result.returncode}")


def testparm_text(runner: Runner, layout: Layout, text: str) -> None:
    """Check configuration text without installing it."""
    prepare_dirs(layout)
    fd, tmp = tempfile.mkstemp(prefix=".smb.conf.check.", dir=layout.state_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        testparm(runner, Path(tmp))
    finally:
        os.unlink(tmp)


def install(runner: Runner, layout: Layout, text: str) -> bool:
    """Validate ``text`` and atomically make it smb.conf. Returns False if it was already the configuration."""
    prepare_dirs(layout)
    with contextlib.suppress(FileNotFoundError):
        if layout.conf.read_text() == text:
            return False
    fd, tmp = tempfile.mkstemp(prefix=".smb.conf.", dir=layout.state_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        testparm(runner, Path(tmp))
        os.replace(tmp, layout.conf)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dirfd = os.open(layout.state_dir, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
    return True


def smbd_argv(layout: Layout) -> list[str]:
    return ["smbd", "--foreground", "--no-process-group", "--debug-stdout", "-d", "1", "-s", str(layout.conf)]


def pid_of(layout: Layout) -> int | None:
    """The main smbd's PID from its pid file, if that process is alive."""
    try:
        pid = int((layout.dir("pid") / "smbd.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def reload(layout: Layout, runner: Runner | None = None) -> bool:
    """Ask a running smbd to re-read smb.conf; sessions stay. False if none is running.

    With a runner, ``smbcontrol smbd reload-config``: the main smbd re-reads it and passes the message on to
    every connection's process, so open sessions see new shares and changed options too. (SIGHUP, the
    fallback, reloads the main process only: a connection made before it does not see a share added by it.)"""
    pid = pid_of(layout)
    if pid is None:
        return False
    if runner is not None:
        try:
            smbcontrol_reload(runner, layout)
        except SambaNotRunning as exc:
            log.warning("smbcontrol reload-config failed (%s); sending SIGHUP", exc)
        else:
            log.info("smbd (pid %d) reloads %s", pid, layout.conf)
            return True
    os.kill(pid, signal.SIGHUP)
    log.info("smbd (pid %d) reloads %s (SIGHUP)", pid, layout.conf)
    return True


@dataclass
class Smbd:
    """A supervised smbd started by this process."""

    runner: LocalRunner
    layout: Layout
    log_path: Path
    service: Service | None = None

    def start(self, timeout: float = 20.0) -> None:
        if not self.layout.conf.exists():
            raise SambaNotRunning(f"{self.layout.conf} is missing; apply the configuration first")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.service = self.runner.spawn(smbd_argv(self.layout), stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        host = "127.0.0.1"
        while time.monotonic() < deadline:
            if self.service.poll() is not None:
                raise SambaNotRunning(f"smbd exited with status {self.service.proc.returncode}; see {self.log_path}")
            if listening(self.layout.port, host):
                return
            time.sleep(0.05)
        self.stop()
        raise SambaNotRunning(f"smbd did not listen on port {self.layout.port} within {timeout:.0f} s")

    @property
    def running(self) -> bool:
        return self.service is not None and self.service.poll() is None

    def reload(self) -> None:
        if self.service is None or self.service.poll() is not None:
            raise SambaNotRunning("it has stopped")
        os.kill(self.service.pid, signal.SIGHUP)

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(timeout=10)
            self.service = None


def smbcontrol_reload(runner: Runner, layout: Layout) -> None:
    """Reload through smbcontrol (for a smbd this process did not start)."""
    try:
        runner.run(["smbcontrol", "-s", str(layout.conf), "smbd", "reload-config"], timeout=30)
    except CommandFailed as exc:
        raise SambaNotRunning(exc.stderr.strip() or "smbcontrol failed") from exc
