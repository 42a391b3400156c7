"""Image backups and restores of a block device or a disk image file, 1 MiB block by block.

Backup: read the source once, hash every block (BLAKE3, first 16 bytes), send only the blocks whose hash
differs from the appliance's block map, then commit with the hash of the whole map: the appliance takes the
recovery point only if its map (every block checked on arrival) equals the agent's. Restore: fetch the point's
map, download the non-zero blocks, check each against the map before it is written, then read the target back
and check the whole map again.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import queue
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3
import zstandard

from agent import consistency, state
from agent.reporting import JobReporter
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


class _Sender:
    """Compresses and sends block messages on two connections of their own while the source is read on: at
    most two messages wait, so memory stays bounded, and the appliance checks one message while it writes the
    other. An error in a sending thread is raised in the reader at its next step."""

    def __init__(self, make_conn: Callable[[], Connection], job: str, streams: int = 2) -> None:
        self.job = job
        self.queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=2)
        self.sent = 0
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(make_conn(),), daemon=True) for _ in range(streams)]
        for t in self.threads:
            t.start()

    def _run(self, conn: Connection) -> None:
        try:
            while (batch := self.queue.get()) is not None:
                if self.error is None:
                    try:
                        count = _send(conn, self.job, batch)
                    except BaseException as exc:  # noqa: BLE001 (handed to the reader thread)
                        self.error = exc
                        continue
                    with self.lock:
                        self.sent += count
        finally:
            conn.close()

    def put(self, batch: list[bytes]) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(list(batch))
        batch.clear()

    def close(self) -> int:
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join()
        if self.error is not None:
            raise self.error
        return self.sent


def _record(index: int, data: bytes, digest: bytes) -> bytes:
    if digest == zero_hash(len(data)) and data.count(0) == len(data):
        return index.to_bytes(8, "big") + (0).to_bytes(4, "big") + digest  # zeros: no data on the wire
    return index.to_bytes(8, "big") + len(data).to_bytes(4, "big") + digest + data


def _transfer(
    conn: Connection,
    connect: Callable[[int], Connection],
    job: str,
    fd: int,
    size: int,
    source: str,
    bwlimit: int,
    quiet: bool,
    counts: dict[str, int],
    reporter: JobReporter,
) -> tuple[dict[str, Any], int, int]:
    """Read the source, send the blocks the appliance lacks and commit; again while the source changes under us."""
    sent = changed = 0
    agent_map = bytearray()
    per_message = max(1, min(BATCH, bwlimit // BLOCK)) if bwlimit else BATCH  # about a second each
    for _attempt in range(3):
        theirs = conn.request("GET", f"/images/jobs/{job}/map", stream=True).read()
        agent_map.clear()
        progress = _Progress("reading", size, quiet)
        batch: list[bytes] = []
        sender = _Sender(lambda: connect(2), job)
        try:
            for index, data in _blocks(fd, size):
                digest = block_hash(data)
                agent_map += digest
                if theirs[index * HASH : (index + 1) * HASH] != digest:
                    batch.append(_record(index, data, digest))
                    changed += 1
                    if len(batch) == per_message:
                        sender.put(batch)
                progress(len(data), f", {changed} changed block(s)")
                counts["bytes_done"] = progress.done
            if batch:
                sender.put(batch)
        finally:
            sent += sender.close()
        progress.end()
        counts["files_done"] = 1
        reporter.phase("committing", lambda: dict(counts))
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
            counts["files_done"] = 0
            reporter.phase("sending", lambda: dict(counts))
    else:
        raise AgentError(
            f"{source} kept changing while it was read",
            "stop what writes to it, or back up an LVM volume so a snapshot can be read",
        )
    return result, sent, changed


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

        def connect(share: int = 1) -> Connection:
            return Connection(enrolled["server"], enrolled["fingerprint"], enrolled["credential"], bwlimit // share)

        conn = connect()
        try:
            opened = conn.request(
                "POST",
                "/images/jobs",
                {"image": name, "size": size, "block_size": BLOCK, "consistency": level},
            )
            job = opened["job"]
            counts = {"files_total": 1, "files_done": 0, "bytes_total": size, "bytes_done": 0}
            reporter = JobReporter(enrolled, job).start("sending", lambda: dict(counts))
            try:
                result, sent, changed = _transfer(
                    conn, connect, job, fd, size, source, bwlimit, quiet, counts, reporter
                )
            except BaseException as exc:
                reporter.fail(str(exc) or type(exc).__name__)
                raise
            reporter.stop()
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


def _download(
    enrolled: dict[str, Any],
    sid: str,
    fd: int,
    their_map: bytes,
    size: int,
    runs: list[tuple[int, int]],
    progress: _Progress,
) -> int:
    """Fetch the runs of non-zero blocks on two connections, each block checked against the map before it is
    written at its place; at most four runs (64 MiB) in memory."""
    local = threading.local()
    made: list[Connection] = []

    def fetch(index: int, run: int) -> int:
        if not hasattr(local, "conn"):
            local.conn = Connection(enrolled["server"], enrolled["fingerprint"], enrolled["credential"])
            made.append(local.conn)
        data = local.conn.request("GET", f"/images/restores/{sid}/blocks?index={index}&count={run}", stream=True).read()
        expected = min(size, (index + run) * BLOCK) - index * BLOCK
        if len(data) != expected:
            raise AgentError(f"the appliance sent {len(data)} bytes for blocks {index}+{run}", "run the restore again")
        for k in range(run):
            piece, i = data[k * BLOCK : (k + 1) * BLOCK], index + k
            if block_hash(piece) != their_map[i * HASH : (i + 1) * HASH]:
                raise AgentError(f"block {i} does not match its hash", "the point may be damaged; try another")
            os.pwrite(fd, piece, i * BLOCK)
        return len(data)

    total = 0
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            pending: collections.deque[concurrent.futures.Future[int]] = collections.deque()
            for index, run in runs:
                pending.append(pool.submit(fetch, index, run))
                if len(pending) >= 4:
                    got = pending.popleft().result()
                    total += got
                    progress(got)
            while pending:
                got = pending.popleft().result()
                total += got
                progress(got)
    finally:
        for conn in made:
            conn.close()
    return total


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
            runs: list[tuple[int, int]] = []
            for index in range(count):
                length = min(BLOCK, size - index * BLOCK)
                if their_map[index * HASH : (index + 1) * HASH] == zero_hash(length):
                    if is_dev:  # a device may hold old data there
                        os.pwrite(fd, _ZERO[:length], index * BLOCK)
                    progress(length)
                elif runs and runs[-1][0] + runs[-1][1] == index and runs[-1][1] < BATCH:
                    runs[-1] = (runs[-1][0], runs[-1][1] + 1)
                else:
                    runs.append((index, 1))
            downloaded = _download(enrolled, sid, fd, their_map, size, runs, progress)
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
