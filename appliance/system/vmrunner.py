"""Commands in the OpenZFS test machine: a :class:`~appliance.system.runner.Runner` that runs each argv in a
QEMU virtual machine (the machine itself: :mod:`appliance.system.vm`).

The machine (built by ``image/openzfs-vm/build.py``: a Debian kernel, an initramfs with OpenZFS and
busybox) boots under TCG with fresh sparse disks. Its PID 1 is the guest agent (``image/openzfs-vm/agent.c``),
which serves virtio-serial ports named ``bulwark.N``, each a unix socket of QEMU's on this side. A port runs
one command at a time; several ports let commands run at once (``zfs send`` into ``zfs receive``). Port 0 is
kept for control requests: ping, kill a command, power off. The frames are documented in ``agent.c`` and
``image/openzfs-vm/README.md``; stdin, stdout and stderr pass byte for byte, and a stream never waits in
memory whole: each side stops reading when the next one does not keep up.

QEMU is started through the local runner (:meth:`LocalRunner.spawn`, the one door) and stopped by PID after
the guest has powered itself off. Only the standard library and ``appliance.system`` are used, so that the
tests and the benchmarks can both use it.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from appliance.system.errors import CommandFailed, CommandNotFound, CommandTimeout, ExternalCommandError
from appliance.system.runner import (
    DEFAULT_TIMEOUT,
    DEVNULL,
    PIPE,
    STDERR_KEEP,
    SYSTEM_PATH,
    CommandResult,
    RunningCommand,
    check_argv,
)

log = logging.getLogger("bulwark.command")

CHUNK = 64 * 1024
_HEAD = struct.Struct(">cI")
KILL_GRACE = 30.0  # seconds to wait for a killed command's exit status
PORT_WAIT = 300.0  # seconds to wait for a free port before giving up


class VmChannelError(ExternalCommandError):
    """The command channel to the test machine failed: {}"""

    code = "vm_channel_error"


# -- one port ------------------------------------------------------------------------------------------


class _Port:
    """One connection to one of the guest agent's ports."""

    def __init__(self, index: int, path: Path) -> None:
        self.index = index
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self._write_lock = threading.Lock()
        self.broken = False

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        with self._write_lock:
            self.sock.sendall(_HEAD.pack(kind, len(payload)) + payload)

    def _exactly(self, size: int) -> bytes:
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = self.sock.recv_into(view[got:], size - got)
            if n == 0:
                raise VmChannelError(f"port {self.index} closed by the machine")
            got += n
        return bytes(buf)

    def readable(self, timeout: float) -> bool:
        """Whether a frame has begun to arrive within ``timeout`` seconds."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return bool(ready)

    def recv(self) -> tuple[bytes, bytes]:
        """The next frame: (kind, payload)."""
        kind, size = _HEAD.unpack(self._exactly(_HEAD.size))
        return kind, self._exactly(size) if size else b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _exec_payload(argv: tuple[str, ...], env: Mapping[str, str], piped: bool) -> bytes:
    parts = [bytes([1 if piped else 0])]
    parts += [arg.encode("utf-8", "surrogateescape") + b"\0" for arg in argv]
    parts.append(b"\0")
    parts += [f"{k}={v}".encode() + b"\0" for k, v in env.items()]
    return b"".join(parts)


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    base = {"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "HOME": "/root"}
    if env:
        base.update(env)
    return base


# -- one command ---------------------------------------------------------------------------------------


class _Session:
    """One command on one port: a thread reads its frames, another (if stdin is piped) feeds its stdin."""

    def __init__(self, runner: VmRunner, port: _Port, argv: tuple[str, ...], kind: str) -> None:
        self.runner = runner
        self.port = port
        self.argv = argv
        self.kind = kind
        self.pid = 0
        self.returncode: int | None = None
        self.exited = threading.Event()
        self.stdin_refused = threading.Event()
        self._stderr = bytearray()
        self._stdout_sink: int | None = None  # a file descriptor we own, or None (to memory or discarded)
        self._stdout_memory: bytearray | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._threads: list[threading.Thread] = []
        self._given_back = False
        self.entry = 0

    # the start: 'E', then 'S' or 'F'
    def start(self, env: Mapping[str, str] | None, piped: bool) -> None:
        """Ask the agent to run the command. If it does not start, the port is given back (and kept out of use
        unless the agent answered as it should)."""
        try:
            self.port.send(b"E", _exec_payload(self.argv, _child_env(env), piped))
            kind, payload = self.port.recv()
        except BaseException:
            self.port.broken = True
            self.abandon()
            raise
        if kind == b"F":
            code = struct.unpack(">I", payload[:4])[0]
            if piped:
                try:
                    self.port.send(b"i")
                except OSError:
                    self.port.broken = True
            self.abandon()
            if code == errno.ENOENT:
                raise CommandNotFound(self.argv[0])
            raise CommandFailed(self.argv, 126, f"cannot run {self.argv[0]}: {payload[4:].decode(errors='replace')}")
        if kind != b"S":
            self.port.broken = True
            self.abandon()
            raise VmChannelError(f"expected the start of {self.argv[0]}, got frame {kind!r}")
        self.pid = struct.unpack(">I", payload)[0]
        self.entry = self.runner._register(self.argv, self.pid, self.kind)

    def abandon(self) -> None:
        """Give the port back for a command that never started."""
        if not self._given_back:
            self._given_back = True
            self._close_wake()
            self.runner._release(self.port)

    def stdout_to_fd(self, fd: int | None) -> None:
        self._stdout_sink = fd

    def stdout_to_memory(self) -> None:
        self._stdout_memory = bytearray()

    def launch(self, stdin_source: int | bytes | None) -> None:
        reader = threading.Thread(target=self._read_frames, name=f"vm-port{self.port.index}-out", daemon=True)
        self._threads.append(reader)
        if stdin_source is not None:
            writer = threading.Thread(
                target=self._feed_stdin, args=(stdin_source,), name=f"vm-port{self.port.index}-in", daemon=True
            )
            self._threads.append(writer)
        for thread in self._threads:
            thread.start()

    def _read_frames(self) -> None:
        try:
            while True:
                kind, payload = self.port.recv()
                if kind == b"O":
                    self._deliver(payload)
                elif kind == b"R":
                    self._stderr += payload
                    if len(self._stderr) > 2 * STDERR_KEEP:
                        del self._stderr[: len(self._stderr) - STDERR_KEEP]
                elif kind == b"C":
                    self.stdin_refused.set()
                    self._wake()
                elif kind == b"X":
                    self.returncode = struct.unpack(">i", payload)[0]
                    break
                else:
                    raise VmChannelError(f"unexpected frame {kind!r} from {self.argv[0]}")
        except (OSError, ExternalCommandError) as exc:
            log.exception("command channel port %d failed during %s", self.port.index, self.argv)
            self.port.broken = True
            self.returncode = -1
            self._stderr += f"\n(command channel failed: {exc})".encode()
        finally:
            if self._stdout_sink is not None:
                with contextlib.suppress(OSError):
                    os.close(self._stdout_sink)
                self._stdout_sink = None
            self.exited.set()
            self._wake()

    def _deliver(self, data: bytes) -> None:
        if self._stdout_memory is not None:
            self._stdout_memory += data
            return
        if self._stdout_sink is None:
            return
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._stdout_sink, view)
                view = view[n:]
        except BrokenPipeError:
            # Whoever reads our stdout stopped (as a closed pipe would stop a local command): stop it.
            with contextlib.suppress(OSError):
                os.close(self._stdout_sink)
            self._stdout_sink = None
            self.kill()

    def _feed_stdin(self, source: int | bytes) -> None:
        try:
            if isinstance(source, bytes):
                for offset in range(0, len(source), CHUNK):
                    if self.stdin_refused.is_set() or self.exited.is_set():
                        break
                    self.port.send(b"I", source[offset : offset + CHUNK])
            else:
                while not (self.stdin_refused.is_set() or self.exited.is_set()):
                    ready, _, _ = select.select([source, self._wake_r], [], [])
                    if self._wake_r in ready and source not in ready:
                        continue
                    data = os.read(source, CHUNK)
                    if not data:
                        break
                    self.port.send(b"I", data)
            self.port.send(b"i")
        except OSError:
            log.exception("command channel port %d failed feeding %s", self.port.index, self.argv)
            self.port.broken = True
        finally:
            if isinstance(source, int):
                with contextlib.suppress(OSError):
                    os.close(source)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _close_wake(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def kill(self) -> None:
        if not self.exited.is_set() and self.pid:
            self.runner.kill(self.pid)

    def wait(self, timeout: float | None) -> int | None:
        if not self.exited.wait(timeout):
            return None
        return self.returncode

    def finish(self) -> None:
        """Wait for both threads (the exit status has come), then give the port back."""
        for thread in self._threads:
            thread.join(KILL_GRACE)
            if thread.is_alive():
                log.error("command channel port %d is stuck after %s", self.port.index, self.argv)
                self.port.broken = True
        self.runner._unregister(self.entry)
        self._given_back = True
        self._close_wake()
        self.runner._release(self.port)

    def stdout_bytes(self) -> bytes:
        return bytes(self._stdout_memory or b"")

    def stderr_bytes(self) -> bytes:
        return bytes(self._stderr[-STDERR_KEEP:])


@dataclass
class VmStream:
    """A command started by :meth:`VmRunner.stream`; its pipes are ``stdin`` and ``stdout`` (here)."""

    argv: tuple[str, ...]
    _session: _Session
    _stdin: IO[bytes] | None = None
    _stdout: IO[bytes] | None = None
    timed_out: threading.Event = field(default_factory=threading.Event)

    @property
    def stdin(self) -> IO[bytes]:
        assert self._stdin is not None, "stream was not started with stdin=PIPE"
        return self._stdin

    @property
    def stdout(self) -> IO[bytes]:
        assert self._stdout is not None, "stream was not started with stdout=PIPE"
        return self._stdout

    @property
    def pid(self) -> int:
        """The command's process ID in the machine."""
        return self._session.pid

    def stderr_text(self) -> str:
        return self._session.stderr_bytes().decode("utf-8", "replace")

    def kill(self) -> None:
        self._session.kill()

    def wait(self, timeout: float | None = None) -> int | None:
        return self._session.wait(timeout)


