"""Deltas of large files: the changed 1 MiB blocks of a file whose previous version is in the tree.

A delta is checked when it arrives: the BLAKE3 of the file it makes (the previous version in the tree with the
blocks laid over it, cut or zero-extended to the new size) must be the announced hash, computed by reading the
previous version once — no copy of it is made. It is then staged as ``staging/<hash>.delta`` (a header line of
JSON, then the blocks) and written into the file in place only at the commit, after the same previous version
has been found in the tree again. Writing the same blocks and cutting to the same size is idempotent, so a commit
interrupted half way through a delta is simply done again.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3

from appliance.ingest import manifest
from appliance.ingest.errors import ProtocolError
from appliance.ingest.manifest import Entry

BLOCK = manifest.BLOCK
SUFFIX = ".delta"
_ZEROS = bytes(BLOCK)
READ = 16 * BLOCK


@dataclass(frozen=True)
class Delta:
    base: str  # the path of the previous version
    base_hash: str
    size: int  # the new size
    blocks: dict[int, bytes]  # block index -> its new content


def parse(body: bytes, size: int) -> dict[int, bytes]:
    """``index (8 bytes, big-endian) | length (4 bytes) | data``, repeated: at most 1 MiB each, written at
    ``index`` MiB, in increasing order, inside the new size."""
    out: dict[int, bytes] = {}
    pos = 0
    last = -1
    while pos < len(body):
        if pos + 12 > len(body):
            raise ProtocolError("a delta block is cut short")
        index = int.from_bytes(body[pos : pos + 8], "big")
        length = int.from_bytes(body[pos + 8 : pos + 12], "big")
        data = body[pos + 12 : pos + 12 + length]
        if len(data) != length or length > BLOCK or index * BLOCK >= size:
            raise ProtocolError("a delta block is malformed or lies outside the file")
        if index <= last:
            raise ProtocolError("delta blocks must come in increasing order, each block once")
        out[index] = data[: size - index * BLOCK]  # what lies past the new size is cut off anyway
        last = index
        pos += 12 + length
    return out


def _runs(blocks: dict[int, bytes], size: int) -> Iterator[tuple[int, int, bytes | None]]:
    """The new file as ``(start, end, data)`` pieces: ``data`` is a sent block, None a run of the old file."""
    start = 0
    for index in sorted(blocks):
        at = index * BLOCK
        if at > start:
            yield start, at, None
        yield at, at + len(blocks[index]), blocks[index]
        start = at + len(blocks[index])
    if start < size:
        yield start, size, None


def read_ahead(fd: int, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``start`` to ``end`` of ``fd`` in pieces of READ, the next piece read while the caller works on this
    one (hashing and the file system's reads overlap: a third faster on zfs-fuse)."""
    if start >= end:
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as reader:
        at = start
        pending = reader.submit(os.pread, fd, min(READ, end - at), at)
        while at < end:
            chunk = pending.result()
            if not chunk:
                raise ProtocolError("a file was cut short while it was read")
            at += len(chunk)
            if at < end:
                pending = reader.submit(os.pread, fd, min(READ, end - at), at)
            yield chunk


def overlay_hash(source: Path, old_size: int, blocks: dict[int, bytes], size: int) -> str:
    """BLAKE3 of ``source`` (``old_size`` bytes) with ``blocks`` laid over it, cut or zero-extended to ``size``,
    read once without copying the file (pread, not mmap: a file cut short meanwhile is an error, not a crash)."""
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        for start, end, data in _runs(blocks, size):
            if data is not None:
                h.update(data)
                continue
            for chunk in read_ahead(fd, start, min(end, old_size)):
                h.update(chunk)
            for at in range(max(start, old_size), end, BLOCK):  # past the old end: zeros
                h.update(_ZEROS[: min(BLOCK, end - at)])
    finally:
        os.close(fd)
    return h.hexdigest()


def stage(staging: Path, tmp_dir: Path, digest: str, base: Entry, size: int, blocks: dict[int, bytes]) -> None:
    header = {
        "base": base.path,
        "base_hash": base.hash,
        "size": size,
        "blocks": [[i, len(blocks[i])] for i in sorted(blocks)],
    }
    tmp = tmp_dir / secrets.token_hex(8)
    with open(tmp, "wb") as out:
        out.write(json.dumps(header).encode() + b"\n")
        for index in sorted(blocks):
            out.write(blocks[index])
    os.replace(tmp, staging / f"{digest}{SUFFIX}")


def load(path: Path) -> Delta:
    with open(path, "rb") as fh:
        header = json.loads(fh.readline())
        size = int(header["size"])
        blocks = {}
        for index, length in header["blocks"]:
            blocks[int(index)] = fh.read(int(length))
    return Delta(str(header["base"]), str(header["base_hash"]), size, blocks)


def write_in_place(path: Path, delta: Delta) -> None:
    """The blocks written into the tree's file and the file cut to the new size (idempotent)."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        for index, data in delta.blocks.items():
            os.pwrite(fd, data, index * BLOCK)
        os.ftruncate(fd, delta.size)
    finally:
        os.close(fd)
