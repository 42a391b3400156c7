"""The agent compresses a message when that saves 10 % or more, judged from samples first: a part whose
compressible data comes in stripes is still seen as compressible, random data is sent as it is."""

from __future__ import annotations

import os

import pytest
import zstandard

from agent.backup import _compressed

MiB = 1024 * 1024
TEXT = (b"row customer invoice total amount due 2026-11-26 paid yes\n" * (MiB // 50))[:MiB]


def stripes(count: int, width: int, first_random: bool = True) -> bytes:
    """``count`` MiB alternating random and text every ``width`` MiB."""
    out = []
    for i in range(count):
        random_now = (i // width) % 2 == (0 if first_random else 1)
        out.append(os.urandom(MiB) if random_now else TEXT)
    return b"".join(out)


@pytest.mark.parametrize(("width", "first_random"), [(1, True), (1, False), (2, True), (2, False)])
def test_striped_data_is_compressed(width: int, first_random: bool) -> None:
    data = stripes(8, width, first_random)
    headers: dict[str, str] = {}
    body = _compressed(data, headers)
    assert headers == {"Content-Encoding": "zstd"}
    assert len(body) < 0.6 * len(data)
    assert zstandard.ZstdDecompressor().decompress(body, max_output_size=len(data)) == data


def test_random_data_goes_as_it_is() -> None:
    data = os.urandom(8 * MiB)
    headers: dict[str, str] = {}
    assert _compressed(data, headers) is data and headers == {}


def test_small_messages_are_tried_whole() -> None:
    headers: dict[str, str] = {}
    body = _compressed(TEXT[:4096], headers)
    assert headers == {"Content-Encoding": "zstd"} and len(body) < 1024
    assert _compressed(b"", {}) == b""
