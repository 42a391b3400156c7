"""Local accounts: argon2id hashes, verification, password changes, and input validation."""

from __future__ import annotations

import re

import argon2
import pytest

from appliance import users
from appliance.store import Store
from appliance.system.errors import AlreadyExists, Conflict, InvalidInput, NotFound

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _weak_kdf(weak_kdf: None) -> None:
    """Every test here hashes with cheap parameters, except where it removes the setting itself."""


def _hash_of(store: Store, username: str) -> str:
    row = store.query_one("SELECT password_hash FROM users WHERE username = ?", (username,))
    assert row is not None
    return str(row["password_hash"])


def test_create_user_stores_an_argon2id_hash(store: Store) -> None:
    user = users.create_user(store, "alice", PASSWORD, "operator")
    assert (user.username, user.role, user.must_change_password) == ("alice", "operator", False)
    digest = _hash_of(store, "alice")
    assert digest.startswith("$argon2id$")
    assert PASSWORD not in digest
    assert users.get_user(store, "alice") == user
    assert users.list_users(store) == [user]


def test_the_same_password_hashes_differently(store: Store) -> None:
    users.create_user(store, "alice", PASSWORD, "admin")
    users.create_user(store, "bob", PASSWORD, "admin")
    assert _hash_of(store, "alice") != _hash_of(store, "bob")  # salted


def test_verify_password(store: Store) -> None:
    created = users.create_user(store, "alice", PASSWORD, "admin")
    assert users.verify_password(store, "alice", PASSWORD) == created
    assert users.verify_password(store, "alice", PASSWORD + " ") is None
    assert users.verify_password(store, "alice", PASSWORD.upper()) is None
    assert users.verify_password(store, "alice", "") is None
    assert users.verify_password(store, "nobody", PASSWORD) is None
    assert users.verify_password(store, "ALICE", PASSWORD) == created  # names compare case-insensitively


def test_verify_password_with_a_corrupt_hash(store: Store) -> None:
    users.create_user(store, "alice", PASSWORD, "admin")
    store.conn().execute("UPDATE users SET password_hash = 'not a hash' WHERE username = 'alice'")
    assert users.verify_password(store, "alice", PASSWORD) is None


def test_set_password(store: Store) -> None:
    users.create_user(store, "alice", PASSWORD, "admin", must_change=True)
    assert users.get_user(store, "alice").must_change_password
    old_hash = _hash_of(store, "alice")

    users.set_password(store, "alice", "a brand new password")
    assert users.verify_password(store, "alice", PASSWORD) is None
    assert users.verify_password(store, "alice", "a brand new password") is not None
    assert not users.get_user(store, "alice").must_change_password
    assert _hash_of(store, "alice") != old_hash

    users.set_password(store, "alice", "one-time-pw-again", must_change=True)
    assert users.get_user(store, "alice").must_change_password


def test_set_password_errors(store: Store) -> None:
    with pytest.raises(NotFound, match="user nobody"):
        users.set_password(store, "nobody", PASSWORD)
    users.create_user(store, "alice", PASSWORD, "admin")
    with pytest.raises(InvalidInput):
        users.set_password(store, "alice", "short")
    assert users.verify_password(store, "alice", PASSWORD) is not None  # unchanged


def test_create_user_errors(store: Store) -> None:
    users.create_user(store, "alice", PASSWORD, "admin")
    with pytest.raises(AlreadyExists, match="user alice"):
        users.create_user(store, "alice", "another password", "viewer")
    with pytest.raises(InvalidInput, match="role must be one of admin, operator, viewer"):
        users.create_user(store, "bob", PASSWORD, "root")
    with pytest.raises(InvalidInput):
        users.create_user(store, "Bob", PASSWORD, "admin")
    with pytest.raises(InvalidInput):
        users.create_user(store, "bob", "short", "admin")
    assert [u.username for u in users.list_users(store)] == ["alice"]
    with pytest.raises(NotFound):
        users.get_user(store, "bob")


# (kind, value, valid): every sample of both validators in one table.
SAMPLES: list[tuple[str, object, bool]] = [
    ("username", "admin", True),
    ("username", "a", True),
    ("username", "bob.smith", True),
    ("username", "x_1-2.z", True),
    ("username", "a" + "b" * 31, True),  # 32 characters
    ("username", "", False),
    ("username", "a" + "b" * 32, False),  # 33 characters
    ("username", "Admin", False),  # uppercase
    ("username", "ADMIN", False),
    ("username", "1admin", False),  # starts with a digit
    ("username", "_admin", False),
    ("username", ".admin", False),
    ("username", "-admin", False),
    ("username", "ad min", False),
    ("username", "admin\n", False),  # trailing newline
    ("username", "ad\nmin", False),
    ("username", "admin\0", False),
    ("username", "../etc", False),
    ("username", "a/b", False),
    ("username", "a@b", False),
    ("username", "josé", False),  # non-ASCII
    ("username", None, False),
    ("username", 42, False),
    ("password", "0123456789", True),  # exactly the minimum
    ("password", "x" * 1024, True),
    ("password", "pässwörd ✓ ünïcode", True),
    ("password", "with\nnewline and tab\t", True),
    ("password", "   spaces   ", True),
    ("password", "", False),
    ("password", "012345678", False),  # too short
    ("password", "x" * 1025, False),  # too long
    ("password", "0123456789\0", False),  # NUL
    ("password", None, False),
    ("password", b"0123456789", False),
]


