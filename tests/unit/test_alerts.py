"""The minimal alert store: raise with a dedup key, refresh, clear, list."""

from __future__ import annotations

import pytest

from appliance import alerts
from appliance.store import Store
from appliance.system.errors import InvalidInput


def test_raise_refresh_clear_and_raise_again(store: Store) -> None:
    first, new = alerts.raise_alert(store, "rpo:acme", level="warning", category="rpo", message="old 2 h", now=10.0)
    assert new and first.state == "active" and first.count == 1
    again, new = alerts.raise_alert(
        store, "rpo:acme", level="critical", category="rpo", message="old 3 h", subject="client:acme", now=20.0
    )
    assert not new and again.id == first.id
    assert (again.level, again.message, again.count, again.raised_at, again.last_seen_at) == (
        "critical",
        "old 3 h",
        2,
        10.0,
        20.0,
    )
    assert [a.key for a in alerts.list_alerts(store)] == ["rpo:acme"]
    assert alerts.clear(store, "rpo:acme", now=30.0)
    assert not alerts.clear(store, "rpo:acme")
    assert alerts.get_active(store, "rpo:acme") is None
    assert alerts.list_alerts(store) == []
    third, new = alerts.raise_alert(store, "rpo:acme", level="warning", category="rpo", message="again", now=40.0)
    assert new and third.id != first.id
    history = alerts.list_alerts(store, active_only=False)
    assert [(a.state, a.cleared_at) for a in history] == [("active", None), ("cleared", 30.0)]
    assert alerts.list_alerts(store, active_only=False, category="disk") == []
    assert history[0].to_dict()["key"] == "rpo:acme"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"level": "panic", "category": "rpo", "message": "m"},
        {"level": "info", "category": "", "message": "m"},
        {"level": "info", "category": "rpo", "message": ""},
    ],
)
def test_bad_alerts(store: Store, kwargs: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        alerts.raise_alert(store, "k", **kwargs)  # type: ignore[arg-type]
