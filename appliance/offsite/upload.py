"""Sending one stream: ``zfs send`` → chunks → zstd → AES-256-GCM → target, resumable at chunk level.

Memory stays bounded whatever the stream size: at most ``WINDOW`` chunks are in flight (read, being sealed on
the worker threads, or being uploaded). Each acknowledged chunk is appended to the stream's local journal
(tag + keyed BLAKE3 of its plaintext) before the next is counted as done; a later run replays the send, checks
each regenerated chunk against the journal instead of uploading it, and uploads from where the journal ends
(docs/offsite-format.md §5).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import blake3

from appliance.offsite import envelope, repo
from appliance.offsite.bandwidth import Throttle
from appliance.offsite.errors import OffsiteError
from appliance.offsite.targets.base import Target
from appliance.zfs import transfer
from appliance.zfs.host import ZfsHost

CHUNK_SIZE = 4 * 1024 * 1024
WINDOW = 4
RECORD = envelope.TAG_SIZE + 32 + 8  # tag, keyed BLAKE3 of the plaintext, stored size


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

    def __init__(self, path: Path, data_key: bytes, stream_id: bytes) -> None:
        self.path = path
        self._key = envelope.derive(data_key, "journal", stream_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        raw = path.read_bytes() if path.exists() else b""
        whole = len(raw) - len(raw) % RECORD  # a record cut by a crash is not a record
        self.records = [raw[i : i + RECORD] for i in range(0, whole, RECORD)]
        if whole != len(raw):
            with open(path, "r+b") as fh:
                fh.truncate(whole)

    def digest(self, plain: bytes) -> bytes:
        return blake3.blake3(plain, key=self._key).digest()

    def append(self, tag: bytes, plain: bytes, stored: int) -> None:
        record = tag + self.digest(plain) + stored.to_bytes(8, "big")
        with open(self.path, "ab") as fh:
            fh.write(record)
            fh.flush()
            os.fsync(fh.fileno())
        self.records.append(record)

    def matches(self, index: int, plain: bytes) -> bool:
        return self.records[index][envelope.TAG_SIZE : envelope.TAG_SIZE + 32] == self.digest(plain)

    def stored(self, index: int) -> int:
        return int.from_bytes(self.records[index][envelope.TAG_SIZE + 32 :], "big")

    def tag(self, index: int) -> bytes:
        return self.records[index][: envelope.TAG_SIZE]

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def read_chunks(pipe: IO[bytes], size: int) -> Iterator[tuple[int, bytes, bool]]:
    """(index, bytes, last) of a byte stream cut into ``size``-byte chunks; an empty stream is one empty chunk."""
    current = _read_full(pipe, size)
    index = 0
    while True:
        following = _read_full(pipe, size) if len(current) == size else b""
        last = not following
        yield index, current, last
        if last:
            return
        current, index = following, index + 1


def _read_full(pipe: IO[bytes], size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        block = pipe.read(size - got)
        if not block:
            break
        parts.append(block)
        got += len(block)
    return b"".join(parts)


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
    journal = Journal(journal_path, data_key, spec.stream_id)
    resume_at = len(journal.records)
    sealer = envelope.Sealer(data_key, key_id, envelope.CHUNK, spec.stream_id)
    send_hash, tags_hash = hashlib.sha256(), hashlib.sha256()
    result = UploadResult({}, "", 0, 0, 0, resumed_from=resume_at)
    started = time.monotonic()
    stored = 0
    opts = transfer.SendOptions(incremental_from=f"{spec.dataset}@{spec.base}" if spec.base else None)
    started_at = time.time()

    def seal(index: int, plain: bytes, last: bool) -> tuple[bytes, bytes]:
        return sealer.seal(plain, index, last=last)

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="offsite-seal") as pool:
        pending: deque[tuple[int, int, bytes, Future[tuple[bytes, bytes]]]] = deque()

        def finish_one() -> None:
            nonlocal stored
            index, plain_len, digest_src, fut = pending.popleft()
            blob, tag = fut.result()
            target.put(repo.chunk_path(spec.client, spec.area, spec.stream_id, index), blob)
            journal.append(tag, digest_src, len(blob))
            tags_hash.update(tag)
            stored += len(blob)
            result.uploaded.append(index)
            if throttle is not None:
                throttle.consume(len(blob))

        with transfer.send(zfs, spec.full_snapshot, opts) as pipe:
            for index, plain, last in read_chunks(pipe, spec.chunk_size):
                if check is not None:
                    check()
                send_hash.update(plain)
                result.plain_bytes += len(plain)
                result.chunks = index + 1
                if index < resume_at:
                    if not journal.matches(index, plain):
                        raise ResumeMismatch(index)
                    tags_hash.update(journal.tag(index))
                    stored += journal.stored(index)
                else:
                    pending.append((index, len(plain), plain, pool.submit(seal, index, plain, last)))
                    if len(pending) >= WINDOW:
                        finish_one()
                if progress is not None:
                    progress(result.plain_bytes, index + 1)
            while pending:
                finish_one()
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
        "send_sha256": send_hash.hexdigest(),
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
    names = target.list(prefix)
    removed = 0
    for name in sorted(names, key=lambda n: n.endswith("/manifest")):
        removed += bool(target.delete(name))
    return removed
