"""A client's disk images as the agent writes them (docs/agent-protocol.md, "Image backup").

Each image has its own dataset ``<client>/images/<name>`` holding ``disk.img``, a sparse file the size of the
device, and the appliance's state in ``.bulwark/``:

- ``blocks``: the block map — for every 1 MiB block of ``disk.img`` as it is *now*, the first 16 bytes of the
  BLAKE3 of its content (the last block may be shorter). An entry changes only after the block's new content
  was checked against the agent's hash and written durably (data fsynced first), so the map never claims what
  the file does not hold; a block being rewritten when the process dies keeps its old hash and is sent again.
  Sixteen zero bytes mean "unknown" (after a resize) and never match a real hash.
- ``image.json``: what the last commit recorded (size, block size, map hash, source, consistency).

Blocks are written into ``disk.img`` in place: between two commits the live file may hold part of a new
backup, but recovery points are snapshots, so no point ever holds a half-written image. Every point is a full
image; ZFS keeps only the blocks that changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from appliance.ingest import manifest
from appliance.ingest.errors import ContentMismatch, ProtocolError
from appliance.ingest.files import decode_body, dir_lock

BLOCK = 1024 * 1024
HASH = 16
RECORD = 8 + 4 + HASH  # index | length | hash, then the data
MAX_BODY = 16 * 1024 * 1024 + 64 * RECORD  # one PUT: at most 16 blocks
MAX_SIZE = 64 * 2**40  # 64 TiB
UNKNOWN = bytes(HASH)
IMAGE_FILE = "disk.img"
IMAGE_MAP = f"{manifest.RESERVED}/blocks"
CONSISTENCY = ("snapshot", "unmounted", "readonly", "not-in-use", "crash")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ProtocolError(
            f"image name {str(name)[:80]!r} must be 1 to 64 lowercase letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return name


def check_size(size: Any) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_SIZE:
        raise ProtocolError("an image's size must be a positive integer of at most 64 TiB")
    return size


def block_count(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK


def block_length(size: int, index: int) -> int:
    return min(BLOCK, size - index * BLOCK)


def block_hash(data: bytes | memoryview) -> bytes:
    return blake3.blake3(data).digest(length=HASH)


_ZERO_FULL = block_hash(bytes(BLOCK))


def zero_hash(length: int) -> bytes:
    return _ZERO_FULL if length == BLOCK else block_hash(bytes(length))


def map_digest(block_map: bytes) -> str:
    """The hash that names an image's whole content: BLAKE3 of its block map."""
    return blake3.blake3(block_map).hexdigest()


@dataclass(frozen=True)
class Block:
    index: int
    digest: bytes
    data: bytes | None  # None: the block is all zeros


def parse_blocks(body: bytes, encoding: str, size: int) -> list[Block]:
    """``index (8, big-endian) | length (4) | hash (16) | data``, repeated; length 0 means "all zeros". Every
    record is checked (bounds, length, hash) before any is used: one bad record refuses the message."""
    body = decode_body(body, encoding, MAX_BODY, "block message")
    if len(body) > MAX_BODY:
        raise ProtocolError("a block message carries at most 16 MiB of blocks")
    view = memoryview(body)
    out: list[Block] = []
    seen: set[int] = set()
    pos = 0
    count = block_count(size)
    while pos < len(view):
        if pos + RECORD > len(view):
            raise ProtocolError("a block record is cut short")
        index = int.from_bytes(view[pos : pos + 8], "big")
        length = int.from_bytes(view[pos + 8 : pos + 12], "big")
        digest = bytes(view[pos + 12 : pos + RECORD])
        pos += RECORD
        if index >= count or index in seen:
            raise ProtocolError(f"block {index} lies outside the image or appears twice in one message")
        seen.add(index)
        expected = block_length(size, index)
        if length == 0:
            if digest != zero_hash(expected):
                raise ContentMismatch(f"block {index}", "a block sent as zeros must carry the hash of zeros")
            out.append(Block(index, digest, None))
            continue
        if length != expected or pos + length > len(view):
            raise ProtocolError(f"block {index} must carry exactly {expected} bytes")
        data = bytes(view[pos : pos + length])
        pos += length
        if block_hash(data) != digest:
            raise ContentMismatch(f"block {index}", "the data sent for the block has another BLAKE3 hash")
        out.append(Block(index, digest, data))
    if not out:
        raise ProtocolError("a block message must carry at least one block")
    return out


