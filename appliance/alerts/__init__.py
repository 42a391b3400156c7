"""Alerts: conditions that need a person, raised and cleared by the code that watches them.

A condition is identified by a dedup key (``rpo:acme``). Raising it again while it is active refreshes it
(message, level, last seen, count) instead of adding a second alert; clearing it marks the active one
``cleared`` when the condition ends. Channels (e-mail, webhooks) and rules will grow from this table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from appliance.store import Store
from appliance.system.errors import InvalidInput

LEVELS = ("info", "warning", "critical")
STATES = ("active", "cleared")


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "level": self.level,
            "category": self.category,
            "subject": self.subject,
            "message": self.message,
            "state": self.state,
            "raised_at": self.raised_at,
            "last_seen_at": self.last_seen_at,
            "cleared_at": self.cleared_at,
            "count": self.count,
        }


def _alert(row: Any) -> Alert:
    return Alert(**{name: row[name] for name in Alert.__dataclass_fields__})


def raise_alert(
    store: Store,
    key: str,
    *,
    level: str,
    category: str,
    message: str,
    subject: str | None = None,
    now: float | None = None,
) -> tuple[Alert, bool]:
    """Raise (or refresh) the active alert ``key``. Returns it and whether it is new."""
    if level not in LEVELS:
        raise InvalidInput(f"alert level {level!r} must be one of {', '.join(LEVELS)}")
    if not key or not category or not message:
        raise InvalidInput("an alert needs a key, a category and a message")
    at = time.time() if now is None else now
    with store.write() as conn:
        row = conn.execute("SELECT id FROM alerts WHERE key = ? AND state = 'active'", (key,)).fetchone()
        if row is None:
            cur = conn.execute(
                "INSERT INTO alerts (key, level, category, subject, message, state, raised_at, last_seen_at) "
                "VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
                (key, level, category, subject, message, at, at),
            )
            alert_id, new = int(cur.lastrowid or 0), True
        else:
            alert_id, new = int(row["id"]), False
            conn.execute(
                "UPDATE alerts SET level = ?, message = ?, subject = ?, last_seen_at = ?, count = count + 1 "
                "WHERE id = ?",
                (level, message, subject, at, alert_id),
            )
        result = _alert(conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone())
    return result, new


def clear(store: Store, key: str, *, now: float | None = None) -> bool:
    """End the active alert ``key`` (if any). Returns whether one was active."""
    at = time.time() if now is None else now
    with store.write() as conn:
        cur = conn.execute(
            "UPDATE alerts SET state = 'cleared', cleared_at = ? WHERE key = ? AND state = 'active'", (at, key)
        )
        return cur.rowcount > 0


def get_active(store: Store, key: str) -> Alert | None:
    row = store.query_one("SELECT * FROM alerts WHERE key = ? AND state = 'active'", (key,))
    return None if row is None else _alert(row)


def list_alerts(
    store: Store, *, active_only: bool = True, category: str | None = None, limit: int = 200
) -> list[Alert]:
    """Alerts, newest first."""
    sql = "SELECT * FROM alerts"
    where: list[str] = []
    params: list[Any] = []
    if active_only:
        where.append("state = 'active'")
    if category:
        where.append("category = ?")
        params.append(category)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY raised_at DESC, id DESC LIMIT ?"
    params.append(limit)
    return [_alert(r) for r in store.query(sql, tuple(params))]
