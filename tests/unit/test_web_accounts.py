"""Accounts through Flask's test client on a real data directory: the TOTP second factor, remote sessions
through the tunnel's listener, users and API tokens, the audit log, and settings.
"""

from __future__ import annotations

import datetime
import re
import time
from zoneinfo import ZoneInfo

import pytest

from appliance import users
from appliance.auth import throttle, tokens
from appliance.jobs import queue
from appliance.store import Store
from appliance.system import settings
from tests.unit.conftest import (
    ADMIN_NEW_PASSWORD,
    OPERATOR_PASSWORD,
    POOL_NAME,
    VIEWER_PASSWORD,
    ApplianceDir,
)
from tests.unit.web import (
    TUNNEL_PORT,
    Browser,
    SignedIn,
    Web,
    audit_rows,
    dump,
    enrol_totp,
    flash_error,
    live_sessions,
    location,
    set_setting,
    text,
    totp_code,
)

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
