"""The web UI through Flask's test client, on a real initialized data directory (no ZFS here).

Signing in (server-side sessions in the ``bulwark_sid`` cookie, throttling and lockout in the database,
the TOTP second factor, remote sessions through the tunnel's listener), the one-time password, the
first-run wizard, users and API tokens, the audit log, settings, CSRF, and the jobs pages. Pages whose
content needs ZFS (dashboard, storage) are walked with a real pool in test_permissions.py.
"""

from __future__ import annotations

import datetime
import html
import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pyotp
import pytest
from flask import Flask
from jinja2 import StrictUndefined

from appliance import users
from appliance.auth import sessions, throttle, tokens, totp
from appliance.jobs import queue
from appliance.store import Store
from appliance.system import settings
from appliance.system.errors import NotInitialized
from appliance.zfs.errors import PoolNotFound
from tests.unit.conftest import (
    ADMIN_NEW_PASSWORD,
    ADMIN_PASSWORD,
    OPERATOR_PASSWORD,
    POOL_NAME,
    VIEWER_PASSWORD,
    ApplianceDir,
)
from tests.unit.web import COOKIE, TUNNEL_PORT, Web, dump, live_sessions, location, sha256, text, totp_code
from webui import areas, create_app
from webui.identity import SETUP_DONE_KEY

NEW_PASSWORD = "a-much-better-password"
Browser = Callable[..., Web]
SignedIn = Callable[[str], Web]


@pytest.fixture
def operator(signed_in: SignedIn) -> Web:
    return signed_in("operator")


@pytest.fixture
def viewer(signed_in: SignedIn) -> Web:
    return signed_in("viewer")


@pytest.fixture
def admin(signed_in: SignedIn) -> Web:
    return signed_in("admin")


def audit_rows(db: Store, action: str) -> list[dict[str, object]]:
    return [dict(r) for r in db.query("SELECT * FROM audit WHERE action = ? ORDER BY id", (action,))]


def flash_error(page: str) -> str:
    match = re.search(r'<p class="flash error" role="alert">([^<]*)</p>', page)
    return html.unescape(match.group(1)) if match else ""


def set_setting(db: Store, **changes: object) -> None:
    settings.update(db, **changes)


def enrol_totp(db: Store, username: str) -> str:
    """Give an account a second factor the way the account page does (code of the previous step)."""
    secret = pyotp.random_base32()
    totp.enable(db, users.get_user(db, username).id, secret, totp_code(secret, -1))
    return secret


# --- the app -------------------------------------------------------------------------------------


def test_testing_app_uses_strict_undefined(app: Flask) -> None:
    assert app.jinja_env.undefined is StrictUndefined


def test_create_app_refuses_an_uninitialized_data_dir(tmp_path: Path) -> None:
    with pytest.raises(NotInitialized):
        create_app({"DATA_DIR": str(tmp_path / "nothing"), "TESTING": True})


@pytest.mark.parametrize("path", ["/", "/jobs/", "/jobs/1", "/password", "/partials/pool", "/users/", "/no/such/page"])
def test_unauthenticated_pages_redirect_to_login(browser: Browser, path: str) -> None:
    response = browser().get(path)
    assert response.status_code == 302
    target = urlsplit(location(response))
    assert (target.path, parse_qs(target.query)) == ("/login", {"next": [path]})


def test_unauthenticated_htmx_request_is_sent_to_login(browser: Browser) -> None:
    response = browser().get("/jobs/", headers={"HX-Request": "true", "HX-Target": "jobs-table"})
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/login?next=/jobs/"


def test_login_page(browser: Browser) -> None:
    response = browser().get("/login")
    assert response.status_code == 200
    page = text(response)
    assert "<h1>Sign in</h1>" in page
    assert 'name="csrf_token"' in page and 'name="username"' in page and 'type="password"' in page
    assert "bulwark user reset-password admin" in page
    assert "Sign out" not in page and "remote-access tunnel" not in page


@pytest.mark.parametrize("path", ["/static/app.css", "/static/vendor/htmx.min.js", "/favicon.ico"])
def test_static_files_are_public(browser: Browser, path: str) -> None:
    response = browser().get(path)
    assert response.status_code == 200
    response.close()


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


# --- the second factor ---------------------------------------------------------------------------


def _secret_on(page: str) -> str:
    match = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page)
    assert match, "no secret on the page"
    return match.group(1)


def test_account_page(operator: Web) -> None:
    page = text(operator.get("/account/"))
    assert "<h2>olivia</h2>" in page and "<strong>operator</strong>" in page
    assert '<span class="badge bad">off</span>' in page
    assert 'href="/account/totp"' in page


def test_totp_enrolment(operator: Web, db: Store) -> None:
    page = text(operator.get("/account/totp"))
    secret = _secret_on(page)
    assert "<svg" in page  # the QR code, made here
    assert text(operator.get("/account/totp")).count(secret) >= 1  # the same secret until confirmed

    response = operator.post("/account/totp", {"code": "000000" if totp_code(secret) != "000000" else "111111"})
    assert response.status_code == 400
    assert "That code does not match" in text(response)
    assert not users.get_user(db, "olivia").totp_enabled

    response = operator.post("/account/totp", {"code": totp_code(secret)})
    assert response.status_code == 302 and location(response) == "/account/"
    assert users.get_user(db, "olivia").totp_enabled
    assert '<span class="badge ok">on</span>' in text(operator.get("/account/"))
    assert operator.get("/account/totp").status_code == 302  # nothing more to set up
    (row,) = audit_rows(db, "user.totp_enabled")
    assert (row["actor"], row["target"]) == ("user:olivia", "olivia")


