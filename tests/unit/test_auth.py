"""Authentication state on a real database: server-side sessions, login throttling, the TOTP second factor
and API tokens (appliance/auth/), and reading the audit trail (appliance/audit.py)."""

from __future__ import annotations

import re
import time

import pyotp
import pytest

from appliance import audit, users
from appliance.auth import sessions, throttle, tokens, totp
from appliance.store import Store
from appliance.system.errors import InvalidInput, NotFound
from tests.unit.web import sha256


@pytest.fixture
def user_id(store: Store, weak_kdf: None) -> int:
    return users.create_user(store, "alice", "alice-password-1", "operator").id


# --- sessions --------------------------------------------------------------------------------------


def _new(store: Store, user_id: int, **kwargs: object) -> str:
    options: dict[str, object] = {"address": "192.0.2.1", "remote": False, "mfa_done": True, **kwargs}
    return sessions.create(store, user_id, **options)  # type: ignore[arg-type]


def test_session_secret_is_stored_hashed(store: Store, user_id: int) -> None:
    secret = _new(store, user_id, user_agent="x" * 500)
    assert len(secret) >= 40
    row = store.query_one("SELECT * FROM sessions")
    assert row is not None and row["id"] == sha256(secret) and secret not in str(dict(row))
    assert len(row["user_agent"]) == 200
    found = sessions.lookup(store, secret)
    assert found is not None
    assert (found.user_id, found.address, found.remote, found.mfa_done) == (user_id, "192.0.2.1", False, True)
    assert found.expires_at == pytest.approx(found.created_at + sessions.ABSOLUTE_LIFETIME)


def test_two_sessions_have_different_secrets(store: Store, user_id: int) -> None:
    assert _new(store, user_id) != _new(store, user_id)


@pytest.mark.parametrize("presented", [None, "", "not-a-session", "x" * 201])
def test_unknown_session(store: Store, user_id: int, presented: str | None) -> None:
    _new(store, user_id)
    assert sessions.lookup(store, presented) is None


def test_idle_session_expires_and_is_removed(store: Store, user_id: int) -> None:
    secret = _new(store, user_id)
    with store.write() as conn:
        conn.execute("UPDATE sessions SET last_seen_at = last_seen_at - ?", (sessions.IDLE_TIMEOUT + 1,))
    assert sessions.lookup(store, secret) is None
    assert store.query("SELECT * FROM sessions") == []


def test_lookup_touches_at_most_every_touch_interval(store: Store, user_id: int) -> None:
    secret = _new(store, user_id)
    first = store.query_one("SELECT last_seen_at FROM sessions")["last_seen_at"]
    sessions.lookup(store, secret)
    assert store.query_one("SELECT last_seen_at FROM sessions")["last_seen_at"] == first  # too soon to write
    with store.write() as conn:
        conn.execute("UPDATE sessions SET last_seen_at = last_seen_at - ?", (sessions.TOUCH_INTERVAL + 1,))
    sessions.lookup(store, secret)
    assert store.query_one("SELECT last_seen_at FROM sessions")["last_seen_at"] == pytest.approx(time.time(), abs=5)


def test_idle_timeout_can_be_chosen(store: Store, user_id: int) -> None:
    patient, strict = _new(store, user_id), _new(store, user_id)
    with store.write() as conn:
        conn.execute("UPDATE sessions SET last_seen_at = last_seen_at - 120")  # two minutes quiet
    assert sessions.lookup(store, patient, idle_timeout=600) is not None
    assert sessions.lookup(store, strict, idle_timeout=60) is None


def test_session_expires_after_its_lifetime(store: Store, user_id: int) -> None:
    secret = _new(store, user_id, lifetime=0.05)
    assert sessions.lookup(store, secret) is not None
    time.sleep(0.1)
    assert sessions.lookup(store, secret) is None


