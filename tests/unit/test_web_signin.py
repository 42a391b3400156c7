"""Signing in through Flask's test client on a real data directory: server-side sessions in the
``bulwark_sid`` cookie, throttling and lockout in the database, expiry and revocation, the one-time
password, and the first-run wizard.
"""

from __future__ import annotations

import re
import time

import pytest
from flask import Flask

from appliance import users
from appliance.auth import sessions, throttle
from appliance.jobs import queue
from appliance.store import Store
from appliance.system import settings
from tests.unit.conftest import (
    ADMIN_PASSWORD,
    OPERATOR_PASSWORD,
    VIEWER_PASSWORD,
    ApplianceDir,
)
from tests.unit.web import (
    COOKIE,
    NEW_PASSWORD,
    Browser,
    Web,
    audit_rows,
    dump,
    flash_error,
    live_sessions,
    location,
    sha256,
    text,
)
from webui import create_app
from webui.identity import SETUP_DONE_KEY

# --- signing in ----------------------------------------------------------------------------------


def test_login_without_csrf_token(browser: Browser, db: Store) -> None:
    web = browser()
    web.get("/login")
    response = web.post("/login", {"username": "olivia", "password": OPERATOR_PASSWORD}, csrf=False)
    assert response.status_code == 400
    assert "did not come from this appliance" in text(response)
    assert "What to do:" in text(response)
    response = web.post("/login", {"csrf_token": "forged", "username": "olivia", "password": OPERATOR_PASSWORD})
    assert response.status_code == 400
    assert web.sid is None
    assert web.get("/jobs/").status_code == 302  # not signed in
    assert db.query("SELECT * FROM sessions") == []


def test_login_without_a_session_at_all(browser: Browser) -> None:
    response = browser().post("/login", {"csrf_token": "", "username": "olivia", "password": OPERATOR_PASSWORD})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("username", "password"),
    [("olivia", "wrong password"), ("nobody", OPERATOR_PASSWORD), ("olivia", ""), ("", "")],
)
def test_wrong_password(browser: Browser, db: Store, username: str, password: str) -> None:
    web = browser()
    response = web.sign_in(username, password)
    assert response.status_code == 401
    assert flash_error(text(response)) == "Wrong user name or password."
    assert web.sid is None
    assert web.get("/jobs/").status_code == 302  # still signed out
    (row,) = audit_rows(db, "login.failed")
    assert (row["actor"], row["target"], row["address"]) == ("anonymous@127.0.0.1", username, "127.0.0.1")
    failures = db.query("SELECT username, address FROM login_failures")
    assert [tuple(f) for f in failures] == [(username, "127.0.0.1")]


def test_disabled_account_cannot_sign_in(browser: Browser, db: Store) -> None:
    users.update_user(db, "olivia", disabled=True)
    response = browser().sign_in("olivia", OPERATOR_PASSWORD)
    assert response.status_code == 401
    assert flash_error(text(response)) == "Wrong user name or password."  # says nothing about the account


def test_lockout_after_five_failures(browser: Browser, db: Store) -> None:
    web = browser()
    for _ in range(throttle.MAX_USER_FAILURES):
        assert web.sign_in("olivia", "wrong password").status_code == 401
    response = web.sign_in("olivia", OPERATOR_PASSWORD)  # even the right password is refused now
    assert response.status_code == 429
    assert flash_error(text(response)) == (
        "Sign-in is locked: too many failed sign-ins for this user. Try again in 15 minute(s)."
    )
    assert web.sid is None and web.get("/jobs/").status_code == 302
    # The refused attempts are not counted again, and the lockout is in the database.
    assert db.query_one("SELECT COUNT(*) AS n FROM login_failures WHERE username = 'olivia'")["n"] == 5
    # Another account from the same address is not locked.
    assert browser().sign_in("victor", VIEWER_PASSWORD).status_code == 302


def test_lockout_minutes_count_down(browser: Browser, db: Store) -> None:
    for _ in range(throttle.MAX_USER_FAILURES):
        browser().sign_in("olivia", "wrong password")
    with db.write() as conn:  # the last failure was 11½ minutes ago
        conn.execute("UPDATE login_failures SET at = at - 690")
    response = browser().sign_in("olivia", OPERATOR_PASSWORD)
    assert response.status_code == 429
    assert "Try again in 4 minute(s)." in flash_error(text(response))


