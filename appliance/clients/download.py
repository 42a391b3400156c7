"""Downloads from a recovery point: one file as a stream of chunks, or files and folders as a streamed zip.

The zip is written by :mod:`zipfile` to a sink that cannot seek, so every entry carries a data descriptor and
ZIP64 records where sizes or offsets need them: there is no size cap, and memory stays bounded by one chunk
whatever the size of the tree. Files are stored by default (the fastest: a recovery point holds mostly
compressed or incompressible data); ``compress`` deflates them at level 1. Symbolic links are stored as
links (as ``zip --symlinks`` does), never followed; devices, sockets and pipes are left out.
"""

from __future__ import annotations

import io
import os
import stat
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.clients.errors import PathNotFound
from appliance.clients.paths import clean_relative, parent_inside

CHUNK = 1024 * 1024
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class FileDownload:
    name: str
    size: int
    mtime: float
    chunks: Iterator[bytes]


def read_file(root: Path, rel: str, chunk_size: int = CHUNK) -> FileDownload:
    """One regular file of the point, as chunks (symlinks are refused: download the folder instead)."""
    path = parent_inside(root, rel)
    st = path.lstat()
    if not stat.S_ISREG(st.st_mode):
        raise PathNotFound(rel, "this point as a regular file")
    fh = path.open("rb")

    def chunks() -> Iterator[bytes]:
        with fh:
            while block := fh.read(chunk_size):
                yield block

    return FileDownload(path.name, st.st_size, st.st_mtime, chunks())


class _Sink(io.RawIOBase):
    """Collects what zipfile writes until the generator hands it on; cannot seek or tell."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        block = bytes(data)
        self._parts.append(block)
        self.total += len(block)
        return len(block)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _date_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    t = time.localtime(mtime)
    if t.tm_year < 1980:
        return _ZIP_EPOCH
    if t.tm_year > 2107:
        return (2107, 12, 31, 23, 59, 58)
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def _arcname(rel: str) -> str:
    # Names that are not UTF-8 on disk (surrogate escapes) still get a readable, encodable name.
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _info(arcname: str, st: os.stat_result, compress: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(_arcname(arcname), _date_time(st.st_mtime))
    info.create_system = 3  # Unix: external_attr carries the mode
    info.external_attr = (st.st_mode & 0xFFFF) << 16
    if stat.S_ISDIR(st.st_mode):
        info.external_attr |= 0x10  # MS-DOS directory flag
    info.compress_type = zipfile.ZIP_DEFLATED if compress and stat.S_ISREG(st.st_mode) else zipfile.ZIP_STORED
    return info


def _walk(top: Path, arc_top: str) -> Iterator[tuple[Path, str, os.stat_result]]:
    """``top`` and everything under it, parents first, without following symlinks."""
    st = top.lstat()
    yield top, arc_top, st
    if not stat.S_ISDIR(st.st_mode):
        return
    try:
        with os.scandir(top) as it:
            children = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    for child in children:
        yield from _walk(Path(child.path), f"{arc_top}/{child.name}")


def zip_stream(
    root: Path,
    paths: Sequence[str],
    *,
    compress: bool = False,
    chunk_size: int = CHUNK,
    on_progress: Callable[[int, int], None] | None = None,
) -> Iterator[bytes]:
    """A zip of ``paths`` (files or folders, relative to ``root``), produced chunk by chunk.

    Each selected item appears under its own name at the top of the zip (``docs/a.txt`` → ``a.txt``; a folder
    with everything under it); the whole point is selected by ``""``, its entries then at the top.
    ``on_progress(files, bytes)`` is called after each file."""
    tops: list[tuple[Path, str]] = []
    for raw in paths:
        rel = clean_relative(raw)
        path = parent_inside(root, rel)
        tops.append((path, rel.rsplit("/", 1)[-1] if rel else ""))
    sink = _Sink()
    files = read_bytes = 0
    with zipfile.ZipFile(sink, mode="w", allowZip64=True, compresslevel=1) as zf:
        for top, arc_top in tops:
            for path, arc, st in _walk(top, arc_top):
                if not arc:  # the point's root itself
                    continue
                arc = arc.lstrip("/")
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    zf.writestr(_info(arc + "/", st, compress), b"")
                elif stat.S_ISLNK(mode):
                    zf.writestr(_info(arc, st, compress), os.fsencode(os.readlink(path)))
                elif stat.S_ISREG(mode):
                    info = _info(arc, st, compress)
                    info.file_size = st.st_size  # lets zipfile choose ZIP64 for large files up front
                    with path.open("rb") as src, zf.open(info, mode="w", force_zip64=st.st_size > 0x7FFFFFFF) as dst:
                        while block := src.read(chunk_size):
                            dst.write(block)
                            read_bytes += len(block)
                            data = sink.take()
                            if data:
                                yield data
                    files += 1
                    if on_progress is not None:
                        on_progress(files, read_bytes)
                data = sink.take()
                if data:
                    yield data
    tail = sink.take()
    if tail:
        yield tail


def zip_name(client: str, point_snapname: str, paths: Sequence[str]) -> str:
    """A file name for the download: ``acme-bw-20260126T143400Z-manual-reports.zip``."""
    last = clean_relative(paths[0]).rsplit("/", 1)[-1] if len(paths) == 1 and paths[0].strip("/") else ""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in last)[:60]
    return f"{client}-{point_snapname}" + (f"-{safe}" if safe else "") + ".zip"
