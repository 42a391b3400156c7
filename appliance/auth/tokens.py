"""API tokens: ``bwk_<id>_<secret>``, shown once, stored as the SHA-256 of the secret, revocable,
optionally expiring. A token carries a role like a user does."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from appliance.store import Store
from appliance.system.errors import InvalidInput, NotFound
from appliance.users import ROLES

PREFIX = "bwk"
_TOKEN = re.compile(r"bwk_(\d{1,12})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}")
MAX_DAYS = 3650


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    role: str
    created_by: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > time.time())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
            "active": self.active,
        }


def _row(row: Any) -> Token:
    return Token(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(
    store: Store, *, name: str, role: str, created_by: str, expires_days: int | None = None
) -> tuple[Token, str]:
    """Make a token; returns it and the full token string (shown once, never stored)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput("a token name is 1–64 letters, digits, spaces, '_', '.', ':' or '-'")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    if expires_days is not None and not 1 <= expires_days <= MAX_DAYS:
        raise InvalidInput(f"expiry must be 1 to {MAX_DAYS} days")
    secret = secrets.token_urlsafe(32)
    now = time.time()
    expires = now + expires_days * 86400 if expires_days else None
    with store.write() as conn:
        cur = conn.execute(
            "INSERT INTO api_tokens (name, secret_hash, role, created_by, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (name, _digest(secret), role, created_by, now, expires),
        )
        token_id = int(cur.lastrowid or 0)
    return get(store, token_id), f"{PREFIX}_{token_id}_{secret}"


def get(store: Store, token_id: int) -> Token:
    row = store.query_one("SELECT * FROM api_tokens WHERE id = ?", (token_id,))
    if row is None:
        raise NotFound(f"API token {token_id}")
    return _row(row)


def list_tokens(store: Store) -> list[Token]:
    return [_row(r) for r in store.query("SELECT * FROM api_tokens ORDER BY id")]


def revoke(store: Store, token_id: int) -> Token:
    with store.write() as conn:
        cur = conn.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), token_id)
        )
        if cur.rowcount != 1 and conn.execute("SELECT 1 FROM api_tokens WHERE id = ?", (token_id,)).fetchone() is None:
            raise NotFound(f"API token {token_id}")
    return get(store, token_id)


def authenticate(store: Store, presented: str) -> Token | None:
    """The active token matching ``presented``, or None (wrong, revoked, expired or malformed)."""
    m = _TOKEN.fullmatch(presented or "")
    if m is None:
        return None
    row = store.query_one("SELECT * FROM api_tokens WHERE id = ?", (int(m.group(1)),))
    if row is None or not hmac.compare_digest(row["secret_hash"], _digest(m.group(2))):
        return None
    token = _row(row)
    if not token.active:
        return None
    now = time.time()
    if token.last_used_at is None or now - token.last_used_at > 60:
        with store.write() as conn:
            conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, token.id))
    return token
