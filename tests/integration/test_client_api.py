"""The clients, points, browse, restore and alerts routes of /api/v1 on a real zfs-fuse pool: bearer tokens and
session cookies, every route's happy path, bad input answered with 400 and nothing changed, role denial,
point ids with '@' and '/' in the path, streamed file and zip downloads, and a restore checked on disk."""

from __future__ import annotations

import io
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import TestResponse

from appliance import alerts
from appliance.auth import tokens
from appliance.clients import browse, points, service
from appliance.zfs import datasets
from tests.clients_fixtures import LocalPool
from tests.web_helpers import Site, close_site, open_site

pytestmark = pytest.mark.zfs
API = "/api/v1"


class Api:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.secrets = {
            role: tokens.create(site.db, name=f"{role}-token", role=role, created_by="cli")[1]
            for role in ("admin", "operator", "viewer")
        }

    def __call__(self, method: str, path: str, role: str = "admin", **kwargs: Any) -> TestResponse:
        headers = {"Authorization": f"Bearer {self.secrets[role]}", **kwargs.pop("headers", {})}
        return self.site.app.test_client().open(API + path, method=method, headers=headers, **kwargs)


@pytest.fixture
def site(local_pool: LocalPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("BULWARK_TESTONLY_WEAK_KDF", "1")
    made = open_site(tmp_path, local_pool.name, local_pool.mountpoint)
    try:
        yield made
    finally:
        close_site(made)


@pytest.fixture
def api(site: Site) -> Api:
    return Api(site)


def error(response: TestResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)[:400]
    body: dict[str, Any] = response.json["error"]
    assert body["message"] and body["hint"]
    return body


def take(api: Api, name: str, role: str = "operator", **body: Any) -> list[str]:
    response = api("POST", f"/clients/{name}/points", role, json=body)
    assert response.status_code == 202, response.json
    [job] = api.site.run_jobs()
    assert job.id == response.json["job"] and job.state == "succeeded", job.error
    return list(job.result["points"])


def test_clients_crud(api: Api, site: Site) -> None:
    assert api("GET", "/clients", "viewer").json == {"clients": []}
    body = {"name": "acme", "kind": "both", "quota": "2G", "rpo": "2h", "schedule": "every 30m", "retention": "last=5"}
    created = api("POST", "/clients", "operator", json=body)
    assert created.status_code == 201
    out = created.json
    assert (out["name"], out["kind"], out["quota_bytes"], out["rpo"], out["state"]) == (
        "acme",
        "both",
        2 * 1024**3,
        "2h",
        "active",
    )
    assert out["points"] == 0 and out["rpo_status"]["state"] == "no_point" and out["rpo_status"]["light"] == "amber"
    assert (
        set(out["usage"]["areas"]) == {"share", "files", "images"} and out["schedule_status"]["next_run"] > time.time()
    )
    assert [c["name"] for c in api("GET", "/clients", "viewer").json["clients"]] == ["acme"]
    assert api("GET", "/clients/acme", "viewer").json["retention"] == "last=5"

    patched = api("PATCH", "/clients/acme", json={"quota": None, "notes": "line 1\nline 2", "lock": "1d"})
    assert patched.status_code == 200
    assert (patched.json["quota_bytes"], patched.json["notes"], patched.json["lock"]) == (None, "line 1\nline 2", "1d")
    assert patched.json["retention"] == "last=5" and patched.json["rpo"] == "2h"  # fields not given are kept

    assert api("POST", "/clients/acme/remove", "operator").json["state"] == "removed"
    assert api("GET", "/clients", "viewer").json == {"clients": []}
    assert [c["name"] for c in api("GET", "/clients?all=true").json["clients"]] == ["acme"]
    assert api("POST", "/clients/acme/reattach", "operator").json["state"] == "active"
    assert error(api("DELETE", "/clients/acme", json={"confirm": "acme"}), 409)["code"] == "conflict"
    api("POST", "/clients/acme/remove")
    assert error(api("DELETE", "/clients/acme", json={"confirm": "ACME"}), 400)["code"] == "confirmation_mismatch"
    assert (
        error(api("DELETE", "/clients/acme", "operator", json={"confirm": "acme"}), 403)["code"] == "permission_denied"
    )
    assert error(api("DELETE", "/clients/acme"), 400)["code"] == "invalid_input"  # no confirmation at all
    assert error(api("DELETE", "/clients/acme", json={"confirm": "acme", "force": True}), 400)["details"]
    gone = api("DELETE", "/clients/acme", json={"confirm": "acme"})
    assert gone.status_code == 200 and gone.json["name"] == "acme"
    assert not datasets.exists(site.zfs, f"{site.pool}/clients/acme")
    assert error(api("GET", "/clients/acme"), 404)["code"] == "client_not_found"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "Bad", "kind": "smb"}, "invalid_input"),
        ({"name": "acme", "kind": "tape"}, "invalid_input"),
        ({"name": "acme", "kind": "smb", "owner": "x"}, "invalid_input"),
        ({"name": "acme-", "kind": "smb"}, "invalid_input"),
        ({"name": "global", "kind": "smb"}, "invalid_input"),
        ({"name": "acme", "kind": "smb", "retention": "hourly=x"}, "invalid_retention_spec"),
        ({"name": "acme", "kind": "smb", "quota": "9999999999E"}, "invalid_input"),
        ({"name": "acme", "kind": "smb", "quota": "lots"}, "invalid_input"),
        ({"name": "acme", "kind": "smb", "rpo": "1s"}, "invalid_input"),
        ({"name": "acme", "kind": "smb", "schedule": "* * *"}, "invalid_schedule"),
        ({"name": "acme", "kind": "smb", "notes": "x" * 2001}, "invalid_input"),
        ({"name": "acme", "kind": "smb", "notes": "\ud800"}, "invalid_input"),
        ({"name": "acme", "kind": "smb", "notes": "é" * 2000}, "invalid_input"),  # 12000 bytes as a property
    ],
)
def test_create_refuses_bad_input(api: Api, site: Site, body: dict[str, Any], code: str) -> None:
    assert error(api("POST", "/clients", json=body), 400)["code"] == code
    assert service.list_clients(site.db, include_removed=True) == []
    assert not datasets.exists(site.zfs, f"{site.pool}/clients/acme")


