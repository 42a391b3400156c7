"""The alert engine: one alert per condition, its life, and its history.

A condition is identified by a dedup key (``rpo:acme``). Raising it while an alert for that key is open refreshes
that alert (message, last seen, count) instead of adding another; raising it at a higher level escalates it.
Clearing the key ends the open alert when the condition ends. An open alert needs attention (``active``) until
someone acknowledges it (``acknowledged``) or snoozes it until a time (``snoozed``); when a snooze runs out and
the condition is still there, the alert is active again and a reminder goes out.

The table's ``state`` column is the condition's state (``active`` while it lasts, ``cleared`` after); the
*status* (active, acknowledged, snoozed, cleared) adds what people did about it. Every change is recorded in
``alert_events``; every notification worth sending is queued in the outbox in the same transaction, for
``bulwarkd`` to deliver (:mod:`appliance.alerts.outbox`).
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from appliance.alerts import outbox
from appliance.alerts.classes import LEVELS, AlertClass
from appliance.store import Store
from appliance.system.durations import parse_duration
from appliance.system.errors import Conflict, InvalidInput, NotFound

STATES = ("active", "cleared")
STATUSES = ("active", "acknowledged", "snoozed", "cleared")
RANK = {level: i for i, level in enumerate(LEVELS)}
MAX_SNOOZE_SECONDS = 30 * 86400


class AlertNotFound(NotFound):
    """There is no alert {}."""

    code = "alert_not_found"
    hint = "List alerts with 'bulwark alert list --all' or on the Alerts page."


class AlertCleared(Conflict):
    """Alert {} has already cleared: its condition ended."""

    code = "alert_cleared"
    hint = "Only open alerts can be acknowledged or snoozed; the cleared one stays in the history."


class InvalidSnooze(InvalidInput):
    """A snooze must end in the future and within 30 days: {}"""

    code = "invalid_snooze"
    hint = "Give a time such as '2026-11-27 08:00' or a duration such as '4h'; nothing was changed."


@dataclass(frozen=True)
class Alert:
    id: int
    key: str
    level: str
    category: str
    subject: str | None
    message: str
    state: str
    raised_at: float
    last_seen_at: float
    cleared_at: float | None
    count: int
    alert_class: str | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    snoozed_until: float | None = None
    snoozed_by: str | None = None

    @property
    def open(self) -> bool:
        return self.state == "active"

    def status(self, now: float | None = None) -> str:
        if not self.open:
            return "cleared"
        if self.snoozed_until is not None and self.snoozed_until > (time.time() if now is None else now):
            return "snoozed"
        if self.acknowledged_at is not None:
            return "acknowledged"
        return "active"

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "level": self.level,
            "category": self.category,
            "subject": self.subject,
            "message": self.message,
            "state": self.state,
            "status": self.status(now),
            "class": self.alert_class,
            "raised_at": self.raised_at,
            "last_seen_at": self.last_seen_at,
            "cleared_at": self.cleared_at,
            "count": self.count,
            "acknowledged_at": self.acknowledged_at,
            "acknowledged_by": self.acknowledged_by,
            "snoozed_until": self.snoozed_until,
            "snoozed_by": self.snoozed_by,
        }


_COLUMNS = {name: name for name in Alert.__dataclass_fields__} | {"alert_class": "class"}


def _alert(row: Any) -> Alert:
    return Alert(**{field: row[column] for field, column in _COLUMNS.items()})


def _load(conn: sqlite3.Connection, alert_id: int) -> Alert:
    row = conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    if row is None:
        raise AlertNotFound(alert_id)
    return _alert(row)


def _event(conn: sqlite3.Connection, alert: Alert, event: str, at: float, actor: str | None = None) -> None:
    conn.execute(
        "INSERT INTO alert_events (alert_id, at, event, actor, level, message) VALUES (?, ?, ?, ?, ?, ?)",
        (alert.id, at, event, actor, alert.level, alert.message),
    )


def _now(now: float | None) -> float:
    return time.time() if now is None else now


# -- raising and clearing (the code that watches a condition) -----------------------------------------------


def raise_alert(
    store: Store,
    key: str,
    *,
    level: str,
    category: str,
    message: str,
    subject: str | None = None,
    now: float | None = None,
    alert_class: str | None = None,
) -> tuple[Alert, bool]:
    """Raise (or refresh) the open alert ``key``. Returns it and whether it is new.

    A new alert, and one raised again at a higher level (escalated), notify the channels; a refresh does not.
    A snooze that has run out is ended here too (a reminder goes out)."""
    if level not in LEVELS:
        raise InvalidInput(f"alert level {level!r} must be one of {', '.join(LEVELS)}")
    if not key or not category or not message:
        raise InvalidInput("an alert needs a key, a category and a message")
    at = _now(now)
    with store.write() as conn:
        row = conn.execute("SELECT * FROM alerts WHERE key = ? AND state = 'active'", (key,)).fetchone()
        if row is None:
            cur = conn.execute(
                "INSERT INTO alerts (key, level, category, subject, message, state, raised_at, last_seen_at, class) "
                "VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?)",
                (key, level, category, subject, message, at, at, alert_class),
            )
            alert = _load(conn, int(cur.lastrowid or 0))
            _event(conn, alert, "raised", at)
            outbox.enqueue_alert(conn, alert, "raised", at)
            return alert, True
        old = _alert(row)
        escalated = RANK[level] > RANK[old.level]
        conn.execute(
            "UPDATE alerts SET level = ?, message = ?, subject = ?, last_seen_at = ?, count = count + 1, "
            "class = COALESCE(?, class) WHERE id = ?",
            (level, message, subject, max(at, old.last_seen_at), alert_class, old.id),
        )
        if escalated:  # worse than what was acknowledged or snoozed: it needs attention again
            conn.execute(
                "UPDATE alerts SET acknowledged_at = NULL, acknowledged_by = NULL, snoozed_until = NULL, "
                "snoozed_by = NULL WHERE id = ?",
                (old.id,),
            )
        alert = _load(conn, old.id)
        if escalated:
            _event(conn, alert, "escalated", at)
            outbox.enqueue_alert(conn, alert, "escalated", at)
        elif old.snoozed_until is not None and old.snoozed_until <= at:
            alert = _end_snooze(conn, alert, at)
        return alert, False


def fire(
    store: Store,
    cls: AlertClass,
    key: str,
    *,
    subject: str | None = None,
    level: str | None = None,
    now: float | None = None,
    **params: Any,
) -> tuple[Alert, bool]:
    """Raise an alert of a declared class, its message made from the class's template and ``params``."""
    return raise_alert(
        store,
        key,
        level=level or cls.level,
        category=cls.category,
        message=cls.message(**params),
        subject=subject,
        now=now,
        alert_class=cls.name,
    )


