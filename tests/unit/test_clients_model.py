"""Client names, settings and their bulwark: properties (no ZFS)."""

from __future__ import annotations

import json

import pytest

from appliance.clients import model
from appliance.clients.model import Client, ClientSettings
from appliance.system.errors import InvalidInput
from appliance.zfs import names

GOOD_NAMES = ["a", "acme", "acme-fs1", "x1", "a-b-c", "a" * 32, "dc01"]
BAD_NAMES = [
    "",
    "A",
    "Acme",
    "1acme",
    "-acme",
    "acme-",
    "ac--me",
    "ac_me",
    "ac.me",
    "ac me",
    "acme\n",
    "a" * 33,
    "ac/me",
    "../x",
    "acme$",
    "global",
    "homes",
    "printers",
    "browse",
    "ünï",
]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names(name: str) -> None:
    assert model.check_name(name) == name
    names.component(name)  # also a valid dataset component


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        model.check_name(name)


def test_settings_defaults_and_canonical_forms() -> None:
    s = ClientSettings.build(kind="smb")
    assert (s.rpo, s.schedule, s.window, s.lock, s.quota) == (86400, "every 1h", None, 0, None)
    s = ClientSettings.build(
        kind="both",
        quota="500G",
        rpo="90m",
        schedule="EVERY 30m",
        window="mon-fri 8:00-18:00",
        retention_spec="daily=7, last=3",
        lock="7d",
        notes="line one\nline two",
    )
    assert s.quota == 500 * 1024**3
    assert (s.rpo, s.schedule, s.window, s.retention, s.lock) == (
        5400,
        "every 30m",
        "mon,tue,wed,thu,fri 08:00-18:00",
        "last=3,daily=7",
        604800,
    )
    assert s.to_dict()["rpo"] == "1h30m" and s.to_dict()["lock"] == "1w"


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("kind", "nfs", "must be one of smb, agent, both"),
        ("quota", "10M", "at least 64 MiB"),
        ("quota", "lots", "must be a number of bytes"),
        ("rpo", "1m", "at least 5m"),
        ("rpo", "soon", "must be a number with a unit"),
        ("schedule", "* * * * *", "more often than every 5 minutes"),
        ("window", "9-5", "not of the form"),
        ("retention", "last=0", "keeps nothing"),
        ("lock", "forever", "must be a number with a unit"),
        ("notes", "a\x07b", "control characters"),
        ("notes", "x" * 2001, "limited to 2000"),
        ("colour", "blue", "unknown client setting"),
    ],
)
def test_bad_settings_change_nothing(field: str, value: str, why: str) -> None:
    before = ClientSettings.build(kind="smb")
    with pytest.raises(InvalidInput) as info:
        before.changed(**{field: value})
    assert why in info.value.message


def test_quota_none_and_changes() -> None:
    s = ClientSettings.build(kind="agent", quota="1G")
    assert s.changed(quota="none").quota is None
    assert s.changed(quota="0").quota is None
    assert s.changed(kind="both").kind == "both"
    assert s.changed(window="any").window is None


def test_live_areas() -> None:
    assert model.live_areas("smb") == ("share",)
    assert model.live_areas("agent") == ("files", "images")
    assert model.live_areas("both") == ("share", "files", "images")


def _client() -> Client:
    settings = ClientSettings.build(
        kind="both",
        quota="1G",
        rpo="2h",
        schedule="0 */4 * * *",
        window="20:00-06:00",
        lock="3d",
        notes='tabs\tand "quotes"\nand lines ünïcode',
    )
    return Client("acme", "0b5e7c1e-7d0f-4a53-9b8e-3f0f6a1c2d4e", "tank/clients/acme", "active", settings, 1.7e9, 1.0)


def test_properties_round_trip() -> None:
    client = _client()
    props = model.to_properties(client)
    for key, value in props.items():
        names.user_property_name(key)
        names.property_value(key, value)  # one printable line each: safe for zfs set and for -H output
    assert json.loads(props[model.P_NOTES]) == client.settings.notes
    back = model.from_properties(client.dataset, props, client.settings.quota, 1.0)
    assert back == client


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        (model.P_ROLE, "clients", "not a Bulwark client dataset"),
        (model.P_NAME, "other", "says it is client"),
        (model.P_NAME, "BAD", "client name"),
        (model.P_KIND, "nfs", "kind"),
        (model.P_STATE, "zombie", "unknown state"),
        (model.P_RPO, "soon", "malformed"),
        (model.P_UUID, "x", "malformed"),
        (model.P_NOTES, "{not json", "not a JSON string"),
        (model.P_RETENTION, "last=0", "keeps nothing"),
    ],
)
def test_malformed_properties_are_refused(key: str, value: str, why: str) -> None:
    props = {**model.to_properties(_client()), key: value}
    with pytest.raises(InvalidInput) as info:
        model.from_properties("tank/clients/acme", props, None, 1.0)
    assert why in info.value.message
