"""The JSON API's error bodies, its published OpenAPI document, and a schemathesis fuzz run of every
operation in it.
"""

from __future__ import annotations

import time
from typing import Any

import pyotp
import pytest

from appliance import users
from appliance.auth import sessions, tokens, totp
from appliance.jobs import queue
from appliance.system import settings
from tests.unit.api_fixtures import API, Api, api_rules, audit_actions, error_of
from tests.unit.conftest import ADMIN_NEW_PASSWORD, OPERATOR_PASSWORD, ApplianceDir
from tests.unit.web import Web, totp_code
from tests.web_helpers import remove_clients

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
    assert described == api_rules(api.app)
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