def test_creating_a_session_sweeps_dead_ones(store: Store, user_id: int) -> None:
    _new(store, user_id)
    _new(store, user_id)
    with store.write() as conn:
        conn.execute("UPDATE sessions SET expires_at = 1")
    live = _new(store, user_id)
    assert [r["id"] for r in store.query("SELECT id FROM sessions")] == [sha256(live)]


def test_second_factor_flag(store: Store, user_id: int) -> None:
    secret = _new(store, user_id, mfa_done=False, remote=True)
    found = sessions.lookup(store, secret)
    assert found is not None and not found.mfa_done and found.remote
    sessions.mark_mfa_done(store, found.id)
    found = sessions.lookup(store, secret)
    assert found is not None and found.mfa_done


def test_revoke(store: Store, user_id: int) -> None:
    keep, drop = _new(store, user_id), _new(store, user_id)
    sessions.revoke(store, drop)
    assert sessions.lookup(store, drop) is None and sessions.lookup(store, keep) is not None
    sessions.revoke(store, "never-existed")  # nothing to do, no error


def test_revoke_user_keeps_one_and_spares_others(store: Store, user_id: int) -> None:
    other = users.create_user(store, "bob", "bob-password-1", "viewer").id
    a, b, c = _new(store, user_id), _new(store, user_id), _new(store, user_id)
    theirs = _new(store, other)
    assert sessions.revoke_user(store, user_id, except_id=sha256(b)) == 2
    assert [sessions.lookup(store, s) is not None for s in (a, b, c, theirs)] == [False, True, False, True]
    assert sessions.revoke_user(store, user_id) == 1
    assert sessions.count_active(store) == 1


def test_count_active_ignores_dead_sessions(store: Store, user_id: int) -> None:
    _new(store, user_id)
    idle = _new(store, user_id)
    with store.write() as conn:
        conn.execute("UPDATE sessions SET last_seen_at = 0 WHERE id = ?", (sha256(idle),))
    assert sessions.count_active(store) == 1


def test_deleting_the_user_deletes_the_sessions(store: Store, user_id: int) -> None:
    users.create_user(store, "root", "root-password-1", "admin")
    secret = _new(store, user_id)
    users.delete_user(store, "alice")
    assert store.query("SELECT * FROM sessions") == []
    assert sessions.lookup(store, secret) is None


# --- throttling ------------------------------------------------------------------------------------


def _fail(store: Store, username: str, address: str, times: int, at: float | None = None) -> None:
    for _ in range(times):
        throttle.record_failure(store, username, address)
    if at is not None:
        with store.write() as conn:
            conn.execute("UPDATE login_failures SET at = ? WHERE username = ?", (at, username))


def test_user_is_locked_after_max_failures(store: Store) -> None:
    _fail(store, "alice", "192.0.2.1", throttle.MAX_USER_FAILURES - 1)
    assert throttle.check(store, "alice", "192.0.2.1").allowed
    throttle.record_failure(store, "alice", "198.51.100.7")  # from any address
    verdict = throttle.check(store, "alice", "203.0.113.9")
    assert not verdict.allowed
    assert verdict.retry_after == pytest.approx(throttle.LOCKOUT_SECONDS, abs=5)
    assert verdict.reason == "too many failed sign-ins for this user"
    assert throttle.check(store, "bob", "203.0.113.9").allowed  # others are not


def test_lockout_runs_from_the_last_failure(store: Store) -> None:
    now = time.time()
    _fail(store, "alice", "192.0.2.1", throttle.MAX_USER_FAILURES, at=now - 600)
    verdict = throttle.check(store, "alice", "192.0.2.1", now=now)
    assert not verdict.allowed and verdict.retry_after == pytest.approx(throttle.LOCKOUT_SECONDS - 600)
    assert throttle.check(store, "alice", "192.0.2.1", now=now + throttle.LOCKOUT_SECONDS - 599).allowed


