"""The JSON API at /api/v1: bearer tokens (from the CLI and from the API), sessions with the CSRF header,
roles, every route's happy path checked against the published OpenAPI document, error bodies, the
document itself, and a schemathesis fuzz run.

The pool routes run against a real zfs-fuse pool where this machine can run one (see ``zfs_pool``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import pyotp
import pytest
from flask import Flask
from werkzeug.test import TestResponse

from appliance import users
from appliance.auth import sessions, tokens, totp
from appliance.cli import main as bulwark
from appliance.jobs import queue
from appliance.store import Store
from appliance.system import settings
from tests.unit.conftest import ADMIN_NEW_PASSWORD, OPERATOR_PASSWORD, ApplianceDir
from tests.unit.web import Web, live_sessions, totp_code
from tests.web_helpers import remove_clients
from webui import create_app

API = "/api/v1"
ERROR_KEYS = {"code", "message", "hint", "retryable"}


@dataclass
class Api:
    app: Flask
    db: Store
    tokens: dict[str, str]  # role → bearer secret
    pool: str | None  # a real pool's name, or None without ZFS

    def call(
        self, method: str, path: str, *, role: str | None = "admin", token: str | None = None, **kwargs: Any
    ) -> TestResponse:
        headers = dict(kwargs.pop("headers", {}))
        secret = token if token is not None else (self.tokens[role] if role else None)
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        return self.app.test_client().open(path, method=method, headers=headers, **kwargs)

    def token_id(self, role: str) -> int:
        return int(self.tokens[role].split("_")[1])


@pytest.fixture
def api(appliance_dir: ApplianceDir, zfs_pool: str | None) -> Iterator[Api]:
    if zfs_pool is not None:
        appliance_dir.use_pool(zfs_pool)
    appliance_dir.finish_first_run()
    app = create_app({"DATA_DIR": str(appliance_dir.paths.data_dir), "TESTING": True})
    db: Store = app.extensions["bulwark.store"]
    made = {role: tokens.create(db, name=f"{role}-token", role=role, created_by="cli")[1] for role in users.ROLES}
    try:
        yield Api(app, db, made, zfs_pool)
    finally:
        db.close()


def error_of(response: TestResponse) -> dict[str, Any]:
    """The error body, checked for the shape every API error has."""
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:200]
    body = response.json
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert ERROR_KEYS <= set(error) <= ERROR_KEYS | {"details"}, error
    assert error["code"] and error["message"] and error["hint"] and isinstance(error["retryable"], bool)
    return error


def audit_actions(db: Store) -> list[tuple[str, str, str | None]]:
    return [(r["actor"], r["action"], r["target"]) for r in db.query("SELECT * FROM audit ORDER BY id")]


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


def _api_rules(app: Flask) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every API route in the app's URL map."""
    import re

    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                found.add((path, method))
    return found


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


def test_happy_paths_cover_every_api_route(app: Flask) -> None:
    rules = {(path, method) for path, method in _api_rules(app) if not path.startswith(OWN_MODULES)}
    assert {(_template(h), h.method) for h in HAPPY} >= rules - {("/api/v1/alerts", "GET")}


def response_validator(document: dict[str, Any], path: str, method: str, status: int) -> jsonschema_rs.Validator:
    """A validator for one response body as the published document describes it."""
    answer = document["paths"][path][method.lower()]["responses"][str(status)]
    schema = answer["content"]["application/json"]["schema"]
    return jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})


@pytest.fixture
def document(api: Api) -> dict[str, Any]:
    response = api.call("GET", f"{API}/openapi.json", role="viewer")
    assert response.status_code == 200
    body: dict[str, Any] = response.json
    return body


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


# --- errors --------------------------------------------------------------------------------------


