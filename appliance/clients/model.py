"""A client: a protected machine, its settings, their validation, and their ``bulwark:`` properties.

A client's name is its identity: it names its dataset ``<pool>/clients/<name>`` and, later, its SMB share, so it
is strict: 1 to 32 characters, lowercase letters, digits and single hyphens, starting with a letter and not
ending with a hyphen.

Every setting travels with the data as a ``bulwark:`` user property of the client's dataset (the quota is the
dataset's own ``quota``): a pool imported into another appliance knows its clients (:func:`from_properties`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from appliance import schedules
from appliance.retention import DEFAULT_SPEC, RetentionPolicy, parse_spec
from appliance.system import durations
from appliance.system.errors import InvalidInput
from appliance.zfs import units

KINDS = ("smb", "agent", "both")
STATES = ("active", "removed")
SOURCES = ("smb", "agent", "manual", "schedule")
FORMAT_VERSION = "1"
MAX_NOTES = 2000
MAX_NOTES_STORED = 8000  # bytes of the JSON-encoded bulwark:notes property
DEFAULT_RPO = 24 * 3600
DEFAULT_SCHEDULE = "every 1h"
_NAME = re.compile(r"[a-z](?:[a-z0-9]|-(?=[a-z0-9])){0,31}")
# Section names with a meaning of their own in smb.conf, and names the appliance uses itself.
RESERVED_NAMES = frozenset({"global", "homes", "printers", "print", "ipc", "admin", "all", "browse", "clients"})

# bulwark: properties of the client's dataset
P_ROLE = "bulwark:role"
P_FORMAT = "bulwark:format"
P_NAME = "bulwark:client"
P_UUID = "bulwark:client-uuid"
P_KIND = "bulwark:kind"
P_STATE = "bulwark:state"
P_RPO = "bulwark:rpo"
P_SCHEDULE = "bulwark:schedule"
P_WINDOW = "bulwark:window"
P_RETENTION = "bulwark:retention"
P_LOCK = "bulwark:lock"
P_NOTES = "bulwark:notes"
P_CREATED = "bulwark:created"
ROLE_CLIENT = "client"
CLIENT_PROPS: tuple[str, ...] = (P_ROLE, P_FORMAT, P_NAME, P_UUID, P_KIND, P_STATE, P_RPO, P_SCHEDULE, P_WINDOW)
CLIENT_PROPS += (P_RETENTION, P_LOCK, P_NOTES, P_CREATED)


def check_name(name: str) -> str:
    """A client name (see the module docstring)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > 32:
        shown = repr(name) if isinstance(name, str) and len(name) < 80 else "the given value"
        raise InvalidInput(
            f"client name {shown} must be 1 to 32 lowercase letters, digits and single hyphens, "
            "start with a letter and not end with a hyphen"
        )
    if name in RESERVED_NAMES:
        raise InvalidInput(f"client name {name!r} is reserved; choose another")
    return name


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidInput(f"client kind {kind!r} must be one of {', '.join(KINDS)}")
    return kind


def live_areas(kind: str) -> tuple[str, ...]:
    """The child datasets a client of ``kind`` has (``images`` only holds ``images/<n>``)."""
    return {"smb": ("share",), "agent": ("files", "images"), "both": ("share", "files", "images")}[check_kind(kind)]


def check_notes(notes: str) -> str:
    if not isinstance(notes, str):
        raise InvalidInput("notes must be text")
    if len(notes) > MAX_NOTES:
        raise InvalidInput(f"notes are limited to {MAX_NOTES} characters")
    if any(not ch.isprintable() and ch not in "\n\t" for ch in notes):
        raise InvalidInput("notes must not contain control characters other than line breaks and tabs")
    if len(json.dumps(notes)) > MAX_NOTES_STORED:  # ZFS keeps a property value of at most 8 KiB
        raise InvalidInput("notes are too long to store (characters outside ASCII count up to 6 times); shorten them")
    return notes


