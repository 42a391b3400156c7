"""A SMART verdict — ``healthy``, ``warning``, ``failing`` or ``unknown`` — with reasons a person can act on.

Sources, in order: whether smartctl could read the device at all (exit bits 0–1, no health data: ``unknown``,
never ``healthy``); the drive's own overall self-assessment; the other exit-status bits; the ATA attributes
that predict failure in large fleets; NVMe's critical warning, media errors, spare and wear; SCSI grown
defects and uncorrected errors; the self-test log; temperature. Thresholds and their origin: docs/disks.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.disks.smart import SmartReport

VERDICTS = ("healthy", "warning", "failing", "unknown")
_RANK = {"healthy": 0, "unknown": 1, "warning": 2, "failing": 3}


@dataclass(frozen=True)
class AttributeRule:
    """An ATA attribute whose raw count predicts failure: warn above ``warn``, fail at ``fail`` or more."""

    id: int
    label: str
    warn: int
    fail: int | None
    mask: int = 0xFFFFFFFFFFFF


# Backblaze's drive stats (hundreds of thousands of drives): a raw value above zero for 5, 187, 188, 197 or
# 198 is seen on most drives that failed and on few that did not, and the annual failure rate climbs with the
# count; 10, 184, 196 and 201 are rarer but also raised on failed drives. Thresholds in docs/disks.md.
ATTRIBUTE_RULES = (
    AttributeRule(5, "reallocated sectors", 0, 100),
    AttributeRule(10, "spin-up retries", 0, None),
    AttributeRule(184, "end-to-end (cache to media) errors", 0, 1),
    AttributeRule(187, "uncorrectable errors reported to the host", 0, 50),
    AttributeRule(188, "command timeouts", 5, None, mask=0xFFFF),
    AttributeRule(196, "reallocation events", 0, None),
    AttributeRule(197, "sectors pending reallocation", 0, 20),
    AttributeRule(198, "sectors uncorrectable offline", 0, 20),
    AttributeRule(201, "soft read errors", 0, None),
)

NVME_WARNINGS = {
    0: ("failing", "available spare is below the vendor's threshold"),
    1: ("warning", "temperature is outside the drive's limits"),
    2: ("failing", "reliability is degraded by media or internal errors"),
    3: ("failing", "media is in read-only mode"),
    4: ("failing", "the volatile memory backup device has failed"),
    5: ("failing", "the persistent memory region is read-only"),
}

# Drive-agnostic temperature limits when the drive names no trip point (°C): (warning, failing).
HDD_TEMPERATURE = (50, 60)
SSD_TEMPERATURE = (70, 80)
NVME_WEAR = (90, 100)  # percentage_used


@dataclass
class Verdict:
    verdict: str = "healthy"
    reasons: list[str] = field(default_factory=list)

    def add(self, level: str, reason: str) -> None:
        if _RANK[level] > _RANK[self.verdict]:
            self.verdict = level
        self.reasons.append(f"{level}: {reason}")

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reasons": self.sorted_reasons()}

    def sorted_reasons(self) -> list[str]:
        """The worst first, otherwise in the order found."""
        return sorted(self.reasons, key=lambda r: -_RANK.get(r.split(":", 1)[0], 0))


def judge(report: SmartReport) -> Verdict:
    """The verdict on one report (pure)."""
    v = Verdict()
    bits = report.exit_status
    if bits.command_failed or not report.has_health_data:
        detail = "; ".join(report.messages) or "; ".join(bits.meanings()) or "smartctl returned no health data"
        v.add("unknown", f"SMART data could not be read ({detail})")
        if report.smart_available is False:
            v.add("unknown", "the device does not support SMART")
        return v
    if report.smart_passed is False or bits.bit(3):
        v.add("failing", "the drive's overall self-assessment is FAILED: back up and replace it")
    _exit_bits(v, report)
    _ata(v, report)
    _nvme(v, report)
    _scsi(v, report)
    _self_tests(v, report)
    _temperature(v, report)
    return v


def _exit_bits(v: Verdict, report: SmartReport) -> None:
    bits = report.exit_status
    if bits.bit(2):
        v.add("warning", "some SMART commands failed or returned a bad checksum, so this report may be incomplete")
    if bits.bit(4):
        failed = [f"{a.id} {a.name}" for a in report.attributes if a.when_failed == "now"]
        names = f" ({', '.join(failed)})" if failed else ""
        v.add("failing", f"a pre-failure attribute is at or below its vendor threshold now{names}")
    if bits.bit(5):
        past = [f"{a.id} {a.name}" for a in report.attributes if a.when_failed == "past"]
        names = f" ({', '.join(past)})" if past else ""
        v.add("warning", f"an attribute was at or below its vendor threshold in the past{names}")
    if bits.bit(6):
        v.add("warning", "the device error log has recorded errors")
    if bits.bit(7) and not any(t.passed is False for t in report.self_tests):
        v.add("warning", "the self-test log has recorded errors")


def _ata(v: Verdict, report: SmartReport) -> None:
    for rule in ATTRIBUTE_RULES:
        attr = report.attribute(rule.id)
        if attr is None:
            continue
        count = _count(attr.raw_string, attr.raw & rule.mask)
        if rule.fail is not None and count >= rule.fail:
            v.add("failing", f"attribute {rule.id} {attr.name}: {count} {rule.label} (failing at {rule.fail})")
        elif count > rule.warn:
            v.add("warning", f"attribute {rule.id} {attr.name}: {count} {rule.label}")
    if not report.exit_status.bit(4):
        for attr in report.attributes:
            if attr.when_failed == "now" and attr.prefailure:
                v.add("failing", f"attribute {attr.id} {attr.name} is at or below its vendor threshold")


def _count(raw_string: str, fallback: int) -> int:
    """The count smartctl decoded (the first number of the raw string: vendors pack other fields after it)."""
    first = raw_string.split()[0] if raw_string.split() else ""
    return int(first) if first.isdigit() else fallback


def _nvme(v: Verdict, report: SmartReport) -> None:
    nvme = report.nvme
    if nvme is None:
        return
    for bit, (level, text) in NVME_WARNINGS.items():
        if nvme.critical_warning >> bit & 1:
            v.add(level, f"critical warning: {text}")
    if nvme.media_errors:
        v.add("warning", f"{nvme.media_errors} media and data integrity errors (unrecovered reads or writes)")
    spare, threshold = nvme.available_spare, nvme.available_spare_threshold
    if spare is not None and threshold is not None and not nvme.critical_warning & 1:
        if spare <= threshold:
            v.add("failing", f"available spare {spare}% is at or below its threshold {threshold}%")
        elif spare <= threshold + 10:
            v.add("warning", f"available spare {spare}% is close to its threshold {threshold}%")
    used = nvme.percentage_used
    if used is not None:
        if used >= NVME_WEAR[1]:
            v.add("failing", f"{used}% of the rated endurance is used: replace the drive")
        elif used >= NVME_WEAR[0]:
            v.add("warning", f"{used}% of the rated endurance is used: plan its replacement")


def _scsi(v: Verdict, report: SmartReport) -> None:
    scsi = report.scsi
    if scsi is None:
        return
    if scsi.grown_defects:
        level = "failing" if scsi.grown_defects >= 100 else "warning"
        v.add(level, f"{scsi.grown_defects} grown defects (blocks remapped since manufacture)")
    for kind in ("read", "write", "verify"):
        count = getattr(scsi, f"uncorrected_{kind}")
        if count:
            v.add("warning", f"{count} uncorrected {kind} errors")


def _self_tests(v: Verdict, report: SmartReport) -> None:
    tests = [t for t in report.self_tests if t.passed is not None]
    if not tests:
        return
    newest = tests[0]  # smartctl lists the most recent test first
    if newest.passed is False:
        v.add("failing", f"the most recent self-test ({newest.kind}) failed: {newest.status}")
        return
    failed = [t for t in tests if t.passed is False]
    if failed:
        when = f" at {failed[0].lifetime_hours} power-on hours" if failed[0].lifetime_hours is not None else ""
        v.add("warning", f"an earlier self-test ({failed[0].kind}) failed{when}: {failed[0].status}")


def _temperature(v: Verdict, report: SmartReport) -> None:
    temp = report.temperature
    if temp is None:
        return
    if report.temperature_trip:
        warn, fail = report.temperature_trip - 5, report.temperature_trip
    else:
        warn, fail = HDD_TEMPERATURE if report.rotation_rate else SSD_TEMPERATURE
    if temp >= fail:
        v.add("failing", f"temperature {temp} °C is at or above {fail} °C: check cooling and airflow")
    elif temp >= warn:
        v.add("warning", f"temperature {temp} °C is at or above {warn} °C: check cooling and airflow")
