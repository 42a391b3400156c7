"""Storage used over time as an SVG line chart, drawn here so that the same picture goes into the web page,
the printable HTML file and the e-mail (presentation attributes only: no script, no inline style)."""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from appliance.zfs import units

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 70, 12, 12, 28


def _step(span: float, target: int = 4) -> float:
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


def usage_svg(samples: list[dict[str, Any]], start: float, end: float, tz: dt.tzinfo, title: str) -> str:
    """An accessible SVG: the used bytes of ``samples`` between ``start`` and ``end``."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_value = float(max([s["used_bytes"] for s in samples] + [1]))
    unit = 1.0
    while top_value / unit >= 1024:  # steps of whole KiB, MiB, GiB…: labels stay round
        unit *= 1024
    step = _step(top_value / unit) * unit
    top_value = step * max(1, -(-top_value // step))
    span = max(end - start, 1.0)

    def x(t: float) -> float:
        return round(LEFT + plot_w * (t - start) / span, 1)

    def y(v: float) -> float:
        return round(TOP + plot_h * (1 - v / top_value), 1)

    head = (
        f'<svg class="usage-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">'
    )
    parts = [head, f"<title>{escape(title)}</title>"]
    v = 0.0
    while v <= top_value * 1.0001:
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v)}" y2="{y(v)}" stroke="#d0d7de" '
                     'stroke-width="1"/>')  # fmt: skip
        parts.append(f'<text x="{LEFT - 6}" y="{y(v) + 4}" text-anchor="end" font-size="11" fill="#57606a">'
                     f"{escape(units.format_size(int(v)))}</text>")  # fmt: skip
        v += step
    fmt = "%H:%M" if span <= 2 * 86400 else "%d %b"
    for i in range(5):
        t = start + span * i / 4
        label = dt.datetime.fromtimestamp(t, tz).strftime(fmt)
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{x(t)}" y="{HEIGHT - 8}" text-anchor="{anchor}" font-size="11" fill="#57606a">'
                     f"{escape(label)}</text>")  # fmt: skip
    inside = [s for s in samples if start <= s["at"] <= end]
    if len(inside) >= 2:
        line = " ".join(f"{x(s['at'])},{y(s['used_bytes'])}" for s in inside)
        area = f"{line} {x(inside[-1]['at'])},{y(0)} {x(inside[0]['at'])},{y(0)}"
        parts.append(f'<polygon points="{area}" fill="#0969da" fill-opacity="0.15"/>')
        parts.append(f'<polyline points="{line}" fill="none" stroke="#0969da" stroke-width="2"/>')
    elif len(inside) == 1:
        s = inside[0]
        parts.append(f'<circle cx="{x(s["at"])}" cy="{y(s["used_bytes"])}" r="3" fill="#0969da"/>')
    parts.append("</svg>")
    return "\n".join(parts)
