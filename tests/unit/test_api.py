"""The JSON API at /api/v1: bearer tokens (from the CLI and from the API), sessions with the CSRF header,
roles, and every route's happy path checked against the published OpenAPI document (error bodies, the
document itself and the fuzz run: ``test_api_document.py``).

The pool routes run against a real zfs-fuse pool where this machine can run one (see ``zfs_pool``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyotp
import pytest
from flask import Flask

from appliance import users
from appliance.auth import tokens, totp
from appliance.cli import main as bulwark
from appliance.jobs import queue
from appliance.system import settings
from tests.unit.api_fixtures import API, Api, api_rules, audit_actions, error_of, response_validator
from tests.unit.conftest import ADMIN_NEW_PASSWORD, OPERATOR_PASSWORD, ApplianceDir
from tests.unit.web import Web, live_sessions, totp_code

# --- tokens --------------------------------------------------------------------------------------


@pytest.fixture
def root_logging() -> Iterator[None]:
    """``bulwark`` (its ``main``) sets up the root logger as the program's entry point; put pytest's back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def cli(appliance_dir: ApplianceDir, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = bulwark(["--data-dir", str(appliance_dir.paths.data_dir), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_token_created_with_the_cli(
    api: Api, appliance_dir: ApplianceDir, capsys: pytest.CaptureFixture[str], root_logging: None
) -> None:
    code, out, err = cli(appliance_dir, capsys, "token", "create", "--role", "operator", "--name", "nightly report")
    assert code == 0
    secret = out.strip()
    assert out.count("\n") == 1 and secret.startswith("bwk_")  # the token alone on stdout, for scripts
    assert "shown only this once" in err and "'nightly report' (operator)" in err
    response = api.call("GET", f"{API}/me", token=secret)
    assert response.status_code == 200
    token_id = int(secret.split("_")[1])
    assert response.json == {
        "kind": "token",
        "name": "nightly report",
        "role": "operator",
        "remote": False,
        "totp_enabled": None,
    }
    assert api.call("POST", f"{API}/pool/scrub", token=secret).status_code == 202
    assert api.call("GET", f"{API}/users", token=secret).status_code == 403
    (job,) = queue.list_jobs(api.db)
    assert job.created_by == f"token:{token_id}:nightly report"

    code, out, _ = cli(appliance_dir, capsys, "token", "list")
    assert code == 0 and f"{token_id}\tnightly report\toperator\tactive" in out and secret not in out
    code, out, _ = cli(appliance_dir, capsys, "token", "revoke", str(token_id))
    assert code == 0 and out == f"API token {token_id} revoked.\n"
    assert error_of(api.call("GET", f"{API}/me", token=secret))["code"] == "invalid_token"


def test_token_created_through_the_api(api: Api) -> None:
    response = api.call("POST", f"{API}/tokens", json={"name": "ci", "role": "viewer", "expires_days": 7})
    assert response.status_code == 201
    body = response.json
    secret = body["secret"]
    assert body["token"]["name"] == "ci" and body["token"]["role"] == "viewer" and body["token"]["active"]
    assert body["token"]["created_by"] == f"token:{api.token_id('admin')}:admin-token"
    assert body["token"]["expires_at"] == pytest.approx(time.time() + 7 * 86400, abs=60)
    listing = api.call("GET", f"{API}/tokens")
    assert secret not in listing.get_data(as_text=True)
    assert api.call("GET", f"{API}/jobs", token=secret).status_code == 200
    assert api.call("POST", f"{API}/pool/scrub", token=secret).status_code == 403
    # Its last use is recorded.
    assert tokens.get(api.db, body["token"]["id"]).last_used_at == pytest.approx(time.time(), abs=60)


@pytest.mark.parametrize(
    "case", ["revoked", "expired", "wrong secret", "unknown id", "not a token", "short secret", "empty", "spaces"]
)
def test_bad_tokens_are_refused(api: Api, case: str) -> None:
    token, secret = tokens.create(api.db, name="victim", role="admin", created_by="cli")
    presented = {
        "revoked": secret,
        "expired": secret,
        "wrong secret": secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB"),
        "unknown id": secret.replace(f"bwk_{token.id}_", "bwk_999_"),
        "not a token": "hunter2",
        "short secret": f"bwk_{token.id}_abc",
        "empty": "",
        "spaces": f"  {secret}x  ",
    }[case]
    if case == "revoked":
        tokens.revoke(api.db, token.id)
    if case == "expired":
        with api.db.write() as conn:
            conn.execute("UPDATE api_tokens SET expires_at = ? WHERE id = ?", (time.time() - 1, token.id))
    for method, path in (("GET", f"{API}/jobs"), ("POST", f"{API}/pool/scrub"), ("DELETE", f"{API}/tokens/1")):
        response = api.call(method, path, token=presented)
        assert response.status_code == 401, (method, path)
        assert error_of(response)["code"] == "invalid_token"
    assert queue.counts(api.db)["queued"] == 0
    assert tokens.get(api.db, 1).revoked_at is None


@pytest.mark.parametrize("header", [None, "Basic YWRtaW46cGFzc3dvcmQ=", "Token abc", "Bearer"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_requests_without_a_token_are_unauthenticated(api: Api, header: str | None, method: str) -> None:
    headers = {"Authorization": header} if header is not None else {}
    path = f"{API}/jobs" if method == "GET" else f"{API}/pool/scrub"
    response = api.call(method, path, role=None, headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthenticated"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="bulwark"'
    assert queue.counts(api.db)["queued"] == 0


def test_token_on_a_web_page_is_not_a_sign_in(api: Api) -> None:
    response = api.call("GET", "/jobs/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


# --- roles ---------------------------------------------------------------------------------------

ROLE_CASES = [
    ("GET", "/jobs", {"admin": 200, "operator": 200, "viewer": 200}),
    ("GET", "/settings", {"admin": 200, "operator": 200, "viewer": 200}),
    ("GET", "/me", {"admin": 200, "operator": 200, "viewer": 200}),
    ("GET", "/audit", {"admin": 200, "operator": 200, "viewer": 403}),
    ("POST", "/pool/scrub", {"admin": 202, "operator": 202, "viewer": 403}),
    ("POST", "/jobs/{job}/cancel", {"admin": 200, "operator": 200, "viewer": 403}),
    ("GET", "/users", {"admin": 200, "operator": 403, "viewer": 403}),
    ("GET", "/tokens", {"admin": 200, "operator": 403, "viewer": 403}),
    ("PATCH", "/settings", {"admin": 200, "operator": 403, "viewer": 403}),
    ("DELETE", "/users/victor/totp", {"admin": 200, "operator": 403, "viewer": 403}),
]


@pytest.mark.parametrize(("method", "path", "expected"), ROLE_CASES)
@pytest.mark.parametrize("role", users.ROLES)
def test_roles(api: Api, method: str, path: str, expected: dict[str, int], role: str) -> None:
    job = queue.enqueue(api.db, "pool.scrub", {"pool": "tank"}, created_by="cli")
    body = {"timezone": "UTC"} if method == "PATCH" else None
    response = api.call(method, API + path.replace("{job}", str(job)), role=role, json=body)
    assert response.status_code == expected[role]
    if response.status_code == 403:
        error = error_of(response)
        assert error["code"] == "permission_denied" and f"({role})" in error["message"]


# --- sessions on the API -------------------------------------------------------------------------


@pytest.fixture
def admin_web(api: Api) -> Web:
    web = Web(api.app)
    assert web.sign_in("admin", ADMIN_NEW_PASSWORD).status_code == 302
    return web


def test_session_reads_without_the_csrf_header(admin_web: Web) -> None:
    response = admin_web.api("GET", f"{API}/me")
    assert response.status_code == 200 and response.json["kind"] == "user" and response.json["name"] == "admin"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/pool/scrub", None),
        ("PATCH", "/settings", {"hostname": "csrf-victim"}),
        ("DELETE", "/users/victor", None),
        ("POST", "/tokens", {"name": "stolen", "role": "admin"}),
    ],
)
def test_session_changes_need_the_csrf_header(admin_web: Web, api: Api, method: str, path: str, body: Any) -> None:
    before = list(api.db.conn().iterdump())
    response = admin_web.api(method, API + path, json=body)
    assert response.status_code == 400
    assert "did not come from this appliance" in error_of(response)["message"]
    response = admin_web.api(method, API + path, json=body, headers={"X-CSRF-Token": "forged"})
    assert response.status_code == 400
    assert list(api.db.conn().iterdump()) == before
    response = admin_web.api(method, API + path, json=body, headers={"X-CSRF-Token": admin_web.csrf()})
    assert response.status_code in (200, 201, 202)


def test_bearer_calls_need_no_csrf_header(api: Api) -> None:
    assert api.call("POST", f"{API}/pool/scrub").status_code == 202


# --- every route's happy path, checked against the published document ----------------------------


@dataclass(frozen=True)
class Happy:
    method: str
    path: str  # {job}, {token}, {secret}, {code} filled in per test
    body: dict[str, Any] | None
    status: int
    session: bool = False  # one's own password and second factor: a signed-in user, not a token
    needs_pool: bool = False


HAPPY = [
    Happy("GET", "/openapi.json", None, 200),
    Happy("GET", "/status", None, 200, needs_pool=True),
    Happy("GET", "/pool", None, 200, needs_pool=True),
    Happy("GET", "/pool/capacity?days=7", None, 200),
    Happy("POST", "/pool/scrub", None, 202),
    Happy("GET", "/settings", None, 200),
    Happy("PATCH", "/settings", {"hostname": "vault-2", "timezone": "Europe/Oslo", "require_totp": True}, 200),
    Happy("GET", "/audit?limit=5&action=user.", None, 200),
    Happy("GET", "/jobs?state=queued&kind=pool.scrub&limit=5", None, 200),
    Happy("GET", "/jobs/{job}", None, 200),
    Happy("POST", "/jobs/{job}/cancel", None, 200),
    Happy("GET", "/users", None, 200),
    Happy("POST", "/users", {"username": "nora", "role": "operator"}, 201),
    Happy("PATCH", "/users/victor", {"role": "operator", "disabled": True}, 200),
    Happy("DELETE", "/users/victor", None, 200),
    Happy("POST", "/users/victor/reset-password", None, 200),
    Happy("DELETE", "/users/victor/totp", None, 200),
    Happy("GET", "/tokens", None, 200),
    Happy("POST", "/tokens", {"name": "ci", "role": "viewer", "expires_days": 30}, 201),
    Happy("DELETE", "/tokens/{token}", None, 200),
    Happy("GET", "/me", None, 200),
    Happy("POST", "/me/password", {"current": ADMIN_NEW_PASSWORD, "new": "another-password-2"}, 200, session=True),
    Happy("POST", "/me/totp/setup", None, 200, session=True),
    Happy("POST", "/me/totp/enable", {"secret": "{secret}", "code": "{code}"}, 200, session=True),
]


def _template(happy: Happy) -> str:
    path = (API + happy.path.split("?")[0]).replace("{job}", "{job_id}").replace("{token}", "{token_id}")
    return path.replace("/victor", "/{username}")


# Clients, points, browsing and restores have their own happy-path tests against a real pool, each answer
# checked against the published document: tests/integration/test_client_api.py.
OWN_MODULES = ("/api/v1/clients", "/api/v1/browse")
# Alerts, channels, reports and the metrics token: tests/unit/test_alert_web.py.
OWN_MODULES += ("/api/v1/alerts", "/api/v1/channels", "/api/v1/notifications", "/api/v1/report", "/api/v1/metrics")
# Remote access: tests/unit/test_tunnel_web.py.
OWN_MODULES += ("/api/v1/tunnel",)
# Offsite replication: tests/unit/test_offsite_web.py.
OWN_MODULES += ("/api/v1/offsite",)
# Disks (SMART through a replaying smartctl): tests/unit/disks/test_web.py.
OWN_MODULES += ("/api/v1/disks",)
# SMB shares (a real smbd under bulwark run): tests/e2e/test_smb_flow.py.
OWN_MODULES += ("/api/v1/smb",)
# Backup agents' jobs (and their clients' agents and settings): tests/unit/test_agent_ops_web.py.
OWN_MODULES += ("/api/v1/agent-jobs",)


def test_happy_paths_cover_every_api_route(app: Flask) -> None:
    rules = {(path, method) for path, method in api_rules(app) if not path.startswith(OWN_MODULES)}
    assert {(_template(h), h.method) for h in HAPPY} >= rules - {("/api/v1/alerts", "GET")}


@pytest.mark.parametrize("happy", HAPPY, ids=[f"{h.method} {h.path}" for h in HAPPY])
def test_happy_path(api: Api, document: dict[str, Any], happy: Happy) -> None:
    if happy.needs_pool and api.pool is None:
        pytest.skip("needs a real pool (root and zfs-fuse)")
    job = queue.enqueue(api.db, "pool.scrub", {"pool": "tank"}, created_by="cli")
    throwaway, _ = tokens.create(api.db, name="throwaway", role="viewer", created_by="cli")
    secret = pyotp.random_base32()
    path = API + happy.path.replace("{job}", str(job)).replace("{token}", str(throwaway.id))
    body = happy.body
    if body is not None:
        body = json.loads(json.dumps(body).replace("{secret}", secret).replace("{code}", totp_code(secret)))
    if happy.session:
        web = Web(api.app)
        assert web.sign_in("admin", ADMIN_NEW_PASSWORD).status_code == 302
        response = web.api(happy.method, path, json=body, headers={"X-CSRF-Token": web.csrf()})
    else:
        response = api.call(happy.method, path, json=body)
    assert response.status_code == happy.status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    if happy.path != "/openapi.json":
        validator = response_validator(document, _template(happy), happy.method, happy.status)
        errors = [e.message for e in validator.iter_errors(response.json)]
        assert errors == [], errors


def test_happy_path_effects(api: Api) -> None:
    """What the happy calls change, and that each change is audited with the token as actor."""
    actor = f"token:{api.token_id('admin')}:admin-token"
    api.call("PATCH", f"{API}/settings", json={"hostname": "vault-2", "timezone": "Europe/Oslo"})
    config = settings.load(api.db)
    assert config is not None and (config.hostname, config.timezone) == ("vault-2", "Europe/Oslo")

    created = api.call("POST", f"{API}/users", json={"username": "nora", "role": "operator"}).json
    assert created["user"]["must_change_password"] and created["one_time_password"]
    assert users.verify_password(api.db, "nora", created["one_time_password"]) is not None
    chosen = api.call(
        "POST", f"{API}/users", json={"username": "paul", "role": "viewer", "password": "paul-password-1"}
    )
    assert chosen.json["one_time_password"] is None and not users.get_user(api.db, "paul").must_change_password

    web = Web(api.app)
    assert web.sign_in("olivia", OPERATOR_PASSWORD).status_code == 302
    api.call("PATCH", f"{API}/users/olivia", json={"disabled": True})
    assert users.get_user(api.db, "olivia").disabled and live_sessions(api.db, "olivia") == []

    reset = api.call("POST", f"{API}/users/victor/reset-password").json
    assert reset["username"] == "victor" and users.get_user(api.db, "victor").must_change_password
    assert users.verify_password(api.db, "victor", reset["one_time_password"]) is not None

    secret = pyotp.random_base32()
    totp.enable(api.db, users.get_user(api.db, "paul").id, secret, totp_code(secret))
    assert api.call("DELETE", f"{API}/users/paul/totp").status_code == 200
    assert not users.get_user(api.db, "paul").totp_enabled

    assert api.call("DELETE", f"{API}/users/paul").status_code == 200
    assert [u.username for u in users.list_users(api.db)] == ["admin", "nora", "olivia", "victor"]

    job = api.call("POST", f"{API}/pool/scrub").json["job"]
    assert api.call("POST", f"{API}/jobs/{job}/cancel").json == {"ok": True}
    assert queue.get(api.db, job).state == "cancelled"
    detail = api.call("GET", f"{API}/jobs/{job}").json
    assert detail["state"] == "cancelled" and detail["created_by"] == actor and isinstance(detail["log"], list)

    token_id = api.token_id("viewer")
    revoked = api.call("DELETE", f"{API}/tokens/{token_id}").json
    assert revoked["active"] is False and revoked["revoked_at"]

    mine = [(a, t) for who, a, t in audit_actions(api.db) if who == actor]
    assert mine == [
        ("settings.update", None),
        ("user.create", "nora"),
        ("user.create", "paul"),
        ("user.update", "olivia"),
        ("user.reset_password", "victor"),
        ("user.totp_reset", "paul"),
        ("user.delete", "paul"),
        ("pool.scrub", api.db.query_one("SELECT target FROM audit WHERE action = 'pool.scrub'")["target"]),
        ("job.cancel", str(job)),
        ("token.revoke", str(token_id)),
    ]
    entries = api.call("GET", f"{API}/audit?actor={actor}&limit=3").json["entries"]
    assert [e["action"] for e in entries] == ["token.revoke", "job.cancel", "pool.scrub"]
    assert entries[0]["address"] == "127.0.0.1"


def test_own_password_and_second_factor_through_the_api(api: Api) -> None:
    web = Web(api.app)
    assert web.sign_in("olivia", OPERATOR_PASSWORD).status_code == 302
    other = Web(api.app)
    assert other.sign_in("olivia", OPERATOR_PASSWORD).status_code == 302
    csrf = {"X-CSRF-Token": web.csrf()}
    response = web.api(
        "POST", f"{API}/me/password", json={"current": "wrong-password", "new": "olivia-pw-2345"}, headers=csrf
    )
    assert response.status_code == 400 and error_of(response)["message"].endswith("the current password is wrong")
    response = web.api(
        "POST", f"{API}/me/password", json={"current": OPERATOR_PASSWORD, "new": "olivia-pw-2345"}, headers=csrf
    )
    assert response.status_code == 200
    assert users.verify_password(api.db, "olivia", "olivia-pw-2345") is not None
    assert len(live_sessions(api.db, "olivia")) == 1  # the other session ended, this one stays
    assert other.api("GET", f"{API}/me").status_code == 401

    setup = web.api("POST", f"{API}/me/totp/setup", headers=csrf).json
    assert setup["uri"].startswith("otpauth://totp/Bulwark:olivia%40bulwark-test?secret=" + setup["secret"])
    response = web.api(
        "POST", f"{API}/me/totp/enable", json={"secret": setup["secret"], "code": "000000"}, headers=csrf
    )
    if totp_code(setup["secret"]) != "000000":
        assert response.status_code == 400 and not users.get_user(api.db, "olivia").totp_enabled
    code = totp_code(setup["secret"])
    response = web.api("POST", f"{API}/me/totp/enable", json={"secret": setup["secret"], "code": code}, headers=csrf)
    assert response.status_code == 200 and users.get_user(api.db, "olivia").totp_enabled
    response = web.api("POST", f"{API}/me/totp/enable", json={"secret": setup["secret"], "code": code}, headers=csrf)
    assert response.status_code == 400 and "already set up" in error_of(response)["message"]
    assert web.api("GET", f"{API}/me").json["totp_enabled"] is True


@pytest.mark.parametrize("path", ["/me/password", "/me/totp/setup", "/me/totp/enable"])
def test_tokens_have_no_password_or_second_factor(api: Api, path: str) -> None:
    body = {"current": "x", "new": "0123456789"} if path == "/me/password" else None
    if path == "/me/totp/enable":
        body = {"secret": pyotp.random_base32(), "code": "123456"}
    response = api.call("POST", API + path, json=body)
    assert response.status_code == 403
    assert error_of(response)["message"] == "Permission denied: API tokens have no password or second factor"
