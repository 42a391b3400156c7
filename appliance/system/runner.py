"""The one door to the operating system.

Every external program Bulwark runs goes through a :class:`Runner`: argv lists only (never a shell
string), a timeout after which the child's whole process group is killed, a log line per run with
its duration, typed errors carrying argv, exit status and stderr, and a registry of the commands
running now (the daemon's status shows it).

Three shapes of use:

* :meth:`Runner.run` — run to completion and capture the output (most zfs/zpool calls);
* :meth:`Runner.stream` — a context manager for a command whose stdin or stdout is a stream that
  must never be held in memory whole (``zfs send``/``zfs receive``);
* :meth:`Runner.spawn` — a long-lived service (gunicorn, smbd, zfs-fuse) that is stopped by PID.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Protocol

from appliance.system.errors import CommandFailed, CommandNotFound, CommandTimeout, InvalidInput

log = logging.getLogger("bulwark.command")

DEFAULT_TIMEOUT = 120.0
STDERR_KEEP = 64 * 1024
PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL

# Programs are found on a fixed PATH so that a user's environment cannot change what runs.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class CommandResult:
    """A finished command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    duration: float

    @property
    def out(self) -> str:
        """Standard output as text (undecodable bytes kept as surrogates, never dropped)."""
        return self.stdout.decode("utf-8", "surrogateescape")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


@dataclass(frozen=True)
class RunningCommand:
    """An entry of the registry of commands running now."""

    id: int
    argv: tuple[str, ...]
    pid: int
    started_at: float  # wall clock, seconds since the epoch
    kind: str  # "run", "stream" or "service"

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "argv": list(self.argv),
            "pid": self.pid,
            "started_at": self.started_at,
            "seconds": round(time.time() - self.started_at, 3),
            "kind": self.kind,
        }


class StreamHandle(Protocol):
    """A command started by :meth:`Runner.stream`: its pipes, and how to stop or wait for it."""

    argv: tuple[str, ...]

    @property
    def stdin(self) -> IO[bytes]: ...

    @property
    def stdout(self) -> IO[bytes]: ...

    @property
    def pid(self) -> int: ...

    def stderr_text(self) -> str: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int | None:
        """Its exit status once it has ended, or None if it is still running after ``timeout`` seconds."""
        ...


