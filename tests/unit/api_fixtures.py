"""The JSON API's test fixtures: an app with one bearer token per role (``api``), the published OpenAPI
document (``document``), and the checks every error body must pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import pytest
from flask import Flask
from werkzeug.test import TestResponse

from appliance import users
from appliance.auth import tokens
from appliance.store import Store
from tests.unit.conftest import ApplianceDir
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


@pytest.fixture
def document(api: Api) -> dict[str, Any]:
    response = api.call("GET", f"{API}/openapi.json", role="viewer")
    assert response.status_code == 200
    body: dict[str, Any] = response.json
    return body


def api_rules(app: Flask) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every API route in the app's URL map."""
    import re

    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                found.add((path, method))
    return found


def response_validator(document: dict[str, Any], path: str, method: str, status: int) -> jsonschema_rs.Validator:
    """A validator for one response body as the published document describes it."""
    answer = document["paths"][path][method.lower()]["responses"][str(status)]
    schema = answer["content"]["application/json"]["schema"]
    return jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})
