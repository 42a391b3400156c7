"""The outbox: notifications queued durably, in the same transaction as the alert change that caused them.

``bulwarkd`` delivers them (:mod:`appliance.alerts.delivery`); the web process only queues. A row is
``pending`` until claimed (``sending``), then ``sent``, ``failed`` after its last attempt, or ``dropped`` when
it is no longer worth sending. Failed attempts are retried with exponential backoff.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import appliance
from appliance.alerts import channels
from appliance.store import Store

if TYPE_CHECKING:
    from appliance.alerts.engine import Alert

ALERT_ATTEMPTS = 6
BACKOFF_BASE = 15.0  # seconds before the 2nd attempt; doubled each time
BACKOFF_MAX = 900.0
STALE_CLAIM = 600.0  # a row left 'sending' this long was claimed by a daemon that died
KEEP_SECONDS = 90 * 86400  # notifications that ended are kept this long (the alerts themselves stay)
RAISING_EVENTS = ("raised", "escalated", "reminder")
EVENT_WORDS = {
    "raised": "",
    "escalated": "ESCALATED ",
    "reminder": "REMINDER ",
    "cleared": "RESOLVED ",
}


@dataclass(frozen=True)
class Notification:
    id: int
    channel_id: int
    alert_id: int | None
    event: str
    payload: dict[str, Any]
    state: str
    attempts: int
    max_attempts: int
    created_at: float
    not_before: float
    sent_at: float | None
    last_error: str | None
    note: str | None

    @property
    def subject(self) -> str:
        return str(self.payload.get("subject", ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel_id": self.channel_id,
            "alert_id": self.alert_id,
            "event": self.event,
            "subject": self.subject,
            "state": self.state,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "created_at": self.created_at,
            "not_before": self.not_before,
            "sent_at": self.sent_at,
            "last_error": self.last_error,
            "note": self.note,
        }


def _notification(row: Any) -> Notification:
    return Notification(
        id=row["id"],
        channel_id=row["channel_id"],
        alert_id=row["alert_id"],
        event=row["event"],
        payload=json.loads(row["payload"]),
        state=row["state"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        created_at=row["created_at"],
        not_before=row["not_before"],
        sent_at=row["sent_at"],
        last_error=row["last_error"],
        note=row["note"],
    )


def appliance_facts(conn: sqlite3.Connection) -> dict[str, str]:
    """The appliance's name and time zone, read inside the caller's transaction."""
    row = conn.execute("SELECT value FROM settings WHERE key = 'appliance'").fetchone()
    data = json.loads(row["value"]) if row else {}
    return {
        "hostname": str(data.get("hostname") or "bulwark"),
        "timezone": str(data.get("timezone") or "UTC"),
        "version": appliance.__version__,
    }


def _when(at: float, tz: str) -> str:
    import datetime as dt
    from zoneinfo import ZoneInfo

    try:
        zone: dt.tzinfo = ZoneInfo(tz)
    except (KeyError, ValueError):
        zone = dt.UTC
    return dt.datetime.fromtimestamp(at, zone).strftime("%Y-%m-%d %H:%M %Z")


def alert_payload(alert: Alert, event: str, facts: dict[str, str], at: float) -> dict[str, Any]:
    """Subject, plain text and the JSON document (webhooks) of one alert notification."""
    host = facts["hostname"]
    word = EVENT_WORDS.get(event, "")
    subject = f"[Bulwark {host}] {word}{alert.level.upper()}: {alert.message}"
    lines = [
        f"{word}{alert.level.upper()} alert on appliance {host}" if word else f"{alert.level.upper()} alert on {host}",
        "",
        alert.message,
        "",
        f"Category:   {alert.category}" + (f" ({alert.subject})" if alert.subject else ""),
        f"Raised:     {_when(alert.raised_at, facts['timezone'])}",
        f"Last seen:  {_when(alert.last_seen_at, facts['timezone'])} (seen {alert.count} time(s))",
    ]
    if alert.cleared_at is not None:
        lines.append(f"Cleared:    {_when(alert.cleared_at, facts['timezone'])}")
    lines += ["", f"Alert {alert.id} ({alert.key}). Acknowledge or snooze it on the appliance's Alerts page", ""]
    return {
        "subject": subject[:250],
        "text": "\n".join(lines),
        "document": {
            "event": event,
            "sent_at": at,
            "appliance": {"hostname": host, "version": facts["version"]},
            "alert": alert.to_dict(at),
        },
        "level": alert.level,
    }


def _insert(
    conn: sqlite3.Connection,
    channel_id: int,
    alert_id: int | None,
    event: str,
    payload: dict[str, Any],
    *,
    at: float,
    not_before: float | None = None,
    max_attempts: int = ALERT_ATTEMPTS,
    note: str | None = None,
) -> int:
    cur = conn.execute(
        "INSERT INTO alert_outbox (channel_id, alert_id, event, payload, state, attempts, max_attempts, created_at, "
        "not_before, note) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
        (channel_id, alert_id, event, json.dumps(payload), max_attempts, at, at if not_before is None else not_before,
         note),
    )  # fmt: skip
    return int(cur.lastrowid or 0)


def enqueue_alert(conn: sqlite3.Connection, alert: Alert, event: str, at: float) -> list[int]:
    """Queue one notification of ``alert`` per channel that wants it (inside the caller's transaction).

    A channel gets an alert at or above its level; not its own failure alert (it could not carry it); during
    its quiet hours a non-critical one is held until they end; a ``cleared`` one only if it was told of the
    alert and wants to hear that it cleared."""
    facts = appliance_facts(conn)
    payload: dict[str, Any] | None = None
    queued = []
    for row in conn.execute("SELECT * FROM alert_channels WHERE enabled = 1 ORDER BY id").fetchall():
        channel = channels.from_row(row)
        if not channel.accepts(alert.level) or alert.key == channels.failure_key(channel.id):
            continue
        if event == "cleared" and not channel.notify_cleared:
            continue
        if event == "cleared" and not _was_told(conn, alert.id, channel.id):
            continue
        hold = None if alert.level == "critical" else channel.quiet_until(at, facts["timezone"])
        note = f"held for quiet hours ({channel.quiet_hours})" if hold else None
        payload = payload or alert_payload(alert, event, facts, at)
        queued.append(_insert(conn, channel.id, alert.id, event, payload, at=at, not_before=hold, note=note))
    return queued


def _was_told(conn: sqlite3.Connection, alert_id: int, channel_id: int) -> bool:
    """Whether a notification that ``alert_id`` was raised went to (or is on its way to) ``channel_id``."""
    row = conn.execute(
        "SELECT 1 FROM alert_outbox WHERE alert_id = ? AND channel_id = ? AND event IN ('raised', 'escalated', "
        "'reminder') AND state IN ('pending', 'sending', 'sent')",
        (alert_id, channel_id),
    ).fetchone()
    return row is not None


def enqueue_test(store: Store, channel: channels.Channel, *, by: str, now: float | None = None) -> int:
    """Queue a test message to ``channel`` (one attempt: the person waiting wants the answer, not a retry)."""
    at = time.time() if now is None else now
    with store.write() as conn:
        facts = appliance_facts(conn)
        host = facts["hostname"]
        text = (
            f"This is a test message from the Bulwark appliance {host}, sent by {by} to the channel "
            f"{channel.name} ({channel.kind}).\n\nIf you read it, alerts of level {channel.min_level} and above "
            "will reach you here.\n"
        )
        payload = {
            "subject": f"[Bulwark {host}] Test message for channel {channel.name}",
            "text": text,
            "document": {
                "event": "test",
                "sent_at": at,
                "appliance": {"hostname": host, "version": facts["version"]},
                "channel": channel.name,
                "requested_by": by,
            },
            "level": "info",
        }
        return _insert(conn, channel.id, None, "test", payload, at=at, max_attempts=1)


def enqueue_message(
    store: Store,
    channel_id: int,
    event: str,
    subject: str,
    text: str,
    *,
    html: str | None = None,
    document: dict[str, Any] | None = None,
    now: float | None = None,
) -> int:
    """Queue any other message (a report) to one channel."""
    at = time.time() if now is None else now
    payload = {"subject": subject, "text": text, "html": html, "document": document or {}, "level": "info"}
    with store.write() as conn:
        return _insert(conn, channel_id, None, event, payload, at=at)


def get(store: Store, notification_id: int) -> Notification:
    from appliance.system.errors import NotFound

    row = store.query_one("SELECT * FROM alert_outbox WHERE id = ?", (notification_id,))
    if row is None:
        raise NotFound(f"notification {notification_id}")
    return _notification(row)


def list_notifications(
    store: Store, *, channel_id: int | None = None, alert_id: int | None = None, limit: int = 50
) -> list[Notification]:
    sql, params = "SELECT * FROM alert_outbox", []
    where = []
    if channel_id is not None:
        where.append("channel_id = ?")
        params.append(channel_id)
    if alert_id is not None:
        where.append("alert_id = ?")
        params.append(alert_id)
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = store.query(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
    return [_notification(r) for r in rows]


def counts(store: Store) -> dict[str, int]:
    out = dict.fromkeys(("pending", "sending", "sent", "failed", "dropped"), 0)
    for row in store.query("SELECT state, COUNT(*) AS n FROM alert_outbox GROUP BY state"):
        out[row["state"]] = row["n"]
    return out


# -- delivery bookkeeping (bulwarkd) -------------------------------------------------------------------------


def due(store: Store, now: float, limit: int = 20) -> list[int]:
    rows = store.query(
        "SELECT id FROM alert_outbox WHERE state = 'pending' AND not_before <= ? ORDER BY not_before, id LIMIT ?",
        (now, limit),
    )
    return [int(r["id"]) for r in rows]


def claim(store: Store, notification_id: int, now: float) -> Notification | None:
    """Take one pending row for delivery; None if someone else took it first."""
    with store.write() as conn:
        cur = conn.execute(
            "UPDATE alert_outbox SET state = 'sending', claimed_at = ?, attempts = attempts + 1 "
            "WHERE id = ? AND state = 'pending'",
            (now, notification_id),
        )
        if cur.rowcount == 0:
            return None
        return _notification(conn.execute("SELECT * FROM alert_outbox WHERE id = ?", (notification_id,)).fetchone())


def mark_sent(store: Store, notification_id: int, now: float, note: str | None = None) -> None:
    with store.write() as conn:
        conn.execute(
            "UPDATE alert_outbox SET state = 'sent', sent_at = ?, last_error = NULL, note = COALESCE(?, note) "
            "WHERE id = ?",
            (now, note, notification_id),
        )


def mark_dropped(store: Store, notification_id: int, note: str) -> None:
    with store.write() as conn:
        conn.execute("UPDATE alert_outbox SET state = 'dropped', note = ? WHERE id = ?", (note, notification_id))


def backoff(attempts: int) -> float:
    return float(min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, attempts - 1)))


def mark_failed(store: Store, notification: Notification, error: str, now: float) -> str:
    """Record a failed attempt: back to ``pending`` after a backoff, or ``failed`` after the last attempt."""
    final = notification.attempts >= notification.max_attempts
    with store.write() as conn:
        conn.execute(
            "UPDATE alert_outbox SET state = ?, last_error = ?, not_before = ? WHERE id = ?",
            ("failed" if final else "pending", error[:500], now + backoff(notification.attempts), notification.id),
        )
    return "failed" if final else "pending"


def recover(store: Store, now: float | None = None, *, older_than: float = STALE_CLAIM) -> int:
    """Rows left ``sending`` by a daemon that stopped mid-delivery go back to ``pending`` (sent at least once
    more: a receiver may see a duplicate, never a loss)."""
    at = time.time() if now is None else now
    with store.write() as conn:
        cur = conn.execute(
            "UPDATE alert_outbox SET state = 'pending', not_before = ? WHERE state = 'sending' AND claimed_at < ?",
            (at, at - older_than),
        )
        return cur.rowcount


def forget_old(store: Store, *, now: float | None = None, keep_seconds: float = KEEP_SECONDS) -> int:
    """Forget notifications that ended (sent, failed, dropped) longer ago than ``keep_seconds``."""
    at = time.time() if now is None else now
    with store.write() as conn:
        cur = conn.execute(
            "DELETE FROM alert_outbox WHERE state IN ('sent', 'failed', 'dropped') AND created_at < ?",
            (at - keep_seconds,),
        )
        return cur.rowcount
