"""The web UI through Flask's test client, on a real initialized data directory (no ZFS here): the app,
CSRF on every state-changing request, headers, the jobs pages and the areas not built yet. Signing in and
the first run: ``test_web_signin.py``; second factor, remote sessions, users, tokens, audit and settings:
``test_web_accounts.py``. Pages whose content needs ZFS are walked with a real pool in test_permissions.py.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from jinja2 import StrictUndefined

from appliance.auth import tokens
from appliance.jobs import queue
from appliance.store import Store
from appliance.system.errors import NotInitialized
from appliance.zfs.errors import PoolNotFound
from tests.unit.conftest import (
    ADMIN_NEW_PASSWORD,
    POOL_NAME,
)
from tests.unit.web import (
    NEW_PASSWORD,
    Browser,
    Web,
    audit_rows,
    dump,
    enrol_totp,
    location,
    text,
    totp_code,
)
from webui import create_app

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
    # Backup agents: enrollment codes, revocation, agent settings.
    ("/clients/<string(maxlength=32):name>/agents/enroll-code", "POST"),
    ("/clients/<string(maxlength=32):name>/agents/<string(maxlength=32):agent_id>/revoke", "POST"),
    ("/clients/<string(maxlength=32):name>/agents/settings", "POST"),
    ("/api/v1/clients/<string(maxlength=32):name>/agents/enroll-codes", "POST"),
    ("/api/v1/clients/<string(maxlength=32):name>/agents/<string(maxlength=32):agent_id>/revoke", "POST"),
    ("/api/v1/clients/<string(maxlength=32):name>/agent-settings", "PATCH"),
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
    "/clients/<string(maxlength=32):name>/agents/settings": {"paths": "/etc", "bwlimit": "100", "window": ""},
    "/api/v1/clients/<string(maxlength=32):name>/agent-settings": {"paths": ["/etc"], "bwlimit_kibps": 100},
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
        .replace("<string(maxlength=32):agent_id>", "ag-0011223344556677")
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
