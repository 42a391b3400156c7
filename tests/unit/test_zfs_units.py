"""Sizes and counters as zfs-fuse (rounded, with suffixes) and OpenZFS ``-p`` (exact bytes) print them."""

from __future__ import annotations

import pytest

from appliance.system.errors import InvalidInput, UnexpectedOutput
from appliance.zfs import units

KiB, MiB, GiB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("123", 123),
        ("1006632960", 1006632960),  # OpenZFS zpool list -p
        ("556K", 556 * KiB),  # zfs-fuse zpool list
        ("250M", 250 * MiB),
        ("5.60M", round(5.60 * MiB)),
        ("65.3M", round(65.3 * MiB)),
        ("1016M", 1016 * MiB),
        ("1.5G", 3 * GiB // 2),
        ("2T", 2 * 1024**4),
        ("1.2K", round(1.2 * KiB)),  # a large error counter
        ("512B", 512),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert units.parse_size(text) == value
    assert units.parse_count(text) == value


@pytest.mark.parametrize("text", ["", "-", "none", "1.2.3", "12Q", "M", "-5", "1,5M", "0x10", "1e3"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(UnexpectedOutput):
        units.parse_size(text)


@pytest.mark.parametrize(("text", "value"), [("-", None), ("none", None), ("0", None), ("104857600", 104857600)])
def test_parse_optional_size(text: str, value: int | None) -> None:
    assert units.parse_optional_size(text) == value


def test_is_exact() -> None:
    assert units.is_exact("1006632960")
    assert not units.is_exact("250M")
    assert not units.is_exact("5.60M")


def test_parse_ratio() -> None:
    assert units.parse_ratio("1.00x") == 1.0  # zfs-fuse prints the x even with -p
    assert units.parse_ratio("2.35x") == 2.35
    for bad in ("1.00", "x", "ax"):  # OpenZFS -p prints 1.00
        with pytest.raises(UnexpectedOutput):
            units.parse_ratio(bad)


@pytest.mark.parametrize(
    ("value", "argument"),
    [
        (0, "0"),
        (1073741824, "1073741824"),
        ("1073741824", "1073741824"),
        ("10G", str(10 * GiB)),
        ("10g", str(10 * GiB)),
        ("512MiB", str(512 * MiB)),
        ("512 MB", str(512 * MiB)),
        (" 1.5K ", "1536"),
        ("1T", str(1024**4)),
    ],
)
def test_size_argument(value: int | str, argument: str) -> None:
    assert units.size_argument(value) == argument


@pytest.mark.parametrize("value", [-1, "", "ten", "10X", "1e3", "-5G", "10 G B", "1,5G", "10G\n--help"])
def test_size_argument_refuses(value: int | str) -> None:
    with pytest.raises(InvalidInput):
        units.size_argument(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 * GiB // 2, "1.5 GiB"), (5 * 1024**5, "5.0 PiB")],
)
def test_format_size(value: int, text: str) -> None:
    assert units.format_size(value) == text
