"""When scheduled snapshots run: schedules, backup windows, and the "missed runs run once" rule (pure functions).

A schedule is ``off``, an interval ``every 15m`` (at least 5 minutes; fire times are multiples of the interval
since 1970-01-01 00:00 UTC, so ``every 1h`` fires on the hour), or a five-field cron expression
(``0 */4 * * *``, ``30 1 * * mon-fri``, or ``@hourly``/``@daily``/``@weekly``/``@monthly``/``@yearly``) read in the
appliance's time zone. Cron expressions must not fire more often than every 5 minutes either.

A backup window limits scheduled runs to certain hours: ``20:00-06:00`` (every day, across midnight),
``mon-fri 08:00-18:00``, ``sat,sun 00:00-24:00``. A fire time outside the window is skipped, and so is a run
that is due when the window has closed.

After downtime, however many fire times were missed, :func:`due` returns only the latest one: the caller runs
once and records that fire time as handled.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from croniter import croniter

from appliance.system.durations import format_duration, parse_duration
from appliance.system.errors import InvalidInput

MIN_INTERVAL = 300
MAX_INTERVAL = 366 * 86400
GAP_CHECK_FIRES = 400  # cron fire times checked for the 5-minute minimum
NEXT_RUN_SCAN = 3000  # fire times scanned for one that falls in the window (a week of 5-minute runs)
OFF = "off"
_ALIASES = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"(?:(?P<days>[a-z,-]+)\s+)?(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})")


class InvalidSchedule(InvalidInput):
    """Invalid schedule {!r}: {}"""

    code = "invalid_schedule"
    hint = (
        "Use 'off', an interval such as 'every 15m' or 'every 1h' (at least 5 minutes), or a cron expression "
        "with five fields such as '0 */4 * * *'."
    )


class InvalidWindow(InvalidInput):
    """Invalid backup window {!r}: {}"""

    code = "invalid_window"
    hint = "Write HH:MM-HH:MM, optionally after days: '20:00-06:00', 'mon-fri 08:00-18:00', 'sat,sun 00:00-24:00'."


@dataclass(frozen=True)
class Schedule:
    kind: str  # "off", "interval" or "cron"
    text: str  # canonical form
    interval: int | None = None
    cron: str | None = None

    @property
    def enabled(self) -> bool:
        return self.kind != OFF

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "text": self.text, "interval_seconds": self.interval, "cron": self.cron}


def parse_schedule(text: str) -> Schedule:
    if not isinstance(text, str):
        raise InvalidSchedule(text, "it must be text")
    value = " ".join(text.strip().lower().split())
    if value in (OFF, "none", "manual", ""):
        return Schedule(OFF, OFF)
    if value.startswith("every "):
        try:
            seconds = parse_duration(value[len("every ") :], what="interval")
        except InvalidInput as exc:
            raise InvalidSchedule(text, str(exc.args[0])) from None
        if seconds < MIN_INTERVAL:
            raise InvalidSchedule(text, "the interval must be at least 5 minutes")
        if seconds > MAX_INTERVAL:
            raise InvalidSchedule(text, "the interval must be at most 366 days")
        return Schedule("interval", f"every {format_duration(seconds)}", interval=seconds)
    fields = value.split(" ")
    if not (value in _ALIASES or len(fields) == 5):
        raise InvalidSchedule(text, "a cron expression has exactly five fields: minute hour day month weekday")
    if any(ch in value for ch in "\t\n\r\0"):
        raise InvalidSchedule(text, "control characters are not allowed")
    try:
        valid = bool(croniter.is_valid(value))
    except (ValueError, TypeError, KeyError):
        valid = False
    if not valid:
        raise InvalidSchedule(text, "it is not a valid cron expression")
    schedule = Schedule("cron", value, cron=value)
    _check_gaps(schedule, text)
    return schedule


def _check_gaps(schedule: Schedule, text: str) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    it = croniter(schedule.cron, start)
    previous = float(it.get_next(float))
    for _ in range(GAP_CHECK_FIRES):
        current = float(it.get_next(float))
        if current - previous < MIN_INTERVAL:
            raise InvalidSchedule(text, "it fires more often than every 5 minutes")
        previous = current


def _zone(tz: str | dt.tzinfo) -> dt.tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def prev_fire(schedule: Schedule, now: float, tz: str | dt.tzinfo = "UTC") -> float | None:
    """The latest fire time at or before ``now`` (None when off)."""
    if schedule.interval is not None:
        return float(math.floor(now / schedule.interval) * schedule.interval)
    if schedule.cron is None:
        return None
    start = dt.datetime.fromtimestamp(now, _zone(tz))
    before = float(croniter(schedule.cron, start).get_prev(float))
    following = float(croniter(schedule.cron, dt.datetime.fromtimestamp(before, _zone(tz))).get_next(float))
    return following if following <= now else before


def next_fire(schedule: Schedule, after: float, tz: str | dt.tzinfo = "UTC") -> float | None:
    """The first fire time strictly after ``after`` (None when off)."""
    if schedule.interval is not None:
        return float((math.floor(after / schedule.interval) + 1) * schedule.interval)
    if schedule.cron is None:
        return None
    return float(croniter(schedule.cron, dt.datetime.fromtimestamp(after, _zone(tz))).get_next(float))


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday; the day a span starts on
    start: int  # minutes after midnight
    end: int  # minutes after midnight, 1..1440; end <= start means the span crosses midnight
    text: str

    def contains(self, when: float, tz: str | dt.tzinfo = "UTC") -> bool:
        local = dt.datetime.fromtimestamp(when, _zone(tz))
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        yesterday = (day - 1) % 7
        return (day in self.days and minute >= self.start) or (yesterday in self.days and minute < self.end)

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "days": [_DAYS[d] for d in sorted(self.days)], "start": self.start, "end": self.end}


def _minutes(text: str, original: str, *, end: bool) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise InvalidWindow(original, f"{text} is not a time of day")
    return hours * 60 + minutes


def _days(text: str | None, original: str) -> frozenset[int]:
    if text in (None, "daily", "every-day"):
        return frozenset(range(7))
    assert text is not None
    out: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            first, _, last = part.partition("-")
            if first not in _DAYS or last not in _DAYS:
                raise InvalidWindow(original, f"unknown day range {part!r}")
            i, j = _DAYS.index(first), _DAYS.index(last)
            out.update((i + k) % 7 for k in range((j - i) % 7 + 1))
        elif part in _DAYS:
            out.add(_DAYS.index(part))
        else:
            raise InvalidWindow(original, f"unknown day {part!r} (use mon, tue, wed, thu, fri, sat, sun)")
    return frozenset(out)


def parse_window(text: str | None) -> Window | None:
    """A backup window, or None for "any time" (``None``, ``""``, ``any``)."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidWindow(text, "it must be text")
    value = " ".join(text.strip().lower().split())
    if value in ("", "any", "always"):
        return None
    m = _WINDOW.fullmatch(value)
    if m is None:
        raise InvalidWindow(text, "it is not of the form [DAYS ]HH:MM-HH:MM")
    start = _minutes(m.group("start"), text, end=False)
    end = _minutes(m.group("end"), text, end=True)
    if start == end % 1440 and end != 1440:
        raise InvalidWindow(text, "it starts and ends at the same time")
    days = _days(m.group("days"), text)
    canonical_days = "" if len(days) == 7 else _days_text(days) + " "
    canonical = f"{canonical_days}{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    return Window(days, start, end, canonical)


def _days_text(days: frozenset[int]) -> str:
    return ",".join(_DAYS[d] for d in sorted(days))


def due(
    schedule: Schedule,
    window: Window | None,
    last_fire: float,
    now: float,
    tz: str | dt.tzinfo = "UTC",
) -> float | None:
    """The fire time to run now, or None. However many fire times passed since ``last_fire`` (downtime), only
    the latest counts: the caller runs once and records the returned time as its new ``last_fire``."""
    latest = prev_fire(schedule, now, tz)
    if latest is None or latest <= last_fire:
        return None
    if window is not None and not (window.contains(latest, tz) and window.contains(now, tz)):
        return None
    return latest


def next_run(schedule: Schedule, window: Window | None, now: float, tz: str | dt.tzinfo = "UTC") -> float | None:
    """The next fire time after ``now`` that falls in the window (None if off, or none within a long scan)."""
    at = now
    for _ in range(NEXT_RUN_SCAN):
        fire = next_fire(schedule, at, tz)
        if fire is None:
            return None
        if window is None or window.contains(fire, tz):
            return fire
        at = fire
    return None