def test_update_refuses_bad_input_and_changes_nothing(api: Api, site: Site) -> None:
    site.add("acme", retention_spec="last=5")
    before = service.get_client(site.db, "acme")
    for body in (
        {"retention": "last=1,last=2"},
        {"window": "8-9"},
        {"kind": "floppy"},
        {"unknown": 1},
        {"quota": "1K"},
    ):
        assert error(api("PATCH", "/clients/acme", json=body), 400)["code"].startswith("invalid"), body
    assert service.get_client(site.db, "acme") == before
    assert error(api("PATCH", "/clients/nobody", json={"notes": "x"}), 404)["code"] == "client_not_found"
    assert error(api("GET", "/clients/UPPER"), 400)["code"] == "invalid_input"


def test_roles(api: Api, site: Site) -> None:
    site.add("acme")
    [point] = take(api, "acme")
    denied = [
        ("viewer", "POST", "/clients", {"name": "x", "kind": "smb"}),
        ("viewer", "PATCH", "/clients/acme", {"notes": "x"}),
        ("viewer", "POST", "/clients/acme/points", {}),
        ("viewer", "POST", f"/clients/acme/points/{point}/pin", None),
        ("viewer", "POST", "/clients/acme/prune", None),
        ("viewer", "POST", "/clients/acme/browse", {"point": point}),
        ("viewer", "POST", "/clients/acme/restore", {"point": point, "paths": [""]}),
        ("viewer", "POST", "/clients/acme/remove", None),
        ("operator", "DELETE", f"/clients/acme/points/{point}", None),
        ("operator", "DELETE", "/clients/acme", {"confirm": "acme"}),
    ]
    for role, method, path, body in denied:
        assert error(api(method, path, role, json=body), 403)["code"] == "permission_denied", (role, method, path)
    assert points.list_points(site.db, site.zfs, "acme")[0].id == point and not browse.list_sessions(site.db)
    assert (
        service.get_client(site.db, "acme").active
        and len(api("GET", "/clients/acme/points", "viewer").json["points"]) == 1
    )


