"""The pure pieces of the client pages: the recovery-point timeline (SVG data), the RPO traffic light, quota
text, and download names that cannot break the Content-Disposition header."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest

from appliance.clients import rpo
from appliance.clients.model import Client, ClientSettings
from appliance.clients.overview import ClientOverview
from appliance.clients.points import RecoveryPoint
from appliance.clients.scheduler import ScheduleStatus
from webui.client_common import attachment, is_utf8, quota_text, rpo_light, shown
from webui.timeline import LEFT, RIGHT, SOURCE_COLOURS, WIDTH, timeline_chart

NOW = 1_795_000_000.0  # 2026-11-18
BERLIN = ZoneInfo("Europe/Berlin")


def point(age: float, area: str = "share", source: str = "manual", **extra: object) -> RecoveryPoint:
    values: dict[str, object] = {
        "client": "acme",
        "area": area,
        "snapshot": f"tank/clients/acme/{area}@bw-{int(NOW - age)}-{source}",
        "created_at": NOW - age,
        "used_bytes": 1024,
        "referenced_bytes": 4096,
        "source": source,
        "created_by": "test",
        "job_id": None,
        "pinned": False,
        "locked_until": None,
        "verified": "unverified",
        "holds": 0,
        "seq": 0,
    }
    values.update(extra)
    return RecoveryPoint(**values)  # type: ignore[arg-type]


def test_empty_timeline() -> None:
    chart = timeline_chart([], BERLIN, NOW)
    assert chart.empty and chart.marks == [] and chart.summary == "No recovery points yet."


def test_marks_lanes_and_flags() -> None:
    points = [
        point(60, source="schedule"),
        point(3600, area="files", source="agent", pinned=True),
        point(7200, area="images/0", source="agent", locked_until=NOW + 60),
        point(86400, source="manual", verified="failed", locked_until=NOW - 1),
        point(2 * 86400, area="share", source="external"),
    ]
    chart = timeline_chart(points, BERLIN, NOW)
    assert not chart.empty
    assert [lane.label for lane in chart.lanes] == ["share", "files", "images/0"]  # share and files first
    assert len(chart.marks) == 5
    by_anchor = {m.anchor: m for m in chart.marks}
    assert chart.marks[-1].anchor == "point-0"  # the newest is drawn last, on top
    assert by_anchor["point-0"].colour == SOURCE_COLOURS["schedule"]
    assert by_anchor["point-1"].pinned and not by_anchor["point-1"].locked
    assert by_anchor["point-2"].locked and by_anchor["point-3"].failed and not by_anchor["point-3"].locked
    lanes = {lane.label: lane.y for lane in chart.lanes}
    assert by_anchor["point-2"].y == lanes["images/0"] and by_anchor["point-4"].y == lanes["share"]
    xs = [by_anchor[f"point-{i}"].x for i in range(5)]
    assert xs == sorted(xs, reverse=True)  # newer is further right
    assert all(LEFT <= x <= WIDTH - RIGHT for x in xs)
    assert "locked until" in by_anchor["point-2"].title and "verification failed" in by_anchor["point-3"].title
    assert by_anchor["point-1"].title.startswith(
        datetime.datetime.fromtimestamp(NOW - 3600, BERLIN).strftime("%Y-%m-%d %H:%M:%S")
    )
    assert [item.label for item in chart.legend] == [
        "scheduled",
        "taken by hand",
        "agent backup",
        "not taken by Bulwark",
    ]
    assert chart.summary.startswith("5 recovery points from ") and "(1 pinned, 1 locked)" in chart.summary
    assert len(chart.ticks) == 5 and chart.ticks[0].x < chart.ticks[-1].x


def test_points_seconds_apart_stay_apart() -> None:
    chart = timeline_chart([point(2), point(5), point(8)], BERLIN, NOW)
    xs = sorted(m.x for m in chart.marks)
    assert xs[1] - xs[0] > 20 and xs[2] - xs[1] > 20  # the axis spans at least a minute
    assert all(len(t.label) == 8 for t in chart.ticks)  # HH:MM:SS


@pytest.mark.parametrize(
    ("age", "fmt_len"),
    [(3 * 3600, 5), (30 * 86400, 6), (400 * 86400, 8)],  # "14:05", "18 Nov", "Nov 2026"
)
def test_tick_labels_follow_the_span(age: float, fmt_len: int) -> None:
    chart = timeline_chart([point(age), point(0)], BERLIN, NOW)
    assert {len(t.label) for t in chart.ticks} == {fmt_len}


def client(rpo_seconds: int = 3600, *, state: str = "active", created_ago: float = 60.0) -> Client:
    settings = ClientSettings(kind="smb", rpo=rpo_seconds)
    return Client("acme", "0" * 36, "tank/clients/acme", state, settings, NOW - created_ago, NOW)


def overview_of(c: Client, points: list[RecoveryPoint], *, error: dict[str, object] | None = None) -> ClientOverview:
    status = ScheduleStatus("acme", "off", None, None, None, None)
    if error is not None:
        return ClientOverview(c, status, None, None, None, None, error)
    return ClientOverview(c, status, None, len(points), points[0] if points else None, rpo.evaluate(c, points, NOW))


@pytest.mark.parametrize(
    ("points", "created_ago", "colour", "label"),
    [
        ([point(600)], 60.0, "ok", "ok"),
        ([point(3000)], 60.0, "warn", "due soon"),  # past 75% of the hour
        ([point(4000)], 60.0, "bad", "stale"),
        ([], 60.0, "warn", "no point yet"),
        ([], 7200.0, "bad", "stale"),
        ([point(60, verified="failed")], 7200.0, "bad", "stale"),  # a failed point is not a good one
    ],
)
def test_rpo_light(points: list[RecoveryPoint], created_ago: float, colour: str, label: str) -> None:
    light = rpo_light(overview_of(client(created_ago=created_ago), points))
    assert (light.colour, light.label) == (colour, label)
    assert light.target == 3600 and "target 1h" in light.text


def test_rpo_light_of_removed_and_unreadable_clients() -> None:
    assert rpo_light(overview_of(client(state="removed"), [])).colour == ""
    light = rpo_light(overview_of(client(), [], error={"message": "pool is gone"}))
    assert (light.colour, light.label) == ("bad", "unknown") and "pool is gone" in light.text


@pytest.mark.parametrize(
    ("quota", "text"),
    [(None, "none"), (1024**3, "1G"), (1536 * 1024**2, "1536M"), (5 * 1024**4, "5T"), (100_000_001, "100000001")],
)
def test_quota_text(quota: int | None, text: str) -> None:
    assert quota_text(quota) == text


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("report.pdf", "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"),
        (
            'a"b\r\nX-Evil: 1.txt',
            "attachment; filename=\"a_b__X-Evil_ 1.txt\"; filename*=UTF-8''a%22b%0D%0AX-Evil%3A%201.txt",
        ),
        (
            "Käse ünd ß.txt",
            "attachment; filename=\"K_se _nd _.txt\"; filename*=UTF-8''K%C3%A4se%20%C3%BCnd%20%C3%9F.txt",
        ),
        ("..", "attachment; filename=\"download\"; filename*=UTF-8''.."),
        ("raw\udcff.bin", "attachment; filename=\"raw_.bin\"; filename*=UTF-8''raw%EF%BF%BD.bin"),
    ],
)
def test_download_names_cannot_break_the_header(name: str, header: str) -> None:
    value = attachment(name)
    assert value == header
    assert "\r" not in value and "\n" not in value and value.isascii()


def test_names_that_are_not_utf8() -> None:
    assert is_utf8("plain.txt") and not is_utf8("bad\udcff")
    assert shown("bad\udcff") == "bad\ufffd"