def test_lockout_ends_after_the_lockout_time(browser: Browser, db: Store) -> None:
    for _ in range(throttle.MAX_USER_FAILURES):
        browser().sign_in("olivia", "wrong password")
    with db.write() as conn:
        conn.execute("UPDATE login_failures SET at = at - ?", (throttle.LOCKOUT_SECONDS + 1,))
    assert browser().sign_in("olivia", OPERATOR_PASSWORD).status_code == 302
    assert db.query("SELECT * FROM login_failures WHERE username = 'olivia'") == []  # forgiven


def test_lockout_is_shared_by_two_workers(appliance_dir: ApplianceDir, app: Flask) -> None:
    """Two gunicorn workers are two apps on one database: failures on either count for both."""
    other = create_app({"DATA_DIR": str(appliance_dir.paths.data_dir), "TESTING": True})
    try:
        first, second = Web(app), Web(other)
        for attempt in range(throttle.MAX_USER_FAILURES):
            web = first if attempt % 2 == 0 else second
            assert web.sign_in("olivia", "wrong password").status_code == 401
        assert first.sign_in("olivia", OPERATOR_PASSWORD).status_code == 429
        assert second.sign_in("olivia", OPERATOR_PASSWORD).status_code == 429
    finally:
        other.extensions["bulwark.store"].close()


def test_address_is_throttled_across_user_names(browser: Browser) -> None:
    web = browser()
    for i in range(throttle.MAX_ADDRESS_FAILURES):
        assert web.sign_in(f"guess{i}", "wrong password").status_code == 401
    response = web.sign_in("olivia", OPERATOR_PASSWORD)
    assert response.status_code == 429
    assert "too many failed sign-ins from this address" in flash_error(text(response))
    # The same account from another address is fine.
    response = browser().post(
        "/login",
        {"username": "olivia", "password": OPERATOR_PASSWORD},
        environ_overrides={"REMOTE_ADDR": "192.0.2.10"},
    )
    assert response.status_code == 302


def test_successful_login_resets_the_failure_count(browser: Browser) -> None:
    web = browser()
    for _ in range(throttle.MAX_USER_FAILURES - 1):
        web.sign_in("olivia", "wrong password")
    assert web.sign_in("olivia", OPERATOR_PASSWORD).status_code == 302
    web.sign_out()
    for _ in range(throttle.MAX_USER_FAILURES - 1):
        assert web.sign_in("olivia", "wrong password").status_code == 401
    assert web.sign_in("olivia", OPERATOR_PASSWORD).status_code == 302


def test_login_user_name_is_case_insensitive(browser: Browser) -> None:
    web = browser()
    response = web.sign_in(" Olivia ", OPERATOR_PASSWORD)
    assert response.status_code == 302
    assert web.get("/jobs/").status_code == 200


def test_session_lives_in_the_database(operator: Web, db: Store) -> None:
    assert operator.sid and len(operator.sid) >= 40
    (row,) = live_sessions(db, "olivia")
    assert row["id"] == sha256(operator.sid)  # the cookie's secret itself is never stored
    assert operator.sid not in str(dump(db))
    assert (row["address"], row["remote"], row["mfa_done"]) == ("127.0.0.1", 0, 1)
    assert row["expires_at"] - row["created_at"] == pytest.approx(sessions.ABSOLUTE_LIFETIME)


def test_login_rotates_the_session(browser: Browser, db: Store) -> None:
    web = browser()
    old_token = web.csrf()
    assert web.sign_in("olivia", OPERATOR_PASSWORD).status_code == 302
    first = web.sid
    assert first
    # The pre-login CSRF token died with the anonymous session.
    assert web.post("/logout", {"csrf_token": old_token}).status_code == 400
    assert web.csrf() != old_token

    assert web.sign_in("olivia", OPERATOR_PASSWORD).status_code == 302  # signing in again: a new session
    second = web.sid
    assert second and second != first
    assert [r["id"] for r in live_sessions(db, "olivia")] == [sha256(second)]
    stale = browser()
    stale.set_sid(first)
    assert stale.get("/jobs/").status_code == 302  # the old cookie is dead
    assert web.get("/jobs/").status_code == 200
    logins = audit_rows(db, "login")
    assert [(r["actor"], r["address"]) for r in logins] == [("user:olivia", "127.0.0.1")] * 2


