"""Schedules, backup windows, "missed runs run once", and durations (pure functions)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import schedules
from appliance.schedules import InvalidSchedule, InvalidWindow, due, next_run, parse_schedule, parse_window
from appliance.system.durations import describe_age, format_duration, parse_duration
from appliance.system.errors import InvalidInput

BERLIN = "Europe/Berlin"


def at(text: str, tz: str = "UTC") -> float:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


VALID_SCHEDULES = {
    "off": ("off", None),
    "Manual": ("off", None),
    "every 5m": ("every 5m", 300),
    "every 15m": ("every 15m", 900),
    "every 1h": ("every 1h", 3600),
    "every 90m": ("every 1h30m", 5400),
    "EVERY   2h": ("every 2h", 7200),
    "every 1d": ("every 1d", 86400),
    "0 */4 * * *": ("0 */4 * * *", None),
    "30 1 * * mon-fri": ("30 1 * * mon-fri", None),
    "*/5 * * * *": ("*/5 * * * *", None),
    "@hourly": ("@hourly", None),
    "@daily": ("@daily", None),
}

INVALID_SCHEDULES = {
    "every 4m": "at least 5 minutes",
    "every 299s": "at least 5 minutes",
    "every 0": "at least 5 minutes",
    "every hour": "must be a number with a unit",
    "every 400d": "at most 366 days",
    "* * * * *": "more often than every 5 minutes",
    "*/4 * * * *": "more often than every 5 minutes",
    "0,1 * * * *": "more often than every 5 minutes",
    "0 * * *": "exactly five fields",
    "0 * * * * *": "exactly five fields",
    "61 * * * *": "not a valid cron expression",
    "0 25 * * *": "not a valid cron expression",
    "@reboot": "exactly five fields",
    "hourly": "exactly five fields",
}


@pytest.mark.parametrize(("text", "expected"), VALID_SCHEDULES.items())
def test_valid_schedules(text: str, expected: tuple[str, int | None]) -> None:
    schedule = parse_schedule(text)
    assert (schedule.text, schedule.interval) == expected
    assert parse_schedule(schedule.text) == schedule


@pytest.mark.parametrize(("text", "why"), INVALID_SCHEDULES.items())
def test_invalid_schedules(text: str, why: str) -> None:
    with pytest.raises(InvalidSchedule) as info:
        parse_schedule(text)
    assert why in info.value.message
    assert "every 15m" in info.value.hint


def test_interval_fire_times_are_aligned() -> None:
    hourly = parse_schedule("every 1h")
    now = at("2026-11-26T10:17:03")
    assert schedules.prev_fire(hourly, now) == at("2026-11-26T10:00:00")
    assert schedules.next_fire(hourly, now) == at("2026-11-26T11:00:00")
    assert schedules.prev_fire(hourly, at("2026-11-26T10:00:00")) == at("2026-11-26T10:00:00")  # at or before


def test_cron_in_the_appliance_time_zone() -> None:
    nightly = parse_schedule("30 1 * * *")
    now = at("2026-11-26T12:00:00", BERLIN)
    assert schedules.prev_fire(nightly, now, BERLIN) == at("2026-11-26T01:30:00", BERLIN)
    assert schedules.next_fire(nightly, now, BERLIN) == at("2026-11-27T01:30:00", BERLIN)
    exactly = at("2026-11-26T01:30:00", BERLIN)
    assert schedules.prev_fire(nightly, exactly, BERLIN) == exactly
    assert schedules.prev_fire(parse_schedule("off"), now) is None


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["every 5m", "every 1h", "every 7h", "0 */4 * * *", "15 3 * * 1", "*/10 8-18 * * mon-fri"]),
    st.integers(min_value=1_700_000_000, max_value=1_900_000_000),
    st.sampled_from(["UTC", BERLIN, "America/New_York"]),
)
def test_prev_and_next_fire_bracket_now(text: str, now: int, tz: str) -> None:
    schedule = parse_schedule(text)
    prev = schedules.prev_fire(schedule, float(now), tz)
    nxt = schedules.next_fire(schedule, float(now), tz)
    assert prev is not None and nxt is not None
    assert prev <= now < nxt
    assert schedules.next_fire(schedule, prev, tz) == nxt or schedules.next_fire(schedule, prev, tz) <= now


def test_missed_runs_after_downtime_run_once() -> None:
    hourly = parse_schedule("every 1h")
    last = at("2026-11-26T02:00:00")
    now = at("2026-11-26T09:42:00")  # seven fire times were missed while the daemon was down
    fire = due(hourly, None, last, now)
    assert fire == at("2026-11-26T09:00:00")
    assert due(hourly, None, fire, now) is None  # recorded: nothing more until the next fire time
    assert due(hourly, None, fire, at("2026-11-26T09:59:59")) is None
    assert due(hourly, None, fire, at("2026-11-26T10:00:00")) == at("2026-11-26T10:00:00")
    assert due(parse_schedule("off"), None, 0, now) is None


def test_a_new_client_waits_for_its_first_fire_time() -> None:
    hourly = parse_schedule("every 1h")
    created = at("2026-11-26T09:10:00")
    assert due(hourly, None, created, at("2026-11-26T09:50:00")) is None
    assert due(hourly, None, created, at("2026-11-26T10:00:01")) == at("2026-11-26T10:00:00")


VALID_WINDOWS = {
    "20:00-06:00": ("20:00-06:00", 7),
    "mon-fri 08:00-18:00": ("mon,tue,wed,thu,fri 08:00-18:00", 5),
    "sat,sun 00:00-24:00": ("sat,sun 00:00-24:00", 2),
    "fri-mon 22:00-02:00": ("mon,fri,sat,sun 22:00-02:00", 4),
    "daily 9:00-17:30": ("09:00-17:30", 7),
    " MON  01:00 - 02:00 ": ("mon 01:00-02:00", 1),
}

INVALID_WINDOWS = {
    "8-18": "not of the form",
    "08:00": "not of the form",
    "25:00-06:00": "not a time of day",
    "08:60-09:00": "not a time of day",
    "24:00-06:00": "not a time of day",
    "10:00-10:00": "starts and ends at the same time",
    "weekdays 08:00-18:00": "unknown day 'weekdays'",
    "mon-xyz 08:00-18:00": "unknown day range",
    "08:00-18:00\nx": "not of the form",
}


@pytest.mark.parametrize(("text", "expected"), VALID_WINDOWS.items())
def test_valid_windows(text: str, expected: tuple[str, int]) -> None:
    window = parse_window(text)
    assert window is not None
    assert (window.text, len(window.days)) == expected
    assert parse_window(window.text) == window


@pytest.mark.parametrize(("text", "why"), INVALID_WINDOWS.items())
def test_invalid_windows(text: str, why: str) -> None:
    with pytest.raises(InvalidWindow) as info:
        parse_window(text)
    assert why in info.value.message


@pytest.mark.parametrize("text", [None, "", "any", "Always"])
def test_no_window(text: str | None) -> None:
    assert parse_window(text) is None


def test_window_across_midnight_belongs_to_its_start_day() -> None:
    window = parse_window("fri 22:00-06:00")
    assert window is not None
    assert window.contains(at("2026-11-27T23:00:00"))  # Friday night
    assert window.contains(at("2026-11-28T05:59:00"))  # early Saturday: Friday's span
    assert not window.contains(at("2026-11-28T06:00:00"))
    assert not window.contains(at("2026-11-28T23:00:00"))  # Saturday night
    assert not window.contains(at("2026-11-27T05:00:00"))  # early Friday: Thursday's span


def test_runs_due_outside_the_window_wait_for_it() -> None:
    hourly = parse_schedule("every 1h")
    window = parse_window("08:00-18:00")
    # The daemon was down from 17:30 to 23:10: the 23:00 fire time is outside the window.
    assert due(hourly, window, at("2026-11-26T17:00:00"), at("2026-11-26T23:10:00")) is None
    # The next morning, one run at 08:00 (not one per missed hour).
    assert due(hourly, window, at("2026-11-26T17:00:00"), at("2026-11-27T08:05:00")) == at("2026-11-27T08:00:00")
    # A fire time inside the window is not run once the window has closed.
    late = parse_schedule("55 17 * * *")
    assert due(late, window, at("2026-11-25T17:55:00"), at("2026-11-26T18:30:00")) is None


def test_next_run_respects_the_window() -> None:
    hourly = parse_schedule("every 1h")
    window = parse_window("mon-fri 08:00-18:00")
    friday_evening = at("2026-11-27T18:30:00")
    assert next_run(hourly, window, friday_evening) == at("2026-11-30T08:00:00")  # Monday
    assert next_run(hourly, None, friday_evening) == at("2026-11-27T19:00:00")
    never = parse_window("mon 01:00-01:30")
    assert next_run(parse_schedule("0 12 * * *"), never, friday_evening) is None
    assert next_run(parse_schedule("off"), None, friday_evening) is None


# -- durations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("7d", 604800), ("2w", 1209600), ("0", 0)],
)
def test_parse_and_format_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "-1h", "1.5h", "1h 30", "1y", "99999999999d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text)


def test_describe_age() -> None:
    assert [describe_age(s) for s in (5, 600, 3 * 3600, 3 * 86400)] == ["5 s", "10 min", "3.0 h", "3.0 d"]