class Runner(Protocol):
    """What drivers need from the operating system (this machine, or another one such as a test VM)."""

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        ok_codes: Sequence[int] = (0,),
        env: Mapping[str, str] | None = None,
    ) -> CommandResult: ...

    def stream(
        self,
        argv: Sequence[str],
        *,
        stdin: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> contextlib.AbstractContextManager[StreamHandle]: ...

    def running(self) -> list[RunningCommand]: ...


def check_argv(argv: Sequence[str]) -> tuple[str, ...]:
    """Refuse anything that is not a non-empty list of strings without NUL bytes."""
    if isinstance(argv, (str, bytes)) or not argv:
        raise InvalidInput("a command must be a non-empty argv list, not a string")
    out = tuple(argv)
    for arg in out:
        if not isinstance(arg, str):
            raise InvalidInput(f"command argument {arg!r} is not a string")
        if "\0" in arg:
            raise InvalidInput("command argument contains a NUL byte")
    return out


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    base = {
        "PATH": SYSTEM_PATH,
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/root"),
    }
    if env:
        base.update(env)
    return base


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child and everything it started (it runs in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


class _StderrCollector(threading.Thread):
    """Drains a child's stderr so it can never block, keeping the last STDERR_KEEP bytes."""

    def __init__(self, pipe: IO[bytes]) -> None:
        super().__init__(daemon=True, name="stderr-collector")
        self._pipe = pipe
        self._chunks = bytearray()

    def run(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            for chunk in iter(lambda: self._pipe.read1(65536), b""):  # type: ignore[attr-defined]
                self._chunks += chunk
                if len(self._chunks) > 2 * STDERR_KEEP:
                    del self._chunks[: len(self._chunks) - STDERR_KEEP]

    def value(self) -> bytes:
        self.join(timeout=5)
        return bytes(self._chunks[-STDERR_KEEP:])


@dataclass
class Stream:
    """A command started by :meth:`LocalRunner.stream`; its pipes are ``stdin`` and ``stdout``."""

    argv: tuple[str, ...]
    proc: subprocess.Popen[bytes]
    started: float
    timed_out: threading.Event = field(default_factory=threading.Event)
    timeout: float | None = None
    _stderr: _StderrCollector | None = None

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None, "stream was not started with stdin=PIPE"
        return self.proc.stdin

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None, "stream was not started with stdout=PIPE"
        return self.proc.stdout

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_text(self) -> str:
        return self._stderr.value().decode("utf-8", "replace") if self._stderr else ""

    def kill(self) -> None:
        _kill_group(self.proc)

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


class Service:
    """A long-lived child process (a server) that Bulwark started and will stop by PID."""

    def __init__(self, runner: LocalRunner, entry_id: int, argv: tuple[str, ...], proc: subprocess.Popen[bytes]):
        self._runner = runner
        self._entry_id = entry_id
        self.argv = argv
        self.proc = proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is not None:
            self._runner._unregister(self._entry_id)
        return code

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int:
        """Ask the service to stop, then kill it if it has not stopped within ``timeout``."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("service %s (pid %d) did not stop in %.0f s; killing it", self.argv[0], self.pid, timeout)
                _kill_group(self.proc)
                self.proc.wait()
        self._runner._unregister(self._entry_id)
        return self.proc.returncode


class LocalRunner:
    """Runs programs on this machine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._running: dict[int, RunningCommand] = {}

    # -- registry ---------------------------------------------------------------------------

    def _register(self, argv: tuple[str, ...], pid: int, kind: str) -> int:
        entry_id = next(self._ids)
        with self._lock:
            self._running[entry_id] = RunningCommand(entry_id, argv, pid, time.time(), kind)
        return entry_id

    def _unregister(self, entry_id: int) -> None:
        with self._lock:
            self._running.pop(entry_id, None)

    def running(self) -> list[RunningCommand]:
        """The commands running now, oldest first."""
        with self._lock:
            return sorted(self._running.values(), key=lambda c: c.id)

    # -- popen ------------------------------------------------------------------------------

    def _popen(
        self,
        argv: tuple[str, ...],
        *,
        stdin: IO[bytes] | int | None,
        stdout: IO[bytes] | int | None,
        stderr: IO[bytes] | int | None,
        env: Mapping[str, str] | None,
        cwd: str | None = None,
    ) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(  # noqa: S603 - argv list, validated by check_argv
                argv,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=_child_env(env),
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as exc:
            raise CommandNotFound(argv[0]) from exc

    # -- run to completion ------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        ok_codes: Sequence[int] = (0,),
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv`` to completion; raise :class:`CommandFailed` unless its status is in ``ok_codes``."""
        args = check_argv(argv)
        start = time.monotonic()
        log.debug("run %s", args)
        proc = self._popen(args, stdin=PIPE if input is not None else DEVNULL, stdout=PIPE, stderr=PIPE, env=env)
        entry = self._register(args, proc.pid, "run")
        try:
            stdout, stderr = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            proc.communicate()
            log.warning("timeout after %.1f s, killed: %s", time.monotonic() - start, args)
            raise CommandTimeout(args[0], timeout) from exc
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            self._unregister(entry)
        duration = time.monotonic() - start
        result = CommandResult(args, proc.returncode, stdout, stderr, duration)
        log.debug("exit %d in %.3f s: %s", proc.returncode, duration, args)
        if proc.returncode not in ok_codes:
            raise CommandFailed(args, proc.returncode, result.err)
        return result

    # -- streams ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def stream(
        self,
        argv: Sequence[str],
        *,
        stdin: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Iterator[Stream]:
        """Start ``argv`` with the given stdin/stdout (a file object, ``PIPE`` or ``None`` for
        /dev/null), yield it, and on leaving the block close our pipe ends, wait for it and check
        its exit status. If the block raises, the child is killed first."""
        args = check_argv(argv)
        start = time.monotonic()
        log.debug("stream %s", args)
        proc = self._popen(
            args,
            stdin=DEVNULL if stdin is None else stdin,
            stdout=DEVNULL if stdout is None else stdout,
            stderr=PIPE,
            env=env,
        )
        entry = self._register(args, proc.pid, "stream")
        assert proc.stderr is not None
        collector = _StderrCollector(proc.stderr)
        collector.start()
        handle = Stream(args, proc, start, timeout=timeout, _stderr=collector)
        timer: threading.Timer | None = None
        if timeout is not None:

            def expire() -> None:
                handle.timed_out.set()
                _kill_group(proc)

            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        try:
            try:
                yield handle
            except BaseException:
                _kill_group(proc)
                raise
            finally:
                for pipe in (proc.stdin, proc.stdout):
                    if pipe is not None:
                        with contextlib.suppress(OSError, ValueError):
                            pipe.close()
            proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:
                _kill_group(proc)
                proc.wait()
            self._unregister(entry)
        duration = time.monotonic() - start
        log.debug("exit %d in %.3f s: %s", proc.returncode, duration, args)
        if handle.timed_out.is_set():
            raise CommandTimeout(args[0], timeout)
        if proc.returncode != 0:
            raise CommandFailed(args, proc.returncode, handle.stderr_text())

    # -- services ---------------------------------------------------------------------------

    def spawn(
        self,
        argv: Sequence[str],
        *,
        stdout: IO[bytes] | int | None = None,
        stderr: IO[bytes] | int | None = None,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = False,
        cwd: str | None = None,
    ) -> Service:
        """Start a long-lived service. Its output goes to the given files (default /dev/null).

        ``inherit_env`` passes this process's environment on (for Python children that need the
        virtualenv's settings); otherwise the child gets the fixed minimal environment."""
        args = check_argv(argv)
        child_env: dict[str, str] | None = dict(env) if env else None
        if inherit_env:
            child_env = {**os.environ, **(env or {})}
        proc = self._popen(
            args,
            stdin=DEVNULL,
            stdout=DEVNULL if stdout is None else stdout,
            stderr=DEVNULL if stderr is None else stderr,
            env=child_env,
            cwd=cwd,
        )
        log.info("started service %s (pid %d)", args[0], proc.pid)
        entry = self._register(args, proc.pid, "service")
        return Service(self, entry, args, proc)


_default: LocalRunner | None = None
_default_lock = threading.Lock()


def local_runner() -> LocalRunner:
    """The process-wide runner for this machine."""
    global _default
    with _default_lock:
        if _default is None:
            _default = LocalRunner()
        return _default
