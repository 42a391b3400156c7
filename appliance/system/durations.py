"""Durations as people type them: ``90s``, ``15m``, ``1h``, ``1h30m``, ``7d``, ``2w``, ``0``."""

from __future__ import annotations

import re

from appliance.system.errors import InvalidInput

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d{1,9})([smhdw])")
_WHOLE = re.compile(r"(?:\d{1,9}[smhdw])+")
MAX_SECONDS = 100 * 366 * 86400


def parse_duration(text: str, *, what: str = "duration") -> int:
    """Seconds in ``text``: one or more ``<number><unit>`` parts (units s, m, h, d, w), or ``0``."""
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be text such as '1h' or '30m'")
    value = text.strip().lower().replace(" ", "")
    if value == "0":
        return 0
    if not _WHOLE.fullmatch(value):
        raise InvalidInput(
            f"{what} {text!r} must be a number with a unit: s, m, h, d or w (for example 90s, 15m, 1h30m, 7d)"
        )
    seconds = sum(int(n) * UNITS[u] for n, u in _PART.findall(value))
    if seconds > MAX_SECONDS:
        raise InvalidInput(f"{what} {text!r} is longer than 100 years")
    return seconds


def format_duration(seconds: int | float) -> str:
    """The shortest exact form: 5400 → ``1h30m``; 0 → ``0``; fractions are dropped."""
    left = int(seconds)
    if left <= 0:
        return "0"
    parts = []
    for unit, size in (("w", UNITS["w"]), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts)


def describe_age(seconds: float) -> str:
    """A rough age for messages: ``45 s``, ``12 min``, ``3.5 h``, ``2.0 d``."""
    if seconds < 90:
        return f"{max(0, int(seconds))} s"
    if seconds < 5400:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
