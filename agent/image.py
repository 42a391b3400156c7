"""Image backups and restores of a block device or a disk image file, 1 MiB block by block.

Backup: read the source once, hash every block (BLAKE3, first 16 bytes), send only the blocks whose hash
differs from the appliance's block map, then commit with the hash of the whole map: the appliance takes the
recovery point only if its map (every block checked on arrival) equals the agent's. Restore: fetch the point's
map, download the non-zero blocks, check each against the map before it is written, then read the target back
and check the whole map again.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import zstandard

from agent import consistency, state
from agent.transport import AgentError, Connection

BLOCK = 1024 * 1024
HASH = 16
BATCH = 16  # blocks per message (the appliance takes at most 16 MiB of blocks at a time)
_ZERO = bytes(BLOCK)


def block_hash(data: bytes | memoryview) -> bytes:
    return blake3.blake3(data).digest(length=HASH)


_ZERO_HASH = block_hash(_ZERO)


def zero_hash(length: int) -> bytes:
    return _ZERO_HASH if length == BLOCK else block_hash(bytes(length))


def default_name(source: str) -> str:
    """``/dev/sda`` → ``sda``, ``/dev/vg0/root`` → ``vg0-root``, ``C.vhdx`` → ``c.vhdx``."""
    path = os.path.abspath(source)
    base = path[len("/dev/") :] if path.startswith("/dev/") else os.path.basename(path)
    name = re.sub(r"[^a-z0-9._-]+", "-", base.replace("/", "-").lower()).strip("-.")
    return name[:64] or "disk"


def device_size(fd: int) -> int:
    size = os.lseek(fd, 0, os.SEEK_END)
    os.lseek(fd, 0, os.SEEK_SET)
    return size


def _open_source(path: str) -> tuple[int, int]:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise AgentError(f"cannot open {path} ({exc.strerror})", "give a block device or an image file") from exc
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISBLK(mode) or stat.S_ISREG(mode)):
        os.close(fd)
        raise AgentError(f"{path} is neither a block device nor a regular file", "give a disk or a disk image")
    size = device_size(fd)
    if size == 0:
        os.close(fd)
        raise AgentError(f"{path} is empty", "nothing to back up")
    return fd, size


def _blocks(fd: int, size: int) -> Iterator[tuple[int, bytes]]:
    index = 0
    while index * BLOCK < size:
        want = min(BLOCK, size - index * BLOCK)
        data = os.pread(fd, want, index * BLOCK)
        if len(data) != want:
            raise AgentError("the source became shorter while it was read", "run the image backup again")
        yield index, data
        index += 1


class _Progress:
    def __init__(self, verb: str, total: int, quiet: bool) -> None:
        self.verb, self.total, self.quiet = verb, total, quiet
        self.began = self.last = time.monotonic()
        self.done = 0

    def __call__(self, count: int, extra: str = "") -> None:
        self.done += count
        now = time.monotonic()
        if self.quiet or (now - self.last < 1 and self.done < self.total):
            return
        self.last = now
        pct = 100 * self.done / self.total if self.total else 100
        rate = self.done / max(now - self.began, 1e-6)
        eta = (self.total - self.done) / rate if rate else 0
        sys.stderr.write(
            f"\r{self.verb} {self.done / 1e6:.0f} of {self.total / 1e6:.0f} MB ({pct:.0f}%, ETA {eta:.0f} s){extra}"
        )
        sys.stderr.flush()

    def end(self) -> None:
        if not self.quiet:
            sys.stderr.write("\n")


def _send(conn: Connection, job: str, batch: list[bytes]) -> int:
    body = b"".join(batch)
    headers = {"Content-Type": "application/octet-stream"}
    packed = zstandard.ZstdCompressor(level=1).compress(body)
    if len(packed) < len(body) * 0.9:
        body = packed
        headers["Content-Encoding"] = "zstd"
    conn.request("PUT", f"/images/jobs/{job}/blocks", raw=body, headers=headers)
    batch.clear()
    return len(body)


def _record(index: int, data: bytes, digest: bytes) -> bytes:
    if digest == zero_hash(len(data)) and data.count(0) == len(data):
        return index.to_bytes(8, "big") + (0).to_bytes(4, "big") + digest  # zeros: no data on the wire
    return index.to_bytes(8, "big") + len(data).to_bytes(4, "big") + digest + data


def backup(
    state_dir: Path,
    source: str,
    *,
    name: str | None = None,
    require_consistent: bool = False,
    bwlimit: int = 0,
    quiet: bool = False,
) -> dict[str, Any]:
    began = time.monotonic()
    enrolled = state.load_enrollment(state_dir)
    name = name or default_name(source)
    with consistency.view(source, require_consistent=require_consistent) as (path, level, note):
        if note:  # a warning, in JSON mode too
            sys.stderr.write(f"bulwark-agent: {note}\n")
        fd, size = _open_source(path)
        conn = Connection(enrolled["server"], enrolled["fingerprint"], enrolled["credential"], bwlimit)
        try:
            opened = conn.request(
                "POST",
                "/images/jobs",
                {"image": name, "size": size, "block_size": BLOCK, "consistency": level},
            )
            job = opened["job"]
            sent = changed = 0
            agent_map = bytearray()
            per_message = max(1, min(BATCH, bwlimit // BLOCK)) if bwlimit else BATCH  # about a second each
            for _attempt in range(3):
                theirs = conn.request("GET", f"/images/jobs/{job}/map", stream=True).read()
                agent_map.clear()
                progress = _Progress("reading", size, quiet)
                batch: list[bytes] = []
                for index, data in _blocks(fd, size):
                    digest = block_hash(data)
                    agent_map += digest
                    if theirs[index * HASH : (index + 1) * HASH] != digest:
                        batch.append(_record(index, data, digest))
                        changed += 1
                        if len(batch) == per_message:
                            sent += _send(conn, job, batch)
                    progress(len(data), f", {changed} changed block(s)")
                if batch:
                    sent += _send(conn, job, batch)
                progress.end()
                try:
                    result = conn.request(
                        "POST",
                        f"/images/jobs/{job}/commit",
                        {"map": blake3.blake3(bytes(agent_map)).hexdigest(), "source": os.path.abspath(source)},
                    )
                    break
                except AgentError as exc:  # the source changed under us, or blocks went missing: go round again
                    if exc.code != "image_incomplete":
                        raise
            else:
                raise AgentError(
                    f"{source} kept changing while it was read",
                    "stop what writes to it, or back up an LVM volume so a snapshot can be read",
                )
        finally:
            os.close(fd)
            conn.close()
    return {
        **result,
        "changed_blocks": changed,
        "bytes_scanned": size,
        "bytes_sent": sent,
        "seconds": round(time.monotonic() - began, 2),
        **({"note": note} if note else {}),
    }


def _open_target(target: str, size: int) -> tuple[int, str]:
    """Open the restore target: a block device that is not mounted and is large enough (written in place), or
    a file (written beside it and renamed over it only once verified). Returns the descriptor and the path
    written to."""
    where = consistency.mounted_at(target)
    if where:
        raise AgentError(f"{target} is mounted at {where}", "unmount it first; nothing was written")
    exists = os.path.exists(target)
    if exists and stat.S_ISBLK(os.stat(target).st_mode):
        fd = os.open(target, os.O_RDWR)
        held = device_size(fd)
        if held < size:
            os.close(fd)
            raise AgentError(
                f"{target} holds {held} bytes, fewer than the image's {size}",
                "restore onto a disk at least as large; nothing was written",
            )
        return fd, target
    if exists and not stat.S_ISREG(os.stat(target).st_mode):
        raise AgentError(f"{target} is neither a block device nor a regular file", "give a disk or an image file")
    partial = f"{target}.bulwark-partial"
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.ftruncate(fd, size)  # sparse: zero blocks are never written
    return fd, partial


def restore(
    state_dir: Path, point: str, target: str, *, name: str | None = None, quiet: bool = False
) -> dict[str, Any]:
    began = time.monotonic()
    enrolled = state.load_enrollment(state_dir)
    conn = Connection(enrolled["server"], enrolled["fingerprint"], enrolled["credential"])
    opened = conn.request("POST", "/images/restores", {"point": point, **({"image": name} if name else {})})
    sid = opened["session"]
    try:
        size = int(opened["size"])
        their_map = conn.request("GET", f"/images/restores/{sid}/map", stream=True).read()
        count = (size + BLOCK - 1) // BLOCK
        if len(their_map) != count * HASH or blake3.blake3(their_map).hexdigest() != opened["map"]:
            raise AgentError("the point's block map is damaged", "try another point; nothing was written")
        fd, written_to = _open_target(target, size)
        is_dev = written_to == target
        try:
            progress = _Progress("restoring", size, quiet)
            downloaded = 0
            index = 0
            while index < count:
                length = min(BLOCK, size - index * BLOCK)
                if their_map[index * HASH : (index + 1) * HASH] == zero_hash(length):
                    if is_dev:
                        os.pwrite(fd, _ZERO[:length], index * BLOCK)
                    progress(length)
                    index += 1
                    continue
                run = 1
                while run < BATCH and index + run < count:
                    nxt = index + run
                    if their_map[nxt * HASH : (nxt + 1) * HASH] == zero_hash(min(BLOCK, size - nxt * BLOCK)):
                        break
                    run += 1
                resp = conn.request("GET", f"/images/restores/{sid}/blocks?index={index}&count={run}", stream=True)
                data = resp.read()
                downloaded += len(data)
                for k in range(run):
                    piece = data[k * BLOCK : (k + 1) * BLOCK]
                    i = index + k
                    if block_hash(piece) != their_map[i * HASH : (i + 1) * HASH]:
                        raise AgentError(f"block {i} does not match its hash", "the point may be damaged; try another")
                    os.pwrite(fd, piece, i * BLOCK)
                    progress(len(piece))
                index += run
            os.fsync(fd)
            progress.end()
            check = _Progress("verifying", size, quiet)
            mine = bytearray()
            for _, block in _blocks(fd, size):
                mine += block_hash(block)
                check(len(block))
            check.end()
        finally:
            os.close(fd)
        if bytes(mine) != their_map:
            span = [(i * HASH, (i + 1) * HASH) for i in range(count)]
            bad = next(i for i, (a, b) in enumerate(span) if mine[a:b] != their_map[a:b])
            raise AgentError(f"{written_to} reads back differently from the point (block {bad})", "check the disk")
        if not is_dev:
            os.replace(written_to, target)
    finally:
        try:
            conn.request("DELETE", f"/restores/{sid}")
        finally:
            conn.close()
    return {
        "point": opened["point"],
        "image": opened["image"],
        "to": target,
        "bytes": size,
        "bytes_downloaded": downloaded,
        "verified": True,
        "seconds": round(time.monotonic() - began, 2),
    }