ERROR_CASES = [
    ("GET", "/jobs?limit=0", None, 400, "invalid_input"),
    ("GET", "/jobs?state=sleeping", None, 400, "invalid_input"),
    ("GET", "/jobs?surprise=1", None, 400, "invalid_input"),
    ("POST", "/users", {"username": "Bad Name", "role": "viewer"}, 400, "invalid_input"),
    ("POST", "/users", {"username": "nora", "role": "viewer", "extra": 1}, 400, "invalid_input"),
    ("PATCH", "/settings", {"timezone": "Nowhere/Land"}, 400, "invalid_input"),
    ("PATCH", "/settings", {"hostname": "UPPER"}, 400, "invalid_input"),
    ("DELETE", "/users/admin", None, 400, "invalid_input"),  # one's own account (a token has none: see below)
    ("GET", "/jobs/424242", None, 404, "not_found"),
    ("POST", "/jobs/424242/cancel", None, 404, "not_found"),
    ("DELETE", "/tokens/424242", None, 404, "not_found"),
    ("PATCH", "/users/nobody", {"role": "viewer"}, 404, "not_found"),
    ("POST", "/users/nobody/reset-password", None, 404, "not_found"),
    ("GET", "/no/such/thing", None, 404, "not_found"),
    ("DELETE", "/jobs", None, 405, "method_not_allowed"),
    ("POST", "/users", {"username": "olivia", "role": "viewer"}, 409, "already_exists"),
    ("PATCH", "/users/admin", {"role": "viewer"}, 409, "conflict"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), ERROR_CASES)
def test_error_bodies(api: Api, method: str, path: str, body: Any, status: int, code: str) -> None:
    if path == "/users/admin" and method == "DELETE":
        # deleting one's own account needs a session; a token deleting the last admin is a conflict
        web = Web(api.app)
        assert web.sign_in("admin", ADMIN_NEW_PASSWORD).status_code == 302
        users.update_user(api.db, "olivia", role="admin")
        response = web.api(method, API + path, headers={"X-CSRF-Token": web.csrf()})
    else:
        response = api.call(method, API + path, json=body)
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code
    assert error["retryable"] is False
    if code == "invalid_input" and "details" in error:
        assert error["hint"].startswith("See /api/v1/openapi.json")


def test_token_deleting_the_last_admin_is_a_conflict(api: Api) -> None:
    response = api.call("DELETE", f"{API}/users/admin")
    assert response.status_code == 409 and error_of(response)["code"] == "conflict"


def test_cancelling_a_finished_job_is_a_conflict(api: Api) -> None:
    job = queue.enqueue(api.db, "pool.scrub", {"pool": "tank"}, created_by="cli")
    queue.request_cancel(api.db, job)
    response = api.call("POST", f"{API}/jobs/{job}/cancel")
    assert response.status_code == 409
    assert "already ended" in error_of(response)["message"]


def test_pool_without_the_pool_is_an_error_body(api: Api, appliance_dir: ApplianceDir) -> None:
    appliance_dir.use_pool("bwtnosuchpool")
    response = api.call("GET", f"{API}/pool")
    assert response.status_code in (404, 502, 503)
    assert error_of(response)["code"]


def test_validation_errors_name_the_fields(api: Api) -> None:
    response = api.call("POST", f"{API}/tokens", json={"name": "", "role": "boss"})
    error = error_of(response)
    assert {tuple(d["loc"]) for d in error["details"]} == {("name",), ("role",)}


def test_body_that_is_not_json(api: Api) -> None:
    response = api.call("POST", f"{API}/users", data="username=nora", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_input"
    assert [u.username for u in users.list_users(api.db)] == ["admin", "olivia", "victor"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("not json", "application/json"),
        ("[1, 2]", "application/json"),
        ("null", "application/json"),
        ('{"hostname": "sneaky"}', "text/plain"),
    ],
)
def test_body_that_is_not_a_json_object(api: Api, data: str, content_type: str) -> None:
    before = settings.load(api.db)
    response = api.call("PATCH", f"{API}/settings", data=data, content_type=content_type)
    assert response.status_code == 400
    assert error_of(response)["message"] == "The request body must be a JSON object."
    assert settings.load(api.db) == before
    assert [action for _, action, _ in audit_actions(api.db)] == []


