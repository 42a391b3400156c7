"""The retention engine: property tests against a simple oracle, and the SPEC parser on valid and invalid samples."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import retention
from appliance.retention import Candidate, InvalidRetentionSpec, RetentionPolicy, parse_spec, plan
from appliance.system.errors import InvalidInput

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC).timestamp()
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]

# -- the oracle: a different formulation of the same rules -----------------------------------------------


def oracle_keep(points: list[Candidate], policy: RetentionPolicy, now: float, tz: str) -> set[str]:
    """A point is kept by ``last=N`` if fewer than N points are newer; by a period rule with count N if it is
    the newest of its period and fewer than N periods that have points are later than its own."""
    zone = ZoneInfo(tz)
    if policy.keep_all:
        return {p.id for p in points}
    kept = {p.id for p in points if p.pinned or p.locked(now)}
    keys = {(rule, p.id): retention.period_key(rule, p.time, zone) for rule in retention.RULES[1:] for p in points}
    for p in points:
        newer = [q for q in points if q.order > p.order]
        if len(newer) < policy.last:
            kept.add(p.id)
        for rule in retention.RULES[1:]:
            key = keys[rule, p.id]
            same_period = [q for q in points if keys[rule, q.id] == key]
            if max(same_period, key=lambda q: q.order) is not p:
                continue
            later_periods = {keys[rule, q.id] for q in points if keys[rule, q.id] != key and q.time > p.time}
            if len(later_periods) < policy.count(rule):
                kept.add(p.id)
    return kept


# -- strategies -----------------------------------------------------------------------------------------

counts = st.integers(min_value=0, max_value=6)
policies = st.one_of(
    st.builds(RetentionPolicy, last=counts, hourly=counts, daily=counts, weekly=counts, monthly=counts, yearly=counts),
    st.just(RetentionPolicy(keep_all=True)),
)
# times spread over ~3 years before NOW, sometimes bunched into the same hours and seconds
offsets = st.one_of(
    st.integers(min_value=0, max_value=3 * 366 * 86400),
    st.integers(min_value=0, max_value=3 * 86400),
    st.sampled_from([0, 1, 59, 3600, 3601, 86400, 7 * 86400]),
)


@st.composite
def timelines(draw: st.DrawFn) -> list[Candidate]:
    n = draw(st.integers(min_value=0, max_value=40))
    points = []
    for i in range(n):
        at = NOW - draw(offsets)
        pinned = draw(st.booleans().map(lambda b: b and draw(st.integers(0, 9)) == 0))
        lock = draw(st.one_of(st.none(), st.integers(min_value=-30 * 86400, max_value=30 * 86400)))
        points.append(Candidate(f"p{i}", float(at), pinned, None if lock is None else NOW + lock, seq=i))
    return points


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(timelines(), policies, st.sampled_from(ZONES))
def test_plan_matches_the_oracle(points: list[Candidate], policy: RetentionPolicy, tz: str) -> None:
    result = plan(points, policy, NOW, tz)
    assert set(result.keep) == oracle_keep(points, policy, NOW, tz)


@PROPERTY
@given(timelines(), policies, st.sampled_from(ZONES))
def test_pinned_and_locked_points_are_never_removed(points: list[Candidate], policy: RetentionPolicy, tz: str) -> None:
    doomed = set(plan(points, policy, NOW, tz).destroy)
    assert not {p.id for p in points if p.pinned or p.locked(NOW)} & doomed


@PROPERTY
@given(timelines(), policies, st.sampled_from(ZONES))
def test_every_slot_keeps_its_newest_point(points: list[Candidate], policy: RetentionPolicy, tz: str) -> None:
    kept = set(plan(points, policy, NOW, tz).keep)
    zone = ZoneInfo(tz)
    newest_first = sorted(points, key=lambda p: p.order, reverse=True)
    assert {p.id for p in newest_first[: policy.last]} <= kept
    for rule in retention.RULES[1:]:
        periods: dict[str, Candidate] = {}
        for p in newest_first:
            periods.setdefault(retention.period_key(rule, p.time, zone), p)
        slots = sorted(periods, reverse=True)[: policy.count(rule)]
        assert {periods[k].id for k in slots} <= kept, rule


@PROPERTY
@given(timelines(), policies, st.sampled_from(ZONES))
def test_pruning_twice_changes_nothing(points: list[Candidate], policy: RetentionPolicy, tz: str) -> None:
    first = plan(points, policy, NOW, tz)
    survivors = [p for p in points if p.id in set(first.keep)]
    second = plan(survivors, policy, NOW, tz)
    assert second.destroy == []
    assert sorted(second.keep) == sorted(first.keep)


@PROPERTY
@given(timelines(), policies)
def test_plan_partitions_points_and_orders_them(points: list[Candidate], policy: RetentionPolicy) -> None:
    result = plan(points, policy, NOW)
    assert sorted(result.keep + result.destroy) == sorted(p.id for p in points)
    assert not set(result.keep) & set(result.destroy)
    times = [d.time for d in result.decisions]
    assert times == sorted(times, reverse=True)
    by_id = {p.id: p for p in points}
    assert [by_id[i].order for i in result.destroy] == sorted(by_id[i].order for i in result.destroy)
    assert all(d.keep == bool(d.reasons) for d in result.decisions)


def test_examples_with_reasons() -> None:
    day = 86400.0
    points = [Candidate(f"d{i}", NOW - i * day) for i in range(10)] + [Candidate("d0-early", NOW - 3600)]
    result = plan(points, parse_spec("last=2,daily=3"), NOW)
    reasons = {d.id: d.reasons for d in result.decisions}
    assert reasons["d0"] == ("last", "daily 2026-11-26")
    assert reasons["d0-early"] == ("last",)
    assert reasons["d1"] == ("daily 2026-11-25",)
    assert reasons["d2"] == ("daily 2026-11-24",)
    assert result.destroy == [f"d{i}" for i in range(9, 2, -1)]
    assert result.summary() == "these 7 points of 11 will be removed"
    assert plan(points[:1], parse_spec("last=1"), NOW).summary() == "all 1 point will be kept"


def test_stopped_client_keeps_its_last_days() -> None:
    """Periods count only where points exist: a client silent for a month still keeps 7 daily points."""
    month_ago = NOW - 30 * 86400
    points = [Candidate(f"p{i}", month_ago - i * 86400) for i in range(20)]
    result = plan(points, parse_spec("daily=7"), NOW)
    assert result.keep == [f"p{i}" for i in range(7)]


def test_weeks_are_iso_weeks_in_the_appliance_time_zone() -> None:
    # Sunday 23:30 UTC is already Monday in Berlin: another ISO week there.
    sunday = dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.UTC).timestamp()
    saturday = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC).timestamp()
    points = [Candidate("sun", sunday), Candidate("sat", saturday)]
    assert plan(points, parse_spec("weekly=2"), NOW, "UTC").keep == ["sun"]
    assert plan(points, parse_spec("weekly=2"), NOW, "Europe/Berlin").keep == ["sun", "sat"]


def test_same_second_points_are_ordered_by_seq() -> None:
    points = [Candidate("a", NOW, seq=2), Candidate("b", NOW, seq=1)]
    assert plan(points, parse_spec("last=1"), NOW).keep == ["a"]


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(InvalidInput):
        plan([Candidate("a", NOW), Candidate("a", NOW - 1)], parse_spec("last=1"), NOW)


def test_compare_policies() -> None:
    points = [Candidate(f"p{i}", NOW - i * 3600) for i in range(10)]
    change = retention.compare(points, parse_spec("last=8"), parse_spec("last=5"), NOW)
    assert change.newly_removed == ["p7", "p6", "p5"]


# -- the SPEC parser: valid and invalid samples, all in one table ------------------------------------------

VALID = {
    "last=24,daily=7,weekly=4,monthly=12,yearly=3": "last=24,daily=7,weekly=4,monthly=12,yearly=3",
    "yearly=3, monthly=12 ,daily=7": "daily=7,monthly=12,yearly=3",
    "LAST=1": "last=1",
    "hourly=48": "hourly=48",
    "last=0,daily=1": "daily=1",
    "all": "all",
    " All ": "all",
    "last = 5": "last=5",
    "weekly=100000": "weekly=100000",
}

INVALID = {
    "": "it is empty",
    "   ": "it is empty",
    "none": "is not of the form rule=count",
    "last": "is not of the form rule=count",
    "last=": "is not of the form rule=count",
    "last=-1": "is not of the form rule=count",
    "last=1.5": "is not of the form rule=count",
    "last=24,,daily=7": "is not of the form rule=count",
    "last=24;daily=7": "is not of the form rule=count",
    "minutely=5": "unknown rule 'minutely'",
    "keep=5": "unknown rule 'keep'",
    "last=1,last=2": "rule 'last' is given twice",
    "daily=100001": "is more than 100000",
    "last=0": "it keeps nothing",
    "last=0,daily=0": "it keeps nothing",
    "all,last=1": "is not of the form rule=count",
    "last=1\ndaily=2": "is not of the form rule=count",
}


@pytest.mark.parametrize(("spec", "canonical"), VALID.items())
def test_valid_specs(spec: str, canonical: str) -> None:
    policy = parse_spec(spec)
    assert policy.to_spec() == canonical
    assert parse_spec(policy.to_spec()) == policy  # the canonical form reads back the same


@pytest.mark.parametrize(("spec", "why"), INVALID.items())
def test_invalid_specs(spec: str, why: str) -> None:
    with pytest.raises(InvalidRetentionSpec) as info:
        parse_spec(spec)
    assert why in info.value.message
    assert info.value.exit_status == 3
    assert "last=24,daily=7" in info.value.hint


def test_default_spec_is_valid() -> None:
    assert parse_spec(retention.DEFAULT_SPEC).to_dict()["daily"] == 7
