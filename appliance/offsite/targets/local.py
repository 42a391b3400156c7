"""A folder as an offsite target: a USB disk for rotation, a mounted NAS share, or just a local folder.

Each object is a file; a put writes ``<path>.tmp-<random>``, flushes it to disk and renames it into place, so a
pulled disk or a crash never leaves a half-written object under its real name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

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
        final = self._file(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f"{final.name}{TMP_MARK}{secrets.token_hex(4)}")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if exc.errno == 28:
                raise OutOfSpace(f"offsite target {self.name} ({self.root})") from exc
            raise TargetUnreachable(self.name, str(exc)) from exc

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