def _dup_fd(target: IO[bytes] | int) -> int:
    return os.dup(target if isinstance(target, int) else target.fileno())


# -- the runner ----------------------------------------------------------------------------------------


class VmRunner:
    """Runs programs in the test machine through its guest agent."""

    def __init__(self, sockets: Sequence[Path]) -> None:
        if len(sockets) < 2:
            raise ValueError("the machine needs a control port and at least one command port")
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._running: dict[int, RunningCommand] = {}
        self._control = _Port(0, sockets[0])
        self._control_lock = threading.Lock()
        self._ports = [_Port(i, path) for i, path in enumerate(sockets[1:], start=1)]
        self._free: queue.Queue[_Port] = queue.Queue()
        for port in self._ports:
            self._free.put(port)

    # -- registry (as LocalRunner's) ----------------------------------------------------------------

    def _register(self, argv: tuple[str, ...], pid: int, kind: str) -> int:
        entry_id = next(self._ids)
        with self._lock:
            self._running[entry_id] = RunningCommand(entry_id, argv, pid, time.time(), kind)
        return entry_id

    def _unregister(self, entry_id: int) -> None:
        with self._lock:
            self._running.pop(entry_id, None)

    def running(self) -> list[RunningCommand]:
        """The commands running in the machine now, oldest first (``pid`` is the machine's)."""
        with self._lock:
            return sorted(self._running.values(), key=lambda c: c.id)

    # -- ports --------------------------------------------------------------------------------------

    def _acquire(self) -> _Port:
        try:
            return self._free.get(timeout=PORT_WAIT)
        except queue.Empty:
            raise VmChannelError(f"no free command port within {PORT_WAIT:.0f} s") from None

    def _release(self, port: _Port) -> None:
        if port.broken:
            log.error("command channel port %d is out of use after an error", port.index)
            port.close()
            return
        self._free.put(port)

    def _control_request(self, kind: bytes, payload: bytes, reply: bytes, timeout: float) -> bytes:
        with self._control_lock:
            self._control.send(kind, payload)
            if not self._control.readable(timeout):
                self._control.broken = True
                raise VmChannelError(f"no answer to control request {kind!r} within {timeout:.0f} s")
            got, data = self._control.recv()
        if got != reply:
            raise VmChannelError(f"control request {kind!r} answered with {got!r}")
        return data

    def wait_ready(self, timeout: float, alive: Callable[[], None]) -> str:
        """Ping the agent once and wait for its answer (the machine is booting), calling ``alive()`` (which
        raises if the machine has died) every second. Returns the agent's version."""
        deadline = time.monotonic() + timeout
        with self._control_lock:
            self._control.send(b"P")
            while not self._control.readable(1.0):
                alive()
                if time.monotonic() > deadline:
                    raise VmChannelError(f"the machine did not answer within {timeout:.0f} s")
            got, data = self._control.recv()
        if got != b"p":
            raise VmChannelError(f"ping answered with {got!r}")
        return data.decode()

    def ping(self, timeout: float = 30) -> str:
        """The agent's version."""
        return self._control_request(b"P", b"", b"p", timeout).decode()

    def kill(self, pid: int) -> None:
        """SIGKILL to a command's process group in the machine."""
        self._control_request(b"K", struct.pack(">I", pid), b"k", 30)

    def poweroff(self) -> None:
        """Have the machine sync its disks and power itself off."""
        self._control_request(b"Q", b"", b"q", 30)

    def close(self) -> None:
        for port in (self._control, *self._ports):
            port.close()

    def _session(self, argv: Sequence[str], kind: str) -> _Session:
        args = check_argv(argv)  # (before a port is taken)
        return _Session(self, self._acquire(), args, kind)

    # -- run to completion --------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        ok_codes: Sequence[int] = (0,),
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv`` in the machine to completion; as :meth:`LocalRunner.run`."""
        start = time.monotonic()
        session = self._session(argv, "run")
        args = session.argv
        log.debug("vm run %s", args)
        session.start(env, piped=input is not None)
        session.stdout_to_memory()
        session.launch(input)
        timed_out = False
        try:
            if session.wait(timeout) is None:
                timed_out = True
                session.kill()
                session.wait(KILL_GRACE)
        except BaseException:
            session.kill()
            session.wait(KILL_GRACE)
            raise
        finally:
            session.finish()
        duration = time.monotonic() - start
        if timed_out:
            log.warning("timeout after %.1f s, killed in the vm: %s", duration, args)
            raise CommandTimeout(args[0], timeout)
        assert session.returncode is not None
        result = CommandResult(args, session.returncode, session.stdout_bytes(), session.stderr_bytes(), duration)
        log.debug("vm exit %d in %.3f s: %s", result.returncode, duration, args)
        if result.returncode not in ok_codes:
            raise CommandFailed(args, result.returncode, result.err)
        return result

    def shell(
        self,
        script: str,
        *args: str,
        input: bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        ok_codes: Sequence[int] = (0,),
    ) -> CommandResult:
        """Run a busybox ``sh -c SCRIPT sh ARGS…`` in the machine: for test set-up (writing files), never
        for driver commands. Values belong in ``args`` ("$1", …), not in the script."""
        return self.run(["/bin/sh", "-c", script, "sh", *args], input=input, timeout=timeout, ok_codes=ok_codes)

    # -- streams ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def stream(
        self,
        argv: Sequence[str],
        *,
        stdin: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Iterator[VmStream]:
        """As :meth:`LocalRunner.stream`: ``stdin``/``stdout`` are a file object or descriptor here, ``PIPE``
        or None; with ``PIPE`` the yielded stream's ``stdin``/``stdout`` are pipe ends in this process."""
        start = time.monotonic()
        session = self._session(argv, "stream")
        args = session.argv
        log.debug("vm stream %s", args)
        stdin_source: int | None = None
        handle = VmStream(args, session)
        try:
            if stdin == PIPE:
                read_end, write_end = os.pipe()
                stdin_source = read_end
                handle._stdin = open(write_end, "wb")  # noqa: SIM115 - closed on leaving the block
            elif stdin is not None and stdin != DEVNULL:
                stdin_source = _dup_fd(stdin)
            if stdout == PIPE:
                read_end, write_end = os.pipe()
                session.stdout_to_fd(write_end)
                handle._stdout = open(read_end, "rb")  # noqa: SIM115 - closed on leaving the block
            elif stdout is not None and stdout != DEVNULL:
                session.stdout_to_fd(_dup_fd(stdout))
            session.start(env, piped=stdin_source is not None)
        except BaseException:
            session.abandon()
            for fd in (stdin_source, session._stdout_sink):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            for pipe in (handle._stdin, handle._stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            raise
        session.launch(stdin_source)
        timer: threading.Timer | None = None
        if timeout is not None:

            def expire() -> None:
                handle.timed_out.set()
                session.kill()

            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        try:
            try:
                yield handle
            except BaseException:
                session.kill()
                raise
            finally:
                for pipe in (handle._stdin, handle._stdout):
                    if pipe is not None:
                        with contextlib.suppress(OSError, ValueError):
                            pipe.close()
            session.wait(None)
        finally:
            if timer is not None:
                timer.cancel()
            if session.wait(KILL_GRACE) is None:
                session.kill()
                session.wait(KILL_GRACE)
            session.finish()
        duration = time.monotonic() - start
        log.debug("vm exit %s in %.3f s: %s", session.returncode, duration, args)
        if handle.timed_out.is_set():
            raise CommandTimeout(args[0], timeout)
        if session.returncode != 0:
            raise CommandFailed(args, -1 if session.returncode is None else session.returncode, handle.stderr_text())