def test_old_failures_do_not_count(store: Store) -> None:
    now = time.time()
    _fail(store, "alice", "192.0.2.1", throttle.MAX_USER_FAILURES, at=now - throttle.WINDOW - 1)
    assert throttle.check(store, "alice", "192.0.2.1", now=now).allowed


def test_address_is_throttled_whatever_the_names(store: Store) -> None:
    for i in range(throttle.MAX_ADDRESS_FAILURES):
        throttle.record_failure(store, f"name{i}", "192.0.2.66")
    verdict = throttle.check(store, "alice", "192.0.2.66")
    assert not verdict.allowed and verdict.reason == "too many failed sign-ins from this address"
    assert throttle.check(store, "alice", "192.0.2.67").allowed


def test_clear_forgives_one_user(store: Store) -> None:
    _fail(store, "alice", "192.0.2.1", throttle.MAX_USER_FAILURES)
    _fail(store, "bob", "192.0.2.1", 2)
    throttle.clear(store, "alice")
    assert throttle.check(store, "alice", "192.0.2.1").allowed
    assert [r["username"] for r in store.query("SELECT username FROM login_failures")] == ["bob", "bob"]


def test_failures_are_forgotten_after_a_day(store: Store) -> None:
    _fail(store, "alice", "192.0.2.1", 3, at=time.time() - 24 * 3600 - 10)
    throttle.record_failure(store, "bob", "192.0.2.1")
    assert [r["username"] for r in store.query("SELECT username FROM login_failures")] == ["bob"]


def test_long_names_are_cut(store: Store) -> None:
    throttle.record_failure(store, "a" * 500, "192.0.2.1")
    assert store.query_one("SELECT length(username) AS n FROM login_failures")["n"] == 64


def test_two_stores_share_the_count(store: Store, tmp_path: object) -> None:
    """Two web workers are two connections to one file."""
    other = Store.open(store.path)
    try:
        for i in range(throttle.MAX_USER_FAILURES):
            throttle.record_failure(store if i % 2 else other, "alice", "192.0.2.1")
        assert not throttle.check(other, "alice", "192.0.2.1").allowed
        assert not throttle.check(store, "alice", "192.0.2.1").allowed
    finally:
        other.close()


# --- TOTP ------------------------------------------------------------------------------------------

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def _code(at: float, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret).at(at)


def test_new_secret_and_uri() -> None:
    secret = totp.new_secret()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret) and secret != totp.new_secret()
    uri = totp.provisioning_uri(secret, "alice", "vault")
    assert uri == f"otpauth://totp/Bulwark:alice%40vault?secret={secret}&issuer=Bulwark"
    svg = totp.qr_svg(uri)
    assert svg.startswith("<svg") and "http" not in svg.replace("http://www.w3.org", "")  # made here, no service