def test_session_cookie_flags(browser: Browser) -> None:
    web = browser()
    web.get("/login")
    response = web.post("/login", {"username": "olivia", "password": OPERATOR_PASSWORD})
    (cookie,) = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(f"{COOKIE}=")]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/jobs/", "/jobs/"),
        ("/jobs/7?x=1", "/jobs/7?x=1"),
        ("//evil.com", "/"),
        ("//evil.com/jobs/", "/"),
        ("https://evil.com/", "/"),
        ("http:/evil.com", "/"),
        ("evil.com", "/"),
        ("/\\evil.com", "/"),
        ("/\t/evil.com", "/"),
        ("/\n/evil.com", "/"),
        ("\\\\evil.com", "/"),
        ("", "/"),
    ],
)
def test_next_parameter_refuses_other_sites(browser: Browser, next_url: str, expected: str) -> None:
    response = browser().sign_in("olivia", OPERATOR_PASSWORD, next_url=next_url)
    assert response.status_code == 302
    assert location(response) == expected


# --- session expiry and revocation ---------------------------------------------------------------


def test_idle_session_expires(operator: Web, db: Store) -> None:
    with db.write() as conn:
        conn.execute("UPDATE sessions SET last_seen_at = ?", (time.time() - sessions.IDLE_TIMEOUT - 5,))
    response = operator.get("/jobs/")
    assert response.status_code == 302 and location(response).startswith("/login")
    assert live_sessions(db, "olivia") == []  # removed, not just refused


def test_activity_keeps_the_session_alive(operator: Web, db: Store) -> None:
    quiet_since = time.time() - sessions.IDLE_TIMEOUT + 60
    with db.write() as conn:
        conn.execute("UPDATE sessions SET last_seen_at = ?", (quiet_since,))
    assert operator.get("/jobs/").status_code == 200
    (row,) = live_sessions(db, "olivia")
    assert row["last_seen_at"] > quiet_since + 60  # touched


def test_session_expires_after_its_lifetime_even_when_active(operator: Web, db: Store) -> None:
    with db.write() as conn:
        conn.execute("UPDATE sessions SET expires_at = ?", (time.time() - 1,))
    response = operator.get("/jobs/")
    assert response.status_code == 302 and location(response).startswith("/login")
    assert live_sessions(db, "olivia") == []


def test_logout(operator: Web, browser: Browser, db: Store) -> None:
    sid = operator.sid
    assert sid
    response = operator.sign_out()
    assert response.status_code == 302 and location(response) == "/login"
    assert operator.sid is None  # the cookie is cleared…
    assert live_sessions(db, "olivia") == []  # …and the session is gone on the server
    replay = browser()
    replay.set_sid(sid)
    assert replay.get("/jobs/").status_code == 302
    assert [r["actor"] for r in audit_rows(db, "logout")] == ["user:olivia"]


def test_logout_needs_post_and_csrf(operator: Web) -> None:
    assert operator.get("/logout").status_code == 405
    assert operator.post("/logout", csrf=False).status_code == 400
    assert operator.post("/logout", {"csrf_token": "forged"}).status_code == 400
    assert operator.get("/jobs/").status_code == 200  # still signed in


def test_logout_with_the_htmx_header_token(operator: Web) -> None:
    response = operator.post("/logout", csrf=False, headers={"X-CSRF-Token": operator.csrf()})
    assert response.status_code == 302
    assert operator.get("/jobs/").status_code == 302


def test_deleted_user_is_signed_out(operator: Web, db: Store) -> None:
    users.delete_user(db, "olivia")
    response = operator.get("/jobs/")
    assert response.status_code == 302 and location(response).startswith("/login")


