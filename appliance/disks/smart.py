"""SMART data as ``smartctl -j -x`` reports it (smartmontools JSON format 1.0), parsed into a typed model for
ATA/SATA (also behind SAT and MegaRAID pass-through), NVMe and SCSI/SAS devices.

:func:`parse` is pure and forgiving: fields a device does not report stay ``None``; a document that is not a
smartctl JSON object raises :class:`~appliance.system.errors.UnexpectedOutput`. The exit status is a bitmask
(:class:`ExitStatus`): bits 0–1 say that smartctl itself could not do its work, bits 2–7 are findings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from appliance.system.errors import UnexpectedOutput

# smartctl(8) "RETURN VALUES"
EXIT_BITS = {
    0: "the command line did not parse",
    1: "the device could not be opened, or is in a low-power mode",
    2: "some SMART or other commands to the disk failed, or a SMART data structure has a checksum error",
    3: "SMART status check returned DISK FAILING",
    4: "a pre-failure attribute is at or below its vendor threshold",
    5: "an attribute has been at or below its vendor threshold in the past",
    6: "the device error log contains records of errors",
    7: "the device self-test log contains records of errors",
}


@dataclass(frozen=True)
class ExitStatus:
    value: int

    def bit(self, n: int) -> bool:
        return bool(self.value >> n & 1)

    @property
    def command_failed(self) -> bool:
        """Bits 0–1: smartctl could not read the device at all."""
        return bool(self.value & 0b11)

    def meanings(self) -> list[str]:
        return [text for n, text in EXIT_BITS.items() if self.bit(n)]


@dataclass(frozen=True)
class AtaAttribute:
    id: int
    name: str
    value: int | None
    worst: int | None
    thresh: int | None
    raw: int
    raw_string: str
    prefailure: bool
    when_failed: str  # "", "now" or "past"


@dataclass(frozen=True)
class NvmeHealth:
    critical_warning: int
    temperature: int | None
    available_spare: int | None
    available_spare_threshold: int | None
    percentage_used: int | None
    media_errors: int
    num_err_log_entries: int
    unsafe_shutdowns: int | None
    data_units_written: int | None


@dataclass(frozen=True)
class ScsiHealth:
    grown_defects: int | None
    uncorrected_read: int | None
    uncorrected_write: int | None
    uncorrected_verify: int | None


@dataclass(frozen=True)
class SelfTest:
    kind: str
    status: str
    passed: bool | None
    lifetime_hours: int | None


@dataclass(frozen=True)
class SmartReport:
    """One device's SMART report."""

    name: str
    type: str
    protocol: str  # "ATA", "NVMe", "SCSI" or "" when smartctl could not tell
    model: str
    serial: str
    wwn: str
    firmware: str
    capacity_bytes: int | None
    rotation_rate: int | None  # rpm; 0 = solid state
    smart_available: bool | None
    smart_passed: bool | None
    temperature: int | None
    temperature_trip: int | None
    power_on_hours: int | None
    exit_status: ExitStatus
    messages: list[str] = field(default_factory=list)
    attributes: list[AtaAttribute] = field(default_factory=list)
    nvme: NvmeHealth | None = None
    scsi: ScsiHealth | None = None
    self_tests: list[SelfTest] = field(default_factory=list)
    self_test_running: int | None = None  # percent remaining, when a test is in progress

    def attribute(self, attr_id: int) -> AtaAttribute | None:
        return next((a for a in self.attributes if a.id == attr_id), None)

    @property
    def has_health_data(self) -> bool:
        return self.smart_passed is not None or bool(self.attributes) or self.nvme is not None or self.scsi is not None

    def device_dict(self) -> dict[str, Any]:
        """The identity part, as ``bulwark disk check --json`` prints it."""
        return {
            "name": self.name,
            "type": self.type,
            "protocol": self.protocol,
            "model": self.model,
            "serial": self.serial,
            "wwn": self.wwn,
            "firmware": self.firmware,
            "capacity_bytes": self.capacity_bytes,
            "rotation_rate": self.rotation_rate,
            "temperature": self.temperature,
            "power_on_hours": self.power_on_hours,
            "smartctl_exit_status": self.exit_status.value,
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["exit_status"] = {"value": self.exit_status.value, "meanings": self.exit_status.meanings()}
        return out


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.split()[0]) if value.strip() else None
        except ValueError:
            return None
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _wwn(doc: dict[str, Any]) -> str:
    wwn = _dict(doc.get("wwn"))
    naa, oui, uid = _int(wwn.get("naa")), _int(wwn.get("oui")), _int(wwn.get("id"))
    if naa is not None and oui is not None and uid is not None:
        return f"0x{naa:x}{oui:06x}{uid:09x}"
    if (scsi := _str(doc.get("logical_unit_id"))) != "":
        return scsi
    return ""


def _attributes(doc: dict[str, Any]) -> list[AtaAttribute]:
    table = _dict(doc.get("ata_smart_attributes")).get("table")
    out = []
    for row in table if isinstance(table, list) else []:
        if not isinstance(row, dict) or _int(row.get("id")) is None:
            continue
        raw = _dict(row.get("raw"))
        flags = _dict(row.get("flags"))
        out.append(
            AtaAttribute(
                id=int(row["id"]),
                name=_str(row.get("name")),
                value=_int(row.get("value")),
                worst=_int(row.get("worst")),
                thresh=_int(row.get("thresh")),
                raw=_int(raw.get("value")) or 0,
                raw_string=_str(raw.get("string")),
                prefailure=bool(flags.get("prefailure")),
                when_failed=_str(row.get("when_failed")),
            )
        )
    return out