class Image:
    """One image dataset's mount directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = root / manifest.RESERVED
        self.meta.mkdir(mode=0o700, exist_ok=True)
        self.path = root / IMAGE_FILE
        self.map_path = root / IMAGE_MAP
        self.info_path = self.meta / "image.json"

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """One writer at a time per image, across the web server's worker processes."""
        return dir_lock(self.meta)

    @staticmethod
    def read_info(root: Path) -> dict[str, Any]:
        """``image.json`` of a (read-only) copy of the dataset; empty if no backup was committed."""
        try:
            info: dict[str, Any] = json.loads((root / manifest.RESERVED / "image.json").read_text())
        except (OSError, ValueError):
            return {}
        return info

    def block_map(self) -> bytes:
        try:
            return self.map_path.read_bytes()
        except FileNotFoundError:
            return b""

    def prepare(self, size: int) -> None:
        """Make ``disk.img`` ``size`` bytes long and the map match it. New blocks read as zeros (a sparse
        extension); a block whose content the map cannot vouch for after a resize becomes unknown."""
        with self.locked():
            current = self.block_map()
            if not self.path.exists():
                current = b""
                with open(self.path, "wb"):
                    pass
            old_size = self.path.stat().st_size
            if len(current) != block_count(old_size) * HASH:
                current = UNKNOWN * block_count(old_size)  # no map we can trust: every block is sent again
            if old_size == size and current == self.block_map():
                return
            count = block_count(size)
            fresh = bytearray(current[: count * HASH])
            if old_size != size and old_size % BLOCK and (old_size - 1) // BLOCK < count:
                last = (old_size - 1) // BLOCK  # its length changes with the size: content unknown
                fresh[last * HASH : (last + 1) * HASH] = UNKNOWN
            for index in range(len(fresh) // HASH, count):
                fresh += zero_hash(block_length(size, index))
            if size < old_size and size % BLOCK:
                last = count - 1
                fresh[last * HASH : (last + 1) * HASH] = UNKNOWN
            self._write_map_whole(bytes(fresh), size)

    def _write_map_whole(self, block_map: bytes, size: int) -> None:
        with open(self.path, "r+b") as fh:
            fh.truncate(size)
            os.fsync(fh.fileno())
        tmp = self.meta / "blocks.tmp"
        with open(tmp, "wb") as fh:
            fh.write(block_map)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.map_path)

    def write_blocks(self, blocks: list[Block], size: int) -> int:
        """Write checked blocks into the image, durably, then record their hashes. Returns the bytes written."""
        written = 0
        with self.locked():
            if self.path.stat().st_size != size or len(self.block_map()) != block_count(size) * HASH:
                raise ProtocolError("the image changed size since the job was opened; run the backup again")
            fd = os.open(self.path, os.O_RDWR)
            try:
                for b in blocks:
                    length = block_length(size, b.index)
                    os.pwrite(fd, b.data if b.data is not None else bytes(length), b.index * BLOCK)
                    written += length
                os.fsync(fd)
            finally:
                os.close(fd)
            mfd = os.open(self.map_path, os.O_RDWR)
            try:
                for b in blocks:
                    os.pwrite(mfd, b.digest, b.index * HASH)
                os.fsync(mfd)
            finally:
                os.close(mfd)
        return written

    def differing(self, size: int, agent_map_digest: str) -> bool:
        current = self.block_map()
        return len(current) != block_count(size) * HASH or map_digest(current) != agent_map_digest

    def finish(self, info: dict[str, Any]) -> None:
        tmp = self.meta / "image.json.tmp"
        tmp.write_text(json.dumps(info, indent=1, sort_keys=True))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.info_path)


def read_blocks(root: Path, size: int, index: int, count: int) -> bytes:
    """Blocks ``index`` … ``index + count - 1`` of a (read-only) image copy, at most 16 MiB."""
    total = block_count(size)
    if index < 0 or count < 1 or count > 16 or index + count > total:
        raise ProtocolError(f"blocks {index}+{count} are outside the image ({total} blocks, at most 16 at a time)")
    with open(root / IMAGE_FILE, "rb") as fh:
        fh.seek(index * BLOCK)
        want = min(size, (index + count) * BLOCK) - index * BLOCK
        data = fh.read(want)
    if len(data) != want:
        raise ProtocolError("the stored image is shorter than its recorded size")
    return data
