"""Login throttling and temporary lockout, shared by every web worker through the database.

A user name is locked for LOCKOUT_SECONDS after MAX_USER_FAILURES failed sign-ins within WINDOW (from any
address); an address is throttled after MAX_ADDRESS_FAILURES failures within WINDOW (whatever the names).
A successful sign-in clears the user's failures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from appliance.store import Store

WINDOW = 15 * 60.0
LOCKOUT_SECONDS = 15 * 60.0
MAX_USER_FAILURES = 5
MAX_ADDRESS_FAILURES = 20


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float  # seconds until a new attempt is accepted (0 when allowed)
    reason: str


def check(store: Store, username: str, address: str, now: float | None = None) -> Verdict:
    now = time.time() if now is None else now
    user_rows = store.query(
        "SELECT at FROM login_failures WHERE username = ? AND at > ? ORDER BY at DESC",
        (username, now - WINDOW),
    )
    if len(user_rows) >= MAX_USER_FAILURES:
        last = user_rows[0]["at"]
        retry = last + LOCKOUT_SECONDS - now
        if retry > 0:
            return Verdict(False, retry, "too many failed sign-ins for this user")
    addr = store.query_one(
        "SELECT COUNT(*) AS n, MAX(at) AS last FROM login_failures WHERE address = ? AND at > ?",
        (address, now - WINDOW),
    )
    if addr is not None and addr["n"] >= MAX_ADDRESS_FAILURES:
        retry = addr["last"] + LOCKOUT_SECONDS - now
        if retry > 0:
            return Verdict(False, retry, "too many failed sign-ins from this address")
    return Verdict(True, 0.0, "")


def record_failure(store: Store, username: str, address: str) -> None:
    now = time.time()
    with store.write() as conn:
        conn.execute(
            "INSERT INTO login_failures (username, address, at) VALUES (?, ?, ?)", (username[:64], address, now)
        )
        conn.execute("DELETE FROM login_failures WHERE at < ?", (now - 24 * 3600,))


def clear(store: Store, username: str) -> None:
    with store.write() as conn:
        conn.execute("DELETE FROM login_failures WHERE username = ?", (username,))
