"""SMART: parsing and verdicts on recorded outputs of real drives (tests/data/smart/README.md), through a
replaying ``smartctl`` placed first on the runner's PATH, and ``bulwark disk check`` on saved outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.disks import smart, smartctl
from appliance.disks.verdict import judge
from appliance.system.errors import InvalidInput, UnexpectedOutput
from appliance.system.runner import local_runner
from tests.unit.disks.conftest import DATA, Replay

# file -> (verdict, substrings that must appear among the reasons)
EXPECTED = {
    "ata_wdc_wd140edfz_healthy.json": ("healthy", []),
    "ata_samsung_860evo_healthy.json": ("healthy", []),
    "ata_hitachi_hds721050dle630_failing.json": (
        "failing",
        ["self-assessment is FAILED", "1975 reallocated sectors", "8 sectors pending", "read failure", "error log"],
    ),
    "sat_seagate_reallocation_events_warning.json": ("warning", ["2111 reallocation events"]),
    "megaraid_wd4000fyyx_partial_warning.json": ("warning", ["may be incomplete"]),
    "nvme_samsung_970evo_media_errors_warning.json": ("warning", ["7 media and data integrity errors"]),
    "scsi_seagate_st1200mm0088_healthy.json": ("healthy", []),
    "open_failed_unknown.json": ("unknown", ["Open failed"]),
}


def test_every_recording_has_an_expectation() -> None:
    assert sorted(p.name for p in DATA.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict_on_recording(name: str) -> None:
    report = smart.parse(json.loads((DATA / name).read_text()))
    verdict = judge(report)
    expected, reasons = EXPECTED[name]
    assert verdict.verdict == expected, verdict.reasons
    text = " | ".join(verdict.reasons)
    for part in reasons:
        assert part in text
    if expected == "healthy":
        assert verdict.reasons == []
    else:
        assert verdict.reasons and all(r.split(":")[0] in ("warning", "failing", "unknown") for r in verdict.reasons)


def test_typed_models_per_protocol() -> None:
    ata = smart.parse(json.loads((DATA / "ata_hitachi_hds721050dle630_failing.json").read_text()))
    assert ata.protocol == "ATA" and ata.model == "Hitachi HDS721050DLE630"
    assert ata.wwn == "0x5000cca37fca81a8" and ata.smart_passed is False
    realloc = ata.attribute(5)
    assert realloc is not None and realloc.raw == 1975 and realloc.when_failed == "now" and realloc.prefailure
    assert any(t.passed is False and "read failure" in t.status for t in ata.self_tests)
    nvme = smart.parse(json.loads((DATA / "nvme_samsung_970evo_media_errors_warning.json").read_text()))
    assert nvme.nvme is not None and nvme.nvme.media_errors == 7 and nvme.nvme.available_spare_threshold == 10
    assert nvme.rotation_rate == 0 and nvme.capacity_bytes == 500107862016
    scsi = smart.parse(json.loads((DATA / "scsi_seagate_st1200mm0088_healthy.json").read_text()))
    assert scsi.scsi is not None and scsi.scsi.grown_defects == 0 and scsi.scsi.uncorrected_read == 0
    assert scsi.model == "SEAGATE ST1200MM0088" and scsi.rotation_rate == 10500 and scsi.temperature_trip == 60
    running = smart.parse(json.loads((DATA / "ata_wdc_wd140edfz_healthy.json").read_text()))
    assert running.self_test_running == 10


def test_exit_status_is_a_bitmask() -> None:
    status = smart.ExitStatus(216)  # the failing Hitachi: bits 3, 4, 6, 7
    assert [n for n in range(8) if status.bit(n)] == [3, 4, 6, 7]
    assert not status.command_failed
    assert smart.ExitStatus(2).command_failed and smart.ExitStatus(1).command_failed
    assert not smart.ExitStatus(4).command_failed
    assert "DISK FAILING" in " ".join(status.meanings())


def test_unreadable_is_unknown_never_healthy() -> None:
    doc = json.loads((DATA / "ata_samsung_860evo_healthy.json").read_text())
    doc["smartctl"]["exit_status"] = 2  # same data, but smartctl says the device could not be opened
    assert judge(smart.parse(doc)).verdict == "unknown"
    bare = {"smartctl": {"exit_status": 0}, "device": {"name": "/dev/sdz"}}
    assert judge(smart.parse(bare)).verdict == "unknown"


def test_nvme_thresholds() -> None:
    doc = json.loads((DATA / "nvme_samsung_970evo_media_errors_warning.json").read_text())
    log = doc["nvme_smart_health_information_log"]
    log.update(media_errors=0, available_spare=9, percentage_used=100, critical_warning=0b100)
    reasons = " | ".join(judge(smart.parse(doc)).reasons)
    assert judge(smart.parse(doc)).verdict == "failing"
    assert "reliability is degraded" in reasons and "spare 9%" in reasons and "100% of the rated endurance" in reasons


def test_read_through_the_runner(replay: Replay) -> None:
    log = replay("ata_hitachi_hds721050dle630_failing.json")
    report = smartctl.read(local_runner(), "/dev/sdc")
    assert report.exit_status.value == 216 and judge(report).verdict == "failing"
    assert log.read_text().split() == ["-j", "-x", "/dev/sdc"]
    smartctl.read(local_runner(), "/dev/sda", "sat+megaraid,0")
    assert log.read_text().splitlines()[1].split() == ["-j", "-x", "-d", "sat+megaraid,0", "/dev/sda"]


def test_process_exit_status_wins(replay: Replay) -> None:
    replay("ata_samsung_860evo_healthy.json", status=8)  # the drive now says DISK FAILING
    verdict = judge(smartctl.read(local_runner(), "/dev/sda"))
    assert verdict.verdict == "failing" and "FAILED" in verdict.reasons[0]
    replay("ata_samsung_860evo_healthy.json", status=2)
    assert judge(smartctl.read(local_runner(), "/dev/sda")).verdict == "unknown"


def test_bad_input_runs_nothing(replay: Replay) -> None:
    log = replay("ata_samsung_860evo_healthy.json")
    for bad in ("/dev/../etc/shadow", "sda", "/dev/sda\n-t long", "/dev/sda;rm", "/dev/sda\n", ""):
        with pytest.raises(InvalidInput):
            smartctl.read(local_runner(), bad)
    with pytest.raises(InvalidInput):
        smartctl.read(local_runner(), "/dev/sda", "sat -t long")
    with pytest.raises(InvalidInput):
        smartctl.start_self_test(local_runner(), "/dev/sda", "offline")
    assert not log.exists()


def test_garbage_output_is_unexpected(replay: Replay, tmp_path: Path) -> None:
    replay("ata_samsung_860evo_healthy.json")
    (tmp_path / "bin" / "replay.json").write_text("Smartctl: not JSON\n")
    with pytest.raises(UnexpectedOutput):
        smartctl.read(local_runner(), "/dev/sda")


def test_self_test_start(replay: Replay) -> None:
    log = replay("ata_wdc_wd140edfz_healthy.json")
    smartctl.start_self_test(local_runner(), "/dev/sdb", "long")
    assert log.read_text().split() == ["-j", "-t", "long", "/dev/sdb"]


def test_cli_check_offline(capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / "nvme_samsung_970evo_media_errors_warning.json"
    assert main(["disk", "check", "--smartctl-json", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"verdict", "reasons", "device"}
    assert out["verdict"] == "warning" and out["device"]["serial"] == "S466NX0M776250H"
    assert out["device"]["protocol"] == "NVMe"


def test_cli_check_failing_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["disk", "check", "--smartctl-json", str(DATA / "ata_hitachi_hds721050dle630_failing.json")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith(": failing") and "failing: the drive's overall" in out.splitlines()[1]


def test_cli_check_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "report.json"
    bad.write_text("{not json")
    assert main(["disk", "check", "--smartctl-json", str(bad), "--json"]) == InvalidInput.exit_status
    err = capsys.readouterr().err
    assert "not the JSON output of 'smartctl -j'" in err and "smartctl -j -x DEVICE" in err
    assert main(["disk", "check", "--smartctl-json", str(tmp_path / "missing.json")]) != 0
    assert main(["disk", "check"]) == InvalidInput.exit_status


def test_cli_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.disks import inventory

    assert main(["disk", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in listed] == [d.name for d in inventory.scan()]
    for row in listed:
        assert {
            "name",
            "node",
            "model",
            "serial",
            "wwn",
            "size_bytes",
            "rotational",
            "by_id",
            "by_path",
            "pool",
        } <= set(row)
        assert row["node"] == f"/dev/{row['name']}"
