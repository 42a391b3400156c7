"""What every offsite target offers: whole objects by path, put atomically, listed by prefix.

Paths are relative, '/'-separated, made of the characters the repository format uses (checked here, so a
hostile name can never climb out of a folder or reach a shell). Every target passes the same contract tests
(``tests/integration/test_offsite_targets.py``), the in-memory one included.
"""

from __future__ import annotations

import re
import threading
from typing import Protocol

from appliance.offsite.errors import ObjectMissing
from appliance.system.errors import InvalidInput

_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
MAX_PATH = 512


def check_path(path: str) -> str:
    """A repository path: components of letters, digits, '.', '_', '~', '-', not starting with a dot."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise InvalidInput("an offsite object path must be 1 to 512 characters")
    for part in path.split("/"):
        if not _COMPONENT.fullmatch(part):
            raise InvalidInput(f"offsite object path {path!r} has an invalid component {part!r}")
    return path


def check_prefix(prefix: str) -> str:
    """A listing prefix: '' or a path ending in '/'."""
    if prefix == "":
        return prefix
    if not prefix.endswith("/"):
        raise InvalidInput("a listing prefix ends with '/'")
    check_path(prefix[:-1])
    return prefix


class Target(Protocol):
    name: str
    kind: str

    def put(self, path: str, data: bytes | bytearray) -> None:
        """Store ``data`` at ``path`` atomically (whole or not at all), replacing what was there."""
        ...

    def get(self, path: str) -> bytes:
        """The object at ``path``; :class:`ObjectMissing` if there is none."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Every object path under ``prefix`` (recursively), sorted; temporary uploads are never listed."""
        ...

    def delete(self, path: str) -> bool:
        """Remove the object (False if it was not there, or a retention lock keeps it)."""
        ...

    def close(self) -> None: ...


class Staged(Protocol):
    """An object written to a target but not yet put: invisible under its path until :meth:`commit`."""

    def commit(self) -> None:
        """Make the object durable and visible under its path (atomically, as :meth:`Target.put`)."""
        ...

    def abort(self) -> None:
        """Throw an uncommitted object away (nothing after a commit)."""
        ...


class _Put:
    """The staging of a target that has none of its own: the object is put at once."""

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass


def stage(target: Target, path: str, data: bytes | bytearray | memoryview) -> Staged:
    """Hand ``data`` to ``target`` for ``path`` and return before it must be durable, when the target can (a local
    folder writes the file now and flushes it to disk on commit, so a stream's chunks are flushed on other
    threads while the next ones are sealed); other targets put it at once. Only a committed object is put.
    ``data`` may be reused by the caller as soon as this returns."""
    staging = getattr(target, "stage", None)
    if staging is None:
        target.put(path, bytes(data) if isinstance(data, memoryview) else data)
        return _Put()
    staged: Staged = staging(path, data)
    return staged


def sweep(target: Target, prefix: str) -> int:
    """Remove what uploads killed under ``prefix`` left behind, on a target that can have such leftovers."""
    sweeper = getattr(target, "sweep", None)
    return int(sweeper(prefix)) if sweeper is not None else 0


class MemoryTarget:
    """Objects in a dict: for tests and as the reference behaviour of the contract."""

    kind = "memory"

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.objects: dict[str, bytes] = {}
        self.puts: list[str] = []  # every put, in order (tests count re-uploads with it)
        self._lock = threading.Lock()

    def put(self, path: str, data: bytes | bytearray) -> None:
        check_path(path)
        with self._lock:
            self.objects[path] = bytes(data)
            self.puts.append(path)

    def get(self, path: str) -> bytes:
        check_path(path)
        with self._lock:
            try:
                return self.objects[path]
            except KeyError:
                raise ObjectMissing(path, self.name) from None

    def list(self, prefix: str = "") -> list[str]:
        check_prefix(prefix)
        with self._lock:
            return sorted(p for p in self.objects if p.startswith(prefix))

    def delete(self, path: str) -> bool:
        check_path(path)
        with self._lock:
            return self.objects.pop(path, None) is not None

    def close(self) -> None:
        pass