def clear(store: Store, key: str, *, now: float | None = None) -> bool:
    """End the open alert ``key`` (if any), because its condition ended. Returns whether one was open."""
    at = _now(now)
    with store.write() as conn:
        row = conn.execute("SELECT * FROM alerts WHERE key = ? AND state = 'active'", (key,)).fetchone()
        if row is None:
            return False
        old = _alert(row)
        # A clock given by the caller may be behind the last sighting: the history never runs backwards.
        conn.execute(
            "UPDATE alerts SET state = 'cleared', cleared_at = ?, snoozed_until = NULL WHERE id = ?",
            (max(at, old.last_seen_at), old.id),
        )
        alert = _load(conn, old.id)
        _event(conn, alert, "cleared", at)
        outbox.enqueue_alert(conn, alert, "cleared", at)
        return True


def clear_missing(store: Store, category: str, keep: set[str], *, now: float | None = None) -> list[str]:
    """Clear the open alerts of ``category`` whose key is not in ``keep`` (conditions no longer watched)."""
    cleared = []
    for alert in list_alerts(store, category=category, limit=10000):
        if alert.key not in keep and clear(store, alert.key, now=now):
            cleared.append(alert.key)
    return cleared


# -- what people do about an alert ---------------------------------------------------------------------------


def get(store: Store, alert_id: int) -> Alert:
    row = store.query_one("SELECT * FROM alerts WHERE id = ?", (alert_id,))
    if row is None:
        raise AlertNotFound(alert_id)
    return _alert(row)


def get_active(store: Store, key: str) -> Alert | None:
    row = store.query_one("SELECT * FROM alerts WHERE key = ? AND state = 'active'", (key,))
    return None if row is None else _alert(row)


def _open_for_change(conn: sqlite3.Connection, alert_id: int) -> Alert:
    alert = _load(conn, alert_id)
    if not alert.open:
        raise AlertCleared(alert_id)
    return alert


def acknowledge(store: Store, alert_id: int, *, by: str, now: float | None = None) -> Alert:
    """Someone has seen the alert and is on it: no reminders. Ends a snooze."""
    at = _now(now)
    with store.write() as conn:
        _open_for_change(conn, alert_id)
        conn.execute(
            "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ?, snoozed_until = NULL, snoozed_by = NULL "
            "WHERE id = ?",
            (at, by, alert_id),
        )
        alert = _load(conn, alert_id)
        _event(conn, alert, "acknowledged", at, by)
        return alert


def snooze(store: Store, alert_id: int, *, until: float, by: str, now: float | None = None) -> Alert:
    """Silence the alert until ``until``; if its condition is still there then, it is active again."""
    at = _now(now)
    if not isinstance(until, int | float) or until <= at:
        raise InvalidSnooze("that time has already passed")
    if until - at > MAX_SNOOZE_SECONDS:
        raise InvalidSnooze("that is more than 30 days away")
    with store.write() as conn:
        _open_for_change(conn, alert_id)
        conn.execute(
            "UPDATE alerts SET snoozed_until = ?, snoozed_by = ?, acknowledged_at = NULL, acknowledged_by = NULL "
            "WHERE id = ?",
            (float(until), by, alert_id),
        )
        alert = _load(conn, alert_id)
        _event(conn, alert, "snoozed", at, by)
        return alert


