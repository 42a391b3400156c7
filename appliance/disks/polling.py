"""SMART polling by ``bulwarkd``: read every disk, keep its verdict and a history sample, raise and clear
alerts; start scheduled short and long self-tests.

A disk is known by its identity (WWN, else serial, else kernel name) so that its history follows it to
another slot. ``warning`` raises a warning alert, ``failing`` a critical one, ``unknown`` an info alert (a
disk that cannot be read is not called healthy); the alert clears when the disk is healthy again. A virtual
disk (virtio) has no SMART to read: its verdict stays ``unknown`` on the page, but it raises no alert.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from appliance import alerts
from appliance.disks import smartctl
from appliance.disks.inventory import Disk
from appliance.disks.smart import SmartReport
from appliance.disks.verdict import Verdict, judge
from appliance.store import Store
from appliance.system.errors import BulwarkError
from appliance.system.runner import Runner

log = logging.getLogger(__name__)

CATEGORY = "disk"
SAMPLE_KEEP_SECONDS = 400 * 86400
POLL_SECONDS = 1800.0
SELFTEST_SETTING = "disks.selftests"
DEFAULT_SELFTESTS = {"short_days": 7, "long_days": 30}
SMART_ALERT = alerts.declare(
    "disk.smart",
    level="warning",
    category=CATEGORY,
    title="Disk health",
    template="disk {disk} ({identity}) is {verdict}: {reasons}",
)
LEVEL_OF = {"warning": "warning", "failing": "critical", "unknown": "info"}
VIRTUAL_KINDS = ("virtio",)  # disks of a virtual machine: smartctl cannot detect a device type there
COUNTER_IDS = (5, 10, 184, 187, 188, 196, 197, 198, 201)


def skip(disk: Disk) -> bool:
    """Devices that have no SMART at all (loop devices are files)."""
    return disk.kind == "loop"


def disk_key(disk: Disk, report: SmartReport | None = None) -> str:
    wwn = disk.wwn or (report.wwn if report else "")
    serial = disk.serial or (report.serial if report else "")
    return f"wwn:{wwn}" if wwn else f"serial:{serial}" if serial else f"name:{disk.name}"


def counters(report: SmartReport) -> dict[str, int]:
    """The numbers drawn as trends: failure-predicting ATA counters, NVMe wear and errors, SCSI defects."""
    out: dict[str, int] = {}
    for attr_id in COUNTER_IDS:
        attr = report.attribute(attr_id)
        if attr is not None:
            first = attr.raw_string.split()[0] if attr.raw_string.split() else ""
            out[str(attr_id)] = int(first) if first.isdigit() else attr.raw
    if report.nvme is not None:
        for name in ("media_errors", "percentage_used", "available_spare", "num_err_log_entries"):
            value = getattr(report.nvme, name)
            if value is not None:
                out[name] = value
    if report.scsi is not None and report.scsi.grown_defects is not None:
        out["grown_defects"] = report.scsi.grown_defects
    return out


@dataclass(frozen=True)
class Reading:
    key: str
    disk: Disk
    report: SmartReport | None
    verdict: Verdict


def read_disk(runner: Runner, disk: Disk) -> Reading:
    try:
        report: SmartReport | None = smartctl.read(runner, disk.node)
    except BulwarkError as exc:
        verdict = Verdict()
        verdict.add("unknown", f"smartctl failed: {exc.message}")
        return Reading(disk_key(disk), disk, None, verdict)
    assert report is not None
    return Reading(disk_key(disk, report), disk, report, judge(report))


def record(store: Store, reading: Reading, *, now: float | None = None) -> None:
    at = time.time() if now is None else now
    disk, report, verdict = reading.disk, reading.report, reading.verdict
    reasons = json.dumps(verdict.sorted_reasons())
    with store.write() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO disk_smart (disk_key, name, node, model, serial, protocol, verdict, reasons, "
            "temperature, power_on_hours, exit_status, report, checked_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                reading.key,
                disk.name,
                disk.node,
                (report.model if report else "") or disk.model,
                (report.serial if report else "") or disk.serial,
                report.protocol if report else "",
                verdict.verdict,
                reasons,
                report.temperature if report else None,
                report.power_on_hours if report else None,
                report.exit_status.value if report else 0,
                json.dumps(report.to_dict() if report else {}),
                at,
            ),
        )
        conn.execute(
            "INSERT OR REPLACE INTO disk_smart_samples (disk_key, at, verdict, temperature, counters) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                reading.key,
                at,
                verdict.verdict,
                report.temperature if report else None,
                json.dumps(counters(report) if report else {}),
            ),
        )
        conn.execute(
            "DELETE FROM disk_smart_samples WHERE disk_key = ? AND at < ?", (reading.key, at - SAMPLE_KEEP_SECONDS)
        )
    alert_key = f"disk:smart:{reading.key}"
    if verdict.verdict == "healthy" or (verdict.verdict == "unknown" and disk.kind in VIRTUAL_KINDS):
        alerts.clear(store, alert_key, now=at)
        return
    identity = " ".join(filter(None, (disk.model, disk.serial))) or reading.key
    alerts.fire(
        store,
        SMART_ALERT,
        alert_key,
        subject=f"disk:{disk.name}",
        level=LEVEL_OF[verdict.verdict],
        now=at,
        disk=disk.name,
        identity=identity,
        verdict=verdict.verdict,
        reasons="; ".join(r.split(": ", 1)[-1] for r in verdict.sorted_reasons()[:3]),
    )


def poll(store: Store, runner: Runner, disks: list[Disk], *, now: float | None = None) -> list[Reading]:
    """Read and record every disk that can have SMART."""
    readings = []
    for disk in disks:
        if skip(disk):
            continue
        reading = read_disk(runner, disk)
        record(store, reading, now=now)
        readings.append(reading)
    return readings


# -- what the pages, API and metrics read ------------------------------------------------------------------


def latest(store: Store) -> list[dict[str, Any]]:
    """The newest reading per kernel name (a disk swapped into the same slot replaces the old one)."""
    rows = store.query("SELECT * FROM disk_smart ORDER BY name, checked_at")
    return list({r["name"]: _row(r) for r in rows}.values())


def latest_for(store: Store, key: str) -> dict[str, Any] | None:
    row = store.query_one(
        "SELECT * FROM disk_smart WHERE disk_key = ? OR name = ? ORDER BY disk_key = ? DESC, checked_at DESC",
        (key, key, key),
    )
    return _row(row) if row is not None else None


def _row(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["reasons"] = json.loads(out["reasons"])
    out["report"] = json.loads(out["report"])
    return out


def samples(store: Store, key: str, since: float) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT at, verdict, temperature, counters FROM disk_smart_samples WHERE disk_key = ? AND at >= ? ORDER BY at",
        (key, since),
    )
    return [{**dict(r), "counters": json.loads(r["counters"])} for r in rows]


# -- scheduled self-tests ----------------------------------------------------------------------------------


def selftest_schedule(store: Store) -> dict[str, int]:
    value = store.get_setting(SELFTEST_SETTING, None)
    return {**DEFAULT_SELFTESTS, **(value if isinstance(value, dict) else {})}


def set_selftest_schedule(store: Store, short_days: int, long_days: int) -> dict[str, int]:
    from appliance.system.errors import InvalidInput

    for name, days in (("short", short_days), ("long", long_days)):
        if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 365:
            raise InvalidInput(f"the {name} self-test interval must be 0 (never) to 365 days, not {days!r}")
    value = {"short_days": short_days, "long_days": long_days}
    store.set_setting(SELFTEST_SETTING, value)
    return value


def start_test(
    store: Store, runner: Runner, disk: Disk, kind: str, *, by: str = "schedule", now: float | None = None
) -> str | None:
    """Start a self-test and remember it; returns the error text when the drive refused."""
    at = time.time() if now is None else now
    error = None
    try:
        report = smartctl.start_self_test(runner, disk.node, kind)
        if report.exit_status.command_failed:
            error = "; ".join(report.messages) or "; ".join(report.exit_status.meanings())
    except BulwarkError as exc:
        error = exc.message
    with store.write() as conn:
        conn.execute(
            "INSERT INTO disk_selftests (disk_key, node, kind, started_at, started_by, error) VALUES (?,?,?,?,?,?)",
            (disk_key(disk), disk.node, kind, at, by, error),
        )
    return error


def due_tests(store: Store, disks: list[Disk], *, now: float | None = None) -> list[tuple[Disk, str]]:
    """The (disk, kind) pairs whose scheduled self-test is due; a long test also counts as a short one."""
    at = time.time() if now is None else now
    schedule = selftest_schedule(store)
    due = []
    for disk in disks:
        if skip(disk) or disk.kind in VIRTUAL_KINDS:  # (a virtual disk has no self-test to run)
            continue
        key = disk_key(disk)
        last = {
            r["kind"]: r["at"]
            for r in store.query(
                "SELECT kind, MAX(started_at) AS at FROM disk_selftests WHERE disk_key = ? GROUP BY kind", (key,)
            )
        }
        long_days, short_days = schedule["long_days"], schedule["short_days"]
        if long_days and at - last.get("long", 0.0) >= long_days * 86400:
            due.append((disk, "long"))
        elif short_days and at - max(last.get("short", 0.0), last.get("long", 0.0)) >= short_days * 86400:
            due.append((disk, "short"))
    return due


def run_due_tests(store: Store, runner: Runner, disks: list[Disk], *, now: float | None = None) -> int:
    started = 0
    for disk, kind in due_tests(store, disks, now=now):
        error = start_test(store, runner, disk, kind, now=now)
        if error:
            log.warning("scheduled %s self-test of %s not started: %s", kind, disk.name, error)
        else:
            started += 1
    return started
