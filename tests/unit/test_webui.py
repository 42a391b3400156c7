"""The web UI through Flask's test client, on a real initialized data directory (no ZFS here).

Pages that need ZFS (the dashboard's content) are the integration tier's; here only their redirect.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jinja2 import StrictUndefined
from werkzeug.test import TestResponse

from appliance import users
from appliance.jobs import queue
from appliance.store import Store
from appliance.system.errors import NotInitialized
from appliance.zfs.errors import PoolNotFound
from tests.unit.conftest import ADMIN_PASSWORD, OPERATOR_PASSWORD, POOL_NAME, VIEWER_PASSWORD, ApplianceDir
from webui import auth, create_app

NEW_PASSWORD = "a-much-better-password"
COOKIE = "bulwark_session"


@pytest.fixture(autouse=True)
def _reset_login_failures() -> Iterator[None]:
    """The lockout counter is per process; each test starts with none."""
    auth._failures.clear()
    yield
    auth._failures.clear()


@pytest.fixture
def app(appliance_dir: ApplianceDir) -> Iterator[Flask]:
    application = create_app({"DATA_DIR": str(appliance_dir.paths.data_dir), "TESTING": True})
    yield application
    application.extensions["bulwark.store"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def db(app: Flask) -> Store:
    """The app's own store (same file, this thread's connection)."""
    store: Store = app.extensions["bulwark.store"]
    return store


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    match = re.search(r'name="csrf_token" value="([^"]+)"', text(response))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, username: str, password: str, next_url: str | None = None) -> TestResponse:
    token = csrf_token(client)
    url = "/login" + (f"?next={quote(next_url, safe='')}" if next_url is not None else "")
    return client.post(url, data={"csrf_token": token, "username": username, "password": password})


def session_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return None if cookie is None else cookie.value


def location(response: TestResponse) -> str:
    return response.headers["Location"]


@pytest.fixture
def operator(client: FlaskClient) -> FlaskClient:
    assert login(client, "olivia", OPERATOR_PASSWORD).status_code == 302
    return client


@pytest.fixture
def viewer(client: FlaskClient) -> FlaskClient:
    assert login(client, "victor", VIEWER_PASSWORD).status_code == 302
    return client


# --- signing in ----------------------------------------------------------------------------------


def test_testing_app_uses_strict_undefined(app: Flask) -> None:
    assert app.jinja_env.undefined is StrictUndefined


@pytest.mark.parametrize("path", ["/", "/jobs/", "/jobs/1", "/password", "/partials/pool", "/no/such/page"])
def test_unauthenticated_pages_redirect_to_login(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    target = urlsplit(location(response))
    assert (target.path, parse_qs(target.query)) == ("/login", {"next": [path]})


def test_login_page(client: FlaskClient) -> None:
    response = client.get("/login")
    assert response.status_code == 200
    page = text(response)
    assert "<h1>Sign in</h1>" in page
    assert 'name="csrf_token"' in page and 'name="username"' in page and 'type="password"' in page
    assert "bulwark user reset-password admin" in page
    assert "Sign out" not in page


def test_static_files_are_public(client: FlaskClient) -> None:
    response = client.get("/static/app.css")
    assert response.status_code == 200
    response.close()


def test_login_without_csrf_token(client: FlaskClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"username": "olivia", "password": OPERATOR_PASSWORD})
    assert response.status_code == 400
    assert "did not come from this appliance" in text(response)
    assert "What to do:" in text(response)
    response = client.post("/login", data={"csrf_token": "forged", "username": "olivia", "password": OPERATOR_PASSWORD})
    assert response.status_code == 400
    assert client.get("/jobs/").status_code == 302  # not signed in


def test_login_without_a_session_at_all(client: FlaskClient) -> None:
    response = client.post("/login", data={"csrf_token": "", "username": "olivia", "password": OPERATOR_PASSWORD})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("username", "password"),
    [("olivia", "wrong password"), ("nobody", OPERATOR_PASSWORD), ("olivia", ""), ("", "")],
)
def test_wrong_password(client: FlaskClient, db: Store, username: str, password: str) -> None:
    response = login(client, username, password)
    assert response.status_code == 401
    assert "Wrong user name or password." in text(response)
    assert client.get("/jobs/").status_code == 302  # still signed out
    row = db.query_one("SELECT actor, action, target FROM audit WHERE action = 'login.failed'")
    assert row is not None and row["target"] == username and row["actor"].startswith("web:")


def test_lockout_after_five_failures(client: FlaskClient) -> None:
    for _ in range(auth.MAX_FAILURES):
        assert login(client, "olivia", "wrong password").status_code == 401
    response = login(client, "olivia", OPERATOR_PASSWORD)  # even the right password is refused now
    assert response.status_code == 429
    assert "Too many failed sign-ins" in text(response)
    assert client.get("/jobs/").status_code == 302
    # Another account from the same address is not locked.
    assert login(client, "victor", VIEWER_PASSWORD).status_code == 302


def test_successful_login_resets_the_failure_count(client: FlaskClient) -> None:
    for _ in range(auth.MAX_FAILURES - 1):
        login(client, "olivia", "wrong password")
    assert login(client, "olivia", OPERATOR_PASSWORD).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client, "/jobs/")})
    for _ in range(auth.MAX_FAILURES - 1):
        assert login(client, "olivia", "wrong password").status_code == 401
    assert login(client, "olivia", OPERATOR_PASSWORD).status_code == 302


def test_login_user_name_is_case_insensitive(client: FlaskClient) -> None:
    response = login(client, " Olivia ", OPERATOR_PASSWORD)
    assert response.status_code == 302
    assert client.get("/jobs/").status_code == 200


def test_login_rotates_the_session(client: FlaskClient, db: Store) -> None:
    before_token = csrf_token(client)
    before_cookie = session_cookie(client)
    assert before_cookie
    response = client.post(
        "/login", data={"csrf_token": before_token, "username": "olivia", "password": OPERATOR_PASSWORD}
    )
    assert response.status_code == 302
    after_cookie = session_cookie(client)
    assert after_cookie and after_cookie != before_cookie
    # The pre-login session's CSRF token died with it.
    assert client.post("/logout", data={"csrf_token": before_token}).status_code == 400
    assert csrf_token(client, "/jobs/") != before_token
    assert db.query_one("SELECT COUNT(*) AS n FROM audit WHERE action = 'login' AND actor = 'user:olivia'")["n"] == 1


def test_session_cookie_flags(client: FlaskClient) -> None:
    response = client.get("/login")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


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
def test_next_parameter_refuses_other_sites(client: FlaskClient, next_url: str, expected: str) -> None:
    response = login(client, "olivia", OPERATOR_PASSWORD, next_url=next_url)
    assert response.status_code == 302
    assert location(response) == expected


# --- the one-time password -----------------------------------------------------------------------


@pytest.fixture
def admin(client: FlaskClient) -> FlaskClient:
    """Signed in with the one-time password (must choose a new one)."""
    response = login(client, "admin", ADMIN_PASSWORD, next_url="/jobs/")
    assert response.status_code == 302
    assert location(response) == "/password"
    return client


@pytest.mark.parametrize("path", ["/", "/jobs/", "/jobs/1", "/partials/pool"])
def test_must_change_password_redirects_everywhere(admin: FlaskClient, path: str) -> None:
    response = admin.get(path)
    assert response.status_code == 302
    assert location(response) == "/password"


def test_must_change_password_blocks_actions(admin: FlaskClient, db: Store) -> None:
    token = csrf_token(admin, "/password")
    response = admin.post("/jobs/scrub", data={"csrf_token": token})
    assert response.status_code == 302 and location(response) == "/password"
    assert queue.counts(db)["queued"] == 0


def test_password_page(admin: FlaskClient) -> None:
    response = admin.get("/password")
    assert response.status_code == 200
    page = text(response)
    assert "You signed in with a one-time password" in page
    assert f"at least {users.MIN_PASSWORD} characters" in page


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
    admin: FlaskClient, db: Store, current: str, new: str, confirm: str, message: str
) -> None:
    token = csrf_token(admin, "/password")
    response = admin.post("/password", data={"csrf_token": token, "current": current, "new": new, "confirm": confirm})
    assert response.status_code == 400
    assert message in text(response)
    assert users.get_user(db, "admin").must_change_password
    assert users.verify_password(db, "admin", ADMIN_PASSWORD) is not None
    assert admin.get("/jobs/").status_code == 302


def test_password_change_needs_csrf(admin: FlaskClient, db: Store) -> None:
    response = admin.post("/password", data={"current": ADMIN_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 400
    assert users.verify_password(db, "admin", NEW_PASSWORD) is None


def test_password_change_success(admin: FlaskClient, db: Store) -> None:
    token = csrf_token(admin, "/password")
    cookie_before = session_cookie(admin)
    response = admin.post(
        "/password", data={"csrf_token": token, "current": ADMIN_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )
    assert response.status_code == 302
    assert location(response) == "/"
    assert session_cookie(admin) != cookie_before
    assert not users.get_user(db, "admin").must_change_password
    assert users.verify_password(db, "admin", NEW_PASSWORD) is not None
    assert users.verify_password(db, "admin", ADMIN_PASSWORD) is None
    assert admin.get("/jobs/").status_code == 200
    row = db.query_one("SELECT actor FROM audit WHERE action = 'user.password_changed'")
    assert row is not None and row["actor"] == "user:admin"

    # Signing in again uses the new password and goes where asked.
    admin.post("/logout", data={"csrf_token": csrf_token(admin, "/jobs/")})
    response = login(admin, "admin", NEW_PASSWORD, next_url="/jobs/")
    assert response.status_code == 302 and location(response) == "/jobs/"


# --- signing out ---------------------------------------------------------------------------------


def test_logout_needs_post_and_csrf(operator: FlaskClient) -> None:
    assert operator.get("/logout").status_code == 405
    assert operator.post("/logout").status_code == 400
    assert operator.post("/logout", data={"csrf_token": "forged"}).status_code == 400
    assert operator.get("/jobs/").status_code == 200  # still signed in
    response = operator.post("/logout", data={"csrf_token": csrf_token(operator, "/jobs/")})
    assert response.status_code == 302 and location(response) == "/login"
    assert operator.get("/jobs/").status_code == 302


def test_logout_with_the_htmx_header_token(operator: FlaskClient) -> None:
    token = csrf_token(operator, "/jobs/")
    response = operator.post("/logout", headers={"X-CSRF-Token": token})
    assert response.status_code == 302
    assert operator.get("/jobs/").status_code == 302


def test_deleted_user_is_signed_out(operator: FlaskClient, db: Store) -> None:
    with db.write() as conn:
        conn.execute("DELETE FROM users WHERE username = 'olivia'")
    response = operator.get("/jobs/")
    assert response.status_code == 302 and location(response).startswith("/login")


# --- headers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/jobs/", "/jobs/999", "/static/app.css"])
def test_security_headers(operator: FlaskClient, path: str) -> None:
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


def test_security_headers_on_errors(client: FlaskClient) -> None:
    response = client.post("/login", data={})
    assert response.status_code == 400
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" in response.headers


# --- jobs ----------------------------------------------------------------------------------------


@pytest.fixture
def scrub_job(db: Store) -> int:
    return queue.enqueue(
        db, "pool.scrub", {"pool": POOL_NAME}, resource=f"pool:{POOL_NAME}:scrub", created_by="user:olivia"
    )


def test_jobs_list_empty(operator: FlaskClient) -> None:
    response = operator.get("/jobs/")
    assert response.status_code == 200
    assert "No jobs yet." in text(response)


def test_jobs_list(operator: FlaskClient, scrub_job: int) -> None:
    response = operator.get("/jobs/")
    assert response.status_code == 200
    page = text(response)
    assert "<!doctype html>" in page and "<h1>Jobs</h1>" in page
    assert f'href="/jobs/{scrub_job}"' in page
    assert "pool.scrub" in page and "state-queued" in page and "user:olivia" in page


def test_job_page(operator: FlaskClient, scrub_job: int) -> None:
    response = operator.get(f"/jobs/{scrub_job}")
    assert response.status_code == 200
    page = text(response)
    assert f"Job {scrub_job}: pool.scrub" in page
    assert "state-queued" in page
    assert "queued by user:olivia" in page
    assert f'action="/jobs/{scrub_job}/cancel"' in page  # an operator may cancel
    assert 'hx-trigger="every 1s"' in page  # follows progress while it runs


def test_job_page_progress_and_result(operator: FlaskClient, db: Store, scrub_job: int) -> None:
    queue.claim(db, ["pool.scrub"])
    queue.set_progress(db, scrub_job, 2500, 10000, "25.0% scanned")
    page = text(operator.get(f"/jobs/{scrub_job}"))
    assert "state-running" in page and "25.0% scanned" in page and "25.0%" in page
    assert '<progress value="25.0" max="100">' in page
    queue.succeed(db, scrub_job, {"errors": 0, "seconds": 1.5})
    page = text(operator.get(f"/jobs/{scrub_job}"))
    assert "state-succeeded" in page and "hx-trigger" not in page and "/cancel" not in page
    assert "Result:" in page and '"errors": 0' in page


def test_job_page_shows_the_error_and_what_to_do(operator: FlaskClient, db: Store, scrub_job: int) -> None:
    queue.claim(db, ["pool.scrub"])
    queue.fail(db, scrub_job, PoolNotFound(POOL_NAME))
    page = text(operator.get(f"/jobs/{scrub_job}"))
    assert "state-failed" in page
    assert f"Pool {POOL_NAME} does not exist or is not imported." in page
    assert f"<strong>What to do:</strong> {PoolNotFound.hint.replace(chr(39), '&#39;')}" in page


def test_job_page_htmx_partial(operator: FlaskClient, scrub_job: int) -> None:
    response = operator.get(f"/jobs/{scrub_job}", headers={"HX-Request": "true", "HX-Target": "job-progress"})
    assert response.status_code == 200
    fragment = text(response)
    assert fragment.lstrip().startswith('<article id="job-progress"')
    assert "<html" not in fragment and "<!doctype" not in fragment and "<h1>" not in fragment
    assert "queued by user:olivia" in fragment


def test_jobs_list_htmx_partial(operator: FlaskClient, scrub_job: int) -> None:
    response = operator.get("/jobs/", headers={"HX-Request": "true", "HX-Target": "jobs-table"})
    fragment = text(response)
    assert fragment.lstrip().startswith('<table class="jobs">')
    assert "<html" not in fragment and f'href="/jobs/{scrub_job}"' in fragment


def test_htmx_without_a_target_gets_the_full_page(operator: FlaskClient, scrub_job: int) -> None:
    response = operator.get(f"/jobs/{scrub_job}", headers={"HX-Request": "true"})
    assert "<!doctype html>" in text(response)


def test_unknown_job_is_a_404_page_with_a_hint(operator: FlaskClient) -> None:
    response = operator.get("/jobs/999")
    assert response.status_code == 404
    page = text(response)
    assert "There is no job 999." in page
    assert "<strong>What to do:</strong>" in page
    assert "Check the address" in page


def test_unknown_page_is_a_404_with_a_hint(operator: FlaskClient) -> None:
    response = operator.get("/no/such/page")
    assert response.status_code == 404
    assert "What to do:" in text(response)


def test_viewer_cannot_start_or_cancel_jobs(viewer: FlaskClient, db: Store, scrub_job: int) -> None:
    token = csrf_token(viewer, "/jobs/")
    response = viewer.post("/jobs/scrub", data={"csrf_token": token})
    assert response.status_code == 403
    assert "Viewers cannot start jobs." in text(response) and "What to do:" in text(response)
    response = viewer.post(f"/jobs/{scrub_job}/cancel", data={"csrf_token": token})
    assert response.status_code == 403
    assert queue.counts(db) == {**dict.fromkeys(queue.STATES, 0), "queued": 1}
    page = text(viewer.get(f"/jobs/{scrub_job}"))
    assert "/cancel" not in page  # no button a viewer cannot use


def test_viewer_can_read_jobs(viewer: FlaskClient, scrub_job: int) -> None:
    assert viewer.get("/jobs/").status_code == 200
    assert viewer.get(f"/jobs/{scrub_job}").status_code == 200


def test_operator_starts_a_scrub(operator: FlaskClient, db: Store) -> None:
    token = csrf_token(operator, "/jobs/")
    assert operator.post("/jobs/scrub").status_code == 400  # no CSRF token
    response = operator.post("/jobs/scrub", data={"csrf_token": token})
    assert response.status_code == 302
    (job,) = queue.list_jobs(db)
    assert location(response) == f"/jobs/{job.id}"
    assert (job.kind, job.params, job.state, job.created_by) == (
        "pool.scrub",
        {"pool": POOL_NAME},
        "queued",
        "user:olivia",
    )
    row = db.query_one("SELECT actor, target FROM audit WHERE action = 'pool.scrub'")
    assert row is not None and (row["actor"], row["target"]) == ("user:olivia", POOL_NAME)


def test_operator_starts_a_scrub_with_htmx(operator: FlaskClient, db: Store) -> None:
    token = csrf_token(operator, "/jobs/")
    response = operator.post("/jobs/scrub", headers={"HX-Request": "true", "X-CSRF-Token": token})
    assert response.status_code == 204
    (job,) = queue.list_jobs(db)
    assert response.headers["HX-Redirect"] == f"/jobs/{job.id}"


def test_operator_cancels_a_queued_job(operator: FlaskClient, db: Store, scrub_job: int) -> None:
    token = csrf_token(operator, "/jobs/")
    response = operator.post(f"/jobs/{scrub_job}/cancel", data={"csrf_token": token})
    assert response.status_code == 302 and location(response) == f"/jobs/{scrub_job}"
    assert queue.get(db, scrub_job).state == "cancelled"
    response = operator.post(f"/jobs/{scrub_job}/cancel", data={"csrf_token": token})
    assert response.status_code == 409
    assert "already ended" in text(response)
    assert operator.post("/jobs/999/cancel", data={"csrf_token": token}).status_code == 409


def test_create_app_refuses_an_uninitialized_data_dir(tmp_path: Path) -> None:
    with pytest.raises(NotInitialized):
        create_app({"DATA_DIR": str(tmp_path / "nothing"), "TESTING": True})
