"""The alert engine (dedup, acknowledge, snooze and its expiry, escalation, clear), channel settings, level
filters, quiet hours, webhook signatures and syslog lines."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import pytest

from appliance import alerts
from appliance.alerts import channels, outbox, senders
from appliance.store import Store
from appliance.system import settings
from appliance.system.errors import InvalidInput
from appliance.system.settings import ApplianceSettings, PoolConfig


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


# -- the engine: states, dedup, snooze expiry, escalation ------------------------------------------------------

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC).timestamp()
STALE = alerts.declare(
    "test.stale", level="warning", category="test", title="Test condition", template="thing {name} is {age} old"
)


def _webhook(store: Store, name: str = "hook", **kwargs: object) -> channels.Channel:
    return channels.create(store, name, "webhook", {"url": "http://127.0.0.1:9/hook"}, secret="k", **kwargs)  # type: ignore[arg-type]


def _outbox(store: Store) -> list[tuple[str, str, str]]:
    return [
        (channels.get(store, n.channel_id).name, n.event, n.state)
        for n in reversed(outbox.list_notifications(store, limit=100))
    ]


def test_dedup_one_alert_and_one_notification_per_channel(store: Store) -> None:
    _webhook(store)
    first, new = alerts.fire(store, STALE, "stale:a", name="a", age="2 h", now=T0)
    assert new and first.alert_class == "test.stale" and first.message == "thing a is 2 h old"
    for i in range(5):
        again, new = alerts.fire(store, STALE, "stale:a", name="a", age=f"{3 + i} h", now=T0 + 60 * (i + 1))
        assert not new and again.id == first.id
    assert again.count == 6 and again.message == "thing a is 7 h old" and again.last_seen_at == T0 + 300
    assert len(alerts.list_alerts(store)) == 1
    assert _outbox(store) == [("hook", "raised", "pending")]
    assert [e["event"] for e in alerts.events(store, first.id)] == ["raised"]


def test_acknowledge_snooze_expiry_and_clear(store: Store) -> None:
    _webhook(store)
    alert, _ = alerts.fire(store, STALE, "stale:a", name="a", age="2 h", now=T0)
    assert alert.status(T0) == "active"
    acked = alerts.acknowledge(store, alert.id, by="user:olivia", now=T0 + 10)
    assert acked.status(T0 + 10) == "acknowledged" and acked.acknowledged_by == "user:olivia"
    assert [a.id for a in alerts.list_alerts(store, status="acknowledged", now=T0 + 10)] == [alert.id]
    assert alerts.list_alerts(store, status="active", now=T0 + 10) == []

    snoozed = alerts.snooze(store, alert.id, until=T0 + 3600, by="user:olivia", now=T0 + 20)
    assert snoozed.status(T0 + 20) == "snoozed" and snoozed.acknowledged_at is None
    assert alerts.counts(store, now=T0 + 20) == {
        "active": 0, "acknowledged": 0, "snoozed": 1, "open": 1, "by_level": {"info": 0, "warning": 0, "critical": 0}
    }  # fmt: skip
    # Still seen while snoozed: a refresh, no notification.
    alerts.fire(store, STALE, "stale:a", name="a", age="3 h", now=T0 + 1800)
    assert alerts.expire_snoozes(store, now=T0 + 3599) == []
    # The snooze runs out with the condition still there: active again, and a reminder goes out.
    (woken,) = alerts.expire_snoozes(store, now=T0 + 3600)
    assert woken.status(T0 + 3600) == "active" and woken.snoozed_until is None
    assert alerts.counts(store, now=T0 + 3600)["by_level"]["warning"] == 1

    assert alerts.clear(store, "stale:a", now=T0 + 4000)
    cleared = alerts.get(store, alert.id)
    assert cleared.status() == "cleared" and cleared.cleared_at == T0 + 4000
    assert [e["event"] for e in alerts.events(store, alert.id)] == [
        "raised", "acknowledged", "snoozed", "reminded", "cleared"
    ]  # fmt: skip
    assert _outbox(store) == [("hook", "raised", "pending"), ("hook", "reminder", "pending"),
                              ("hook", "cleared", "pending")]  # fmt: skip
    with pytest.raises(alerts.AlertCleared):
        alerts.acknowledge(store, alert.id, by="user:olivia")
    with pytest.raises(alerts.AlertNotFound):
        alerts.snooze(store, 999, until=T0 + 10, by="x", now=T0)
    assert [a.id for a in alerts.list_alerts(store, status="cleared")] == [alert.id]


def test_snooze_refused_outside_its_limits(store: Store) -> None:
    alert, _ = alerts.fire(store, STALE, "stale:a", name="a", age="2 h", now=T0)
    for until in (T0 - 1, T0, T0 + 31 * 86400):
        with pytest.raises(alerts.InvalidSnooze):
            alerts.snooze(store, alert.id, until=until, by="x", now=T0)
    assert alerts.get(store, alert.id).snoozed_until is None
    assert alerts.events(store, alert.id) == [alerts.events(store, alert.id)[0]]


def test_a_refresh_after_the_snooze_ended_reminds(store: Store) -> None:
    alert, _ = alerts.fire(store, STALE, "stale:a", name="a", age="1 h", now=T0)
    alerts.snooze(store, alert.id, until=T0 + 600, by="x", now=T0)
    refreshed, _ = alerts.fire(store, STALE, "stale:a", name="a", age="2 h", now=T0 + 601)
    assert refreshed.status(T0 + 601) == "active"
    assert alerts.events(store, alert.id)[-1]["event"] == "reminded"


def test_escalation_needs_attention_again(store: Store) -> None:
    _webhook(store)
    alert, _ = alerts.raise_alert(store, "pool:capacity:tank", level="info", category="pool", message="80%", now=T0)
    alerts.acknowledge(store, alert.id, by="x", now=T0 + 1)
    same, _ = alerts.raise_alert(store, "pool:capacity:tank", level="info", category="pool", message="81%", now=T0 + 2)
    assert same.status(T0 + 2) == "acknowledged"
    worse, _ = alerts.raise_alert(
        store, "pool:capacity:tank", level="critical", category="pool", message="96%", now=T0 + 3
    )
    assert worse.status(T0 + 3) == "active" and worse.level == "critical"
    # The info alert was below the channel's level; the escalation reaches it.
    assert _outbox(store) == [("hook", "escalated", "pending")]


@pytest.mark.parametrize(
    ("min_level", "expected"),
    [("info", ["info", "warning", "critical"]), ("warning", ["warning", "critical"]), ("critical", ["critical"])],
)
def test_level_filters(store: Store, min_level: str, expected: list[str]) -> None:
    _webhook(store, min_level=min_level)
    for level in alerts.LEVELS:
        alerts.raise_alert(store, f"k:{level}", level=level, category="test", message=level, now=T0)
    sent = [n.payload["level"] for n in reversed(outbox.list_notifications(store))]
    assert sent == expected


def _utc_appliance(store: Store) -> None:
    settings.save(
        store,
        ApplianceSettings(pool=PoolConfig(name="tank", layout="file"), hostname="vault-1", timezone="UTC",
                          initialized_at=T0),
    )  # fmt: skip


def test_quiet_hours_hold_all_but_critical(store: Store) -> None:
    _utc_appliance(store)
    _webhook(store, min_level="info", quiet_hours="22:00-07:00")
    night = dt.datetime(2026, 11, 26, 23, 30, tzinfo=dt.UTC).timestamp()
    morning = dt.datetime(2026, 11, 27, 7, 0, tzinfo=dt.UTC).timestamp()
    alerts.raise_alert(store, "w", level="warning", category="test", message="w", now=night)
    alerts.raise_alert(store, "c", level="critical", category="test", message="c", now=night)
    alerts.raise_alert(store, "day", level="warning", category="test", message="d", now=morning + 60)
    by_level = {n.payload["level"] + n.payload["subject"][-1]: n for n in outbox.list_notifications(store)}
    assert by_level["warningw"].not_before == morning and "quiet hours" in (by_level["warningw"].note or "")
    assert by_level["criticalc"].not_before == night and by_level["criticalc"].note is None
    assert by_level["warningd"].not_before == morning + 60
    assert outbox.due(store, night) == [by_level["criticalc"].id]


def test_quiet_end_across_midnight_and_days() -> None:
    from appliance import schedules

    window = schedules.parse_window("mon-fri 19:00-08:00")
    friday_night = dt.datetime(2026, 11, 27, 23, 0, tzinfo=dt.UTC).timestamp()  # a Friday
    assert channels.quiet_end(window, friday_night, "UTC") == dt.datetime(2026, 11, 28, 8, 0, tzinfo=dt.UTC).timestamp()
    saturday_night = dt.datetime(2026, 11, 28, 23, 0, tzinfo=dt.UTC).timestamp()
    assert channels.quiet_end(window, saturday_night, "UTC") is None
    oslo = channels.quiet_end(schedules.parse_window("22:00-07:00"), friday_night, "Europe/Oslo")
    assert oslo == dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC).timestamp()  # 07:00 in Oslo


def test_cleared_goes_only_where_the_alert_went(store: Store) -> None:
    _webhook(store, "late")
    alert, _ = alerts.raise_alert(store, "k", level="warning", category="test", message="m", now=T0)
    _webhook(store, "early-bird")  # added after the alert was raised: it never heard of it
    _webhook(store, "quiet-about-clears", notify_cleared=False)
    alerts.clear(store, "k", now=T0 + 5)
    assert _outbox(store) == [("late", "raised", "pending"), ("late", "cleared", "pending")]
    assert alert.id == alerts.get(store, alert.id).id


def test_a_channels_own_failure_alert_is_not_sent_to_it(store: Store) -> None:
    broken = _webhook(store, "broken")
    _webhook(store, "other")
    alerts.raise_alert(store, channels.failure_key(broken.id), level="warning", category="channels", message="m")
    assert [name for name, _, _ in _outbox(store)] == ["other"]


def test_alert_classes_need_their_fields() -> None:
    with pytest.raises(KeyError, match="age"):
        STALE.message(name="x")
    with pytest.raises(RuntimeError):
        alerts.declare("test.stale", level="critical", category="test", title="Test condition", template="x")
    assert "test.stale" in {c.name for c in alerts.all_classes()}


def test_snooze_end() -> None:
    now = dt.datetime(2026, 11, 26, 21, 0, tzinfo=dt.UTC).timestamp()
    assert alerts.snooze_end(duration="4h", now=now) == now + 4 * 3600
    assert alerts.snooze_end(until="2026-11-27 08:00", tz="UTC", now=now) == now + 11 * 3600
    assert alerts.snooze_end(until="08:00", tz="UTC", now=now) == now + 11 * 3600  # tomorrow
    assert alerts.snooze_end(until="22:00", tz="UTC", now=now) == now + 3600  # later today
    assert alerts.snooze_end(until="2026-11-27T08:00+01:00", now=now) == now + 10 * 3600
    for kwargs in ({"until": "soon"}, {"duration": "4 hours"}, {}, {"until": "08:00", "duration": "1h"}):
        with pytest.raises(alerts.InvalidSnooze):
            alerts.snooze_end(now=now, **kwargs)  # type: ignore[arg-type]


# -- channels --------------------------------------------------------------------------------------------------


def test_channel_secrets_are_masked_and_kept(store: Store) -> None:
    mail = channels.create(
        store,
        "msp-mail",
        "email",
        {"host": "smtp.example.net", "from": "bulwark@example.net", "to": "a@example.net, b@example.net",
         "username": "bulwark"},
        secret="hunter2-smtp",
    )  # fmt: skip
    shown = mail.to_dict()
    assert shown["secret"] == channels.MASK and shown["secret_set"] and "hunter2" not in json.dumps(shown)
    assert "hunter2" not in repr(mail)
    assert shown["config"]["port"] == 587 and shown["config"]["to"] == ["a@example.net", "b@example.net"]
    kept = channels.update(store, "msp-mail", config={"port": 2525})
    assert kept.secret == "hunter2-smtp" and kept.config["port"] == 2525
    assert channels.update(store, "msp-mail", secret=None).secret is None


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        ("email", {"host": "smtp.example.net", "from": "x", "to": "a@example.net"}, "from 'x'"),
        ("email", {"host": "smtp.example.net", "from": "b@example.net", "to": ""}, "to needs"),
        ("email", {"host": "bad host\n", "from": "b@example.net", "to": "a@example.net"}, "host"),
        ("email", {"host": "h", "from": "b@example.net", "to": "a@example.net", "port": 70000}, "port 70000"),
        ("email", {"host": "h", "from": "b@example.net", "to": "a@example.net", "security": "ssl3"}, "security"),
        ("webhook", {"url": "ftp://example.net/"}, "http"),
        ("webhook", {"url": "https://example.net/", "ca_pem": "not a cert"}, "ca_pem"),
        ("syslog", {"host": "127.0.0.1", "transport": "carrier-pigeon"}, "transport"),
        ("syslog", {"host": "127.0.0.1", "facility": "mail"}, "facility"),
        ("pager", {}, "kind"),
    ],
)
def test_bad_channels_change_nothing(store: Store, kind: str, config: dict[str, object], message: str) -> None:
    with pytest.raises(channels.InvalidChannel, match=message):
        channels.create(store, "c", kind, config)
    assert channels.list_channels(store) == []


def test_bad_channel_names_levels_and_quiet_hours(store: Store) -> None:
    good = {"url": "http://127.0.0.1/"}
    for kwargs in ({"name": "Bad Name"}, {"min_level": "panic"}, {"quiet_hours": "25:00-07:00"}):
        with pytest.raises(channels.InvalidChannel):
            channels.create(store, **{"name": "c", "kind": "webhook", "config": good, **kwargs})  # type: ignore[arg-type]
    channels.create(store, "c", "webhook", good)
    with pytest.raises(channels.AlreadyExists):
        channels.create(store, "c", "webhook", good)
    with pytest.raises(channels.ChannelNotFound):
        channels.get(store, "nope")


# -- signatures and message formats ------------------------------------------------------------------------


def test_webhook_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    body = b'{"event": "raised"}'
    expected = hmac.new(b"s3cret", b"1764158400." + body, hashlib.sha256).hexdigest()
    assert senders.signature("s3cret", "1764158400", body) == f"sha256={expected}"
    good = f"sha256={expected}"
    assert senders.verify_signature("s3cret", "1764158400", body, good, now=1764158400 + 299)
    assert not senders.verify_signature("s3cret", "1764158400", body, good, now=1764158400 + 301)  # replayed
    assert not senders.verify_signature("other", "1764158400", body, good, now=1764158400)
    assert not senders.verify_signature("s3cret", "1764158400", body + b" ", good, now=1764158400)


def test_syslog_line_is_rfc5424(store: Store) -> None:
    channel = channels.create(store, "log", "syslog", {"host": "127.0.0.1", "facility": "local3"})
    payload = {"subject": 'pool "tank"\nis ] DEGRADED', "level": "critical",
               "document": {"event": "raised", "alert": {"id": 7, "key": "pool:health:tank"}}}  # fmt: skip
    line = senders.syslog_line(channel, payload, "vault-1", "vault-1:9", T0).decode()
    assert line.startswith("<154>1 2026-11-26T12:00:00.000000Z vault-1 bulwark - ALERT ")  # 19*8+2
    assert '[bulwark@32473 event="raised" delivery="vault-1:9" alert="7" key="pool:health:tank"]' in line
    assert line.endswith('pool "tank" is ] DEGRADED') and "\n" not in line


def test_old_notifications_are_forgotten(store: Store) -> None:
    _webhook(store)
    alerts.raise_alert(store, "k", level="warning", category="test", message="m", now=T0)
    [queued] = outbox.list_notifications(store)
    outbox.mark_sent(store, queued.id, T0 + 1)
    assert outbox.forget_old(store, now=T0 + outbox.KEEP_SECONDS - 1) == 0
    assert outbox.forget_old(store, now=T0 + outbox.KEEP_SECONDS + 1) == 1
    assert outbox.list_notifications(store) == [] and alerts.get_active(store, "k") is not None