def test_sign_in_with_totp(browser: Browser, db: Store) -> None:
    secret = enrol_totp(db, "olivia")
    web = browser()
    response = web.sign_in("olivia", OPERATOR_PASSWORD, next_url="/jobs/")
    assert response.status_code == 302 and location(response) == "/login/totp"
    # Half signed in: nothing but the code form (and signing out).
    assert location(web.get("/jobs/")) == "/login/totp"
    assert location(web.get("/account/totp")) == "/login/totp"  # no re-enrolment past the factor
    assert web.api("GET", "/api/v1/me").json["error"]["code"] == "second_factor_required"
    page = text(web.get("/login/totp"))
    assert "Authenticator code" in page and 'class="areas"' not in page

    response = web.post("/login/totp", {"code": "12345"})
    assert response.status_code == 401
    assert "That code is wrong" in text(response)
    response = web.post("/login/totp", {"code": totp_code(secret)})
    assert response.status_code == 302 and location(response) == "/"
    assert web.get("/jobs/").status_code == 200
    (row,) = live_sessions(db, "olivia")
    assert row["mfa_done"] == 1
    assert [r["actor"] for r in audit_rows(db, "login.second_factor")] == ["user:olivia"]
    assert web.get("/login/totp").status_code == 302  # done already


def test_totp_code_cannot_be_replayed(browser: Browser, db: Store) -> None:
    secret = enrol_totp(db, "olivia")
    code = totp_code(secret)
    assert browser().sign_in("olivia", OPERATOR_PASSWORD, code=code).status_code == 302
    again = browser()
    response = again.sign_in("olivia", OPERATOR_PASSWORD, code=code)
    assert response.status_code == 401
    assert "already used" in text(response)
    assert again.get("/jobs/").status_code == 302
    # The enrolment code cannot sign in either: it is spent like any other.
    other = enrol_totp(db, "victor")
    response = browser().sign_in("victor", VIEWER_PASSWORD, code=totp_code(other, -1))
    assert response.status_code == 401


def test_wrong_codes_lock_the_account(browser: Browser, db: Store) -> None:
    secret = enrol_totp(db, "olivia")
    web = browser()
    web.sign_in("olivia", OPERATOR_PASSWORD)
    for _ in range(throttle.MAX_USER_FAILURES):
        assert web.post("/login/totp", {"code": "000000"}).status_code in (401, 429)
    response = web.post("/login/totp", {"code": totp_code(secret)})
    assert response.status_code == 429
    assert web.get("/jobs/").status_code == 302


def test_password_again_does_not_forgive_wrong_codes(browser: Browser, db: Store) -> None:
    """Someone who knows the password must not get unlimited code guesses by signing in again."""
    secret = enrol_totp(db, "olivia")
    for _ in range(throttle.MAX_USER_FAILURES):
        web = browser()
        assert web.sign_in("olivia", OPERATOR_PASSWORD).status_code == 302
        assert web.post("/login/totp", {"code": "000000"}).status_code == 401
    web = browser()
    assert web.sign_in("olivia", OPERATOR_PASSWORD).status_code == 429
    # …and the right code after all that clears the slate.
    with db.write() as conn:
        conn.execute("UPDATE login_failures SET at = at - ?", (throttle.LOCKOUT_SECONDS + 1,))
    assert web.sign_in("olivia", OPERATOR_PASSWORD, code=totp_code(secret)).status_code == 302
    assert db.query("SELECT * FROM login_failures") == []


def test_turning_totp_off_needs_the_password(operator: Web, db: Store) -> None:
    enrol_totp(db, "olivia")
    page = text(operator.get("/account/"))
    assert 'action="/account/totp/disable"' in page
    operator.post("/account/totp/disable", {"password": "wrong password"})
    assert users.get_user(db, "olivia").totp_enabled
    response = operator.post("/account/totp/disable", {"password": OPERATOR_PASSWORD})
    assert response.status_code == 302
    assert not users.get_user(db, "olivia").totp_enabled
    assert [r["target"] for r in audit_rows(db, "user.totp_disabled")] == ["olivia"]


def test_require_totp_forces_enrolment(admin: Web, browser: Browser, db: Store) -> None:
    response = admin.post("/settings/", {"hostname": "bulwark-test", "timezone": "UTC", "require_totp": "on"})
    assert response.status_code == 302
    web = browser()
    response = web.sign_in("olivia", OPERATOR_PASSWORD)
    assert response.status_code == 302 and location(response) == "/login/totp"
    assert location(web.get("/login/totp")) == "/account/totp"  # no factor yet: set one up first
    assert location(web.get("/jobs/")) == "/login/totp"
    page = text(web.get("/account/totp"))
    assert "Set it up now to continue." in page
    secret = _secret_on(page)
    response = web.post("/account/totp", {"code": totp_code(secret)})
    assert response.status_code == 302
    assert web.get("/jobs/").status_code == 200
    (row,) = live_sessions(db, "olivia")
    assert row["mfa_done"] == 1
    # From now on every sign-in asks for the code.
    web.sign_out()
    assert location(web.sign_in("olivia", OPERATOR_PASSWORD)) == "/login/totp"
    assert web.sign_in("olivia", OPERATOR_PASSWORD, code=totp_code(secret, 1)).status_code == 302


# --- remote sessions (the tunnel's listener) -----------------------------------------------------


@pytest.fixture
def tunnel(db: Store, appliance_dir: ApplianceDir) -> None:
    appliance_dir.finish_first_run()
    set_setting(db, tunnel_listen_port=TUNNEL_PORT)


def test_remote_sign_in_without_totp_is_refused(tunnel: None, browser: Browser, db: Store) -> None:
    web = browser(remote=True)
    page = text(web.get("/login"))
    assert "remote-access tunnel" in page
    response = web.sign_in("olivia", OPERATOR_PASSWORD)
    assert response.status_code == 403
    assert "Remote sign-in needs a second factor" in flash_error(text(response))
    assert web.sid is None and live_sessions(db, "olivia") == []
    assert [r["target"] for r in audit_rows(db, "login.refused_remote_no_totp")] == ["olivia"]


def test_remote_sign_in_always_asks_for_the_code(tunnel: None, browser: Browser, db: Store) -> None:
    secret = enrol_totp(db, "olivia")
    assert not settings.load(db).require_totp  # type: ignore[union-attr]
    web = browser(remote=True)
    response = web.sign_in("olivia", OPERATOR_PASSWORD)
    assert location(response) == "/login/totp"
    assert location(web.get("/jobs/")) == "/login/totp"
    assert location(web.get("/account/totp")) == "/login/totp"
    response = web.post("/login/totp", {"code": totp_code(secret)})
    assert response.status_code == 302
    page = text(web.get("/jobs/"))
    assert "Remote session through the MSP tunnel" in page and "(operator, remote)" in page
    (row,) = live_sessions(db, "olivia")
    assert row["remote"] == 1
    (login,) = audit_rows(db, "login")
    assert '"remote": true' in str(login["details"])
    # The same account on the LAN does not need the code (it is not required there).
    assert browser().sign_in("olivia", OPERATOR_PASSWORD).status_code == 302