def test_check_code_window() -> None:
    now = 1_800_000_015.0  # the middle of a step
    step = int(now // 30)
    assert totp.check_code(SECRET, _code(now), now) == step
    assert totp.check_code(SECRET, _code(now - 30), now) == step - 1  # the clock of the phone lags…
    assert totp.check_code(SECRET, _code(now + 30), now) == step + 1  # …or runs ahead
    assert totp.check_code(SECRET, _code(now - 60), now) is None
    assert totp.check_code(SECRET, _code(now + 60), now) is None
    code = _code(now)
    assert totp.check_code(SECRET, f"{code[:3]} {code[3:]}", now) == step  # as apps show it


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5", "١٢٣٤٥٦", None])
def test_check_code_refuses_malformed(code: str | None) -> None:
    assert totp.check_code(SECRET, code, 1_800_000_015.0) is None  # type: ignore[arg-type]


def test_enable_needs_a_right_code(store: Store, user_id: int) -> None:
    with pytest.raises(InvalidInput, match="the code does not match"):
        totp.enable(store, user_id, SECRET, _code(time.time() - 300))
    assert not totp.is_enabled(store, user_id)
    totp.enable(store, user_id, SECRET, _code(time.time()))
    assert totp.is_enabled(store, user_id) and users.get_user(store, "alice").totp_enabled
    with pytest.raises(NotFound):
        totp.enable(store, 9999, SECRET, _code(time.time()))


def test_verify_accepts_each_code_once(store: Store, user_id: int) -> None:
    now = time.time()
    totp.enable(store, user_id, SECRET, _code(now - 30))
    assert not totp.verify(store, user_id, _code(now - 30))  # the enrolment code is spent
    assert totp.verify(store, user_id, _code(now))
    assert not totp.verify(store, user_id, _code(now))  # replay
    assert totp.verify(store, user_id, _code(now + 30))
    assert not totp.verify(store, user_id, _code(now))  # older than the last accepted one
    assert not totp.verify(store, user_id, "000000" if _code(now + 30) != "000000" else "111111")


def test_verify_without_a_factor(store: Store, user_id: int) -> None:
    assert not totp.verify(store, user_id, _code(time.time()))
    assert not totp.verify(store, 9999, _code(time.time()))
    totp.enable(store, user_id, SECRET, _code(time.time()))
    totp.disable(store, user_id)
    assert not totp.is_enabled(store, user_id)
    assert not totp.verify(store, user_id, _code(time.time() + 30))
    row = store.query_one("SELECT totp_secret, totp_last_step FROM users WHERE id = ?", (user_id,))
    assert row is not None and (row["totp_secret"], row["totp_last_step"]) == (None, None)


# --- API tokens ------------------------------------------------------------------------------------


def test_token_format_and_storage(store: Store) -> None:
    token, secret = tokens.create(store, name="ci: nightly", role="viewer", created_by="user:alice")
    match = re.fullmatch(r"bwk_(\d+)_([A-Za-z0-9_-]{43})", secret)
    assert match and int(match.group(1)) == token.id
    row = store.query_one("SELECT * FROM api_tokens")
    assert row is not None and row["secret_hash"] == sha256(match.group(2))
    assert secret not in str(dict(row)) and match.group(2) not in str(dict(row))
    assert (token.name, token.role, token.created_by, token.expires_at, token.active) == (
        "ci: nightly",
        "viewer",
        "user:alice",
        None,
        True,
    )
    assert tokens.list_tokens(store) == [token]
    assert set(token.to_dict()) == {
        "id",
        "name",
        "role",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "active",
    }


@pytest.mark.parametrize(
    ("name", "role", "days", "message"),
    [
        ("", "viewer", None, "a token name is"),
        ("-dash", "viewer", None, "a token name is"),
        ("x" * 65, "viewer", None, "a token name is"),
        ("new\nline", "viewer", None, "a token name is"),
        ("ci", "root", None, "role must be one of"),
        ("ci", "viewer", 0, "expiry must be 1 to 3650 days"),
        ("ci", "viewer", 3651, "expiry must be 1 to 3650 days"),
    ],
)
def test_token_validation(store: Store, name: str, role: str, days: int | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        tokens.create(store, name=name, role=role, created_by="cli", expires_days=days)
    assert tokens.list_tokens(store) == []


def test_authenticate(store: Store) -> None:
    token, secret = tokens.create(store, name="ci", role="operator", created_by="cli")
    other, other_secret = tokens.create(store, name="other", role="viewer", created_by="cli")
    found = tokens.authenticate(store, secret)
    assert found is not None and found.id == token.id and found.role == "operator"
    swapped = f"bwk_{token.id}_{other_secret.split('_', 2)[2]}"  # a real secret under another id
    for presented in ("", "bwk", secret + "x", secret[:-1], secret.replace("bwk_", "bwx_"), swapped, f" {secret}"):
        assert tokens.authenticate(store, presented) is None, presented


def test_authenticate_records_use_at_most_every_minute(store: Store) -> None:
    token, secret = tokens.create(store, name="ci", role="viewer", created_by="cli")
    assert tokens.get(store, token.id).last_used_at is None
    tokens.authenticate(store, secret)
    first = tokens.get(store, token.id).last_used_at
    assert first == pytest.approx(time.time(), abs=5)
    tokens.authenticate(store, secret)
    assert tokens.get(store, token.id).last_used_at == first


def test_expired_token(store: Store) -> None:
    token, secret = tokens.create(store, name="ci", role="viewer", created_by="cli", expires_days=1)
    assert token.expires_at == pytest.approx(time.time() + 86400, abs=5)
    assert tokens.authenticate(store, secret) is not None
    with store.write() as conn:
        conn.execute("UPDATE api_tokens SET expires_at = ?", (time.time() - 1,))
    assert tokens.authenticate(store, secret) is None
    assert not tokens.get(store, token.id).active


def test_revoke_token(store: Store) -> None:
    token, secret = tokens.create(store, name="ci", role="viewer", created_by="cli")
    revoked = tokens.revoke(store, token.id)
    assert revoked.revoked_at is not None and not revoked.active
    assert tokens.authenticate(store, secret) is None
    assert tokens.revoke(store, token.id).revoked_at == revoked.revoked_at  # again: kept as it was
    with pytest.raises(NotFound, match="API token 99"):
        tokens.revoke(store, 99)
    with pytest.raises(NotFound):
        tokens.get(store, 99)


# --- the audit trail -------------------------------------------------------------------------------


def test_audit_entries_newest_first_with_details(store: Store) -> None:
    store.audit("user:alice", "user.create", "bob", address="192.0.2.1", role="viewer")
    store.audit("cli", "token.revoke", "3")
    first, second = audit.entries(store)[::-1]
    assert (first.actor, first.action, first.target, first.address, first.details) == (
        "user:alice",
        "user.create",
        "bob",
        "192.0.2.1",
        {"role": "viewer"},
    )
    assert (second.actor, second.address, second.details) == ("cli", None, {})
    assert second.id > first.id and second.at >= first.at
    assert first.to_dict()["details"] == {"role": "viewer"}


def test_audit_paging(store: Store) -> None:
    for i in range(7):
        store.audit("cli", "user.create", f"u{i}")
    page = audit.entries(store, limit=3)
    assert [e.target for e in page] == ["u6", "u5", "u4"]
    page = audit.entries(store, limit=3, before_id=page[-1].id)
    assert [e.target for e in page] == ["u3", "u2", "u1"]
    assert len(audit.entries(store, limit=0)) == 1  # at least one
    assert len(audit.entries(store, limit=10_000)) == 7


def test_audit_page_size_is_capped(store: Store) -> None:
    for i in range(audit.MAX_PAGE + 5):
        store.audit("cli", "x", str(i))
    assert len(audit.entries(store, limit=10_000)) == audit.MAX_PAGE


def test_audit_filters(store: Store) -> None:
    store.audit("user:alice", "user.create", "a")
    store.audit("user:bob", "user.delete", "b")
    store.audit("user:alice", "users_page", "c")
    store.audit("user:alice", "userXcreate", "d")
    store.audit("cli", "100%.done", "e")
    assert [e.target for e in audit.entries(store, actor="user:alice")] == ["d", "c", "a"]
    assert [e.target for e in audit.entries(store, action_prefix="user.")] == ["b", "a"]  # '.' is no wildcard
    assert [e.target for e in audit.entries(store, action_prefix="user_")] == []  # nor is '_'
    assert [e.target for e in audit.entries(store, action_prefix="users_")] == ["c"]
    assert [e.target for e in audit.entries(store, action_prefix="100%")] == ["e"]
    assert [e.target for e in audit.entries(store, action_prefix="%")] == []
    assert [e.target for e in audit.entries(store, actor="user:alice", action_prefix="user.")] == ["a"]