def test_points_with_at_and_slash_in_the_path(api: Api, site: Site) -> None:
    client = site.add("dc01", "agent")
    datasets.create(site.zfs, client.area_dataset("images/0"))
    (site.live("dc01", "files") / "a.txt").write_text("a")
    taken = take(api, "dc01", areas=["images/0"])
    [image] = taken
    assert image.startswith("images/0@bw-") and image.endswith("-manual")
    listed = api("GET", "/clients/dc01/points", "viewer").json["points"]
    assert [p["id"] for p in listed] == [image] and listed[0]["source"] == "manual"
    pinned = api("POST", f"/clients/dc01/points/{image}/pin", "operator")
    assert pinned.status_code == 200 and pinned.json["pinned"] is True and pinned.json["id"] == image
    encoded = image.replace("/", "%2F").replace("@", "%40")
    refused = error(api("DELETE", f"/clients/dc01/points/{encoded}"), 409)
    assert refused["code"] == "point_pinned" and "Unpin it first" in refused["hint"]
    unpinned = api("DELETE", f"/clients/dc01/points/{image}/pin", "operator")
    assert unpinned.status_code == 200 and unpinned.json["pinned"] is False
    assert api("DELETE", f"/clients/dc01/points/{image}").json["id"] == image
    assert api("GET", "/clients/dc01/points").json["points"] == []
    assert error(api("POST", f"/clients/dc01/points/{image}/pin"), 404)["code"] == "point_not_found"
    assert api("POST", "/clients/dc01/points", json={"areas": ["share"]}).status_code == 202  # checked by the job:
    [job] = site.run_jobs()
    assert job.state == "failed" and job.error["code"] == "no_live_dataset"
    assert error(api("POST", "/clients/dc01/points", json={"areas": ["../x"]}), 400)["code"] == "invalid_input"


def test_locked_points_and_prune(api: Api, site: Site) -> None:
    site.add("acme", retention_spec="last=2", lock="1h")
    first = take(api, "acme")[0]
    refused = error(api("DELETE", f"/clients/acme/points/{first}"), 409)
    assert refused["code"] == "point_locked" and "cannot be shortened" in refused["hint"]
    api("PATCH", "/clients/acme", json={"lock": "0"})
    for _ in range(3):
        time.sleep(1.05)
        take(api, "acme")
    plan = api("GET", "/clients/acme/prune-plan", "viewer").json
    assert plan["summary"] == "this 1 of 4 points of acme will be removed"  # last=2, and the locked one
    assert plan["keep_count"] == 3 and plan["destroy"][0]["id"] != first and plan["destroy"][0]["locked"] is False
    preview = api("GET", "/clients/acme/prune-plan?spec=last%3D1", "viewer").json
    assert preview["summary"] == "these 2 of 4 points of acme will be removed"  # the locked one stays anyway
    assert preview["policy"]["spec"] == "last=1"
    assert error(api("GET", "/clients/acme/prune-plan?spec=daily%3D-1"), 400)["code"] == "invalid_retention_spec"
    assert error(api("GET", "/clients/acme/prune-plan?spec=x&extra=1"), 400)["code"] == "invalid_input"
    response = api("POST", "/clients/acme/prune", "operator")
    assert response.status_code == 202
    [job] = site.run_jobs()
    assert job.state == "succeeded" and len(job.result["destroyed"]) == 1
    assert first in [p["id"] for p in api("GET", "/clients/acme/points").json["points"]]


