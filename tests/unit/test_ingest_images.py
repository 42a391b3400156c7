"""The image store of agent image backups (appliance/ingest/images.py) on a plain directory: block maps across
resizes, block messages checked before anything is written, and reads of stored blocks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zstandard

from appliance.ingest import images
from appliance.ingest.errors import ContentMismatch, ProtocolError
from appliance.ingest.images import BLOCK, HASH, UNKNOWN, Image

MIB = 1024 * 1024


def record(index: int, data: bytes) -> bytes:
    return index.to_bytes(8, "big") + len(data).to_bytes(4, "big") + images.block_hash(data) + data


def entries(image: Image) -> list[bytes]:
    m = image.block_map()
    return [m[i : i + HASH] for i in range(0, len(m), HASH)]


def test_a_new_image_is_sparse_and_its_map_says_zeros(tmp_path: Path) -> None:
    image = Image(tmp_path)
    image.prepare(3 * MIB + 100)
    assert image.path.stat().st_size == 3 * MIB + 100
    assert image.path.stat().st_blocks * 512 < MIB  # nothing written
    assert entries(image) == [images.zero_hash(BLOCK)] * 3 + [images.zero_hash(100)]


def test_written_blocks_are_recorded_and_read_back(tmp_path: Path) -> None:
    image = Image(tmp_path)
    size = 2 * MIB + 10
    image.prepare(size)
    data, tail = os.urandom(MIB), os.urandom(10)
    blocks = images.parse_blocks(record(1, data) + record(2, tail), "", size)
    assert image.write_blocks(blocks, size) == MIB + 10
    assert entries(image)[1:] == [images.block_hash(data), images.block_hash(tail)]
    assert images.read_blocks(tmp_path, size, 1, 2) == data + tail
    zeros = (0).to_bytes(8, "big") + bytes(4) + images.zero_hash(BLOCK)  # block 0 as "all zeros", compressed
    assert images.parse_blocks(zstandard.ZstdCompressor().compress(zeros), "zstd", size)[0].data is None


def test_resizing_marks_only_the_blocks_whose_content_is_unknown(tmp_path: Path) -> None:
    image = Image(tmp_path)
    image.prepare(2 * MIB + 10)
    data = os.urandom(MIB)
    image.write_blocks(images.parse_blocks(record(0, data), "", 2 * MIB + 10), 2 * MIB + 10)
    image.prepare(4 * MIB)  # grows: the old short last block is now a full one of unknown content
    got = entries(image)
    assert got[0] == images.block_hash(data) and got[2] == UNKNOWN and got[3] == images.zero_hash(BLOCK)
    image.prepare(MIB + 5)  # shrinks into block 1: cut short, unknown
    assert entries(image) == [images.block_hash(data), UNKNOWN]
    image.prepare(MIB)  # shrinks on a block boundary: block 0 is intact
    assert entries(image) == [images.block_hash(data)]


def test_a_damaged_map_is_not_trusted(tmp_path: Path) -> None:
    image = Image(tmp_path)
    image.prepare(2 * MIB)
    image.map_path.write_bytes(b"short")
    image.prepare(2 * MIB)
    assert entries(image) == [UNKNOWN, UNKNOWN]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (record(0, os.urandom(MIB))[:-1], ProtocolError),  # cut short
        (record(5, os.urandom(MIB)), ProtocolError),  # outside
        (record(0, b"x" * 100), ProtocolError),  # wrong length
        (record(0, b"a" * MIB)[:12] + images.block_hash(b"b") + b"a" * MIB, ContentMismatch),  # lying hash
        ((1).to_bytes(8, "big") + bytes(4) + bytes(16), ContentMismatch),  # "zeros" without the zero hash
        (b"", ProtocolError),
    ],
)
def test_bad_block_messages_are_refused_before_anything_is_written(
    tmp_path: Path, body: bytes, error: type[Exception]
) -> None:
    image = Image(tmp_path)
    image.prepare(2 * MIB)
    before = image.block_map()
    with pytest.raises(error):
        image.write_blocks(images.parse_blocks(body, "", 2 * MIB), 2 * MIB)
    assert image.block_map() == before


def test_names_and_reads_are_checked(tmp_path: Path) -> None:
    for bad in ("", "../a", "a/b", "A", "x" * 65, "-a", "a\n", 7):
        with pytest.raises(ProtocolError):
            images.check_name(bad)
    assert images.check_name("vg0-root.img") == "vg0-root.img"
    image = Image(tmp_path)
    image.prepare(MIB)
    with pytest.raises(ProtocolError):
        images.read_blocks(tmp_path, MIB, 0, 2)
