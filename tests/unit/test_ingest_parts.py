"""Content in parts: each part continues the hash this process kept when the part file is still the one it was
kept for (same file, length and last bytes), and reads back what arrived otherwise; either way the staged
content is the one its hash names."""

from __future__ import annotations

import io
import os
from pathlib import Path

import blake3
import pytest

from appliance.ingest import parts
from appliance.ingest.errors import ContentMismatch, ProtocolError
from appliance.ingest.files import Area

PART = 3 * 1024 * 1024 + 17


def _content() -> bytes:
    return os.urandom(3 * PART + 5)


def _send(area: Area, data: bytes, start: int = 0) -> str:
    digest = blake3.blake3(data).hexdigest()
    offset = start
    while True:
        piece = data[offset : offset + PART]
        final = offset + len(piece) >= len(data)
        area.receive(digest, offset, len(data), final, io.BytesIO(piece), "")
        offset += len(piece)
        if final:
            return digest


@pytest.fixture
def area(tmp_path: Path) -> Area:
    parts.RUNNING.forget_all()
    (tmp_path / "files").mkdir()
    return Area(tmp_path / "files")


def test_parts_continue_the_kept_hash_without_reading_back(area: Area, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _content()
    reads: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, n: int, at: int) -> bytes:
        reads.append(n)
        return real_pread(fd, n, at)

    monkeypatch.setattr(parts.os, "pread", counting_pread)
    digest = _send(area, data)
    assert area.staged(digest).read_bytes() == data
    assert sum(reads) <= 6 * parts.TAIL  # only the tails that recognise the file (two per part), never the parts


def test_without_a_kept_hash_what_arrived_is_read_back(area: Area) -> None:
    data = _content()
    digest = blake3.blake3(data).hexdigest()
    area.receive(digest, 0, len(data), False, io.BytesIO(data[:PART]), "")
    parts.RUNNING.forget_all()  # as if the next part reached another web worker, or the appliance restarted
    _send(area, data, start=PART)
    assert area.staged(digest).read_bytes() == data


@pytest.mark.parametrize("where", ["tail", "middle"])
def test_a_changed_part_file_is_read_back_and_refused(area: Area, where: str) -> None:
    data = _content()
    digest = blake3.blake3(data).hexdigest()
    area.receive(digest, 0, len(data), False, io.BytesIO(data[:PART]), "")
    with open(area.partial(digest), "r+b") as fh:  # same length, other bytes
        fh.seek(PART - 1 if where == "tail" else PART // 2)
        fh.write(b"\xff" if data[PART - 1 if where == "tail" else PART // 2] != 0xFF else b"\x00")
    if where == "middle":
        parts.RUNNING.forget_all()  # a change the tail cannot show is found by reading back (another worker)
    with pytest.raises(ContentMismatch, match="BLAKE3"):
        _send(area, data, start=PART)
    assert not area.staged(digest).exists() and not area.partial(digest).exists()


def test_a_restart_from_zero_replaces_what_arrived(area: Area) -> None:
    data = _content()
    digest = blake3.blake3(data).hexdigest()
    area.receive(digest, 0, len(data), False, io.BytesIO(b"\x00" * PART), "")  # wrong bytes, not yet checked
    _send(area, data)
    assert area.staged(digest).read_bytes() == data


def test_a_part_at_another_offset_is_refused_and_leaves_no_file(area: Area) -> None:
    data = _content()
    digest = blake3.blake3(data).hexdigest()
    with pytest.raises(ProtocolError, match="offset"):
        area.receive(digest, PART, len(data), False, io.BytesIO(data[PART : 2 * PART]), "")
    assert not area.partial(digest).exists()
    area.receive(digest, 0, len(data), False, io.BytesIO(data[:PART]), "")
    with pytest.raises(ProtocolError, match="offset"):
        area.receive(digest, 2 * PART, len(data), False, io.BytesIO(data[:PART]), "")
    assert area.partial(digest).stat().st_size == PART  # what arrived stays for the resume
