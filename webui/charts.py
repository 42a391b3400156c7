"""Charts drawn on the server as SVG (no JavaScript, no external library, works offline)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from appliance.zfs import units

WIDTH, HEIGHT = 640.0, 200.0
LEFT, RIGHT, TOP, BOTTOM = 64.0, 12.0, 12.0, 28.0


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True)
class LineChart:
    width: float = WIDTH
    height: float = HEIGHT
    line: str = ""  # SVG polyline points of the used space
    area: str = ""  # the same, closed to the baseline, for a filled area
    limit_y: float | None = None  # the pool size, drawn as a dashed line
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    empty: bool = True
    summary: str = ""
    left: float = LEFT
    right_edge: float = WIDTH - RIGHT
    bottom: float = HEIGHT - BOTTOM
    top: float = TOP


def _nice_step(span: float, target: int = 4) -> float:
    raw = span / target if span > 0 else 1.0
    magnitude = 1.0
    while magnitude * 10 <= raw:
        magnitude *= 10
    while magnitude > raw:
        magnitude /= 10
    for mult in (1, 2, 2.5, 5, 10):
        if magnitude * mult >= raw:
            return magnitude * mult
    return magnitude * 10


def capacity_chart(samples: list[dict[str, Any]], zone: datetime.tzinfo = datetime.UTC) -> LineChart:
    """Used space over time, with the pool size as the ceiling."""
    if len(samples) < 2:
        return LineChart(summary="Not enough history yet: capacity is sampled every 5 minutes.")
    t0, t1 = float(samples[0]["at"]), float(samples[-1]["at"])
    size = max(s["size_bytes"] for s in samples)
    top_value = float(max(size, max(s["alloc_bytes"] for s in samples)) or 1)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    span = max(t1 - t0, 1.0)

    def x(t: float) -> float:
        return round(LEFT + plot_w * (t - t0) / span, 1)

    def y(v: float) -> float:
        return round(TOP + plot_h * (1 - v / top_value), 1)

    points = [f"{x(s['at'])},{y(s['alloc_bytes'])}" for s in samples]
    area = points + [f"{x(t1)},{y(0)}", f"{x(t0)},{y(0)}"]
    step = _nice_step(top_value)
    y_ticks = []
    v = 0.0
    while v <= top_value * 1.0001:
        y_ticks.append(Tick(y(v), units.format_size(int(v))))
        v += step
    fmt = "%H:%M" if span <= 2 * 86400 else "%d %b"
    x_ticks = [
        Tick(x(t0 + span * i / 4), datetime.datetime.fromtimestamp(t0 + span * i / 4, zone).strftime(fmt))
        for i in range(5)
    ]
    last = samples[-1]
    summary = (
        f"{units.format_size(last['alloc_bytes'])} used of {units.format_size(last['size_bytes'])}; "
        f"{len(samples)} samples since {datetime.datetime.fromtimestamp(t0, zone).strftime('%Y-%m-%d %H:%M')}"
    )
    return LineChart(
        line=" ".join(points),
        area=" ".join(area),
        limit_y=y(size),
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        empty=False,
        summary=summary,
    )
