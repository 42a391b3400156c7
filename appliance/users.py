"""Local user accounts: argon2id password hashes and roles."""

from __future__ import annotations

import functools
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import argon2

from appliance.store import Store
from appliance.system.errors import AlreadyExists, Conflict, InvalidInput, NotFound

ROLES = ("admin", "operator", "viewer")
_USERNAME = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
MIN_PASSWORD = 10
# Tests set this to make hashing fast; it is never set on an appliance.
WEAK_KDF_ENV = "BULWARK_TESTONLY_WEAK_KDF"


def _hasher() -> argon2.PasswordHasher:
    if os.environ.get(WEAK_KDF_ENV) == "1":
        return argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    return argon2.PasswordHasher()  # argon2id, RFC 9106 low-memory profile


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    must_change_password: bool
    created_at: float
    disabled: bool = False
    totp_enabled: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "username": self.username,
            "role": self.role,
            "must_change_password": self.must_change_password,
            "created_at": self.created_at,
            "disabled": self.disabled,
            "totp_enabled": self.totp_enabled,
        }


def check_username(name: str) -> str:
    if not isinstance(name, str) or not _USERNAME.fullmatch(name):
        raise InvalidInput("a user name must start with a lowercase letter and use only a-z, 0-9, '_', '.', '-'")
    return name


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password must have at least {MIN_PASSWORD} characters")
    if len(password) > 1024 or "\0" in password:
        raise InvalidInput("a password must be at most 1024 characters without NUL")
    return password


def generate_password() -> str:
    """A one-time password that is easy to type: 4 groups of 5 characters, ~100 bits."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(4))


def _row_to_user(row: object) -> User:
    r: dict[str, object] = dict(row)  # type: ignore[call-overload]
    return User(
        id=int(r["id"]),  # type: ignore[call-overload]
        username=str(r["username"]),
        role=str(r["role"]),
        must_change_password=bool(r["must_change_password"]),
        created_at=float(r["created_at"]),  # type: ignore[arg-type]
        disabled=bool(r.get("disabled", 0)),
        totp_enabled=bool(r.get("totp_secret")),
    )


def create_user(store: Store, username: str, password: str, role: str, *, must_change: bool = False) -> User:
    check_username(username)
    check_password(password)
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    digest = _hasher().hash(password)
    now = time.time()
    with store.write() as conn:
        if conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
            raise AlreadyExists(f"user {username}")
        conn.execute(
            "INSERT INTO users (username, password_hash, role, must_change_password, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (username, digest, role, int(must_change), now, now),
        )
    return get_user(store, username)


def get_user(store: Store, username: str) -> User:
    row = store.query_one("SELECT * FROM users WHERE username = ?", (username,))
    if row is None:
        raise NotFound(f"user {username}")
    return _row_to_user(row)


def list_users(store: Store) -> list[User]:
    return [_row_to_user(r) for r in store.query("SELECT * FROM users ORDER BY username")]


def verify_password(store: Store, username: str, password: str) -> User | None:
    """The user if the password is right, else None. Rehashes when the parameters changed."""
    row = store.query_one("SELECT * FROM users WHERE username = ?", (username,))
    hasher = _hasher()
    if row is None:
        # Spend the same time as a real check so that timing does not reveal which names exist.
        try:
            hasher.verify(_dummy_hash(), password)
        except argon2.exceptions.VerificationError:
            pass
        return None
    try:
        hasher.verify(row["password_hash"], password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return None
    if hasher.check_needs_rehash(row["password_hash"]):
        with store.write() as conn:
            conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hasher.hash(password), row["id"]))
    return _row_to_user(row)


def set_password(store: Store, username: str, password: str, *, must_change: bool = False) -> None:
    check_password(password)
    digest = _hasher().hash(password)
    with store.write() as conn:
        cur = conn.execute(
            "UPDATE users SET password_hash = ?, must_change_password = ?, updated_at = ? WHERE username = ?",
            (digest, int(must_change), time.time(), username),
        )
        if cur.rowcount != 1:
            raise NotFound(f"user {username}")


@functools.cache
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_hex(16))


def get_user_by_id(store: Store, user_id: int) -> User:
    row = store.query_one("SELECT * FROM users WHERE id = ?", (user_id,))
    if row is None:
        raise NotFound(f"user {user_id}")
    return _row_to_user(row)


def _other_active_admins(conn: Any, username: str) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND username != ?", (username,)
    ).fetchone()
    return int(row[0])


def update_user(store: Store, username: str, *, role: str | None = None, disabled: bool | None = None) -> User:
    """Change a user's role or disable/enable them; the last active admin cannot be demoted or disabled."""
    if role is not None and role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    with store.write() as conn:
        row = conn.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        if row is None:
            raise NotFound(f"user {username}")
        demoting = (role is not None and role != "admin") or disabled is True
        if row["role"] == "admin" and demoting and _other_active_admins(conn, username) == 0:
            raise Conflict(f"{username} is the last active admin; make another admin first")
        conn.execute(
            "UPDATE users SET role = COALESCE(?, role), disabled = COALESCE(?, disabled), updated_at = ? "
            "WHERE username = ?",
            (role, None if disabled is None else int(disabled), time.time(), username),
        )
    return get_user(store, username)


def delete_user(store: Store, username: str) -> None:
    """Remove an account (its sessions end with it); the last active admin cannot be removed."""
    with store.write() as conn:
        row = conn.execute("SELECT role FROM users WHERE username = ?", (username,)).fetchone()
        if row is None:
            raise NotFound(f"user {username}")
        if row["role"] == "admin" and _other_active_admins(conn, username) == 0:
            raise Conflict(f"{username} is the last active admin; make another admin first")
        conn.execute("DELETE FROM users WHERE username = ?", (username,))
