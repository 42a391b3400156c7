"""Reading one stream back: every envelope authenticated in order, then decompressed into ``zfs receive``.

The final chunk is held back until the chunk count, the byte count, the tags digest and ``send_digest`` have all
matched the manifest; on any mismatch the caller's ``zfs receive`` is killed before it sees the end of the
stream, so no partial or unauthenticated recovery point is ever created (docs/offsite-format.md §7).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from appliance.offsite import envelope, repo, upload
from appliance.offsite.errors import ObjectMissing, Tampered
from appliance.offsite.targets.base import Target

PREFETCH = 3


@dataclass(frozen=True)
class ReadResult:
    chunks: int
    plain_bytes: int
    stored_bytes: int
    send_digest: str


def _manifest_ints(manifest: dict[str, Any], name: str) -> tuple[int, int, int]:
    try:
        chunks, size, plain = int(manifest["chunks"]), int(manifest["chunk_size"]), int(manifest["plain_bytes"])
    except (KeyError, TypeError, ValueError):
        raise Tampered(name, "its chunk count or sizes are missing") from None
    if not (1 <= chunks <= repo.MAX_CHUNKS and 1 <= size <= 64 * 1024 * 1024 and 0 <= plain <= chunks * size):
        raise Tampered(name, "its chunk count or sizes are out of range")
    return chunks, size, plain


def read_stream(
    target: Target,
    keys: dict[bytes, bytes],
    manifest: dict[str, Any],
    out: IO[bytes] | None,
    *,
    progress: Callable[[int, int], None] | None = None,
    check: Callable[[], None] | None = None,
) -> ReadResult:
    """Authenticate the stream of ``manifest`` chunk by chunk and write its plaintext to ``out`` (None: only
    verify). Raises :class:`Tampered` (or :class:`ObjectMissing`, :class:`KeyMissing`) before the last chunk
    is written if anything is wrong."""
    client, area = manifest["client"], manifest["area"]
    stream_id = bytes.fromhex(manifest["stream_id"])
    where = repo.stream_dir(client, area, stream_id)
    chunks, chunk_size, plain_expected = _manifest_ints(manifest, where)
    opener = envelope.Opener(keys, envelope.CHUNK, stream_id, limit=chunk_size)
    send_digest, tags_hash = upload.SendDigest(), hashlib.sha256()
    plain_total = stored = 0
    held: bytes | None = None
    for index, blob in _fetch(target, client, area, stream_id, chunks):
        if check is not None:
            check()
        name = repo.chunk_path(client, area, stream_id, index)
        opened = opener.open(name, blob, index)
        last = index == chunks - 1
        if opened.header.last != last:
            raise Tampered(name, "is marked as the last chunk but more follow" if opened.header.last
                           else "should be the last chunk but is not marked so (stream cut short)")  # fmt: skip
        if not last and len(opened.payload) != chunk_size:
            raise Tampered(name, f"holds {len(opened.payload)} bytes where {chunk_size} belong")
        tags_hash.update(opened.tag)
        send_digest.update(upload.chunk_digest(opened.payload))
        plain_total += len(opened.payload)
        stored += len(blob)
        if last:
            held = opened.payload
        elif out is not None:
            out.write(opened.payload)
        if progress is not None:
            progress(plain_total, index + 1)
    if tags_hash.hexdigest() != manifest.get("tags_sha256"):
        raise Tampered(where, "its chunks are not the ones its manifest recorded (a replayed or replaced chunk)")
    if plain_total != plain_expected or send_digest.hexdigest() != manifest.get("send_digest"):
        raise Tampered(where, "its contents do not add up to the recorded send stream")
    if out is not None and held is not None:
        out.write(held)
        out.flush()
    return ReadResult(chunks, plain_total, stored, send_digest.hexdigest())


def _fetch(target: Target, client: str, area: str, stream_id: bytes, chunks: int) -> Iterator[tuple[int, bytes]]:
    """Chunks 0…chunks−1 in order, fetched a few ahead on a worker thread (bounded memory)."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="offsite-fetch") as pool:
        ahead: deque[tuple[int, Future[bytes]]] = deque()
        nxt = 0
        while nxt < chunks or ahead:
            while nxt < chunks and len(ahead) < PREFETCH:
                ahead.append((nxt, pool.submit(target.get, repo.chunk_path(client, area, stream_id, nxt))))
                nxt += 1
            index, fut = ahead.popleft()
            try:
                blob = fut.result()
            except ObjectMissing:
                raise Tampered(repo.chunk_path(client, area, stream_id, index),
                               "is missing (removed, or the stream was cut short)") from None  # fmt: skip
            yield index, blob
