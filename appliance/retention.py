"""Retention policy: which recovery points to keep (GFS), as pure functions.

A policy is written as a SPEC, for example ``last=24,daily=7,weekly=4,monthly=12,yearly=3`` (docs/retention.md):

* ``last=N`` keeps the N newest points;
* ``hourly=N``, ``daily=N``, ``weekly=N`` (ISO weeks), ``monthly=N``, ``yearly=N`` each keep the newest point of
  each of the N most recent periods *that have points*, in the appliance's time zone (so a client that stopped
  backing up keeps its last N days of points instead of losing them day by day);
* the rules are independent: a point is kept if any rule keeps it;
* ``all`` keeps everything (pruning never removes a point).

Whatever the rules say, a pinned point and a point whose immutability lock has not expired are always kept.
:func:`plan` is deterministic and idempotent: applied to the points it keeps, it keeps them all.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from appliance.system.errors import InvalidInput

RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
MAX_COUNT = 100_000
KEEP_ALL = "all"
DEFAULT_SPEC = "last=24,daily=7,weekly=4,monthly=12,yearly=3"
_ITEM = re.compile(r"([a-z]+)=(\d{1,7})")

_PERIOD_FORMATS: dict[str, Callable[[dt.datetime], str]] = {
    "hourly": lambda t: t.strftime("%Y-%m-%d %H:00"),
    "daily": lambda t: t.strftime("%Y-%m-%d"),
    "weekly": lambda t: t.strftime("%G-W%V"),
    "monthly": lambda t: t.strftime("%Y-%m"),
    "yearly": lambda t: t.strftime("%Y"),
}


class InvalidRetentionSpec(InvalidInput):
    """Invalid retention SPEC {!r}: {}"""

    code = "invalid_retention_spec"
    hint = (
        "Write rule=count pairs separated by commas, e.g. 'last=24,daily=7,weekly=4,monthly=12,yearly=3' "
        "(rules: last, hourly, daily, weekly, monthly, yearly), or 'all' to keep every point."
    )


@dataclass(frozen=True)
class RetentionPolicy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    keep_all: bool = False

    def count(self, rule: str) -> int:
        if rule not in RULES:
            raise KeyError(rule)
        value: int = getattr(self, rule)
        return value

    def to_spec(self) -> str:
        """The canonical SPEC (rules in a fixed order, zeros left out)."""
        if self.keep_all:
            return KEEP_ALL
        return ",".join(f"{rule}={self.count(rule)}" for rule in RULES if self.count(rule))

    def to_dict(self) -> dict[str, object]:
        return {"spec": self.to_spec(), "keep_all": self.keep_all, **{rule: self.count(rule) for rule in RULES}}


def parse_spec(text: str) -> RetentionPolicy:
    """Parse a retention SPEC (see the module docstring); anything else raises :class:`InvalidRetentionSpec`."""
    if not isinstance(text, str):
        raise InvalidRetentionSpec(text, "it must be text")
    spec = text.strip().lower()
    if spec == KEEP_ALL:
        return RetentionPolicy(keep_all=True)
    if not spec:
        raise InvalidRetentionSpec(text, "it is empty")
    counts: dict[str, int] = {}
    for raw in spec.split(","):
        item = raw.replace(" ", "")
        m = _ITEM.fullmatch(item)
        if m is None:
            raise InvalidRetentionSpec(text, f"{raw.strip()!r} is not of the form rule=count")
        rule, number = m.group(1), int(m.group(2))
        if rule not in RULES:
            raise InvalidRetentionSpec(text, f"unknown rule {rule!r} (known: {', '.join(RULES)})")
        if rule in counts:
            raise InvalidRetentionSpec(text, f"rule {rule!r} is given twice")
        if number > MAX_COUNT:
            raise InvalidRetentionSpec(text, f"{rule}={number} is more than {MAX_COUNT}")
        counts[rule] = number
    if not any(counts.values()):
        raise InvalidRetentionSpec(text, "it keeps nothing; every point would be removed (keep at least last=1)")
    return RetentionPolicy(
        last=counts.get("last", 0),
        hourly=counts.get("hourly", 0),
        daily=counts.get("daily", 0),
        weekly=counts.get("weekly", 0),
        monthly=counts.get("monthly", 0),
        yearly=counts.get("yearly", 0),
    )


@dataclass(frozen=True)
class Candidate:
    """A recovery point as retention sees it. ``seq`` orders points taken in the same second."""

    id: str
    time: float  # epoch seconds
    pinned: bool = False
    locked_until: float | None = None
    seq: int = 0

    def locked(self, now: float) -> bool:
        return self.locked_until is not None and self.locked_until > now

    @property
    def order(self) -> tuple[float, int, str]:
        return (self.time, self.seq, self.id)


@dataclass(frozen=True)
class Decision:
    id: str
    time: float
    keep: bool
    reasons: tuple[str, ...]  # why it is kept ("last", "daily 2026-01-26", "pinned", "locked"); empty if removed

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "time": self.time, "keep": self.keep, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class RetentionPlan:
    policy: RetentionPolicy
    decisions: tuple[Decision, ...]  # newest first
    now: float
    timezone: str

    @property
    def keep(self) -> list[str]:
        return [d.id for d in self.decisions if d.keep]

    @property
    def destroy(self) -> list[str]:
        """Ids to remove, oldest first (the order a prune job removes them in)."""
        return [d.id for d in reversed(self.decisions) if not d.keep]

    def summary(self) -> str:
        n = len(self.destroy)
        total = len(self.decisions)
        if n == 0:
            return f"all {total} point{'s' if total != 1 else ''} will be kept"
        return f"{'this' if n == 1 else 'these'} {n} point{'s' if n != 1 else ''} of {total} will be removed"

    def to_dict(self) -> dict[str, object]:
        return {
            "policy": self.policy.to_dict(),
            "now": self.now,
            "timezone": self.timezone,
            "keep": self.keep,
            "destroy": self.destroy,
            "summary": self.summary(),
            "decisions": [d.to_dict() for d in self.decisions],
        }


def period_key(rule: str, when: float, tz: dt.tzinfo) -> str:
    """The period (hour, day, ISO week, month, year) of ``when`` in ``tz``, as a sortable label."""
    return _PERIOD_FORMATS[rule](dt.datetime.fromtimestamp(when, tz))


def plan(
    points: Iterable[Candidate],
    policy: RetentionPolicy,
    now: float,
    timezone: str | dt.tzinfo = "UTC",
) -> RetentionPlan:
    """Decide, for every point, whether the policy keeps it, and why."""
    tz = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    ordered = sorted(points, key=lambda p: p.order, reverse=True)
    ids = [p.id for p in ordered]
    if len(set(ids)) != len(ids):
        raise InvalidInput("retention: two points have the same id")
    reasons: dict[str, list[str]] = {p.id: [] for p in ordered}
    if policy.keep_all:
        for p in ordered:
            reasons[p.id].append("all")
    for p in ordered[: policy.last]:
        reasons[p.id].append("last")
    for rule in RULES[1:]:
        _mark_periods(ordered, rule, policy.count(rule), tz, reasons)
    for p in ordered:
        if p.pinned:
            reasons[p.id].append("pinned")
        if p.locked(now):
            reasons[p.id].append("locked")
    decisions = tuple(Decision(p.id, p.time, bool(reasons[p.id]), tuple(reasons[p.id])) for p in ordered)
    return RetentionPlan(policy, decisions, now, str(tz))


def _mark_periods(
    newest_first: Sequence[Candidate], rule: str, count: int, tz: dt.tzinfo, reasons: dict[str, list[str]]
) -> None:
    """Keep the newest point of each of the ``count`` most recent periods that have points."""
    seen: set[str] = set()
    for p in newest_first:
        if len(seen) >= count:
            return
        key = period_key(rule, p.time, tz)
        if key not in seen:
            seen.add(key)
            reasons[p.id].append(f"{rule} {key}")


@dataclass(frozen=True)
class PolicyChange:
    """What changing a policy would do to existing points (for the UI's preview)."""

    before: RetentionPlan
    after: RetentionPlan
    newly_removed: list[str] = field(default_factory=list)


def compare(
    points: Sequence[Candidate], old: RetentionPolicy, new: RetentionPolicy, now: float, timezone: str = "UTC"
) -> PolicyChange:
    before = plan(points, old, now, timezone)
    after = plan(points, new, now, timezone)
    removed_before = set(before.destroy)
    return PolicyChange(before, after, [i for i in after.destroy if i not in removed_before])