def test_disabled_user_is_signed_out_at_once(operator: Web, db: Store) -> None:
    with db.write() as conn:  # even if a session row survived the disabling
        conn.execute("UPDATE users SET disabled = 1 WHERE username = 'olivia'")
    assert operator.get("/jobs/").status_code == 302


# --- the one-time password -----------------------------------------------------------------------


@pytest.fixture
def first_admin(browser: Browser) -> Web:
    """Signed in with the one-time password of ``bulwark init`` (must choose a new one)."""
    web = browser()
    response = web.sign_in("admin", ADMIN_PASSWORD, next_url="/jobs/")
    assert response.status_code == 302
    assert location(response) == "/password"
    return web


@pytest.mark.parametrize("path", ["/", "/jobs/", "/jobs/1", "/partials/pool", "/users/", "/setup/", "/account/"])
def test_must_change_password_redirects_everywhere(first_admin: Web, path: str) -> None:
    response = first_admin.get(path)
    assert response.status_code == 302
    assert location(response) == "/password"


def test_must_change_password_blocks_actions(first_admin: Web, db: Store) -> None:
    response = first_admin.post("/jobs/scrub")
    assert response.status_code == 302 and location(response) == "/password"
    response = first_admin.post("/users/add", {"username": "mallory", "role": "admin"})
    assert response.status_code == 302 and location(response) == "/password"
    assert queue.counts(db)["queued"] == 0
    assert [u.username for u in users.list_users(db)] == ["admin", "olivia", "victor"]


def test_must_change_password_blocks_the_api(first_admin: Web) -> None:
    response = first_admin.api("GET", "/api/v1/jobs")
    assert response.status_code == 403
    assert response.json["error"]["code"] == "password_change_required"


def test_password_page(first_admin: Web) -> None:
    response = first_admin.get("/password")
    assert response.status_code == 200
    page = text(response)
    assert "You signed in with a one-time password" in page
    assert f"at least {users.MIN_PASSWORD} characters" in page
    assert 'class="areas"' not in page  # no navigation until the password is changed


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("wrong current password", NEW_PASSWORD, NEW_PASSWORD, "The current password is wrong."),
        (ADMIN_PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x", "The two new passwords differ."),
        (ADMIN_PASSWORD, "short", "short", f"at least {users.MIN_PASSWORD} characters"),
        (ADMIN_PASSWORD, "", "", f"at least {users.MIN_PASSWORD} characters"),
        (ADMIN_PASSWORD, ADMIN_PASSWORD, ADMIN_PASSWORD, "Choose a password different from the current one."),
    ],
)
def test_password_change_validation(
    first_admin: Web, db: Store, current: str, new: str, confirm: str, message: str
) -> None:
    response = first_admin.post("/password", {"current": current, "new": new, "confirm": confirm})
    assert response.status_code == 400
    assert message in flash_error(text(response))
    assert users.get_user(db, "admin").must_change_password
    assert users.verify_password(db, "admin", ADMIN_PASSWORD) is not None
    assert first_admin.get("/jobs/").status_code == 302


def test_password_change_needs_csrf(first_admin: Web, db: Store) -> None:
    before = dump(db)
    response = first_admin.post(
        "/password", {"current": ADMIN_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}, csrf=False
    )
    assert response.status_code == 400
    assert dump(db) == before


