"""Hardware profiles: strict parsing, DMI matching, disks placed in bays by their by-path link, LED commands
(and a missing ledctl reported as such)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from appliance.disks import bays
from appliance.disks.inventory import Disk
from appliance.system.errors import CommandNotFound, InvalidInput, NotFound
from appliance.system.runner import local_runner

QEMU_DMI = {"sys_vendor": "QEMU", "product_name": "Standard PC (Q35 + ICH9, 2009)"}


def disk(name: str, by_path: str = "", serial: str = "S1") -> Disk:
    links = [f"/dev/disk/by-path/{by_path}"] if by_path else []
    kind = "loop" if name.startswith("loop") else "virtio"
    return Disk(name, f"/dev/{name}", "Model", serial, "", 1 << 40, True, kind, by_path=links)


def profile_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "Test chassis",
        "match": {"product_name": ["Box 9000"]},
        "columns": 2,
        "bays": [
            {"label": "Bay 0", "slot": 0, "by_path": "pci-0000:01:00.0-sas-phy0-lun-0"},
            {"label": "Bay 1", "slot": 1, "by_path": "pci-0000:01:00.0-sas-phy1-lun-0"},
        ],
        "leds": {"locate_on": ["ledctl", "locate={device}"], "fault_on": ["sg_ses", "--dev-slot-num={slot}"]},
    }
    doc.update(changes)
    return doc


def test_shipped_profiles_parse_and_qemu_matches() -> None:
    profiles = bays.load_profiles()
    assert {p.id for p in profiles} >= {"qemu-q35-virtio"}
    found = bays.find_profile(QEMU_DMI)
    assert found is not None and found.id == "qemu-q35-virtio" and len(found.bays) == 4
    assert bays.find_profile({"sys_vendor": "QEMU", "product_name": "Standard PC (i440FX + PIIX, 1996)"}) is None
    assert bays.find_profile({}) is None  # no DMI (a container): disks are listed, not drawn in bays


def test_matching_ignores_case_and_spaces() -> None:
    p = bays.parse_profile("t", profile_doc())
    assert p.matches({"product_name": "  box   9000 "}) and not p.matches({"product_name": "Box 900"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"extra": 1}, "unknown keys: extra"),
        ({"match": {}}, "match must map"),
        ({"match": {"bios_version": ["1"]}}, "match must map"),
        ({"bays": []}, "lists no bays"),
        ({"bays": [{"label": "B", "slot": 0, "by_path": "../../sda"}]}, "by-path link"),
        ({"bays": [{"label": "B", "slot": 0, "by_path": "x\ny"}]}, "by-path link"),
        ({"leds": {"locate_on": ["sh", "-c", "echo {device}"]}}, "must run one of ledctl, sg_ses"),
        ({"leds": {"locate_on": ["ledctl", "locate={path}"]}}, "unknown placeholder"),
        ({"leds": {"blink": ["ledctl", "locate={device}"]}}, "leds may only have"),
        ({"columns": 0}, "columns must be"),
    ],
)
def test_bad_profiles_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        bays.parse_profile("bad", profile_doc(**changes))


def test_unreadable_profile_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="'broken.json' is not readable JSON"):
        bays.load_profiles(tmp_path)


def test_disks_placed_in_bays_by_path() -> None:
    p = bays.parse_profile("t", profile_doc())
    sdb = disk("sdb", "pci-0000:01:00.0-sas-phy1-lun-0")
    sdc = disk("sdc", "pci-0000:02:00.0-ata-1")
    slots, loose = bays.place(p, [sdb, sdc, disk("loop0")])
    assert [(s.bay.label, s.disk.name if s.disk else None) for s in slots] == [("Bay 0", None), ("Bay 1", "sdb")]
    assert [d.name for d in loose] == ["sdc"]  # loop devices are in no bay and not listed as loose disks


def test_led_commands() -> None:
    p = bays.parse_profile("t", profile_doc())
    sdb = disk("sdb", "pci-0000:01:00.0-sas-phy1-lun-0")
    assert bays.led_argv(p, "locate_on", sdb) == ["ledctl", "locate=/dev/sdb"]
    assert bays.led_argv(p, "fault_on", sdb) == ["sg_ses", "--dev-slot-num=1"]
    with pytest.raises(NotFound, match="bay of Test chassis holding sdz"):
        bays.led_argv(p, "fault_on", disk("sdz", "pci-elsewhere"))
    with pytest.raises(NotFound, match="'locate_off'"):
        bays.led_argv(p, "locate_off", sdb)
    with pytest.raises(InvalidInput):
        bays.led_argv(p, "explode", sdb)


def test_no_profile_says_identify_by_serial() -> None:
    with pytest.raises(NotFound, match="identify the disk by its serial number WD-123"):
        bays.set_led(local_runner(), None, "locate_on", disk("sdb", serial="WD-123"))


def test_missing_led_program_is_reported(tmp_path: Path) -> None:
    """ledctl (package ledmon) is not installed here: lighting an LED fails with 'not installed', clearly."""
    (tmp_path / "box.json").write_text(json.dumps(profile_doc()))
    [p] = bays.load_profiles(tmp_path)
    with pytest.raises(CommandNotFound, match="ledctl"):
        bays.set_led(local_runner(), p, "locate_on", disk("sdb", "pci-0000:01:00.0-sas-phy0-lun-0"))