def _nvme(doc: dict[str, Any]) -> NvmeHealth | None:
    log = doc.get("nvme_smart_health_information_log")
    if not isinstance(log, dict):
        return None
    return NvmeHealth(
        critical_warning=_int(log.get("critical_warning")) or 0,
        temperature=_int(log.get("temperature")),
        available_spare=_int(log.get("available_spare")),
        available_spare_threshold=_int(log.get("available_spare_threshold")),
        percentage_used=_int(log.get("percentage_used")),
        media_errors=_int(log.get("media_errors")) or 0,
        num_err_log_entries=_int(log.get("num_err_log_entries")) or 0,
        unsafe_shutdowns=_int(log.get("unsafe_shutdowns")),
        data_units_written=_int(log.get("data_units_written")),
    )


def _scsi(doc: dict[str, Any]) -> ScsiHealth | None:
    counters = _dict(doc.get("scsi_error_counter_log"))
    grown = _int(doc.get("scsi_grown_defect_list"))
    if grown is None and not counters:
        return None

    def uncorrected(kind: str) -> int | None:
        return _int(_dict(counters.get(kind)).get("total_uncorrected_errors"))

    return ScsiHealth(grown, uncorrected("read"), uncorrected("write"), uncorrected("verify"))


def _self_tests(doc: dict[str, Any]) -> tuple[list[SelfTest], int | None]:
    tests: list[SelfTest] = []
    running = None
    ata = _dict(doc.get("ata_smart_self_test_log"))
    for log_name in ("extended", "standard"):
        table = _dict(ata.get(log_name)).get("table")
        if isinstance(table, list) and table:
            for row in table:
                status = _dict(_dict(row).get("status"))
                passed = status.get("passed")
                tests.append(
                    SelfTest(
                        kind=_str(_dict(row.get("type")).get("string")),
                        status=_str(status.get("string")),
                        passed=passed if isinstance(passed, bool) else None,
                        lifetime_hours=_int(row.get("lifetime_hours")),
                    )
                )
            break
    nvme = _dict(doc.get("nvme_self_test_log"))
    for row in nvme.get("table") or []:
        result = _dict(_dict(row).get("self_test_result"))
        code = _int(result.get("value"))
        tests.append(
            SelfTest(
                kind=_str(_dict(row.get("self_test_code")).get("string")),
                status=_str(result.get("string")),
                passed=None if code is None else code == 0,
                lifetime_hours=_int(row.get("power_on_hours")),
            )
        )
    if _int(_dict(nvme.get("current_self_test_operation")).get("value")):
        running = 100 - (_int(nvme.get("current_self_test_completion_percent")) or 0)
    ata_now = _dict(_dict(_dict(doc.get("ata_smart_data")).get("self_test")).get("status"))
    if (_int(ata_now.get("value")) or 0) >> 4 == 0xF:  # 0xF_: in progress
        running = _int(ata_now.get("remaining_percent"))
    return tests, running


def parse(doc: Any) -> SmartReport:
    """The report in one decoded ``smartctl -j`` document."""
    if not isinstance(doc, dict) or not isinstance(doc.get("smartctl"), dict):
        raise UnexpectedOutput("smartctl", str(doc)[:200])
    meta = doc["smartctl"]
    device = _dict(doc.get("device"))
    messages = [_str(m.get("string")) for m in meta.get("messages") or [] if isinstance(m, dict)]
    status = doc.get("smart_status")
    passed = status.get("passed") if isinstance(status, dict) else None
    temperature = _dict(doc.get("temperature"))
    support = _dict(doc.get("smart_support"))
    nvme = _nvme(doc)
    tests, running = _self_tests(doc)
    capacity = _int(_dict(doc.get("user_capacity")).get("bytes")) or _int(doc.get("nvme_total_capacity"))
    model = _str(doc.get("model_name")) or " ".join(
        filter(
            None,
            (_str(doc.get("scsi_vendor") or doc.get("vendor")), _str(doc.get("scsi_product") or doc.get("product"))),
        )
    )
    return SmartReport(
        name=_str(device.get("name")) or _str(device.get("info_name")),
        type=_str(device.get("type")),
        protocol=_str(device.get("protocol")),
        model=model,
        serial=_str(doc.get("serial_number")),
        wwn=_wwn(doc),
        firmware=_str(doc.get("firmware_version") or doc.get("revision") or doc.get("scsi_revision")),
        capacity_bytes=capacity,
        rotation_rate=_int(doc.get("rotation_rate")) if "rotation_rate" in doc else (0 if nvme else None),
        smart_available=support.get("available") if isinstance(support.get("available"), bool) else None,
        smart_passed=passed if isinstance(passed, bool) else None,
        temperature=_int(temperature.get("current")),
        temperature_trip=_int(temperature.get("drive_trip")) or _int(temperature.get("op_limit_max")),
        power_on_hours=_int(_dict(doc.get("power_on_time")).get("hours")),
        exit_status=ExitStatus(_int(meta.get("exit_status")) or 0),
        messages=[m for m in messages if m],
        attributes=_attributes(doc),
        nvme=nvme,
        scsi=_scsi(doc),
        self_tests=tests,
        self_test_running=running,
    )


def parse_text(text: str | bytes, exit_status: int | None = None) -> SmartReport:
    """Decode smartctl's JSON output; ``exit_status`` (the process's) wins over the one in the document."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnexpectedOutput("smartctl", (text[:200] if text else "(nothing)")) from exc
    report = parse(doc)
    if exit_status is not None and exit_status != report.exit_status.value:
        report = replace(report, exit_status=ExitStatus(exit_status))
    return report
