"""Content that arrives in parts: ``<hash>.part`` in staging, written under a lock and hashed as it grows.

The agent sends the parts of one content in order on one connection, which one web worker serves. The BLAKE3
state after each part is kept in that worker's memory, so the next part continues it instead of reading back
everything that arrived before. A kept state is used only for the same file (same inode), exactly as long as
when it was kept and ending in the same bytes; otherwise — another worker, a restart, an interrupted upload —
the bytes already held are read back and hashed once, and the state is kept from there on.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3

from appliance.ingest import delta

TAIL = 4096  # the last bytes of a part file, kept with its state to recognise the file
KEEP = 64  # states kept per process, the oldest dropped first


def new_hasher() -> blake3.blake3:
    """One thread: the web worker's other threads and the file system daemon want the other core."""
    return blake3.blake3()


@dataclass
class _State:
    ino: int
    size: int
    tail: bytes
    hasher: blake3.blake3


class RunningHashes:
    """The BLAKE3 states of part files this process wrote last, by path."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep_at_most = keep
        self._lock = threading.Lock()
        self._states: OrderedDict[str, _State] = OrderedDict()

    def resume(self, path: Path, fd: int, size: int) -> blake3.blake3:
        """A hasher that has seen the first ``size`` bytes of the part file open as ``fd``."""
        with self._lock:
            state = self._states.pop(str(path), None)
        if state is not None and size and state.ino == os.fstat(fd).st_ino and state.size == size:
            if _tail(fd, size) == state.tail:
                return state.hasher
        hasher = new_hasher()
        for data in delta.read_ahead(fd, 0, size):
            hasher.update(data)
        return hasher

    def keep(self, path: Path, fd: int, size: int, last: bytes, hasher: blake3.blake3) -> None:
        """Keep ``hasher`` (it has seen the ``size`` bytes of the part file, the last of them ``last``)."""
        tail = last[-TAIL:] if len(last) >= min(TAIL, size) else _tail(fd, size)
        state = _State(os.fstat(fd).st_ino, size, tail, hasher)
        with self._lock:
            self._states[str(path)] = state
            while len(self._states) > self.keep_at_most:
                self._states.popitem(last=False)

    def forget_all(self) -> None:
        with self._lock:
            self._states.clear()


def _tail(fd: int, size: int) -> bytes:
    n = min(TAIL, size)
    return os.pread(fd, n, size - n)


RUNNING = RunningHashes()


@contextlib.contextmanager
def locked(part: Path, staged: Path, mode: int) -> Iterator[int | None]:
    """The part file open for writing (created with ``mode`` if new) under an exclusive lock, or None when the
    content was staged meanwhile. The lock is taken on the file the path names once it is held, so a part
    finished and renamed by another worker is never written to."""
    for _ in range(5):
        if staged.exists():
            yield None
            return
        fd = os.open(part, os.O_RDWR | os.O_CREAT, mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                named = os.stat(part).st_ino == held.st_ino
            except FileNotFoundError:
                named = False
            if named:
                if held.st_size == 0 and held.st_mode & 0o7777 != mode:
                    os.fchmod(fd, mode)  # created under a umask that took bits away
                yield fd
                return
        finally:
            os.close(fd)
    raise OSError(f"{part.name} kept changing while it was opened")