def test_remote_cookie_is_not_valid_on_the_lan_and_back(tunnel: None, browser: Browser, db: Store) -> None:
    secret = enrol_totp(db, "olivia")
    remote = browser(remote=True)
    assert remote.sign_in("olivia", OPERATOR_PASSWORD, code=totp_code(secret)).status_code == 302
    lan = browser()
    lan.set_sid(remote.sid or "")
    assert lan.get("/jobs/").status_code == 302
    local = browser()
    assert local.sign_in("victor", VIEWER_PASSWORD).status_code == 302
    through_tunnel = browser(remote=True)
    through_tunnel.set_sid(local.sid or "")
    assert through_tunnel.get("/jobs/").status_code == 302  # a LAN session skipped the second factor


def test_remote_session_cannot_turn_its_own_totp_off(tunnel: None, browser: Browser, db: Store) -> None:
    secret = enrol_totp(db, "olivia")
    web = browser(remote=True)
    assert web.sign_in("olivia", OPERATOR_PASSWORD, code=totp_code(secret)).status_code == 302
    page = text(web.get("/account/"))
    assert 'action="/account/totp/disable"' not in page
    before = dump(db)
    response = web.post("/account/totp/disable", {"password": OPERATOR_PASSWORD})
    assert response.status_code == 302
    assert users.get_user(db, "olivia").totp_enabled
    assert dump(db) == before


def test_remote_admin_cannot_reset_own_totp(tunnel: None, browser: Browser, db: Store) -> None:
    """Not through the users page nor the API either."""
    secret = enrol_totp(db, "admin")
    web = browser(remote=True)
    assert web.sign_in("admin", ADMIN_NEW_PASSWORD, code=totp_code(secret)).status_code == 302
    response = web.post("/users/admin/reset-totp")
    assert response.status_code == 403
    response = web.api("DELETE", "/api/v1/users/admin/totp", headers={"X-CSRF-Token": web.csrf()})
    assert response.status_code == 403
    assert users.get_user(db, "admin").totp_enabled
    assert web.get("/users/").status_code == 200  # still signed in
    # Another account's factor can be reset remotely by an admin.
    enrol_totp(db, "olivia")
    assert web.post("/users/olivia/reset-totp").status_code == 200
    assert not users.get_user(db, "olivia").totp_enabled


# --- users and API tokens ------------------------------------------------------------------------


def _shown_once(page: str) -> str:
    match = re.search(r'<code id="shown-once">([^<]+)</code>', page)
    assert match, "nothing shown once"
    return match.group(1)


def test_users_page(admin: Web) -> None:
    page = text(admin.get("/users/"))
    assert "<h1>Users and API tokens</h1>" in page
    for name in ("admin", "olivia", "victor"):
        assert f'aria-label="role of {name}"' in page
    assert "No API tokens yet." in page
    assert 'id="shown-once"' not in page


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_users_page_is_admin_only(signed_in: SignedIn, role: str) -> None:
    web = signed_in(role)
    response = web.get("/users/")
    assert response.status_code == 403
    page = text(response)
    assert "<h1>Not allowed</h1>" in page and f"Your role ({role}) does not allow this." in page
    nav = text(web.get("/jobs/"))
    assert 'href="/users/"' not in nav
    assert ('href="/audit/"' in nav) == (role == "operator")


def test_admin_sees_admin_links(admin: Web) -> None:
    nav = text(admin.get("/jobs/"))
    assert 'href="/users/"' in nav and 'href="/audit/"' in nav


def test_add_user_shows_the_one_time_password_once(admin: Web, browser: Browser, db: Store) -> None:
    response = admin.post("/users/add", {"username": "nora", "role": "operator"})
    assert response.status_code == 200
    page = text(response)
    password = _shown_once(page)
    assert "One-time password for nora" in page
    assert password not in text(admin.get("/users/"))  # shown once
    assert password not in str(dump(db))
    nora = users.get_user(db, "nora")
    assert (nora.role, nora.must_change_password) == ("operator", True)
    (row,) = audit_rows(db, "user.create")
    assert (row["actor"], row["target"], row["address"]) == ("user:admin", "nora", "127.0.0.1")
    web = browser()
    response = web.sign_in("nora", password)
    assert response.status_code == 302 and location(response) == "/password"


@pytest.mark.parametrize(
    ("username", "role", "status", "message"),
    [
        ("Bad Name", "viewer", 400, "a user name must start with a lowercase letter"),
        ("nora", "root", 400, "role must be one of admin, operator, viewer"),
        ("olivia", "viewer", 409, "olivia"),
    ],
)
def test_add_user_errors(admin: Web, db: Store, username: str, role: str, status: int, message: str) -> None:
    before = dump(db)
    response = admin.post("/users/add", {"username": username, "role": role})
    assert response.status_code == status
    assert message in flash_error(text(response))
    assert dump(db) == before


def test_change_role(admin: Web, db: Store) -> None:
    response = admin.post("/users/olivia/role", {"role": "viewer"})
    assert response.status_code == 302 and location(response) == "/users/"
    assert users.get_user(db, "olivia").role == "viewer"
    (row,) = audit_rows(db, "user.role")
    assert row["target"] == "olivia" and '"role": "viewer"' in str(row["details"])
    assert admin.post("/users/olivia/role", {"role": "god"}).status_code == 400
    assert admin.post("/users/nobody/role", {"role": "viewer"}).status_code == 404


def test_role_change_applies_to_open_sessions(admin: Web, operator: Web) -> None:
    assert operator.post("/jobs/scrub").status_code == 302
    admin.post("/users/olivia/role", {"role": "viewer"})
    assert operator.post("/jobs/scrub").status_code == 403