def test_browse_download_and_restore(api: Api, site: Site) -> None:
    site.add("acme")
    live = site.live("acme")
    (live / "docs").mkdir()
    (live / "docs" / "a.txt").write_bytes(b"version 1")
    (live / "docs" / 'we"ird\nname.txt').write_bytes(b"odd")
    (live / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    os.symlink("/etc", live / "escape")
    [point] = take(api, "acme")
    (live / "docs" / "a.txt").unlink()

    opened = api("POST", "/clients/acme/browse", "operator", json={"point": point})
    assert opened.status_code == 201 and opened.json["point"] == point
    sid = opened.json["id"]
    assert api("POST", "/clients/acme/browse", "operator", json={"point": point}).json["id"] == sid  # reused
    root = api("GET", f"/browse/{sid}", "operator").json
    assert [(e["name"], e["type"]) for e in root["entries"]] == [
        ("docs", "dir"),
        ("big.bin", "file"),
        ("escape", "symlink"),
    ]
    docs = api("GET", f"/browse/{sid}?path=docs", "operator").json
    assert {e["path"] for e in docs["entries"]} == {"docs/a.txt", 'docs/we"ird\nname.txt'}

    got = api("GET", f"/browse/{sid}/file?path=big.bin", "operator")
    assert got.status_code == 200 and got.is_streamed and got.data == (live / "big.bin").read_bytes()
    odd = api("GET", f"/browse/{sid}/file?path=docs/we%22ird%0Aname.txt", "operator")
    assert odd.data == b"odd"
    assert (
        odd.headers["Content-Disposition"]
        == "attachment; filename=\"we_ird_name.txt\"; filename*=UTF-8''we%22ird%0Aname.txt"
    )
    zipped = api("POST", f"/browse/{sid}/zip", "operator", json={"paths": ["docs", "big.bin"]})
    assert zipped.status_code == 200 and zipped.mimetype == "application/zip" and zipped.is_streamed
    with zipfile.ZipFile(io.BytesIO(zipped.data)) as archive:
        assert archive.read("docs/a.txt") == b"version 1" and archive.read("big.bin") == (live / "big.bin").read_bytes()
        assert archive.testzip() is None

    for hostile in ("../etc/passwd", "/etc/passwd", "escape/passwd", "docs/../../etc"):
        assert (
            error(api("GET", f"/browse/{sid}", "operator", query_string={"path": hostile}), 400)["code"]
            == "unsafe_path"
        )
        assert (
            error(api("GET", f"/browse/{sid}/file", "operator", query_string={"path": hostile}), 400)["code"]
            == "unsafe_path"
        )
        body = {"paths": [hostile]}
        assert error(api("POST", f"/browse/{sid}/zip", "operator", json=body), 400)["code"] == "unsafe_path"
        if hostile != "escape/passwd":  # (a link is followed only by the job: see below)
            body = {"point": point, "paths": [hostile]}
            assert error(api("POST", "/clients/acme/restore", "operator", json=body), 400)["code"] == "unsafe_path"
    assert error(api("GET", f"/browse/{sid}/file", "operator"), 400)["code"] == "invalid_input"
    assert error(api("GET", f"/browse/{sid}/file?path=docs", "operator"), 404)["code"] == "path_not_found"
    assert error(api("POST", f"/browse/{sid}/zip", "operator", json={"paths": []}), 400)["code"] == "invalid_input"
    assert error(api("GET", f"/browse/{sid}", "admin"), 404)["code"] == "browse_session_not_found"  # not theirs
    body = {"point": point, "paths": ["docs"], "target": "../../x"}
    assert error(api("POST", "/clients/acme/restore", "operator", json=body), 400)["code"] == "unsafe_path"
    assert site.run_jobs() == []
    body = {"point": point, "paths": ["escape/passwd"], "target": "docs"}
    assert api("POST", "/clients/acme/restore", "operator", json=body).status_code == 202
    [job] = site.run_jobs()
    assert job.state == "failed" and job.error["code"] == "unsafe_path" and not (live / "docs" / "passwd").exists()

    restored = api(
        "POST", "/clients/acme/restore", "operator", json={"point": point, "paths": ["docs/a.txt"], "target": "docs"}
    )
    assert restored.status_code == 202
    [job] = site.run_jobs()
    assert job.id == restored.json["job"] and job.state == "succeeded" and job.result["copied"] == 1
    assert (live / "docs" / "a.txt").read_bytes() == b"version 1"
    assert api("GET", f"/jobs/{job.id}", "viewer").json["result"]["copied"] == 1

    assert api("DELETE", f"/browse/{sid}", "operator").json == {"ok": True}
    assert site.clones() == []
    assert error(api("GET", f"/browse/{sid}", "operator"), 404)["code"] == "browse_session_not_found"
    assert error(api("DELETE", f"/browse/{sid}", "operator"), 404)["code"] == "browse_session_not_found"


def test_session_cookie_calls_need_the_csrf_header(site: Site) -> None:
    site.add("acme")
    web = site.browser("operator")
    assert web.open(f"{API}/clients/acme/points", "POST", json={}).status_code == 400  # no X-CSRF-Token
    assert site.run_jobs() == []
    assert web.api("POST", f"{API}/clients/acme/points", json={}).status_code == 202
    assert web.api("GET", f"{API}/clients").json["clients"][0]["name"] == "acme"


def test_alerts(api: Api, site: Site) -> None:
    assert api("GET", "/alerts", "viewer").json == {"alerts": []}
    alerts.raise_alert(
        site.db, "rpo:acme", level="warning", category="rpo", message="client acme is late", subject="client:acme"
    )
    alerts.raise_alert(site.db, "pool:x", level="critical", category="pool", message="pool degraded")
    alerts.clear(site.db, "pool:x")
    active = api("GET", "/alerts", "viewer").json["alerts"]
    assert [(a["key"], a["level"], a["state"]) for a in active] == [("rpo:acme", "warning", "active")]
    every = api("GET", "/alerts?all=true&limit=10", "viewer").json["alerts"]
    assert {a["key"] for a in every} == {"rpo:acme", "pool:x"}
    assert [a["key"] for a in api("GET", "/alerts?all=true&category=pool").json["alerts"]] == ["pool:x"]
    assert error(api("GET", "/alerts?limit=0"), 400)["code"] == "invalid_input"


def test_openapi_document_describes_the_routes(api: Api) -> None:
    paths = api("GET", "/openapi.json", "viewer").json["paths"]
    for path, methods in {
        "/api/v1/clients": {"get", "post"},
        "/api/v1/clients/{name}": {"get", "patch", "delete"},
        "/api/v1/clients/{name}/points/{point}/pin": {"post", "delete"},
        "/api/v1/clients/{name}/points/{point}": {"delete"},
        "/api/v1/browse/{sid}/file": {"get"},
        "/api/v1/browse/{sid}/zip": {"post"},
        "/api/v1/clients/{name}/restore": {"post"},
        "/api/v1/alerts": {"get"},
    }.items():
        assert set(paths[path]) == methods, path
    file_op = paths["/api/v1/browse/{sid}/file"]["get"]
    assert [p["name"] for p in file_op["parameters"] if p["in"] == "query"] == ["path"]
    assert "requestBody" in paths["/api/v1/browse/{sid}/zip"]["post"]


def test_answers_match_the_published_document(api: Api, site: Site) -> None:
    """Each route's answer, checked against the response schema the OpenAPI document publishes for it."""
    import jsonschema_rs

    document = api("GET", "/openapi.json", "viewer").json
    site.add("acme", lock="1h")
    (site.live("acme") / "a.txt").write_text("a")
    [point] = take(api, "acme")
    sid = api("POST", "/clients/acme/browse", json={"point": point}).json["id"]
    alerts.raise_alert(site.db, "rpo:acme", level="warning", category="rpo", message="late", subject="client:acme")
    calls = [
        ("GET", "/clients", "/clients?all=true", None, 200),
        ("GET", "/clients/{name}", "/clients/acme", None, 200),
        ("PATCH", "/clients/{name}", "/clients/acme", {"notes": "x"}, 200),
        ("GET", "/clients/{name}/points", "/clients/acme/points", None, 200),
        ("POST", "/clients/{name}/points/{point}/pin", f"/clients/acme/points/{point}/pin", None, 200),
        ("DELETE", "/clients/{name}/points/{point}/pin", f"/clients/acme/points/{point}/pin", None, 200),
        ("DELETE", "/clients/{name}/points/{point}", f"/clients/acme/points/{point}", None, 409),
        ("GET", "/clients/{name}/prune-plan", "/clients/acme/prune-plan?spec=last%3D1", None, 200),
        ("GET", "/browse/{sid}", f"/browse/{sid}", None, 200),
        ("GET", "/browse/{sid}", f"/browse/{sid}?path=..", None, 400),
        ("POST", "/clients/{name}/restore", "/clients/acme/restore", {"point": point, "paths": ["a.txt"]}, 202),
        ("POST", "/clients/{name}/points", "/clients/acme/points", {}, 202),
        ("POST", "/clients/{name}/prune", "/clients/acme/prune", None, 202),
        ("GET", "/alerts", "/alerts?all=true", None, 200),
        ("DELETE", "/browse/{sid}", f"/browse/{sid}", None, 200),
        ("POST", "/clients/{name}/remove", "/clients/acme/remove", None, 200),
        ("POST", "/clients/{name}/reattach", "/clients/acme/reattach", None, 200),
        ("POST", "/clients", "/clients", {"name": "other", "kind": "agent"}, 201),
        ("DELETE", "/clients/{name}", "/clients/nobody", {"confirm": "nobody"}, 404),
    ]
    for method, template, path, body, status in calls:
        response = api(method, path, json=body) if body is not None else api(method, path)
        assert response.status_code == status, (method, path, response.json)
        answer = document["paths"][API + template][method.lower()]["responses"][str(status)]
        schema = answer["content"]["application/json"]["schema"]
        validator = jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})
        errors = [e.message for e in validator.iter_errors(response.json)]
        assert errors == [], (method, path, errors)
    site.run_jobs()
