"""Trend charts of a disk's SMART history (temperature, failure-predicting counters), drawn like the capacity
chart (webui/charts.py: server-side SVG, no JavaScript)."""

from __future__ import annotations

import datetime
from typing import Any

from webui.charts import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, LineChart, Tick, _nice_step

LABELS = {
    "temperature": "Temperature (°C)",
    "5": "5 Reallocated sectors",
    "10": "10 Spin retries",
    "184": "184 End-to-end errors",
    "187": "187 Reported uncorrectable",
    "188": "188 Command timeouts",
    "196": "196 Reallocation events",
    "197": "197 Pending sectors",
    "198": "198 Offline uncorrectable",
    "201": "201 Soft read errors",
    "media_errors": "NVMe media errors",
    "percentage_used": "NVMe endurance used (%)",
    "available_spare": "NVMe available spare (%)",
    "num_err_log_entries": "NVMe error log entries",
    "grown_defects": "SCSI grown defects",
}


def series(samples: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Each measured quantity as (time, value) points."""
    out: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        if s.get("temperature") is not None:
            out.setdefault("temperature", []).append((float(s["at"]), float(s["temperature"])))
        for name, value in (s.get("counters") or {}).items():
            out.setdefault(str(name), []).append((float(s["at"]), float(value)))
    return out


def line_chart(points: list[tuple[float, float]], label: str, zone: datetime.tzinfo = datetime.UTC) -> LineChart:
    if len(points) < 2:
        return LineChart(summary=f"{label}: not enough history yet (SMART is read every 30 minutes).")
    t0, t1 = points[0][0], points[-1][0]
    low = min(0.0, min(v for _, v in points))
    high = max(v for _, v in points)
    top_value = high if high > low else low + 1.0
    step = _nice_step(top_value - low)
    top_value = low + step * max(1, -(-(top_value - low) // step))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max(t1 - t0, 1.0)

    def x(t: float) -> float:
        return round(LEFT + plot_w * (t - t0) / span, 1)

    def y(v: float) -> float:
        return round(TOP + plot_h * (1 - (v - low) / (top_value - low)), 1)

    line = [f"{x(t)},{y(v)}" for t, v in points]
    area = line + [f"{x(t1)},{y(low)}", f"{x(t0)},{y(low)}"]
    y_ticks = []
    v = low
    while v <= top_value * 1.0001 + 1e-9:
        y_ticks.append(Tick(y(v), f"{v:g}"))
        v += step
    fmt = "%H:%M" if span <= 2 * 86400 else "%d %b"
    x_ticks = [
        Tick(x(t0 + span * i / 4), datetime.datetime.fromtimestamp(t0 + span * i / 4, zone).strftime(fmt))
        for i in range(5)
    ]
    summary = f"{label}: {points[-1][1]:g} now, {min(v for _, v in points):g}–{high:g} over {len(points)} readings"
    return LineChart(line=" ".join(line), area=" ".join(area), y_ticks=y_ticks, x_ticks=x_ticks, empty=False,
                     summary=summary)  # fmt: skip


def charts(samples: list[dict[str, Any]], zone: datetime.tzinfo = datetime.UTC) -> list[tuple[str, LineChart]]:
    """Temperature always; a counter when it was ever above zero (flat zero lines say nothing)."""
    found = series(samples)
    out = [("temperature", line_chart(found.get("temperature", []), LABELS["temperature"], zone))]
    for name, points in found.items():
        if name != "temperature" and any(v for _, v in points):
            out.append((name, line_chart(points, LABELS.get(name, name), zone)))
    return out
