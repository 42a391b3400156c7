"""Server-side sessions: the browser holds a random secret, the database its SHA-256.

A session expires after an absolute lifetime and after a period of inactivity; it can be revoked (sign
out, password change, user deleted). Sessions that arrived through the remote-access tunnel are marked
``remote`` and must pass the second factor before anything else.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from appliance.store import Store

ABSOLUTE_LIFETIME = 12 * 3600.0
IDLE_TIMEOUT = 30 * 60.0
TOUCH_INTERVAL = 30.0  # write last_seen at most this often


@dataclass(frozen=True)
class Session:
    id: str  # hash of the secret
    user_id: int
    created_at: float
    last_seen_at: float
    expires_at: float
    address: str | None
    remote: bool
    mfa_done: bool


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _row(row: object) -> Session:
    r = dict(row)  # type: ignore[call-overload]
    return Session(
        id=r["id"],
        user_id=r["user_id"],
        created_at=r["created_at"],
        last_seen_at=r["last_seen_at"],
        expires_at=r["expires_at"],
        address=r["address"],
        remote=bool(r["remote"]),
        mfa_done=bool(r["mfa_done"]),
    )


def create(
    store: Store,
    user_id: int,
    *,
    address: str | None,
    remote: bool,
    mfa_done: bool,
    user_agent: str | None = None,
    lifetime: float = ABSOLUTE_LIFETIME,
) -> str:
    """Start a session; returns the secret for the cookie (never stored)."""
    secret = secrets.token_urlsafe(32)
    now = time.time()
    with store.write() as conn:
        conn.execute(
            "INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, address, remote, mfa_done, "
            "user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _hash(secret),
                user_id,
                now,
                now,
                now + lifetime,
                address,
                int(remote),
                int(mfa_done),
                (user_agent or "")[:200],
            ),
        )
        conn.execute("DELETE FROM sessions WHERE expires_at < ? OR last_seen_at < ?", (now, now - IDLE_TIMEOUT))
    return secret


def lookup(store: Store, secret: str | None, *, idle_timeout: float = IDLE_TIMEOUT) -> Session | None:
    """The live session for a cookie secret, touched; None if unknown, expired or idle too long."""
    if not secret or len(secret) > 200:
        return None
    row = store.query_one("SELECT * FROM sessions WHERE id = ?", (_hash(secret),))
    if row is None:
        return None
    session = _row(row)
    now = time.time()
    if now > session.expires_at or now - session.last_seen_at > idle_timeout:
        revoke(store, secret)
        return None
    if now - session.last_seen_at > TOUCH_INTERVAL:
        with store.write() as conn:
            conn.execute("UPDATE sessions SET last_seen_at = ? WHERE id = ?", (now, session.id))
    return session


def mark_mfa_done(store: Store, session_id: str) -> None:
    with store.write() as conn:
        conn.execute("UPDATE sessions SET mfa_done = 1 WHERE id = ?", (session_id,))


def revoke(store: Store, secret: str) -> None:
    with store.write() as conn:
        conn.execute("DELETE FROM sessions WHERE id = ?", (_hash(secret),))


def revoke_user(store: Store, user_id: int, *, except_id: str | None = None) -> int:
    """End every session of a user (optionally keeping one); returns how many."""
    with store.write() as conn:
        cur = conn.execute("DELETE FROM sessions WHERE user_id = ? AND id != ?", (user_id, except_id or ""))
        return cur.rowcount


def count_active(store: Store) -> int:
    now = time.time()
    row = store.query_one(
        "SELECT COUNT(*) AS n FROM sessions WHERE expires_at > ? AND last_seen_at > ?", (now, now - IDLE_TIMEOUT)
    )
    return int(row["n"]) if row else 0
