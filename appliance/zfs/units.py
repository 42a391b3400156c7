"""Numbers as ZFS prints them.

With ``-p`` (OpenZFS) sizes are exact integers. zfs-fuse's ``zpool list`` has no ``-p`` and prints
sizes rounded to three significant digits (``1016M``, ``3.55M``); :func:`parse_size` reads both forms
and :func:`is_exact` tells which one it got.
"""

from __future__ import annotations

import re

from appliance.system.errors import InvalidInput, UnexpectedOutput

_SUFFIX = {"": 0, "B": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6, "Z": 7}
_HUMAN = re.compile(r"(\d+(?:\.\d+)?)([BKMGTPEZ]?)")
_SIZE_INPUT = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTPE]?)(i?B)?", re.IGNORECASE)


def is_exact(text: str) -> bool:
    return text.isdigit()


def parse_size(text: str, *, what: str = "size") -> int:
    """``"1016M"`` → 1065353216; ``"123"`` → 123; ``"-"`` or ``"none"`` → 0 is *not* accepted here."""
    m = _HUMAN.fullmatch(text.strip())
    if m is None:
        raise UnexpectedOutput(what, text)
    number, suffix = m.groups()
    return int(round(float(number) * (1024 ** _SUFFIX[suffix])))


def parse_optional_size(text: str, *, what: str = "size") -> int | None:
    """Quota-like values: ``"0"``, ``"none"`` and ``"-"`` mean no limit."""
    if text in ("-", "none", "0"):
        return None
    return parse_size(text, what=what)


def parse_count(text: str, *, what: str = "count") -> int:
    """Error counters in ``zpool status`` (``0``, ``12``, ``1.2K``)."""
    return parse_size(text, what=what)


def parse_ratio(text: str, *, what: str = "ratio") -> float:
    if not text.endswith("x"):
        raise UnexpectedOutput(what, text)
    try:
        return float(text[:-1])
    except ValueError as exc:
        raise UnexpectedOutput(what, text) from exc


def size_argument(value: int | str) -> str:
    """A size given by a user (``10G``, ``512MiB``, ``1073741824``) as exact bytes for zfs/truncate."""
    if isinstance(value, int):
        if value < 0:
            raise InvalidInput("a size must not be negative")
        return str(value)
    m = _SIZE_INPUT.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise InvalidInput(f"size {value!r} must be a number of bytes or a number with K, M, G, T, P or E")
    number, suffix, _ = m.groups()
    size = int(float(number) * (1024 ** _SUFFIX[suffix.upper()]))
    return str(size)


def format_size(value: int) -> str:
    """Bytes as people read them: 1.5 GiB."""
    step = 1024.0
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < step or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= step
    return f"{value} B"