def parse_quota(value: str | int | None) -> int | None:
    """``None``, ``none`` or ``0`` mean no quota; otherwise a size (``500G``) of at least 64 MiB."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "0")):
        return None
    size = int(units.size_argument(value))
    if size == 0:
        return None
    if size < 64 * 1024 * 1024:
        raise InvalidInput("a client's quota must be at least 64 MiB (or 'none')")
    if size >= 2**64:  # ZFS's limit ("numeric value is too large")
        raise InvalidInput("a client's quota must be less than 16 EiB")
    return size


@dataclass(frozen=True)
class ClientSettings:
    """What a person sets on a client (validated)."""

    kind: str
    quota: int | None = None
    rpo: int = DEFAULT_RPO
    schedule: str = DEFAULT_SCHEDULE
    window: str | None = None
    retention: str = DEFAULT_SPEC
    lock: int = 0
    notes: str = ""

    @classmethod
    def build(
        cls,
        *,
        kind: str,
        quota: str | int | None = None,
        rpo: str | int | None = None,
        schedule: str | None = None,
        window: str | None = None,
        retention_spec: str | None = None,
        lock: str | int | None = None,
        notes: str | None = None,
    ) -> ClientSettings:
        """Validate raw input (strings as typed, or numbers of seconds/bytes) into settings."""
        return cls(
            kind=check_kind(kind),
            quota=parse_quota(quota),
            rpo=_seconds(rpo, DEFAULT_RPO, "RPO target", minimum=300),
            schedule=schedules.parse_schedule(schedule if schedule is not None else DEFAULT_SCHEDULE).text,
            window=_window_text(window),
            retention=parse_spec(retention_spec or DEFAULT_SPEC).to_spec(),
            lock=_seconds(lock, 0, "lock period", minimum=0),
            notes=check_notes(notes or ""),
        )

    def changed(self, **changes: Any) -> ClientSettings:
        """These settings with some of them changed (each validated as in :meth:`build`)."""
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "kind":
                checked[key] = check_kind(value)
            elif key == "quota":
                checked[key] = parse_quota(value)
            elif key == "rpo":
                checked[key] = _seconds(value, DEFAULT_RPO, "RPO target", minimum=300)
            elif key == "schedule":
                checked[key] = schedules.parse_schedule(value).text
            elif key == "window":
                checked[key] = _window_text(value)
            elif key == "retention":
                checked[key] = parse_spec(value).to_spec()
            elif key == "lock":
                checked[key] = _seconds(value, 0, "lock period", minimum=0)
            elif key == "notes":
                checked[key] = check_notes(value)
            else:
                raise InvalidInput(f"unknown client setting {key!r}")
        return replace(self, **checked)

    @property
    def policy(self) -> RetentionPolicy:
        return parse_spec(self.retention)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "quota_bytes": self.quota,
            "rpo_seconds": self.rpo,
            "rpo": durations.format_duration(self.rpo),
            "schedule": self.schedule,
            "window": self.window,
            "retention": self.retention,
            "lock_seconds": self.lock,
            "lock": durations.format_duration(self.lock),
            "notes": self.notes,
        }


def _seconds(value: str | int | None, default: int, what: str, *, minimum: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be a duration such as '1h'")
    seconds = value if isinstance(value, int) else durations.parse_duration(value, what=what)
    if seconds < minimum:
        raise InvalidInput(f"{what} must be at least {durations.format_duration(minimum)}")
    if seconds > durations.MAX_SECONDS:
        raise InvalidInput(f"{what} is longer than 100 years")
    return seconds


def _window_text(value: str | None) -> str | None:
    window = schedules.parse_window(value)
    return None if window is None else window.text


@dataclass(frozen=True)
class Client:
    name: str
    uuid: str
    dataset: str  # <pool>/clients/<name>
    state: str  # "active" or "removed"
    settings: ClientSettings
    created_at: float
    updated_at: float

    @property
    def kind(self) -> str:
        return self.settings.kind

    @property
    def active(self) -> bool:
        return self.state == "active"

    def area_dataset(self, area: str) -> str:
        return f"{self.dataset}/{area}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uuid": self.uuid,
            "dataset": self.dataset,
            "state": self.state,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            **self.settings.to_dict(),
        }


def to_properties(client: Client) -> dict[str, str]:
    """The ``bulwark:`` properties that describe ``client`` on its dataset."""
    s = client.settings
    return {
        P_ROLE: ROLE_CLIENT,
        P_FORMAT: FORMAT_VERSION,
        P_NAME: client.name,
        P_UUID: client.uuid,
        P_KIND: s.kind,
        P_STATE: client.state,
        P_RPO: str(s.rpo),
        P_SCHEDULE: s.schedule,
        P_WINDOW: s.window or "any",
        P_RETENTION: s.retention,
        P_LOCK: str(s.lock),
        P_NOTES: json.dumps(s.notes),  # one printable ASCII line, whatever the notes hold
        P_CREATED: str(int(client.created_at)),
    }


def settings_properties(settings: ClientSettings) -> dict[str, str]:
    """The subset of :func:`to_properties` that settings changes touch."""
    return {
        P_KIND: settings.kind,
        P_RPO: str(settings.rpo),
        P_SCHEDULE: settings.schedule,
        P_WINDOW: settings.window or "any",
        P_RETENTION: settings.retention,
        P_LOCK: str(settings.lock),
        P_NOTES: json.dumps(settings.notes),
    }


def from_properties(dataset: str, props: dict[str, str], quota: int | None, updated_at: float) -> Client:
    """Rebuild a client from its dataset's properties; anything malformed raises :class:`InvalidInput`."""
    if props.get(P_ROLE) != ROLE_CLIENT:
        raise InvalidInput(f"{dataset} is not a Bulwark client dataset")
    name = check_name(props.get(P_NAME, ""))
    if dataset.rsplit("/", 1)[-1] != name:
        raise InvalidInput(f"{dataset} says it is client {name!r}")
    try:
        notes = json.loads(props.get(P_NOTES, '""'))
    except ValueError:
        notes = None
    if not isinstance(notes, str):
        raise InvalidInput(f"{dataset}: {P_NOTES} is not a JSON string")
    state = props.get(P_STATE, "active")
    if state not in STATES:
        raise InvalidInput(f"{dataset}: unknown state {state!r}")
    created = props.get(P_CREATED, "0")
    if not created.isdigit() or not props.get(P_RPO, "").isdigit() or not props.get(P_LOCK, "0").isdigit():
        raise InvalidInput(f"{dataset}: a numeric bulwark: property is malformed")
    uuid = props.get(P_UUID, "")
    if not re.fullmatch(r"[0-9a-f-]{36}", uuid):
        raise InvalidInput(f"{dataset}: {P_UUID} is malformed")
    window = props.get(P_WINDOW, "any")
    settings = ClientSettings(
        kind=check_kind(props.get(P_KIND, "")),
        quota=quota,
        rpo=_seconds(int(props[P_RPO]), DEFAULT_RPO, "RPO target", minimum=300),
        schedule=schedules.parse_schedule(props.get(P_SCHEDULE, "off")).text,
        window=_window_text(None if window == "any" else window),
        retention=parse_spec(props.get(P_RETENTION, "")).to_spec(),
        lock=_seconds(int(props.get(P_LOCK, "0")), 0, "lock period", minimum=0),
        notes=check_notes(notes),
    )
    return Client(name, uuid, dataset, state, settings, float(created), updated_at)