@pytest.mark.parametrize(("kind", "value", "valid"), SAMPLES, ids=[f"{k}-{v!r}-{ok}" for k, v, ok in SAMPLES])
def test_validation(kind: str, value: object, valid: bool) -> None:
    check = users.check_username if kind == "username" else users.check_password
    if valid:
        assert check(value) == value  # type: ignore[arg-type]
    else:
        with pytest.raises(InvalidInput):
            check(value)  # type: ignore[arg-type]


def test_generate_password_shape() -> None:
    generated = {users.generate_password() for _ in range(200)}
    assert len(generated) == 200
    for password in generated:
        assert re.fullmatch(r"[a-km-z2-9]{5}(-[a-km-z2-9]{5}){3}", password), password
        assert not set(password) & set("01ilo")  # nothing to misread
        assert users.check_password(password) == password


def test_default_hasher_is_argon2id_with_default_parameters(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(users.WEAK_KDF_ENV)
    hasher = users._hasher()
    default = argon2.PasswordHasher()
    assert hasher.type is argon2.Type.ID
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism, hasher.hash_len, hasher.salt_len) == (
        default.time_cost,
        default.memory_cost,
        default.parallelism,
        default.hash_len,
        default.salt_len,
    )
    assert hasher.memory_cost >= 64 * 1024  # KiB: the RFC 9106 low-memory profile, not something weaker

    users.create_user(store, "alice", PASSWORD, "admin")
    params = argon2.extract_parameters(_hash_of(store, "alice"))
    assert params.type is argon2.Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        default.time_cost,
        default.memory_cost,
        default.parallelism,
    )


def test_weak_hash_is_upgraded_at_the_next_sign_in(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    users.create_user(store, "alice", PASSWORD, "admin")
    assert argon2.extract_parameters(_hash_of(store, "alice")).memory_cost < argon2.PasswordHasher().memory_cost
    monkeypatch.delenv(users.WEAK_KDF_ENV)
    assert users.verify_password(store, "alice", PASSWORD) is not None
    upgraded = argon2.extract_parameters(_hash_of(store, "alice"))
    assert upgraded.memory_cost == argon2.PasswordHasher().memory_cost
    assert users.verify_password(store, "alice", PASSWORD) is not None


# --- roles, disabling, deleting: the last active admin stays -------------------------------------


def test_update_user_role_and_disabled(store: Store) -> None:
    users.create_user(store, "root", PASSWORD, "admin")
    alice = users.create_user(store, "alice", PASSWORD, "viewer")
    assert users.update_user(store, "alice", role="operator").role == "operator"
    disabled = users.update_user(store, "alice", disabled=True)
    assert disabled.disabled and disabled.role == "operator"  # what was not given stays
    assert not users.update_user(store, "alice", disabled=False).disabled
    assert users.get_user_by_id(store, alice.id).username == "alice"
    with pytest.raises(NotFound):
        users.get_user_by_id(store, 999)
    with pytest.raises(NotFound):
        users.update_user(store, "nobody", role="viewer")
    with pytest.raises(InvalidInput, match="role must be one of"):
        users.update_user(store, "alice", role="root")


def test_the_last_active_admin_cannot_go(store: Store) -> None:
    users.create_user(store, "root", PASSWORD, "admin")
    users.create_user(store, "alice", PASSWORD, "operator")
    for change in ({"role": "operator"}, {"disabled": True}):
        with pytest.raises(Conflict, match="root is the last active admin"):
            users.update_user(store, "root", **change)  # type: ignore[arg-type]
    with pytest.raises(Conflict):
        users.delete_user(store, "root")
    assert users.update_user(store, "root", role="admin").role == "admin"  # staying admin is fine
    # A disabled admin does not count as another admin.
    users.create_user(store, "bob", PASSWORD, "admin")
    users.update_user(store, "bob", disabled=True)
    with pytest.raises(Conflict):
        users.delete_user(store, "root")
    users.update_user(store, "bob", disabled=False)
    users.delete_user(store, "root")
    assert [u.username for u in users.list_users(store)] == ["alice", "bob"]
    with pytest.raises(NotFound):
        users.delete_user(store, "root")