def test_second_factor_pending_session_gets_a_json_401(api: Api) -> None:
    secret = pyotp.random_base32()
    totp.enable(api.db, users.get_user(api.db, "olivia").id, secret, totp_code(secret, -1))
    web = Web(api.app)
    web.sign_in("olivia", OPERATOR_PASSWORD)
    response = web.api("GET", f"{API}/jobs")
    assert response.status_code == 401 and error_of(response)["code"] == "second_factor_required"


def test_expired_session_on_the_api(api: Api) -> None:
    web = Web(api.app)
    web.sign_in("olivia", OPERATOR_PASSWORD)
    with api.db.write() as conn:
        conn.execute("UPDATE sessions SET expires_at = ?", (time.time() - 1,))
    response = web.api("GET", f"{API}/jobs")
    assert response.status_code == 401 and error_of(response)["code"] == "unauthenticated"
    assert sessions.count_active(api.db) == 0


# --- the OpenAPI document ------------------------------------------------------------------------


def test_openapi_document_is_valid(document: dict[str, Any]) -> None:
    """Checked against the OpenAPI Initiative's JSON Schema for 3.1 (the copy schemathesis ships)."""
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    assert document["openapi"].startswith("3.1")
    errors = [f"{e.instance_path}: {e.message}" for e in OPENAPI_31_VALIDATOR.iter_errors(document)]
    assert errors == []


def test_openapi_document_describes_every_route(api: Api, document: dict[str, Any]) -> None:
    described = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    assert described == _api_rules(api.app)
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), f"{method} {path} has no summary (the view's docstring)"
            assert op["responses"], f"{method} {path} lists no responses"
            errors = {code for code in op["responses"] if code.startswith(("4", "5"))}
            if path != f"{API}/openapi.json":
                assert {"400", "401", "403"} <= errors, f"{method} {path}: {sorted(errors)}"


def test_openapi_document_declares_bearer_tokens(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer"}
    assert document["security"] == [{"bearer": []}]


def test_openapi_document_needs_sign_in(api: Api) -> None:
    assert api.call("GET", f"{API}/openapi.json", role=None).status_code == 401


# --- fuzzing with schemathesis ---------------------------------------------------------------------

FUZZ_EXAMPLES = 25  # per operation and generation mode


@pytest.mark.slow
def test_fuzz_the_api(api: Api) -> None:
    """Schemathesis generates valid and invalid requests for every operation of the published document and
    sends them with an admin token: no answer may be a server error, and answers must match the document
    (status codes, content types, bodies). Deterministic (Hypothesis derandomized)."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    def fresh_admin() -> dict[str, str]:
        # every example gets its own token: a generated DELETE /tokens/{id} may revoke any of them
        _, secret = tokens.create(api.db, name="fuzz", role="admin", created_by="cli")
        return {"Authorization": f"Bearer {secret}"}

    schema = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", api.app, headers=fresh_admin())
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    ran: dict[str, int] = {}

    def fuzz(operation: Any, mode: Any) -> None:
        label = f"{operation.method.upper()} {operation.path} ({mode.value})"

        @settings(
            max_examples=FUZZ_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: schemathesis.Case) -> None:
            response = case.call(headers=fresh_admin())
            ran[label] = ran.get(label, 0) + 1
            case.validate_response(response, checks=checks)

        run()

    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in ("/api/v1/pool", "/api/v1/status") and api.pool is None:
            continue  # without ZFS on this machine these answer errors the document does not list
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            fuzz(operation, mode)
    elapsed = time.monotonic() - started
    if api.pool is not None:
        remove_clients(api.db)  # the fuzzer adds clients (and their datasets) to the module's pool
    print(f"fuzzed {len(ran)} operation×mode pairs, {sum(ran.values())} requests in {elapsed:.1f} s")
    assert len({label.split(" (")[0] for label in ran}) >= 20