def test_the_last_admin_stays(admin: Web, db: Store) -> None:
    before = dump(db)
    response = admin.post("/users/admin/role", {"role": "operator"})
    assert response.status_code == 409
    assert "admin is the last active admin" in flash_error(text(response))
    response = admin.post("/users/admin/disable", {"disabled": "1"})
    assert response.status_code == 409
    response = admin.post("/users/admin/delete", {"confirm": "admin"})
    assert response.status_code == 409
    assert dump(db) == before
    # With a second admin, the first one can step down.
    admin.post("/users/olivia/role", {"role": "admin"})
    assert admin.post("/users/admin/role", {"role": "operator"}).status_code == 302
    assert users.get_user(db, "admin").role == "operator"


def test_disabling_a_user_ends_their_sessions(admin: Web, operator: Web, browser: Browser, db: Store) -> None:
    assert live_sessions(db, "olivia")
    response = admin.post("/users/olivia/disable", {"disabled": "1"})
    assert response.status_code == 302
    assert users.get_user(db, "olivia").disabled
    assert live_sessions(db, "olivia") == []
    assert operator.get("/jobs/").status_code == 302
    assert browser().sign_in("olivia", OPERATOR_PASSWORD).status_code == 401
    assert 'badge bad">disabled' in text(admin.get("/users/"))
    admin.post("/users/olivia/disable", {"disabled": "0"})
    assert not users.get_user(db, "olivia").disabled
    assert browser().sign_in("olivia", OPERATOR_PASSWORD).status_code == 302
    changes = db.query("SELECT action FROM audit WHERE target = 'olivia' AND action LIKE 'user.%' ORDER BY id")
    assert [r["action"] for r in changes] == ["user.disable", "user.enable"]


def test_delete_needs_the_typed_name(admin: Web, db: Store) -> None:
    before = dump(db)
    response = admin.post("/users/victor/delete", {"confirm": "victo"})
    assert response.status_code == 400
    assert "Type the user name (victor)" in flash_error(text(response))
    assert admin.post("/users/victor/delete").status_code == 400
    assert dump(db) == before
    response = admin.post("/users/victor/delete", {"confirm": "victor"})
    assert response.status_code == 302
    assert [u.username for u in users.list_users(db)] == ["admin", "olivia"]
    assert [r["target"] for r in audit_rows(db, "user.delete")] == ["victor"]


def test_admin_cannot_delete_self(admin: Web, db: Store) -> None:
    admin.post("/users/olivia/role", {"role": "admin"})  # (not the last admin either)
    response = admin.post("/users/admin/delete", {"confirm": "admin"})
    assert response.status_code == 409
    assert "You cannot delete your own account." in flash_error(text(response))
    assert users.get_user(db, "admin")


def test_reset_password(admin: Web, operator: Web, browser: Browser, db: Store) -> None:
    response = admin.post("/users/olivia/reset-password")
    assert response.status_code == 200
    password = _shown_once(text(response))
    assert users.get_user(db, "olivia").must_change_password
    assert operator.get("/jobs/").status_code == 302  # their sessions ended
    assert browser().sign_in("olivia", OPERATOR_PASSWORD).status_code == 401
    response = browser().sign_in("olivia", password)
    assert response.status_code == 302 and location(response) == "/password"


def test_reset_totp(admin: Web, browser: Browser, db: Store) -> None:
    secret = enrol_totp(db, "olivia")
    web = browser()
    assert web.sign_in("olivia", OPERATOR_PASSWORD, code=totp_code(secret)).status_code == 302
    page = text(admin.get("/users/"))
    assert 'action="/users/olivia/reset-totp"' in page
    response = admin.post("/users/olivia/reset-totp")
    assert response.status_code == 200
    assert "The second factor of olivia was removed" in text(response)
    assert not users.get_user(db, "olivia").totp_enabled
    assert web.get("/jobs/").status_code == 302


def test_create_and_revoke_an_api_token(admin: Web, db: Store) -> None:
    response = admin.post("/users/tokens", {"name": "monitoring", "role": "viewer", "expires_days": "30"})
    assert response.status_code == 200
    secret = _shown_once(text(response))
    assert secret.startswith("bwk_")
    assert secret not in text(admin.get("/users/")) and secret not in str(dump(db))
    (token,) = tokens.list_tokens(db)
    assert (token.name, token.role, token.created_by) == ("monitoring", "viewer", "user:admin")
    assert token.expires_at == pytest.approx(time.time() + 30 * 86400, abs=60)
    page = text(admin.get("/users/"))
    assert "<td>monitoring</td><td>viewer</td>" in page
    assert admin.api("GET", "/api/v1/me", token=secret).json["kind"] == "token"

    response = admin.post(f"/users/tokens/{token.id}/revoke")
    assert response.status_code == 302
    assert not tokens.get(db, token.id).active
    assert admin.api("GET", "/api/v1/me", token=secret).status_code == 401
    assert '<span class="badge">revoked</span>' in text(admin.get("/users/"))
    assert [r["action"] for r in db.query("SELECT action FROM audit WHERE action LIKE 'token.%'")] == [
        "token.create",
        "token.revoke",
    ]


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"name": "ci", "role": "viewer", "expires_days": "soon"}, 400, "Expiry must be a whole number of days."),
        ({"name": "ci", "role": "viewer", "expires_days": "0"}, 400, "expiry must be 1 to 3650 days"),
        ({"name": "", "role": "viewer"}, 400, "a token name is"),
        ({"name": "ci", "role": "superuser"}, 400, "role must be one of"),
    ],
)
def test_token_form_errors(admin: Web, db: Store, form: dict[str, str], status: int, message: str) -> None:
    response = admin.post("/users/tokens", form)
    assert response.status_code == status
    assert message in flash_error(text(response))
    assert tokens.list_tokens(db) == []


def test_revoke_unknown_token(admin: Web) -> None:
    assert admin.post("/users/tokens/999/revoke").status_code == 404


# --- the audit log -------------------------------------------------------------------------------


