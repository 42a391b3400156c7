"""Sending one stream: ``zfs send`` → chunks → zstd → AES-256-GCM → target, resumable at chunk level.

Memory stays bounded whatever the stream size: at most ``WINDOW`` chunks are in memory (read, being sealed on
the worker threads, or being uploaded). A target that can stage (a local folder) takes a sealed chunk at once and
makes it durable on the committer threads, with at most ``COMMIT_WINDOW`` chunks waiting for that (on disk, not in
memory). Each acknowledged (durable) chunk is appended to the stream's local journal (tag, BLAKE3 of its
plaintext, stored size) in stream order; a later run replays the send, checks each regenerated chunk against the
journal instead of uploading it, and uploads from where the journal ends (docs/offsite-format.md §5).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import blake3

from appliance.offsite import envelope, repo
from appliance.offsite.bandwidth import Throttle
from appliance.offsite.errors import OffsiteError
from appliance.offsite.targets.base import Staged, Target, stage, sweep
from appliance.zfs import transfer
from appliance.zfs.host import ZfsHost

CHUNK_SIZE = 4 * 1024 * 1024
WINDOW = 6  # chunks in memory: read, being sealed and handed to the target on the workers
WORKERS = 3
COMMIT_WINDOW = 32  # chunks handed to the target (no longer in memory) and waiting for it to make them durable
COMMITTERS = 4
RECORD = envelope.TAG_SIZE + 32 + 8  # tag, keyed BLAKE3 of the plaintext, stored size
SYNC_EVERY = 16
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1024 * 1024


class ResumeMismatch(OffsiteError):
    """The resent stream differs from the interrupted upload at chunk {}; the stream starts over."""

    code = "offsite_resume_mismatch"


@dataclass(frozen=True)
class StreamSpec:
    stream_id: bytes
    chain_id: bytes
    seq: int
    client: str
    area: str
    dataset: str  # the dataset the snapshot is of
    snapshot: str  # short name
    base: str | None  # short name of the incremental base
    point: dict[str, Any]
    client_properties: dict[str, str]
    chunk_size: int = CHUNK_SIZE

    @property
    def full_snapshot(self) -> str:
        return f"{self.dataset}@{self.snapshot}"


@dataclass
class UploadResult:
    manifest: dict[str, Any]
    manifest_sha256: str
    chunks: int
    plain_bytes: int
    stored_bytes: int
    uploaded: list[int] = field(default_factory=list)  # chunk indexes uploaded by this run
    resumed_from: int = 0
    seconds: float = 0.0


class Journal:
    """The local record of the chunks a target has acknowledged for one stream."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        raw = path.read_bytes() if path.exists() else b""
        whole = len(raw) - len(raw) % RECORD  # a record cut by a crash is not a record
        self.records = [raw[i : i + RECORD] for i in range(0, whole, RECORD)]
        self._fh: IO[bytes] | None = None
        self._unsynced = 0
        if whole != len(raw):
            with open(path, "r+b") as fh:
                fh.truncate(whole)

    def append(self, tag: bytes, digest: bytes, stored: int) -> None:
        """Record an acknowledged chunk. Written through at once (a killed process loses nothing); flushed to
        disk every ``SYNC_EVERY`` records and at the end (a power cut loses at most those: they are sent again)."""
        record = tag + digest + stored.to_bytes(8, "big")
        if self._fh is None:
            self._fh = open(self.path, "ab")  # noqa: SIM115 - kept open for the stream, closed by sync()
        self._fh.write(record)
        self._fh.flush()
        self.records.append(record)
        self._unsynced += 1
        if self._unsynced >= SYNC_EVERY:
            os.fsync(self._fh.fileno())
            self._unsynced = 0

    def sync(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            self._unsynced = 0

    def matches(self, index: int, digest: bytes) -> bool:
        return self.records[index][envelope.TAG_SIZE : envelope.TAG_SIZE + 32] == digest

    def stored(self, index: int) -> int:
        return int.from_bytes(self.records[index][envelope.TAG_SIZE + 32 :], "big")

    def tag(self, index: int) -> bytes:
        return self.records[index][: envelope.TAG_SIZE]

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def widen_pipe(pipe: IO[bytes]) -> None:
    """Give the pipe from ``zfs send`` a 1 MiB buffer (Linux), so the sender keeps going while this process is
    busy sealing for a few milliseconds, instead of stalling on a 64 KiB pipe."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, PIPE_SIZE)


def chunk_digest(plain: bytes | memoryview) -> bytes:
    """BLAKE3 of a chunk's plaintext (docs/offsite-format.md §5)."""
    return blake3.blake3(plain).digest()


class SendDigest:
    """``send_digest``: BLAKE3 over the BLAKE3 digests of the send stream's chunks, in order."""

    def __init__(self) -> None:
        self._h = blake3.blake3()

    def update(self, digest: bytes) -> None:
        self._h.update(digest)

    def hexdigest(self) -> str:
        return str(self._h.hexdigest())


def stream_digest(pipe: IO[bytes], chunk_size: int) -> str:
    """The ``send_digest`` of a byte stream (to compare a fresh ``zfs send`` with what a manifest recorded)."""
    total, pool = SendDigest(), BufferPool(chunk_size)
    for chunk in read_chunks(pipe, pool):
        with chunk.view() as plain:
            total.update(chunk_digest(plain))
        pool.give(chunk.buffer)
    return total.hexdigest()


class BufferPool:
    """Chunk-sized buffers, reused: reading a stream into fresh memory for every chunk costs more than sealing it
    (page faults, zeroing). Holds only the buffers given back; as many exist as chunks are in flight."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(self.size)

    def give(self, buffer: bytearray) -> None:
        with self._lock:
            self._free.append(buffer)


@dataclass(frozen=True)
class Chunk:
    index: int
    buffer: bytearray  # from the pool; the first ``length`` bytes are the chunk
    length: int
    last: bool

    def view(self) -> memoryview:
        return memoryview(self.buffer)[: self.length]


def read_chunks(pipe: IO[bytes], pool: BufferPool) -> Iterator[Chunk]:
    """A byte stream cut into ``pool.size``-byte chunks (an empty stream is one empty chunk), each read into a
    buffer of ``pool``, which the caller gives back when done with it. Whether a full chunk is the last is known
    by peeking one byte ahead (a buffered pipe) or by reading the next chunk first."""
    peek = getattr(pipe, "peek", None)
    index, buffer = 0, pool.take()
    length = _fill(pipe, buffer)
    while True:
        if length < pool.size or (peek is not None and not peek(1)):
            yield Chunk(index, buffer, length, True)
            return
        if peek is not None:
            yield Chunk(index, buffer, length, False)
            buffer = pool.take()
            length = _fill(pipe, buffer)
        else:
            following = pool.take()
            more = _fill(pipe, following)
            if not more:
                pool.give(following)
                yield Chunk(index, buffer, length, True)
                return
            yield Chunk(index, buffer, length, False)
            buffer, length = following, more
        index += 1


def _fill(pipe: IO[bytes], buffer: bytearray) -> int:
    """Read into ``buffer`` until it is full or the stream ends; the bytes read."""
    readinto: Callable[[memoryview], int | None] = cast(io.BufferedIOBase, pipe).readinto
    got = 0
    with memoryview(buffer) as view:
        while got < len(buffer):
            n = readinto(view[got:])
            if not n:
                break
            got += n
    return got


Sealing = deque[tuple[int, Future[tuple[bytes, bytes, int, Staged]]]]
Committing = deque[tuple[int, bytes, bytes, int, Staged, Future[None]]]


def wind_down(sealing: Sealing, committing: Committing, journal: Journal) -> None:
    """After a failure: stop the chunks still in flight, journal those put in place before it (in order, up to
    the first that is not) so they are not sent again, and remove what the others staged."""
    for _, fut in sealing:
        fut.cancel()
    for item in committing:
        item[5].cancel()
    wait([f for _, f in sealing])
    wait([item[5] for item in committing])
    for _, fut in sealing:
        if not fut.cancelled() and fut.exception() is None:
            fut.result()[3].abort()
    prefix = True
    for _, tag, digest, size, staged, put in committing:
        prefix = prefix and not put.cancelled() and put.exception() is None
        if prefix:
            journal.append(tag, digest, size)
        else:
            staged.abort()  # a no-op for one already put


def upload_stream(
    target: Target,
    zfs: ZfsHost,
    spec: StreamSpec,
    key_id: bytes,
    data_key: bytes,
    journal_path: Path,
    *,
    throttle: Throttle | None = None,
    progress: Callable[[int, int], None] | None = None,
    check: Callable[[], None] | None = None,
) -> UploadResult:
    """Send ``spec`` to ``target`` (resuming from the journal) and write its stream manifest.

    ``progress(plain_bytes_done, chunks_done)`` is called after each chunk; ``check()`` may raise to stop."""
    journal = Journal(journal_path)
    resume_at = len(journal.records)
    sweep(target, repo.stream_dir(spec.client, spec.area, spec.stream_id) + "/")  # left by a killed run
    sealer = envelope.Sealer(data_key, key_id, envelope.CHUNK, spec.stream_id)
    send_digest, tags_hash = SendDigest(), hashlib.sha256()
    result = UploadResult({}, "", 0, 0, 0, resumed_from=resume_at)
    started = time.monotonic()
    stored = 0
    opts = transfer.SendOptions(incremental_from=f"{spec.dataset}@{spec.base}" if spec.base else None)
    started_at = time.time()

    buffers, outputs = BufferPool(spec.chunk_size), threading.local()

    def work(chunk: Chunk) -> tuple[bytes, bytes, int, Staged]:
        """Seal one chunk and hand it to the target (on a worker thread): its tag, journal digest, stored size and
        the staged object, which the committers make durable. The envelope is sealed into this thread's output
        buffer, free again once the target has taken it."""
        out = getattr(outputs, "buffer", None)
        if out is None:
            out = outputs.buffer = bytearray(envelope.sealed_size(spec.chunk_size))
        with chunk.view() as plain:
            digest = chunk_digest(plain)
            blob, tag = sealer.seal_into(plain, chunk.index, out, last=chunk.last)
            with blob:
                staged = stage(target, repo.chunk_path(spec.client, spec.area, spec.stream_id, chunk.index), blob)
                size = len(blob)
        buffers.give(chunk.buffer)
        return tag, digest, size, staged

    sealing: Sealing = deque()
    committing: Committing = deque()
    with (
        ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="offsite-seal") as pool,
        ThreadPoolExecutor(max_workers=COMMITTERS, thread_name_prefix="offsite-commit") as committers,
    ):

        def sealed_one() -> None:
            index, fut = sealing.popleft()
            tag, digest, size, staged = fut.result()
            committing.append((index, tag, digest, size, staged, committers.submit(staged.commit)))

        def committed_one() -> None:
            nonlocal stored
            committing[0][5].result()  # a failed one stays first: nothing after it is journaled
            index, tag, digest, size, _, _ = committing.popleft()
            journal.append(tag, digest, size)  # in order: the journal only ever holds a prefix of the stream
            send_digest.update(digest)
            tags_hash.update(tag)
            stored += size
            result.uploaded.append(index)
            if throttle is not None:
                throttle.consume(size)

        def settle(final: bool = False) -> None:
            while sealing and (final or len(sealing) >= WINDOW or sealing[0][1].done()):
                sealed_one()
            while committing and (final or len(committing) >= COMMIT_WINDOW or committing[0][5].done()):
                committed_one()

        try:
            with transfer.send(zfs, spec.full_snapshot, opts) as pipe:
                widen_pipe(pipe)
                for chunk in read_chunks(pipe, buffers):
                    if check is not None:
                        check()
                    result.plain_bytes += chunk.length
                    result.chunks = chunk.index + 1
                    if chunk.index < resume_at:
                        with chunk.view() as plain:
                            digest = chunk_digest(plain)
                        buffers.give(chunk.buffer)
                        if not journal.matches(chunk.index, digest):
                            raise ResumeMismatch(chunk.index)
                        send_digest.update(digest)
                        tags_hash.update(journal.tag(chunk.index))
                        stored += journal.stored(chunk.index)
                    else:
                        sealing.append((chunk.index, pool.submit(work, chunk)))
                        settle()
                    if progress is not None:
                        progress(result.plain_bytes, chunk.index + 1)
                settle(final=True)
        finally:
            wind_down(sealing, committing, journal)
            journal.sync()
    if resume_at > result.chunks:
        raise ResumeMismatch(result.chunks)
    manifest = {
        "format": 1,
        "stream_id": spec.stream_id.hex(),
        "chain_id": spec.chain_id.hex(),
        "seq": spec.seq,
        "client": spec.client,
        "area": spec.area,
        "snapshot": spec.snapshot,
        "base": spec.base,
        "point": spec.point,
        "client_properties": spec.client_properties,
        "key_id": key_id.hex(),
        "chunk_size": spec.chunk_size,
        "chunks": result.chunks,
        "plain_bytes": result.plain_bytes,
        "stored_bytes": stored,
        "send_digest": send_digest.hexdigest(),
        "tags_sha256": tags_hash.hexdigest(),
        "started_at": started_at,
        "completed_at": time.time(),
        "zfs": zfs.caps.implementation,
    }
    blob = repo.seal_json(data_key, key_id, envelope.STREAM_MANIFEST, spec.stream_id, 0, manifest)
    target.put(repo.manifest_path(spec.client, spec.area, spec.stream_id), blob)
    result.manifest, result.manifest_sha256, result.stored_bytes = manifest, repo.sha256(blob), stored
    result.seconds = time.monotonic() - started
    return result


def delete_stream(target: Target, client: str, area: str, stream_id: bytes) -> int:
    """Remove a stream's objects (chunks first, manifest last); the count removed."""
    prefix = repo.stream_dir(client, area, stream_id) + "/"
    sweep(target, prefix)
    names = target.list(prefix)
    removed = 0
    for name in sorted(names, key=lambda n: n.endswith("/manifest")):
        removed += bool(target.delete(name))
    return removed
