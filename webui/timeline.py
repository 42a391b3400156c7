"""A client's recovery points on a time axis, drawn on the server as SVG (like :mod:`webui.charts`).

One lane per dataset (``share``, ``files``, ``images/0``), one mark per point, coloured by the point's source;
a ring marks a pinned point, a small square above the mark a point whose immutability lock has not expired,
and a red outline a point whose verification failed. Each mark links to the point's row in the table below
the chart (``#point-<n>``, n its index in the newest-first list) and carries a tooltip (an SVG ``<title>``).
Colours are SVG presentation attributes, so the page's Content-Security-Policy (no inline styles) holds.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field

from appliance.clients.points import RecoveryPoint
from appliance.zfs import units

WIDTH = 640.0
LEFT, RIGHT, TOP, BOTTOM = 72.0, 16.0, 14.0, 26.0
LANE = 30.0
MIN_SPAN = 60.0  # seconds shown at least, so points a few seconds apart stay apart
SOURCE_COLOURS = {
    "schedule": "#1f5fa8",
    "manual": "#7b3fa0",
    "smb": "#1f7a3a",
    "agent": "#b35900",
    "external": "#6b6b6b",
}
SOURCE_NAMES = {
    "schedule": "scheduled",
    "manual": "taken by hand",
    "smb": "SMB trigger",
    "agent": "agent backup",
    "external": "not taken by Bulwark",
}


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    colour: str
    anchor: str  # id of the point's table row
    title: str
    pinned: bool
    locked: bool
    failed: bool


@dataclass(frozen=True)
class Lane:
    y: float
    label: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class LegendItem:
    colour: str
    label: str


@dataclass(frozen=True)
class Timeline:
    width: float = WIDTH
    height: float = TOP + LANE + BOTTOM
    left: float = LEFT
    right_edge: float = WIDTH - RIGHT
    axis_y: float = TOP + LANE
    lanes: list[Lane] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    legend: list[LegendItem] = field(default_factory=list)
    empty: bool = True
    summary: str = ""


def _tick_format(span: float) -> str:
    if span <= 600:
        return "%H:%M:%S"
    if span <= 2 * 86400:
        return "%H:%M"
    if span <= 120 * 86400:
        return "%d %b"
    return "%b %Y"


def _title(p: RecoveryPoint, zone: datetime.tzinfo, now: float) -> str:
    when = datetime.datetime.fromtimestamp(p.created_at, zone).strftime("%Y-%m-%d %H:%M:%S")
    parts = [when, p.area, SOURCE_NAMES.get(p.source, p.source), f"{units.format_size(p.used_bytes)} used"]
    if p.pinned:
        parts.append("pinned")
    if p.locked(now) and p.locked_until is not None:
        until = datetime.datetime.fromtimestamp(p.locked_until, zone).strftime("%Y-%m-%d %H:%M")
        parts.append(f"locked until {until}")
    if p.verified != "unverified":
        parts.append(f"verification {p.verified}")
    return " · ".join(parts)


def timeline_chart(points: Sequence[RecoveryPoint], zone: datetime.tzinfo, now: float) -> Timeline:
    """The timeline of ``points`` (newest first, as :func:`appliance.clients.points.list_points` gives them),
    its axis ending at ``now``, times shown in ``zone``."""
    if not points:
        return Timeline(summary="No recovery points yet.")
    areas = sorted({p.area for p in points}, key=lambda a: (a != "share", a != "files", a))
    lane_y = {area: TOP + LANE * i + LANE / 2 for i, area in enumerate(areas)}
    height = TOP + LANE * len(areas) + BOTTOM
    oldest = min(p.created_at for p in points)
    end = max(now, max(p.created_at for p in points))
    span = max(end - oldest, MIN_SPAN)
    start = end - span
    pad = span * 0.03
    start, end = start - pad, end + pad
    left = max(LEFT, 16 + 7.5 * max(len(a) for a in areas))  # room for the longest lane label (images/NAME)
    plot_w = WIDTH - left - RIGHT

    def x(t: float) -> float:
        return round(left + plot_w * (t - start) / (end - start), 1)

    marks = [
        Mark(
            x=x(p.created_at),
            y=lane_y[p.area],
            colour=SOURCE_COLOURS.get(p.source, SOURCE_COLOURS["external"]),
            anchor=f"point-{i}",
            title=_title(p, zone, now),
            pinned=p.pinned,
            locked=p.locked(now),
            failed=p.verified == "failed",
        )
        for i, p in enumerate(points)
    ]
    marks.reverse()  # the newest drawn last, on top
    fmt = _tick_format(span)
    at = [start + pad + span * i / 4 for i in range(5)]
    ticks = [Tick(x(t), datetime.datetime.fromtimestamp(t, zone).strftime(fmt)) for t in at]
    sources = sorted({p.source for p in points}, key=list(SOURCE_COLOURS).index)
    legend = [LegendItem(SOURCE_COLOURS[s], SOURCE_NAMES[s]) for s in sources]
    first = datetime.datetime.fromtimestamp(oldest, zone).strftime("%Y-%m-%d %H:%M")
    last = datetime.datetime.fromtimestamp(max(p.created_at for p in points), zone).strftime("%Y-%m-%d %H:%M")
    count = len(points)
    summary = f"{count} recovery point{'s' if count != 1 else ''} from {first} to {last}"
    pinned = sum(p.pinned for p in points)
    locked = sum(p.locked(now) for p in points)
    if pinned or locked:
        summary += f" ({pinned} pinned, {locked} locked)"
    return Timeline(
        left=left,
        height=height,
        axis_y=TOP + LANE * len(areas),
        lanes=[Lane(lane_y[a], a) for a in areas],
        marks=marks,
        ticks=ticks,
        legend=legend,
        empty=False,
        summary=summary,
    )