def test_audit_page_lists_who_did_what_from_where(admin: Web, operator: Web, db: Store) -> None:
    operator.post("/jobs/scrub")
    admin.post("/users/add", {"username": "nora", "role": "viewer"})
    page = text(admin.get("/audit/"))
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>\s*<td>([^<]*)</td>", page)
    assert rows[0][1:] == ("user:admin", "127.0.0.1", "user.create", "nora")
    assert rows[1][1:] == ("user:olivia", "127.0.0.1", "pool.scrub", POOL_NAME)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", rows[0][0])
    assert ("user:olivia", "127.0.0.1", "login", "") in [r[1:] for r in rows]


def test_audit_page_filters_and_pages(admin: Web, db: Store) -> None:
    for i in range(105):
        db.audit("cli", "token.revoke", str(i))
    db.audit("user:olivia", "user.create", "nora")
    page = text(admin.get("/audit/?actor=user:olivia"))
    assert "user.create" in page and "token.revoke" not in page
    page = text(admin.get("/audit/?action=token."))
    assert page.count("token.revoke") == 100
    older = re.search(r'<a href="(/audit/\?[^"]+)">Older entries</a>', page)
    assert older
    rest = text(admin.get(older.group(1).replace("&amp;", "&")))
    assert rest.count("token.revoke") == 5 and "Older entries" not in rest
    assert "No entries match the filter." in text(admin.get("/audit/?actor=nobody"))


def test_audit_page_htmx_partial(operator: Web) -> None:
    fragment = text(operator.get("/audit/", headers={"HX-Request": "true", "HX-Target": "audit"}))
    assert "<html" not in fragment and '<table class="audit">' in fragment


def test_viewer_cannot_read_the_audit_log(viewer: Web) -> None:
    assert viewer.get("/audit/").status_code == 403


# --- settings ------------------------------------------------------------------------------------


def test_viewer_sees_settings_read_only(viewer: Web, db: Store) -> None:
    response = viewer.get("/settings/")
    assert response.status_code == 200
    page = text(response)
    assert "<fieldset disabled>" in page and "Only admins change settings." in page
    assert '<button type="submit">Save</button>' not in page
    before = dump(db)
    response = viewer.post("/settings/", {"hostname": "hijacked", "timezone": "UTC", "require_totp": "on"})
    assert response.status_code == 403
    assert dump(db) == before


def test_admin_changes_settings(admin: Web, db: Store) -> None:
    page = text(admin.get("/settings/"))
    assert "<fieldset >" in page and '<button type="submit">Save</button>' in page
    response = admin.post("/settings/", {"hostname": "vault", "timezone": "Asia/Tokyo", "require_totp": "on"})
    assert response.status_code == 302 and location(response) == "/settings/?saved=1"
    config = settings.load(db)
    assert config is not None and (config.hostname, config.timezone, config.require_totp) == (
        "vault",
        "Asia/Tokyo",
        True,
    )
    assert "Saved." in text(admin.get("/settings/?saved=1"))
    (row,) = audit_rows(db, "settings.update")
    assert row["actor"] == "user:admin" and "Asia/Tokyo" in str(row["details"])
    response = admin.post("/settings/", {"hostname": "vault", "timezone": "Nowhere/Land"})
    assert response.status_code == 400
    assert "is not known" in flash_error(text(response))
    assert settings.load(db).timezone == "Asia/Tokyo"  # type: ignore[union-attr]


