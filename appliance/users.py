"""Local user accounts: argon2id password hashes and roles."""

from __future__ import annotations

import functools
import os
import re
import secrets
import time
from dataclasses import dataclass

import argon2

from appliance.store import Store
from appliance.system.errors import AlreadyExists, InvalidInput, NotFound

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
