"""Hardware profiles: a chassis's drive bays mapped to ``/dev/disk/by-path`` links, and the commands that
light a bay's locate and fault LEDs.

A profile is a JSON file in ``hardware/`` (see hardware/README.md). The one whose ``match`` fits the
machine's DMI strings (``/sys/class/dmi/id``) is used; with none, the Disks page lists disks instead of
drawing bays and the replacement guide says that no LED can be lit (identify the disk by its serial).

LED commands are argv lists (never a shell) whose program must be one of :data:`LED_PROGRAMS`; ``{device}``
is replaced by the disk's ``/dev`` node and ``{slot}`` by the bay's slot number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.disks.inventory import Disk
from appliance.system.errors import InvalidInput, NotFound
from appliance.system.runner import Runner

HARDWARE_DIR = Path(__file__).resolve().parents[2] / "hardware"
DMI_DIR = Path("/sys/class/dmi/id")
DMI_FIELDS = ("sys_vendor", "product_name", "board_vendor", "board_name")
LED_PROGRAMS = frozenset({"ledctl", "sg_ses"})
LED_ACTIONS = ("locate_on", "locate_off", "fault_on", "fault_off")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_BY_PATH_RE = re.compile(r"^[A-Za-z0-9:._+-]{1,200}$")
LED_TIMEOUT = 30.0


@dataclass(frozen=True)
class Bay:
    label: str
    slot: int
    by_path: str  # the link's name under /dev/disk/by-path (without the directory)


@dataclass(frozen=True)
class Profile:
    id: str
    name: str
    match: dict[str, list[str]]
    columns: int
    bays: tuple[Bay, ...]
    leds: dict[str, list[str]] = field(default_factory=dict)

    def matches(self, dmi: Mapping[str, str]) -> bool:
        """Every field in ``match`` must equal one of its listed values (case and spaces ignored)."""
        if not self.match:
            return False
        for key, accepted in self.match.items():
            value = " ".join(dmi.get(key, "").split()).casefold()
            if value not in {" ".join(a.split()).casefold() for a in accepted}:
                return False
        return True

    def has_led(self, action: str) -> bool:
        return action in self.leds


def _str_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(f"{what} must be a list of non-empty strings")
    return list(value)


def parse_profile(profile_id: str, doc: Any) -> Profile:
    """A profile from its decoded JSON, checked strictly (a bad profile is refused by name, never half-used)."""
    where = f"hardware profile {profile_id!r}"
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where} is not a JSON object")
    unknown = set(doc) - {"name", "match", "columns", "bays", "leds", "notes"}
    if unknown:
        raise InvalidInput(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{where} needs a name")
    match_doc = doc.get("match")
    if not isinstance(match_doc, dict) or not match_doc or set(match_doc) - set(DMI_FIELDS):
        raise InvalidInput(f"{where}: match must map some of {', '.join(DMI_FIELDS)} to accepted values")
    match = {k: _str_list(v, f"{where}: match.{k}") for k, v in match_doc.items()}
    columns = doc.get("columns", 4)
    if not isinstance(columns, int) or isinstance(columns, bool) or not 1 <= columns <= 24:
        raise InvalidInput(f"{where}: columns must be 1 to 24")
    bays_doc = doc.get("bays")
    if not isinstance(bays_doc, list) or not bays_doc:
        raise InvalidInput(f"{where} lists no bays")
    bays = []
    for i, bay in enumerate(bays_doc):
        if not isinstance(bay, dict) or set(bay) - {"label", "slot", "by_path"}:
            raise InvalidInput(f"{where}: bay {i} must have label, slot and by_path")
        label, slot, by_path = bay.get("label"), bay.get("slot", i), bay.get("by_path")
        if not isinstance(label, str) or not label or not isinstance(slot, int) or isinstance(slot, bool):
            raise InvalidInput(f"{where}: bay {i} needs a label and an integer slot")
        if not isinstance(by_path, str) or not _BY_PATH_RE.fullmatch(by_path):
            raise InvalidInput(f"{where}: bay {label!r} needs the name of its /dev/disk/by-path link")
        bays.append(Bay(label, slot, by_path))
    leds_doc = doc.get("leds", {})
    if not isinstance(leds_doc, dict) or set(leds_doc) - set(LED_ACTIONS):
        raise InvalidInput(f"{where}: leds may only have {', '.join(LED_ACTIONS)}")
    leds = {}
    for action, argv in leds_doc.items():
        argv = _str_list(argv, f"{where}: leds.{action}")
        if argv[0] not in LED_PROGRAMS:
            raise InvalidInput(f"{where}: leds.{action} must run one of {', '.join(sorted(LED_PROGRAMS))}")
        for arg in argv:
            for placeholder in _PLACEHOLDER.findall(arg):
                if placeholder not in ("device", "slot"):
                    raise InvalidInput(f"{where}: leds.{action} uses unknown placeholder {{{placeholder}}}")
        leds[action] = argv
    return Profile(profile_id, name.strip(), match, columns, tuple(bays), leds)


def load_profiles(directory: Path = HARDWARE_DIR) -> list[Profile]:
    profiles = []
    for file in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(file.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"hardware profile {file.name!r} is not readable JSON: {exc}") from None
        profiles.append(parse_profile(file.stem, doc))
    return profiles


def read_dmi(directory: Path = DMI_DIR) -> dict[str, str]:
    out = {}
    for name in DMI_FIELDS:
        try:
            out[name] = (directory / name).read_text("utf-8", "replace").strip()
        except OSError:
            continue
    return out


def find_profile(dmi: Mapping[str, str] | None = None, directory: Path = HARDWARE_DIR) -> Profile | None:
    """The profile of this machine, or None (no DMI, or no profile for it)."""
    facts = read_dmi() if dmi is None else dmi
    return next((p for p in load_profiles(directory) if p.matches(facts)), None)


@dataclass(frozen=True)
class Slot:
    bay: Bay
    disk: Disk | None


def place(profile: Profile, disks: list[Disk]) -> tuple[list[Slot], list[Disk]]:
    """The bays with the disk found in each (by its by-path link), and the disks in no bay."""
    by_link = {}
    for disk in disks:
        for link in disk.by_path:
            by_link[link.rsplit("/", 1)[-1]] = disk
    slots = [Slot(bay, by_link.get(bay.by_path)) for bay in profile.bays]
    placed = {s.disk.name for s in slots if s.disk is not None}
    return slots, [d for d in disks if d.name not in placed and d.kind != "loop"]


def bay_of(profile: Profile | None, disk: Disk) -> Bay | None:
    if profile is None:
        return None
    names = {link.rsplit("/", 1)[-1] for link in disk.by_path}
    return next((b for b in profile.bays if b.by_path in names), None)


def led_argv(profile: Profile, action: str, disk: Disk) -> list[str]:
    """The command for one LED action on one disk's bay (pure)."""
    if action not in LED_ACTIONS:
        raise InvalidInput(f"an LED action is one of {', '.join(LED_ACTIONS)}, not {action!r}")
    if action not in profile.leds:
        raise NotFound(f"an LED command '{action}' in hardware profile {profile.id!r}")
    bay = bay_of(profile, disk)
    values = {"device": disk.node, "slot": str(bay.slot) if bay else ""}
    if "{slot}" in " ".join(profile.leds[action]) and bay is None:
        raise NotFound(f"a bay of {profile.name} holding {disk.name}")
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in profile.leds[action]]


def set_led(runner: Runner, profile: Profile | None, action: str, disk: Disk) -> None:
    """Light or clear a bay's LED; without a profile there is no LED to light, and this says so."""
    if profile is None:
        raise NotFound(
            "a hardware profile for this chassis (none matches its DMI strings), so no bay LED can be lit; "
            f"identify the disk by its serial number {disk.serial or '(unknown)'}"
        )
    runner.run(led_argv(profile, action, disk), timeout=LED_TIMEOUT)
