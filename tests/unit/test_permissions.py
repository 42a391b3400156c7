"""Every route of the app, with every role and without signing in, against the one permission table
(webui/permissions.py).

The walk reads ``app.url_map`` itself, so a route added tomorrow is walked tomorrow. Pages that show the
pool run against a real zfs-fuse pool when this machine can run one (root, zfs-fuse installed), so the
walk also proves that every page renders; elsewhere those few pages only have to pass the permission
check. Every state-changing request carries a valid CSRF token (the point here is the permission check),
and each request is made by a fresh sign-in on throwaway objects, so one request cannot spoil the next.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from flask import Flask
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from appliance import users
from appliance.auth import tokens
from appliance.disks import inventory
from appliance.jobs import queue
from appliance.samba import shares as smb_shares
from appliance.store import Store
from appliance.system.runner import local_runner
from tests.agent_ops_helpers import walk_argument as agent_walk_argument
from tests.alert_web_helpers import ALERT_ARGUMENTS, fill_alert_argument
from tests.unit.conftest import PASSWORDS, ROLE_USERS, ApplianceDir
from tests.unit.web import Web, location, text
from tests.web_helpers import CLIENT_ARGUMENTS, client_endpoints, fill_client_arguments, remove_clients
from webui import create_app
from webui.permissions import PENDING, PERMISSIONS, PUBLIC, allowed, permission_of, requires

ROLES = ["admin", "operator", "viewer"]
SKIPPED_METHODS = {"HEAD", "OPTIONS"}  # answered by Flask from the GET view / the allowed methods
# Endpoints whose content comes from ZFS: without a pool they may fail, but never the permission check.
ZFS_ENDPOINTS = {
    "dashboard.index",
    "dashboard.pool_partial",
    "storage.index",
    "setup.index",
    "api.get_status",
    "api.get_pool",
}
# GET pages that send a fully signed-in user elsewhere on purpose (endpoint → where).
REDIRECTING_GETS = {"auth.totp": "/"}
# Where the gate sends people it stops; an allowed request must not end up there.
GATE_TARGETS = {"/login", "/login/totp", "/password", "/setup/"}


# -- one appliance per test, throwaway objects per request ----------------------------------------------


@dataclass
class Walk:
    app: Flask
    db: Store
    real_pool: bool

    def web_for(self, role: str | None) -> Web:
        web = Web(self.app)
        if role is not None:
            username = ROLE_USERS[role]
            response = web.sign_in(username, PASSWORDS[username])
            assert response.status_code == 302 and location(response) == "/", (role, response.status_code)
        return web

    def path(self, rule: Rule, role: str | None = None) -> str:
        """The rule with its arguments filled by objects made for this one request."""
        values: dict[str, Any] = {}
        query = ""
        if set(rule.arguments) & CLIENT_ARGUMENTS:  # a client, its point, a browse session (tests/web_helpers.py)
            username = ROLE_USERS[role] if role is not None else None
            values, query = fill_client_arguments(self.app, rule, role, username, real_pool=self.real_pool)
        for name in set(rule.arguments) - CLIENT_ARGUMENTS:
            if name == "job_id":
                values[name] = queue.enqueue(self.db, "pool.scrub", {"pool": "walk"}, created_by="cli")
            elif name == "token_id":
                values[name] = tokens.create(self.db, name="walk", role="viewer", created_by="cli")[0].id
            elif name == "username":
                values[name] = f"walk{secrets.token_hex(3)}"
                users.create_user(self.db, values[name], "walk-password-1", "viewer")
            elif name == "filename":
                values[name] = "app.css"
            elif name == "disk":  # a real block device of this machine (read-only SMART commands)
                values[name] = next((d.name for d in inventory.scan() if d.kind != "loop"), "loop0")
            elif name in ("digest", "session_id"):  # the agent protocol (/agent/v1): refused without a credential
                values[name] = "0" * 64
            elif name in ("agent_id", "agent_job"):  # a backup agent's credential or job (tests/agent_ops_helpers.py)
                values[name] = agent_walk_argument(self.db, name)
            elif name in ALERT_ARGUMENTS:  # an alert, a channel, a report's client… (tests/alert_web_helpers.py)
                values[name] = fill_alert_argument(self.db, name)
            else:
                pytest.fail(f"the walk does not know how to fill <{name}> of {rule.rule}; teach Walk.path")
        built = rule.build(values, append_unknown=False)
        assert built is not None
        return built[1] + query

    def request(self, role: str | None, rule: Rule, method: str) -> TestResponse:
        web = self.web_for(role)
        path = self.path(rule, role)
        token = web.csrf()
        if rule.rule.startswith("/api/"):
            return web.open(path, method, headers={"X-CSRF-Token": token})
        if method == "GET":
            return web.get(path)
        return web.open(path, method, data={"csrf_token": token})


@pytest.fixture
def walk(appliance_dir: ApplianceDir, zfs_pool: str | None) -> Iterator[Walk]:
    if zfs_pool is not None:
        appliance_dir.use_pool(zfs_pool)
    appliance_dir.finish_first_run()
    app = create_app({"DATA_DIR": str(appliance_dir.paths.data_dir), "TESTING": True})
    smb_prefix = f"bwu{secrets.token_hex(3)}-"  # the SMB accounts the walk's requests make, removed below
    smb_shares.update_settings(app.extensions["bulwark.store"], None, local_runner(), by="test",
                               account_prefix=smb_prefix)  # fmt: skip
    try:
        yield Walk(app, app.extensions["bulwark.store"], zfs_pool is not None)
    finally:
        for account in Path("/etc/passwd").read_text().splitlines():
            if account.startswith(smb_prefix):
                local_runner().run(["userdel", account.split(":", 1)[0]], ok_codes=range(256))
        if zfs_pool is not None:
            remove_clients(app.extensions["bulwark.store"])  # the module's pool gets no new mounts
        app.extensions["bulwark.store"].close()


def routes(app: Flask) -> list[tuple[Rule, str]]:
    found = [
        (rule, method)
        for rule in app.url_map.iter_rules()
        for method in sorted((rule.methods or set()) - SKIPPED_METHODS)
    ]
    return sorted(found, key=lambda item: (item[0].rule, item[1]))


# -- the outcome each answer must have ------------------------------------------------------------------


def _problem_unauthenticated(rule: Rule, method: str, response: TestResponse) -> str | None:
    status = response.status_code
    if rule.rule.startswith("/api/"):
        body = response.get_json(silent=True) or {}
        if status != 401 or body.get("error", {}).get("code") != "unauthenticated":
            return f"expected 401 unauthenticated JSON, got {status} {text(response)[:120]!r}"
        if response.headers.get("WWW-Authenticate") != 'Bearer realm="bulwark"':
            return "401 without WWW-Authenticate"
        return None
    if status != 302 or not location(response).startswith("/login"):
        return f"expected a redirect to /login, got {status}"
    if method == "GET" and unquote(location(response)) != f"/login?next={response.request.full_path.rstrip('?')}":
        return f"redirect does not come back: {location(response)}"
    return None


def _problem_public(response: TestResponse) -> str | None:
    if response.status_code == 403 or response.status_code >= 500:
        return f"public endpoint answered {response.status_code}"
    if response.status_code in (301, 302, 303, 307, 308) and location(response).startswith("/login"):
        return "public endpoint sent to /login"
    return None


def _problem_denied(rule: Rule, response: TestResponse, role: str) -> str | None:
    if response.status_code != 403:
        return f"expected 403, got {response.status_code}"
    if rule.rule.startswith("/api/"):
        if (response.get_json(silent=True) or {}).get("error", {}).get("code") != "permission_denied":
            return "403 without the permission_denied error body"
    elif "<h1>Not allowed</h1>" not in text(response) or f"Your role ({role})" not in text(response):
        return "403 without the Not allowed page"
    return None


def _problem_allowed(walk: Walk, endpoint: str, method: str, response: TestResponse) -> str | None:
    status = response.status_code
    if status in (401, 403):
        return f"refused with {status}: {text(response)[:160]!r}"
    relaxed = (endpoint in ZFS_ENDPOINTS or endpoint in client_endpoints(walk.app)) and not walk.real_pool
    if status >= 500 and not relaxed:
        return f"server error {status}: {text(response)[:300]!r}"
    if status in (301, 302, 303, 307, 308):
        target = location(response).split("?")[0]
        if target in GATE_TARGETS and endpoint != "auth.logout":
            return f"sent to {target} by the gate"
    if method == "GET" and not relaxed:
        expected = REDIRECTING_GETS.get(endpoint)
        if expected is None and status != 200:
            return f"GET answered {status}, not 200"
        if expected is not None and (status != 302 or location(response) != expected):
            return f"GET answered {status}, expected a redirect to {expected}"
    return None


@pytest.mark.parametrize("role", [None, *ROLES], ids=["anonymous", *ROLES])
def test_every_route_against_the_permission_table(walk: Walk, role: str | None) -> None:
    problems: list[str] = []
    walked = 0
    for rule, method in routes(walk.app):
        endpoint = rule.endpoint
        permission = permission_of(walk.app.view_functions[endpoint])
        assert permission is not None, f"{endpoint} declares no permission"
        response = walk.request(role, rule, method)
        if permission == PUBLIC:
            problem = _problem_public(response)
        elif role is None:
            problem = _problem_unauthenticated(rule, method, response)
        elif permission == PENDING or allowed(role, permission):
            problem = _problem_allowed(walk, endpoint, method, response)
        else:
            problem = _problem_denied(rule, response, role)
        if problem:
            problems.append(f"{method} {rule.rule} ({endpoint}, needs {permission}): {problem}")
        response.close()
        walked += 1
    assert walked >= 50  # the whole app, not a part of it
    assert not problems, f"{len(problems)} of {walked} routes disagree with the table:\n" + "\n".join(problems)


def test_the_walk_covers_ui_and_api(walk: Walk) -> None:
    rules = {rule.rule for rule, _ in routes(walk.app)}
    assert {"/", "/jobs/", "/users/", "/settings/", "/audit/", "/setup/", "/login"} <= rules
    assert {"/api/v1/status", "/api/v1/jobs", "/api/v1/users", "/api/v1/tokens", "/api/v1/openapi.json"} <= rules
    methods = {method for _, method in routes(walk.app)}
    assert methods == {"GET", "POST", "PATCH", "DELETE", "PUT"}  # PUT: agent content uploads


def test_pool_pages_render_with_a_real_pool(walk: Walk, zfs_pool: str | None) -> None:
    if zfs_pool is None:
        pytest.skip("no ZFS on this machine: the pool pages were walked for permissions only")
    admin = walk.web_for("admin")
    page = text(admin.get("/"))
    assert f"Pool {zfs_pool}" in page and "ONLINE" in page
    assert admin.api("GET", "/api/v1/pool").json["name"] == zfs_pool


# -- the table itself -----------------------------------------------------------------------------------


def test_every_view_declares_a_permission(app: Flask) -> None:
    undeclared = sorted(name for name, view in app.view_functions.items() if permission_of(view) is None)
    assert undeclared == []
    for rule in app.url_map.iter_rules():
        assert rule.endpoint in app.view_functions


def test_every_permission_in_the_table_is_used(app: Flask) -> None:
    used = {permission_of(view) for view in app.view_functions.values()}
    assert sorted(set(PERMISSIONS) - used) == []


def test_the_table_is_the_one_agreed() -> None:
    """The walk checks the app against the table; this pins the table itself (roles of DESIGN.md: admin,
    operator, read-only), so that widening a permission is a deliberate change here too."""
    assert {name: sorted(roles) for name, roles in PERMISSIONS.items()} == {
        "view": ["admin", "operator", "viewer"],
        "self": ["admin", "operator", "viewer"],
        "audit.view": ["admin", "operator"],
        "jobs.run": ["admin", "operator"],
        "jobs.cancel": ["admin", "operator"],
        "users.manage": ["admin"],
        "tokens.manage": ["admin"],
        "settings.manage": ["admin"],
        "clients.manage": ["admin", "operator"],
        "clients.destroy": ["admin"],
        "restore.run": ["admin", "operator"],
        "alerts.ack": ["admin", "operator"],
        "alerts.manage": ["admin"],
        "tunnel.manage": ["admin"],
        "remote.switch": ["admin"],
        "keys.manage": ["admin"],
        "offsite.manage": ["admin"],
        "disks.replace": ["admin"],
        "agents.manage": ["admin"],
    }


def test_the_table(app: Flask) -> None:
    assert allowed("admin", "users.manage") and not allowed("operator", "users.manage")
    assert allowed("operator", "jobs.run") and not allowed("viewer", "jobs.run")
    assert allowed("viewer", "view") and allowed("viewer", "self")
    assert allowed(None, PUBLIC) and not allowed(None, "view")
    assert not allowed("admin", "no.such.permission")
    assert not allowed("root", "view")
    with pytest.raises(KeyError, match="no.such"):
        requires("no.such")


def test_a_view_that_declares_nothing_is_refused(appliance_dir: ApplianceDir) -> None:
    appliance_dir.finish_first_run()
    app = create_app({"DATA_DIR": str(appliance_dir.paths.data_dir), "TESTING": True})
    try:

        @app.route("/forgotten")
        def forgotten() -> str:
            return "should never be seen"

        @app.route("/api/v1/forgotten")
        def forgotten_api() -> str:
            return "should never be seen"

        admin = Web(app)
        assert admin.sign_in("admin", PASSWORDS["admin"]).status_code == 302
        response = admin.get("/forgotten")
        assert response.status_code == 403 and "should never be seen" not in text(response)
        response = admin.get("/api/v1/forgotten")
        assert response.status_code == 403 and response.json["error"]["code"] == "permission_denied"
        assert Web(app).get("/forgotten").status_code == 302  # and to the anonymous: sign in first
    finally:
        app.extensions["bulwark.store"].close()


def _declared_in_source() -> set[str]:
    """Permissions named in ``@requires("…")`` anywhere in webui/ (a cross-check of the walk's view)."""
    found: set[str] = set()
    for path in Path(__file__).resolve().parents[2].joinpath("webui").rglob("*.py"):
        found.update(re.findall(r'@requires\("([^"]+)"\)', path.read_text()))
    return found


def test_source_names_only_known_permissions() -> None:
    assert _declared_in_source() <= set(PERMISSIONS)