def test_password_change_ends_the_other_sessions(first_admin: Web, browser: Browser, db: Store) -> None:
    elsewhere = browser()
    assert elsewhere.sign_in("admin", ADMIN_PASSWORD).status_code == 302
    assert len(live_sessions(db, "admin")) == 2
    response = first_admin.post("/password", {"current": ADMIN_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    assert location(response) == "/"
    assert not users.get_user(db, "admin").must_change_password
    assert users.verify_password(db, "admin", NEW_PASSWORD) is not None
    assert users.verify_password(db, "admin", ADMIN_PASSWORD) is None
    assert [r["id"] for r in live_sessions(db, "admin")] == [sha256(first_admin.sid or "")]
    assert elsewhere.get("/password").status_code == 302  # signed out
    (row,) = audit_rows(db, "user.password_changed")
    assert (row["actor"], row["target"]) == ("user:admin", "admin")

    # Signing in again uses the new password.
    first_admin.sign_out()
    assert first_admin.sign_in("admin", ADMIN_PASSWORD).status_code == 401
    assert first_admin.sign_in("admin", NEW_PASSWORD).status_code == 302


def test_operator_changes_own_password(operator: Web, db: Store) -> None:
    page = text(operator.get("/password"))
    assert "one-time password" not in page
    response = operator.post("/password", {"current": OPERATOR_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    assert users.verify_password(db, "olivia", NEW_PASSWORD) is not None


# --- the first-run wizard ------------------------------------------------------------------------


@pytest.fixture
def new_admin(first_admin: Web) -> Web:
    """The first admin after the password change, before the setup wizard."""
    response = first_admin.post("/password", {"current": ADMIN_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    return first_admin


@pytest.mark.parametrize("path", ["/", "/jobs/", "/users/", "/settings/", "/account/", "/audit/"])
def test_admin_is_sent_to_the_wizard_until_it_is_done(new_admin: Web, path: str) -> None:
    response = new_admin.get(path)
    assert response.status_code == 302 and location(response) == "/setup/"


def test_wizard_redirect_for_htmx(new_admin: Web) -> None:
    response = new_admin.get("/jobs/", headers={"HX-Request": "true"})
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/setup/"


def test_wizard_does_not_stop_other_roles(browser: Browser) -> None:
    web = browser()
    assert web.sign_in("olivia", OPERATOR_PASSWORD).status_code == 302
    assert web.get("/jobs/").status_code == 200
    assert web.get("/setup/").status_code == 403


def test_wizard_page(new_admin: Web) -> None:
    response = new_admin.get("/setup/")
    assert response.status_code == 200
    page = text(response)
    assert "<h1>Welcome to Bulwark</h1>" in page
    assert 'name="hostname" value="bulwark-test"' in page
    assert "<option selected>UTC</option>" in page and "<option >Europe/Berlin</option>" in page
    # No pool here: the wizard says what is wrong rather than failing.
    assert re.search(r'<h2>Storage pool</h2>\s*<p class="flash error">[^<]+</p>', page)


@pytest.mark.parametrize(
    ("hostname", "timezone", "message"),
    [
        ("", "UTC", "host name"),
        ("-lead", "UTC", "host name"),
        ("under_score", "UTC", "host name"),
        ("co:lon", "UTC", "host name"),
        ("spa ce", "UTC", "host name"),
        ("x" * 64, "UTC", "host name"),
        ("good-name", "Mars/Olympus_Mons", "time zone 'Mars/Olympus_Mons' is not known"),
        ("good-name", "", "time zone '' is not known"),
        ("good-name", "../../etc/passwd", "is not known"),
    ],
)
def test_wizard_validates(new_admin: Web, db: Store, hostname: str, timezone: str, message: str) -> None:
    response = new_admin.post("/setup/", {"hostname": hostname, "timezone": timezone})
    assert response.status_code == 400
    assert message in flash_error(text(response))
    config = settings.load(db)
    assert config is not None and (config.hostname, config.timezone) == ("bulwark-test", "UTC")
    assert not db.get_setting(SETUP_DONE_KEY, False)
    assert new_admin.get("/jobs/").status_code == 302  # still in the wizard


def test_wizard_completes(new_admin: Web, db: Store) -> None:
    response = new_admin.post("/setup/", {"hostname": " Backup-01.example ", "timezone": "Europe/Berlin"})
    assert response.status_code == 302 and location(response) == "/"
    config = settings.load(db)
    assert config is not None and (config.hostname, config.timezone) == ("backup-01.example", "Europe/Berlin")
    assert db.get_setting(SETUP_DONE_KEY) is True
    (row,) = audit_rows(db, "setup.completed")
    assert row["actor"] == "user:admin" and row["address"] == "127.0.0.1"
    assert new_admin.get("/jobs/").status_code == 200
    assert new_admin.get("/setup/").status_code == 200  # still there for later, no longer forced


def test_wizard_is_admin_only_to_post(operator: Web, db: Store) -> None:
    before = dump(db)
    response = operator.post("/setup/", {"hostname": "taken-over", "timezone": "UTC"})
    assert response.status_code == 403
    assert dump(db) == before
