"""The uploader's building blocks without ZFS: cutting a stream into pooled chunk buffers, sealing into a reused
output buffer, and staged puts on a local folder (invisible until committed, nothing left when aborted)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from appliance.offsite import envelope, upload
from appliance.offsite.errors import ObjectMissing, TargetUnreachable
from appliance.offsite.targets.base import MemoryTarget, stage, sweep
from appliance.offsite.targets.local import TMP_MARK, LocalTarget

KEY, KID, SID = os.urandom(32), os.urandom(8), os.urandom(16)
SIZE = 16


class Trickle(io.RawIOBase):
    """A pipe that hands out at most 5 bytes per read, as a slow sender does."""

    def __init__(self, data: bytes) -> None:
        self._src = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._src.read(min(len(buffer), 5))
        buffer[: len(data)] = data
        return len(data)


PIPES: dict[str, Callable[[bytes], io.IOBase]] = {
    "bytes": io.BytesIO,  # no peek: the reader looks one chunk ahead
    "buffered trickle": lambda data: io.BufferedReader(Trickle(data), 8),  # peeks one byte ahead
    "raw trickle": Trickle,
}


@pytest.mark.parametrize("pipe", PIPES)
@pytest.mark.parametrize("length", [0, 1, SIZE - 1, SIZE, SIZE + 1, 3 * SIZE, 3 * SIZE + 7])
def test_read_chunks_cuts_exactly_and_marks_only_the_last(pipe: str, length: int) -> None:
    data = os.urandom(length)
    pool = upload.BufferPool(SIZE)
    seen = []
    for chunk in upload.read_chunks(PIPES[pipe](data), pool):  # type: ignore[arg-type]
        seen.append((chunk.index, bytes(chunk.view()), chunk.last))
        pool.give(chunk.buffer)  # reused for the next chunk: its old bytes must not leak into it
    expected = [data[i : i + SIZE] for i in range(0, length, SIZE)] or [b""]
    assert seen == [(i, c, i == len(expected) - 1) for i, c in enumerate(expected)]
    digests = b"".join(blake3.blake3(c).digest() for c in expected)
    assert upload.stream_digest(PIPES[pipe](data), SIZE) == blake3.blake3(digests).hexdigest()  # type: ignore[arg-type]


def test_buffer_pool_reuses_given_buffers() -> None:
    pool = upload.BufferPool(SIZE)
    first, second = pool.take(), pool.take()
    assert first is not second and len(first) == len(second) == SIZE
    pool.give(first)
    assert pool.take() is first


@pytest.mark.parametrize("payload", [b"", b"text " * 1000, os.urandom(5000)], ids=["empty", "text", "random"])
def test_seal_into_a_reused_buffer_opens_like_seal(payload: bytes) -> None:
    sealer = envelope.Sealer(KEY, KID, envelope.CHUNK, SID)
    out = bytearray(b"\xff" * envelope.sealed_size(len(payload)))
    opener = envelope.Opener({KID: KEY}, envelope.CHUNK, SID, limit=1 << 20)
    for index in range(2):  # twice into the same buffer
        view, tag = sealer.seal_into(memoryview(payload), index, out, last=index == 1)
        with view:
            blob = bytes(view)
        opened = opener.open("chunk", blob, index)
        assert opened.payload == payload and opened.tag == tag and opened.header.last == (index == 1)
        reference, _ = sealer.seal(payload, index)
        assert len(blob) == len(reference)  # same framing and compression choice
        assert opened.header.compression == (envelope.ZSTD if payload.startswith(b"text") else envelope.NONE)
    with pytest.raises(ValueError, match="too small"):
        sealer.seal_into(os.urandom(100), 0, bytearray(envelope.sealed_size(99)))


def test_local_stage_is_invisible_until_committed(tmp_path: Path) -> None:
    target = LocalTarget("usb", tmp_path)
    staged = target.stage("clients/acme/share/streams/ab/0", memoryview(b"sealed chunk"))
    assert target.list() == []
    with pytest.raises(ObjectMissing):
        target.get("clients/acme/share/streams/ab/0")
    staged.commit()
    staged.commit()  # a second commit changes nothing
    assert target.list() == ["clients/acme/share/streams/ab/0"]
    assert target.get("clients/acme/share/streams/ab/0") == b"sealed chunk"
    assert not [p for p in tmp_path.rglob("*") if TMP_MARK in p.name]
    staged.abort()  # after a commit: nothing to throw away
    assert target.get("clients/acme/share/streams/ab/0") == b"sealed chunk"


def test_local_stage_abort_leaves_nothing(tmp_path: Path) -> None:
    target = LocalTarget("usb", tmp_path)
    staged = target.stage("streams/ab/1", b"half an upload")
    assert [p.name for p in (tmp_path / "streams" / "ab").iterdir()][0].startswith("1" + TMP_MARK)
    staged.abort()
    staged.commit()  # after an abort: nothing is put
    assert target.list() == [] and list((tmp_path / "streams" / "ab").iterdir()) == []


def test_local_stage_on_a_missing_disk_is_clear(tmp_path: Path) -> None:
    with pytest.raises(TargetUnreachable, match="plugged in"):
        LocalTarget("usb", tmp_path / "gone").stage("streams/ab/0", b"x")


def test_targets_without_staging_are_put_at_once() -> None:
    target = MemoryTarget()
    data = bytearray(b"sealed")
    staged = stage(target, "streams/ab/0", memoryview(data))
    data[:] = b"reused"  # the caller may reuse its buffer as soon as stage returns
    assert target.objects == {"streams/ab/0": b"sealed"} and target.puts == ["streams/ab/0"]
    staged.commit()
    staged.abort()
    assert target.get("streams/ab/0") == b"sealed"


def test_local_sweep_removes_only_what_killed_uploads_left(tmp_path: Path) -> None:
    target = LocalTarget("usb", tmp_path)
    target.put("streams/ab/0", b"chunk")
    target.put("streams/cd/0", b"other stream")
    target.stage("streams/ab/1", b"staged when the process was killed")  # never committed nor aborted
    target.stage("streams/cd/1", b"another upload's")
    assert sweep(target, "streams/ab/") == 1
    assert sorted(p.name for p in (tmp_path / "streams" / "ab").iterdir()) == ["0"]
    assert len(list((tmp_path / "streams" / "cd").iterdir())) == 2
    assert sweep(target, "streams/ef/") == 0  # nothing there yet
    assert sweep(MemoryTarget(), "streams/ab/") == 0