def snooze_end(
    *, until: str | None = None, duration: str | None = None, tz: str = "UTC", now: float | None = None
) -> float:
    """When a snooze asked for as a time (``2026-11-27 08:00`` or ``08:00``, appliance time; or ISO 8601 with
    an offset) or as a duration (``4h``) ends. Exactly one of the two must be given."""
    at = _now(now)
    if (until is None) == (duration is None):
        raise InvalidSnooze("give either a time to snooze until or a duration, not both")
    if duration is not None:
        try:
            seconds = parse_duration(duration, what="snooze duration")
        except InvalidInput as exc:
            raise InvalidSnooze(exc.args[0]) from None
        return at + seconds
    assert until is not None
    text = until.strip().replace("T", " ")
    zone = ZoneInfo(tz)
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}", text):  # today at that time, or tomorrow if it has passed
            local = dt.datetime.fromtimestamp(at, zone)
            hours, minutes = (int(x) for x in text.split(":"))
            moment = local.replace(hour=hours, minute=minutes, second=0, microsecond=0)
            if moment.timestamp() <= at:
                moment += dt.timedelta(days=1)
        else:
            moment = dt.datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
    except ValueError:
        raise InvalidSnooze(f"{until!r} is not a time such as '2026-11-27 08:00' or '08:00'") from None
    return moment.timestamp()


def unsnooze(store: Store, alert_id: int, *, by: str, now: float | None = None) -> Alert:
    """End a snooze early (the alert is active again, without a reminder)."""
    at = _now(now)
    with store.write() as conn:
        alert = _open_for_change(conn, alert_id)
        if alert.snoozed_until is None:
            return alert
        conn.execute("UPDATE alerts SET snoozed_until = NULL, snoozed_by = NULL WHERE id = ?", (alert_id,))
        alert = _load(conn, alert_id)
        _event(conn, alert, "unsnoozed", at, by)
        return alert


def _end_snooze(conn: sqlite3.Connection, alert: Alert, at: float) -> Alert:
    conn.execute("UPDATE alerts SET snoozed_until = NULL, snoozed_by = NULL WHERE id = ?", (alert.id,))
    alert = _load(conn, alert.id)
    _event(conn, alert, "reminded", at)
    outbox.enqueue_alert(conn, alert, "reminder", at)
    return alert


def expire_snoozes(store: Store, *, now: float | None = None) -> list[Alert]:
    """End the snoozes that have run out on open alerts: they are active again and a reminder goes out."""
    at = _now(now)
    ended = []
    with store.write() as conn:
        rows = conn.execute(
            "SELECT * FROM alerts WHERE state = 'active' AND snoozed_until IS NOT NULL AND snoozed_until <= ?", (at,)
        ).fetchall()
        for row in rows:
            ended.append(_end_snooze(conn, _alert(row), at))
    return ended


# -- reading -------------------------------------------------------------------------------------------------


def list_alerts(
    store: Store,
    *,
    active_only: bool = True,
    category: str | None = None,
    status: str | None = None,
    limit: int = 200,
    now: float | None = None,
) -> list[Alert]:
    """Alerts, newest first: the open ones (``active_only``), every one, or those of one ``status``."""
    at = _now(now)
    where: list[str] = []
    params: list[Any] = []
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"alert status {status!r} must be one of {', '.join(STATUSES)}")
    if status == "cleared":
        where.append("state = 'cleared'")
    elif status is not None:
        awake = "state = 'active' AND (snoozed_until IS NULL OR snoozed_until <= ?)"
        where.append(
            {
                "active": f"{awake} AND acknowledged_at IS NULL",
                "acknowledged": f"{awake} AND acknowledged_at IS NOT NULL",
                "snoozed": "state = 'active' AND snoozed_until > ?",
            }[status]
        )
        params.append(at)
    elif active_only:
        where.append("state = 'active'")
    if category:
        where.append("category = ?")
        params.append(category)
    sql = "SELECT * FROM alerts"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY cleared_at DESC, id DESC" if status == "cleared" else " ORDER BY raised_at DESC, id DESC"
    rows = store.query(sql + " LIMIT ?", (*params, limit))
    return [_alert(r) for r in rows]


def counts(store: Store, *, now: float | None = None) -> dict[str, Any]:
    """Open alerts by status, and those that need attention (status active) by level."""
    at = _now(now)
    out: dict[str, Any] = dict.fromkeys(STATUSES[:3], 0)
    levels = dict.fromkeys(LEVELS, 0)
    for row in store.query("SELECT * FROM alerts WHERE state = 'active'"):
        alert = _alert(row)
        status = alert.status(at)
        out[status] += 1
        if status == "active":
            levels[alert.level] += 1
    out["open"] = out["active"] + out["acknowledged"] + out["snoozed"]
    out["by_level"] = levels
    return out


def events(store: Store, alert_id: int) -> list[dict[str, Any]]:
    """The alert's history, oldest first."""
    get(store, alert_id)
    rows = store.query("SELECT * FROM alert_events WHERE alert_id = ? ORDER BY id", (alert_id,))
    return [
        {"at": r["at"], "event": r["event"], "actor": r["actor"], "level": r["level"], "message": r["message"]}
        for r in rows
    ]