def test_times_show_in_the_appliance_time_zone(admin: Web, db: Store) -> None:
    set_setting(db, timezone="Asia/Kolkata")  # UTC+05:30: minutes tell it apart
    job = queue.enqueue(db, "pool.scrub", {"pool": POOL_NAME}, resource=None, created_by="cli")
    queue.claim(db, ["pool.scrub"])
    started = queue.get(db, job).started_at
    assert started
    expected = datetime.datetime.fromtimestamp(started, ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M")
    assert expected in text(admin.get("/jobs/"))


# --- CSRF on every state-changing request --------------------------------------------------------


def _state_changing_rules(app: Flask) -> list[tuple[str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/agent/"):
            continue  # backup agents send a credential header, never cookies: nothing for CSRF to protect
        for method in sorted((rule.methods or set()) - {"GET", "HEAD", "OPTIONS"}):
            found.append((rule.rule, method))
    return sorted(found)


def test_csrf_walk_covers_every_state_changing_route(app: Flask) -> None:
    assert set(_state_changing_rules(app)) == {(rule, method) for rule, method in CSRF_CASES}


CSRF_CASES = [
    ("/login", "POST"),
    ("/login/totp", "POST"),
    ("/logout", "POST"),
    ("/password", "POST"),
    ("/account/totp", "POST"),
    ("/account/totp/disable", "POST"),
    ("/setup/", "POST"),
    ("/jobs/scrub", "POST"),
    ("/jobs/<int:job_id>/cancel", "POST"),
    ("/settings/", "POST"),
    ("/users/add", "POST"),
    ("/users/<username>/role", "POST"),
    ("/users/<username>/disable", "POST"),
    ("/users/<username>/reset-password", "POST"),
    ("/users/<username>/reset-totp", "POST"),
    ("/users/<username>/delete", "POST"),
    ("/users/tokens", "POST"),
    ("/users/tokens/<int:token_id>/revoke", "POST"),
    ("/api/v1/jobs/<int:job_id>/cancel", "POST"),
    ("/api/v1/pool/scrub", "POST"),
    ("/api/v1/settings", "PATCH"),
    ("/api/v1/users", "POST"),
    ("/api/v1/users/<string(maxlength=32):username>", "PATCH"),
    ("/api/v1/users/<string(maxlength=32):username>", "DELETE"),
    ("/api/v1/users/<string(maxlength=32):username>/reset-password", "POST"),
    ("/api/v1/users/<string(maxlength=32):username>/totp", "DELETE"),
    ("/api/v1/tokens", "POST"),
    ("/api/v1/tokens/<int:token_id>", "DELETE"),
    ("/api/v1/me/password", "POST"),
    ("/api/v1/me/totp/setup", "POST"),
    ("/api/v1/me/totp/enable", "POST"),
    # Clients, points, browsing and restores: refused at the gate, before any ZFS is touched.
    ("/api/v1/browse/<string(maxlength=64):sid>", "DELETE"),
    ("/api/v1/browse/<string(maxlength=64):sid>/zip", "POST"),
    ("/api/v1/clients", "POST"),
    ("/api/v1/clients/<string(maxlength=32):name>", "DELETE"),
    ("/api/v1/clients/<string(maxlength=32):name>", "PATCH"),
    ("/api/v1/clients/<string(maxlength=32):name>/browse", "POST"),
    ("/api/v1/clients/<string(maxlength=32):name>/points", "POST"),
    ("/api/v1/clients/<string(maxlength=32):name>/points/<path:point>", "DELETE"),
    ("/api/v1/clients/<string(maxlength=32):name>/points/<path:point>/pin", "DELETE"),
    ("/api/v1/clients/<string(maxlength=32):name>/points/<path:point>/pin", "POST"),
    ("/api/v1/clients/<string(maxlength=32):name>/prune", "POST"),
    ("/api/v1/clients/<string(maxlength=32):name>/reattach", "POST"),
    ("/api/v1/clients/<string(maxlength=32):name>/remove", "POST"),
    ("/api/v1/clients/<string(maxlength=32):name>/restore", "POST"),
    ("/clients/", "POST"),
    ("/clients/<string(maxlength=32):name>/browse/", "POST"),
    ("/clients/<string(maxlength=32):name>/browse/<string(maxlength=64):sid>/close", "POST"),
    ("/clients/<string(maxlength=32):name>/browse/<string(maxlength=64):sid>/restore", "POST"),
    ("/clients/<string(maxlength=32):name>/browse/<string(maxlength=64):sid>/zip", "POST"),
    ("/clients/<string(maxlength=32):name>/destroy", "POST"),
    ("/clients/<string(maxlength=32):name>/points/destroy", "POST"),
    ("/clients/<string(maxlength=32):name>/points/pin", "POST"),
    ("/clients/<string(maxlength=32):name>/points/unpin", "POST"),
    ("/clients/<string(maxlength=32):name>/prune", "POST"),
    ("/clients/<string(maxlength=32):name>/reattach", "POST"),
    ("/clients/<string(maxlength=32):name>/remove", "POST"),
    ("/clients/<string(maxlength=32):name>/settings", "POST"),
    ("/clients/<string(maxlength=32):name>/snapshot", "POST"),
    # Alerts, channels, report mails and the /metrics token.
    ("/alerts/<int:alert_id>/acknowledge", "POST"),
    ("/alerts/<int:alert_id>/snooze", "POST"),
    ("/alerts/<int:alert_id>/unsnooze", "POST"),
    ("/alerts/channels", "POST"),
    ("/alerts/channels/<int:channel_id>", "POST"),
    ("/alerts/channels/<int:channel_id>/delete", "POST"),
    ("/alerts/channels/<int:channel_id>/test", "POST"),
    ("/alerts/metrics-token", "POST"),
    ("/reports/schedules", "POST"),
    ("/reports/schedules/<int:schedule_id>/delete", "POST"),
    ("/api/v1/alerts/<int:alert_id>/acknowledge", "POST"),
    ("/api/v1/alerts/<int:alert_id>/snooze", "POST"),
    ("/api/v1/alerts/<int:alert_id>/unsnooze", "POST"),
    ("/api/v1/channels", "POST"),
    ("/api/v1/channels/<int:channel_id>", "PATCH"),
    ("/api/v1/channels/<int:channel_id>", "DELETE"),
    ("/api/v1/channels/<int:channel_id>/test", "POST"),
    ("/api/v1/report-schedules", "POST"),
    ("/api/v1/report-schedules/<int:schedule_id>", "DELETE"),
    ("/api/v1/metrics/token", "POST"),
    ("/api/v1/metrics/token", "DELETE"),
    ("/remote-access/configure", "POST"),
    ("/remote-access/scan", "POST"),
    ("/remote-access/trust", "POST"),
    ("/remote-access/switch", "POST"),
    ("/remote-access/reconnect", "POST"),
    ("/remote-access/remote-sessions", "POST"),
    ("/api/v1/tunnel", "POST"),
    ("/api/v1/tunnel", "DELETE"),
    ("/api/v1/tunnel/host-key/scan", "POST"),
    ("/api/v1/tunnel/host-key/trust", "POST"),
    ("/api/v1/tunnel/enable", "POST"),
    ("/api/v1/tunnel/disable", "POST"),
    ("/api/v1/tunnel/reconnect", "POST"),
    ("/api/v1/tunnel/remote-sessions", "POST"),
    ("/offsite/key", "POST"),
    ("/offsite/kit", "POST"),
    ("/offsite/targets", "POST"),
    ("/offsite/targets/remove", "POST"),
    ("/offsite/policy", "POST"),
    ("/offsite/<client>/run", "POST"),
    ("/offsite/<client>/verify", "POST"),
    ("/api/v1/offsite/keys", "POST"),
    ("/api/v1/offsite/keys/rotate", "POST"),
    ("/api/v1/offsite/kit", "POST"),
    ("/api/v1/offsite/targets", "POST"),
    ("/api/v1/offsite/targets/remove", "POST"),
    ("/api/v1/offsite/policies", "PATCH"),
    ("/api/v1/offsite/<client>/run", "POST"),
    ("/api/v1/offsite/<client>/verify", "POST"),
    ("/disks/<disk>/read", "POST"),
    ("/disks/<disk>/test", "POST"),
    ("/api/v1/disks/<disk>/smart", "POST"),
    ("/api/v1/disks/<disk>/selftest", "POST"),
    ("/disks/replace", "POST"),
    ("/disks/replace/led", "POST"),
    ("/smb/settings", "POST"),
    ("/smb/clients/<string(maxlength=32):name>/password", "POST"),
    ("/smb/clients/<string(maxlength=32):name>/share", "POST"),
    ("/smb/clients/<string(maxlength=32):name>/trigger", "POST"),
    ("/smb/clients/<string(maxlength=32):name>/restore-share", "POST"),
    ("/api/v1/clients/<string(maxlength=32):name>/smb/restore-share", "PUT"),
    ("/api/v1/clients/<string(maxlength=32):name>/smb/restore-share", "DELETE"),
    ("/api/v1/smb/settings", "PATCH"),
    ("/api/v1/clients/<string(maxlength=32):name>/smb", "PATCH"),
    ("/api/v1/clients/<string(maxlength=32):name>/smb/password", "POST"),
    ("/api/v1/clients/<string(maxlength=32):name>/smb/trigger", "POST"),
]

# What each form would send (it would change something if the token were there).
FORMS = {
    "/login": {"username": "admin", "password": ADMIN_NEW_PASSWORD},
    "/password": {"current": ADMIN_NEW_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    "/account/totp/disable": {"password": ADMIN_NEW_PASSWORD},
    "/setup/": {"hostname": "csrf-victim", "timezone": "Europe/Paris"},
    "/settings/": {"hostname": "csrf-victim", "timezone": "Europe/Paris", "require_totp": "on"},
    "/users/add": {"username": "mallory", "role": "admin"},
    "/users/<username>/role": {"role": "admin"},
    "/users/<username>/disable": {"disabled": "1"},
    "/users/<username>/delete": {"confirm": "olivia"},
    "/users/tokens": {"name": "stolen", "role": "admin"},
    "/api/v1/settings": {"hostname": "csrf-victim"},
    "/api/v1/users": {"username": "mallory", "role": "admin"},
    "/api/v1/users/<string(maxlength=32):username>": {"role": "admin", "disabled": True},
    "/api/v1/tokens": {"name": "stolen", "role": "admin"},
    "/api/v1/me/password": {"current": ADMIN_NEW_PASSWORD, "new": NEW_PASSWORD},
    "/clients/": {"name": "csrf-victim", "kind": "smb"},
    "/api/v1/clients": {"name": "csrf-victim", "kind": "smb"},
    "/alerts/channels": {"name": "csrf-victim", "kind": "webhook", "url": "http://127.0.0.1/"},
    "/alerts/metrics-token": {"action": "new"},
    "/api/v1/channels": {"name": "csrf-victim", "kind": "webhook", "config": {"url": "http://127.0.0.1/"}},
    "/remote-access/configure": {"host": "evil.example", "user": "mallory", "remote_port": "20001"},
    "/remote-access/remote-sessions": {"allowed": "0"},
    "/api/v1/tunnel": {"host": "evil.example", "user": "mallory", "remote_port": 20001},
    "/api/v1/tunnel/remote-sessions": {"allowed": False},
    "/disks/<disk>/test": {"kind": "short"},
    "/api/v1/disks/<disk>/selftest": {"kind": "short"},
    "/disks/replace": {"old": "/dev/sdz", "new": "/dev/sdy", "confirm": "yes"},
    "/disks/replace/led": {"old": "/dev/sdz", "action": "locate_on"},
}


def _concrete(rule: str, job_id: int, token_id: int) -> str:
    return (
        rule.replace("<int:job_id>", str(job_id))
        .replace("<int:token_id>", str(token_id))
        .replace("<string(maxlength=32):username>", "olivia")
        .replace("<username>", "olivia")
        .replace("<string(maxlength=32):name>", "acme")
        .replace("<string(maxlength=64):sid>", "0123456789abcdef")
        .replace("<path:point>", "share@bw-20261126T120000Z-manual")
        .replace("<int:alert_id>", "1")
        .replace("<int:channel_id>", "1")
        .replace("<int:schedule_id>", "1")
        .replace("<client>", "acme")
        .replace("<disk>", "sda")
    )


@pytest.mark.parametrize(("rule", "method"), CSRF_CASES)
@pytest.mark.parametrize("how", ["no token", "forged token", "htmx without header"])
def test_csrf_refused_and_nothing_changes(
    admin: Web, db: Store, operator: Web, rule: str, method: str, how: str
) -> None:
    secret = enrol_totp(db, "admin")
    job = queue.enqueue(db, "pool.scrub", {"pool": POOL_NAME}, resource=None, created_by="cli")
    token, _ = tokens.create(db, name="victim", role="viewer", created_by="cli")
    path = _concrete(rule, job, token.id)
    form = FORMS.get(rule, {"code": totp_code(secret, 1)} if "totp" in rule else {})
    before = dump(db)
    headers = {"HX-Request": "true"} if how == "htmx without header" else {}
    if rule.startswith("/api/"):
        if how == "forged token":
            headers["X-CSRF-Token"] = "forged"
        response = admin.open(path, method, json=form, headers=headers)
    else:
        if how == "forged token":
            form = {**form, "csrf_token": "forged"}
        response = admin.open(path, method, data=form, headers=headers)
    assert response.status_code == 400, (path, response.status_code)
    if rule.startswith("/api/"):
        assert response.json["error"]["message"].startswith("The form has expired or did not come from this appliance")
    else:
        assert "did not come from this appliance" in text(response)
    assert dump(db) == before
    assert admin.get("/jobs/").status_code == 200 and operator.get("/jobs/").status_code == 200  # still signed in


def test_api_with_the_csrf_header_works_for_a_session(admin: Web, db: Store) -> None:
    response = admin.api("POST", "/api/v1/pool/scrub", headers={"X-CSRF-Token": admin.csrf()})
    assert response.status_code == 202
    assert queue.get(db, response.json["job"]).created_by == "user:admin"


# --- headers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/jobs/", "/jobs/999", "/static/app.css", "/api/v1/jobs"])
def test_security_headers(operator: Web, path: str) -> None:
    response = operator.get(path)
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    response.close()


def test_security_headers_on_errors(browser: Browser) -> None:
    response = browser().post("/login", csrf=False)
    assert response.status_code == 400
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" in response.headers


# --- jobs ----------------------------------------------------------------------------------------


@pytest.fixture
def scrub_job(db: Store) -> int:
    return queue.enqueue(
        db, "pool.scrub", {"pool": POOL_NAME}, resource=f"pool:{POOL_NAME}:scrub", created_by="user:olivia"
    )


def test_jobs_list_empty(operator: Web) -> None:
    response = operator.get("/jobs/")
    assert response.status_code == 200
    assert "No jobs yet." in text(response)


def test_jobs_list(operator: Web, scrub_job: int) -> None:
    response = operator.get("/jobs/")
    assert response.status_code == 200
    page = text(response)
    assert "<!doctype html>" in page and "<h1>Jobs</h1>" in page
    assert f'href="/jobs/{scrub_job}"' in page
    assert "pool.scrub" in page and "state-queued" in page and "user:olivia" in page


def test_job_page(operator: Web, scrub_job: int) -> None:
    response = operator.get(f"/jobs/{scrub_job}")
    assert response.status_code == 200
    page = text(response)
    assert f"Job {scrub_job}: pool.scrub" in page
    assert "state-queued" in page
    assert f'action="/jobs/{scrub_job}/cancel"' in page  # an operator may cancel
    assert 'hx-trigger="every 1s"' in page  # follows progress while it runs
    assert "<progress></progress>" in page  # no percentage yet


def test_job_page_progress_and_result(operator: Web, db: Store, scrub_job: int) -> None:
    queue.claim(db, ["pool.scrub"])
    queue.set_progress(db, scrub_job, 2500, 10000, "25.0% scanned")
    page = text(operator.get(f"/jobs/{scrub_job}"))
    assert "state-running" in page and "25.0% scanned" in page and "25.0%" in page
    assert '<progress value="25.0" max="100">' in page
    queue.succeed(db, scrub_job, {"errors": 0, "seconds": 1.5})
    page = text(operator.get(f"/jobs/{scrub_job}"))
    assert "state-succeeded" in page and "hx-trigger" not in page and "/cancel" not in page
    assert "Result:" in page and '"errors": 0' in page


def test_job_page_shows_the_error_and_what_to_do(operator: Web, db: Store, scrub_job: int) -> None:
    queue.claim(db, ["pool.scrub"])
    queue.fail(db, scrub_job, PoolNotFound(POOL_NAME))
    page = text(operator.get(f"/jobs/{scrub_job}"))
    assert "state-failed" in page
    assert f"Pool {POOL_NAME} does not exist or is not imported." in page
    assert f"<strong>What to do:</strong> {PoolNotFound.hint.replace(chr(39), '&#39;')}" in page


def test_job_page_htmx_partial(operator: Web, scrub_job: int) -> None:
    response = operator.get(f"/jobs/{scrub_job}", headers={"HX-Request": "true", "HX-Target": "job-progress"})
    assert response.status_code == 200
    fragment = text(response)
    assert fragment.lstrip().startswith('<article id="job-progress"')
    assert "<html" not in fragment and "<!doctype" not in fragment and "<h1>" not in fragment


def test_jobs_list_htmx_partial(operator: Web, scrub_job: int) -> None:
    response = operator.get("/jobs/", headers={"HX-Request": "true", "HX-Target": "jobs-table"})
    fragment = text(response)
    assert fragment.lstrip().startswith('<div class="scroll"><table class="jobs">')
    assert "<html" not in fragment and f'href="/jobs/{scrub_job}"' in fragment


def test_htmx_without_a_target_gets_the_full_page(operator: Web, scrub_job: int) -> None:
    response = operator.get(f"/jobs/{scrub_job}", headers={"HX-Request": "true"})
    assert "<!doctype html>" in text(response)


def test_unknown_job_is_a_404_page_with_a_hint(operator: Web) -> None:
    response = operator.get("/jobs/999")
    assert response.status_code == 404
    page = text(response)
    assert "There is no job 999." in page
    assert "<strong>What to do:</strong>" in page
    assert "Check the address" in page


def test_unknown_page_is_a_404_with_a_hint(operator: Web) -> None:
    response = operator.get("/no/such/page")
    assert response.status_code == 404
    assert "What to do:" in text(response)


def test_viewer_cannot_start_or_cancel_jobs(viewer: Web, db: Store, scrub_job: int) -> None:
    response = viewer.post("/jobs/scrub")
    assert response.status_code == 403
    page = text(response)
    assert "<h1>Not allowed</h1>" in page and "Your role (viewer) does not allow this." in page
    assert "What to do:" in page
    response = viewer.post(f"/jobs/{scrub_job}/cancel")
    assert response.status_code == 403
    assert queue.counts(db) == {**dict.fromkeys(queue.STATES, 0), "queued": 1}
    page = text(viewer.get(f"/jobs/{scrub_job}"))
    assert "/cancel" not in page  # no button a viewer cannot use


def test_viewer_can_read_jobs(viewer: Web, scrub_job: int) -> None:
    assert viewer.get("/jobs/").status_code == 200
    assert viewer.get(f"/jobs/{scrub_job}").status_code == 200


def test_operator_starts_a_scrub(operator: Web, db: Store) -> None:
    response = operator.post("/jobs/scrub")
    assert response.status_code == 302
    (job,) = queue.list_jobs(db)
    assert location(response) == f"/jobs/{job.id}"
    assert (job.kind, job.params, job.state, job.created_by) == (
        "pool.scrub",
        {"pool": POOL_NAME},
        "queued",
        "user:olivia",
    )
    (row,) = audit_rows(db, "pool.scrub")
    assert (row["actor"], row["target"], row["address"]) == ("user:olivia", POOL_NAME, "127.0.0.1")


def test_operator_starts_a_scrub_with_htmx(operator: Web, db: Store) -> None:
    response = operator.post("/jobs/scrub", csrf=False, headers={"HX-Request": "true", "X-CSRF-Token": operator.csrf()})
    assert response.status_code == 204
    (job,) = queue.list_jobs(db)
    assert response.headers["HX-Redirect"] == f"/jobs/{job.id}"


def test_operator_cancels_a_queued_job(operator: Web, db: Store, scrub_job: int) -> None:
    response = operator.post(f"/jobs/{scrub_job}/cancel")
    assert response.status_code == 302 and location(response) == f"/jobs/{scrub_job}"
    assert queue.get(db, scrub_job).state == "cancelled"
    response = operator.post(f"/jobs/{scrub_job}/cancel")
    assert response.status_code == 409
    assert "already ended" in text(response)
    assert operator.post("/jobs/999/cancel").status_code == 409


# --- areas not built yet -------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "title"), [(f"/{area}/", title) for area, (title, _) in areas.NOT_YET.items()])
def test_areas_not_available_yet_say_so(viewer: Web, path: str, title: str) -> None:
    response = viewer.get(path)
    assert response.status_code == 200
    page = text(response)
    assert f"<h1>{title}</h1>" in page and "not available in this version yet" in page
