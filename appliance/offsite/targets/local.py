"""A folder as an offsite target: a USB disk for rotation, a mounted NAS share, or just a local folder.

Each object is a file; a put writes ``<path>.tmp-<random>``, flushes it to disk and renames it into place (then
flushes the folder), so a pulled disk or a crash never leaves a half-written object under its real name. The
uploader stages a stream's chunks (:meth:`LocalTarget.stage`): each file is written at once, with its write-back
started, and flushed and renamed by a commit on another thread, so waiting for the disk overlaps with sealing the
next chunks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import IO

from appliance.offsite.errors import ObjectMissing, TargetUnreachable
from appliance.offsite.targets.base import check_path, check_prefix
from appliance.system.errors import OutOfSpace

TMP_MARK = ".tmp-"


class LocalTarget:
    kind = "local"

    def __init__(self, name: str, root: str | os.PathLike[str], *, require_mount: bool = False) -> None:
        self.name = name
        self.root = Path(root)
        self.require_mount = require_mount

    def _ready(self) -> Path:
        if not self.root.is_dir():
            raise TargetUnreachable(self.name, f"folder {self.root} does not exist (is the disk plugged in?)")
        if self.require_mount and not os.path.ismount(self.root):
            raise TargetUnreachable(self.name, f"{self.root} is not a mounted disk (plug the disk in and mount it)")
        return self.root

    def _file(self, path: str) -> Path:
        return self._ready() / check_path(path)

    def put(self, path: str, data: bytes | bytearray) -> None:
        self.stage(path, data).commit()

    def stage(self, path: str, data: bytes | bytearray | memoryview) -> StagedFile:
        """Write ``data`` to a temporary file next to ``path`` and start writing it to disk; the returned object
        puts it in place (:meth:`StagedFile.commit`) or throws it away."""
        final = self._file(path)
        tmp = final.with_name(f"{final.name}{TMP_MARK}{secrets.token_hex(4)}")
        fh = None
        try:
            try:
                fh = open(tmp, "wb")  # noqa: SIM115 - kept open until the commit flushes it to disk
            except FileNotFoundError:  # the object's folder is made by its first object, not checked for each
                final.parent.mkdir(parents=True, exist_ok=True)
                fh = open(tmp, "wb")  # noqa: SIM115
            fh.write(data)
            fh.flush()
            with contextlib.suppress(OSError, AttributeError):  # start the write-back now, without waiting for it
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError as exc:
            if fh is not None:
                fh.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise self._error(exc) from exc
        return StagedFile(self, fh, tmp, final)

    def _error(self, exc: OSError) -> Exception:
        if exc.errno == errno.ENOSPC:
            return OutOfSpace(f"offsite target {self.name} ({self.root})")
        return TargetUnreachable(self.name, str(exc))

    def get(self, path: str) -> bytes:
        try:
            return self._file(path).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(path, self.name) from None
        except OSError as exc:
            raise TargetUnreachable(self.name, str(exc)) from exc

    def list(self, prefix: str = "") -> list[str]:
        check_prefix(prefix)
        base = self._ready() / prefix if prefix else self._ready()
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, self.root)
            for fname in filenames:
                if TMP_MARK in fname or fname.startswith("."):
                    continue
                out.append(fname if rel == "." else f"{rel}/{fname}")
        return sorted(out)

    def sweep(self, prefix: str) -> int:
        """Remove the temporary files under ``prefix`` that a killed upload left behind (never listed, never
        read); how many. Only for a prefix no other upload is writing to."""
        check_prefix(prefix)
        base = self._ready() / prefix
        removed = 0
        for dirpath, _, filenames in os.walk(base):
            for fname in filenames:
                if TMP_MARK in fname:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, fname))
                        removed += 1
        return removed

    def delete(self, path: str) -> bool:
        target = self._file(path)
        try:
            target.unlink()
        except FileNotFoundError:
            return False
        parent = target.parent
        while parent != self.root:  # drop folders left empty
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return True

    def close(self) -> None:
        pass


class StagedFile:
    """A written temporary file of a :class:`LocalTarget`: ``commit`` flushes it to disk, then renames it into
    place (so its name never shows a torn object, even after a power cut) and flushes the folder (so a chunk the
    uploader journals as put is still there after a power cut, on any file system); ``abort`` removes it. An offsite
    object is not read again soon, so its pages leave the page cache once on disk: memory that is reused at once
    is cheaper to write to than fresh memory, and other data keeps its cache."""

    def __init__(self, target: LocalTarget, fh: IO[bytes], tmp: Path, final: Path) -> None:
        self._target, self._fh, self._tmp, self._final = target, fh, tmp, final
        self._done = False

    def commit(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            with self._fh:
                os.fsync(self._fh.fileno())
                with contextlib.suppress(OSError, AttributeError):  # now clean: its pages go back to be reused
                    os.posix_fadvise(self._fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            os.replace(self._tmp, self._final)
            folder = os.open(self._final.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)  # the new name is on disk too before the object counts as put
            finally:
                os.close(folder)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            raise self._target._error(exc) from exc

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._fh.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()
