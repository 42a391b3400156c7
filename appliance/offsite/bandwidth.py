"""Bandwidth limits with time windows ("slower during business hours") and the throttle that applies them."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.system.errors import InvalidInput

_RULE = re.compile(
    r"(?:(mon|tue|wed|thu|fri|sat|sun|weekdays|weekend|daily) )?(\d{2}):(\d{2})-(\d{2}):(\d{2})=(\d+|off)"
)
_DAYS = {"mon": {0}, "tue": {1}, "wed": {2}, "thu": {3}, "fri": {4}, "sat": {5}, "sun": {6},
         "weekdays": {0, 1, 2, 3, 4}, "weekend": {5, 6}, "daily": set(range(7))}  # fmt: skip


@dataclass(frozen=True)
class Window:
    days: frozenset[int]
    start: int  # minutes after midnight, local time
    end: int
    kbps: int | None  # KiB/s; None = unlimited

    def covers(self, when: dt.datetime) -> bool:
        minute = when.hour * 60 + when.minute
        day = when.weekday()
        if self.start <= self.end:
            return day in self.days and self.start <= minute < self.end
        # over midnight: the evening part on the listed day, the morning part on the day after
        return (day in self.days and minute >= self.start) or ((day - 1) % 7 in self.days and minute < self.end)

    def text(self) -> str:
        days = next(
            (k for k, v in _DAYS.items() if v == set(self.days) and k in ("daily", "weekdays", "weekend")), None
        )
        if days is None:
            days = ",".join(k for k, v in _DAYS.items() if len(v) == 1 and v <= self.days)
        rate = "off" if self.kbps is None else str(self.kbps)
        return f"{days} {self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}={rate}"


def parse_rule(text: str) -> Window:
    """``[DAYS ]HH:MM-HH:MM=KIBPS|off`` — e.g. ``weekdays 08:00-18:00=2048``."""
    m = _RULE.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if not m:
        raise InvalidInput(f"bandwidth rule {text!r} must look like 'weekdays 08:00-18:00=2048' (KiB/s, or off)")
    days, h1, m1, h2, m2, rate = m.groups()
    start, end = int(h1) * 60 + int(m1), int(h2) * 60 + int(m2)
    if int(h1) > 23 or int(h2) > 24 or int(m1) > 59 or int(m2) > 59 or end > 1440 or start == end:
        raise InvalidInput(f"bandwidth rule {text!r} has an invalid time")
    kbps = None if rate == "off" else int(rate)
    if kbps is not None and not 1 <= kbps <= 10**8:
        raise InvalidInput("a bandwidth limit is 1 to 100000000 KiB/s, or off")
    return Window(frozenset(_DAYS[days or "daily"]), start, end, kbps)


def limit_at(rules: list[Window], default_kbps: int | None, when: dt.datetime) -> int | None:
    """The limit in KiB/s at ``when`` (the first window that covers it, else the default); None = unlimited."""
    for rule in rules:
        if rule.covers(when):
            return rule.kbps
    return default_kbps


class Throttle:
    """Sleeps so that bytes passed through :meth:`consume` stay under the limit in force at each moment."""

    def __init__(
        self,
        rules: list[Window],
        default_kbps: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], dt.datetime] = dt.datetime.now,
    ) -> None:
        self.rules, self.default_kbps = rules, default_kbps
        self._clock, self._sleep, self._now = clock, sleep, now
        self._ready_at = clock()

    def consume(self, nbytes: int) -> float:
        """Account for ``nbytes`` just sent; return the seconds slept."""
        kbps = limit_at(self.rules, self.default_kbps, self._now())
        now = self._clock()
        if kbps is None:
            self._ready_at = now
            return 0.0
        self._ready_at = max(self._ready_at, now) + nbytes / (kbps * 1024)
        wait = self._ready_at - now
        if wait > 0:
            self._sleep(wait)
            return wait
        return 0.0
