"""Agent operations through the web app (Flask's test client, database-only clients, no ZFS): the client's Agents
section and its permissions, the agent backups of the jobs page, the API (answers checked against the published
OpenAPI document), and /agent/v1's settings in hello, backup window, rate limits, progress and failure reports."""

from __future__ import annotations

import html
import re
import time
from typing import Any

import pytest
from flask import Flask

from appliance.auth import tokens
from appliance.ingest import agent_settings, credentials, limits, progress
from appliance.store import Store
from tests.agent_ops_helpers import agent_credential, agent_job, db_client
from tests.unit.api_fixtures import response_validator
from tests.unit.web import Web, audit_rows, text

AGENT_HEADERS = {"Bulwark-Protocol": "1"}
ROLES = ("admin", "operator", "viewer")


@pytest.fixture
def acme(db: Store) -> str:
    return db_client(db, "acme").name


def agent_call(app: Flask, method: str, path: str, credential: str | None, address: str = "192.0.2.50", **kw: Any):  # type: ignore[no-untyped-def]
    headers = dict(AGENT_HEADERS)
    if credential is not None:
        headers["Authorization"] = f"BulwarkAgent {credential}"
    return app.test_client().open(
        f"/agent/v1{path}", method=method, headers=headers, environ_base={"REMOTE_ADDR": address}, **kw
    )


# -- the Agents section ----------------------------------------------------------------------------------------


def test_admin_creates_a_code_shown_once_with_the_command(admin: Web, db: Store, acme: str) -> None:
    page = text(admin.get(f"/clients/{acme}/agents"))
    assert "No agent enrolled yet." in page and 'id="create-enroll-code"' in page
    response = admin.post(f"/clients/{acme}/agents/enroll-code")
    assert response.status_code == 200
    page = html.unescape(text(response))
    command = re.search(r'id="enroll-command-value" value="([^"]+)"', page)
    assert command is not None
    code = re.fullmatch(r"bulwark-agent enroll --server https://localhost --code (bw1-[a-z2-7]{26}-[a-z2-7]{52})",
                        command.group(1))  # fmt: skip
    assert code is not None
    cred, _ = credentials.redeem(db, code.group(1), "fs1.example", address="192.0.2.1")  # the code is real
    assert cred.client == acme
    assert code.group(1) not in text(admin.get(f"/clients/{acme}/agents"))  # shown once
    assert [r["actor"] for r in audit_rows(db, "agent.enroll_code")] == ["user:admin"]


def test_the_list_and_revocation_with_confirmation(admin: Web, viewer: Web, db: Store, acme: str) -> None:
    agent_id, _ = agent_credential(db, acme, "fs1.example")
    db_client(db, "globex")
    other_id, _ = agent_credential(db, "globex", "gx1")
    seen = text(viewer.get(f"/clients/{acme}/agents"))
    assert "fs1.example" in seen and agent_id in seen and "<td>never</td>" in seen  # not seen since enrolling
    assert "Revoke" not in seen and "create-enroll-code" not in seen  # viewers list, admins act
    assert viewer.post(f"/clients/{acme}/agents/{agent_id}/revoke", {"confirm": agent_id}).status_code == 403
    assert viewer.post(f"/clients/{acme}/agents/enroll-code").status_code == 403
    page = text(admin.get(f"/clients/{acme}/agents"))
    assert f'action="/clients/{acme}/agents/{agent_id}/revoke"' in page and "Revoke fs1.example" in page
    refused = admin.post(f"/clients/{acme}/agents/{agent_id}/revoke", {})
    assert refused.status_code == 400 and "confirm the revocation" in text(refused)
    wrong = admin.post(f"/clients/{acme}/agents/{other_id}/revoke", {"confirm": other_id})
    assert wrong.status_code == 400 and "belongs to another client" in text(wrong)
    assert {c.state for c in credentials.list_for(db)} == {"active"}
    done = admin.post(f"/clients/{acme}/agents/{agent_id}/revoke", {"confirm": agent_id})
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/clients/{acme}#agents")
    assert credentials.get(db, agent_id).state == "revoked" and credentials.get(db, other_id).state == "active"
    assert [r["actor"] for r in audit_rows(db, "agent.revoke")] == ["user:admin"]


def test_agent_settings_form(operator: Web, viewer: Web, db: Store, acme: str) -> None:
    form = {"paths": "/srv\r\n/etc", "bwlimit": "2048", "window": "22:00-06:00"}
    assert viewer.post(f"/clients/{acme}/agents/settings", form).status_code == 403
    assert operator.post(f"/clients/{acme}/agents/settings", form).status_code == 302
    found = agent_settings.get(db, acme)
    assert (found.paths, found.bwlimit_kibps, found.window) == (("/srv", "/etc"), 2048, "22:00-06:00")
    page = text(operator.get(f"/clients/{acme}/agents"))
    assert "Backup window <strong>22:00-06:00</strong>" in page and "2048 KiB/s" in page
    bad = operator.post(f"/clients/{acme}/agents/settings", {**form, "paths": "relative/path", "window": ""})
    assert bad.status_code == 400 and "is not absolute" in html.unescape(text(bad))
    assert "relative/path" in text(bad)  # the form keeps what was typed
    assert agent_settings.get(db, acme) == found  # nothing changed


def test_an_smb_only_client_says_how_to_get_agents(admin: Web, db: Store) -> None:
    db_client(db, "files", kind="smb")
    page = text(admin.get("/clients/files/agents"))
    assert "backed up over SMB only" in page and "create-enroll-code" not in page
    refused = admin.post("/clients/files/agents/enroll-code")
    assert refused.status_code == 400 and "set --kind agent or both" in text(refused)


# -- agent backups on the jobs page ----------------------------------------------------------------------------


def test_jobs_page_shows_a_bar_with_eta_and_the_reports(viewer: Web, db: Store, acme: str) -> None:
    agent_id, _ = agent_credential(db, acme, "fs1.example")
    now = time.time()
    running = agent_job(db, acme, agent_id, started_at=now - 60, phase="sending", bytes_done=300 * 2**20,
                        bytes_total=1200 * 2**20, files_done=3, files_total=10, phase_started_at=now - 40,
                        progress_at=now - 10)  # fmt: skip
    point = "files@bw-20260310T120000Z-agent"
    done = agent_job(db, acme, agent_id, state="committed", started_at=now - 3600, finished_at=now - 3475,
                     files=1234, bytes_scanned=5 * 2**30, bytes_sent=42 * 2**20, point=point)  # fmt: skip
    failed = agent_job(db, acme, agent_id, state="failed", started_at=now - 7200, finished_at=now - 7100,
                       error="/srv/db: permission denied", bytes_sent=1024)  # fmt: skip
    stalled = agent_job(db, acme, agent_id, started_at=now - 3 * 3600)
    assert "Agent backups" in text(viewer.get("/jobs/"))
    page = text(viewer.get("/jobs/agents", headers={"HX-Request": "true", "HX-Target": "agent-jobs"}))
    assert "<html" not in page  # the partial the jobs page polls
    rows = {m.group(1): m.group(2) for m in re.finditer(r'<tr id="agent-job-([^"]+)"(.*?)</tr>', page, re.S)}
    assert '<progress value="25.0" max="100"' in rows[running] and "about 1 min left" in rows[running]
    assert "300.0 MiB of 1.2 GiB" in rows[running] and "3 of 10 files" in rows[running]
    assert "1234 files · 5.0 GiB scanned · 42.0 MiB sent · 2 min" in rows[done]
    assert "files@bw-20260310T120000Z-agent" in rows[done]
    assert "permission denied" in rows[failed] and "no recovery point" in rows[failed]
    assert "stalled" in rows[stalled] and "may have stopped" in rows[stalled]
    assert list(rows)[0] in (running, stalled)  # open jobs first
    report = text(viewer.get(f"/jobs/agents/{done}"))
    for fact in ("fs1.example", "1234", "5.0 GiB", "42.0 MiB", "2 min", "files@bw-20260310T120000Z-agent"):
        assert fact in report
    assert viewer.get("/jobs/agents/j-nosuchjob").status_code == 404
    client_page = text(viewer.get(f"/clients/{acme}/agents"))
    assert "Last agent backups" in client_page and done in client_page


# -- the API -----------------------------------------------------------------------------------------------------


def _check(document: dict[str, Any], path: str, method: str, response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)[:400]
    response_validator(document, path, method, status).validate(response.json)
    body: dict[str, Any] = response.json
    return body


def test_api_routes(app: Flask, admin: Web, db: Store, acme: str) -> None:
    document = admin.api("GET", "/api/v1/openapi.json").json
    token = {role: tokens.create(db, name=f"t-{role}", role=role, created_by="cli")[1] for role in ROLES}
    base = "/api/v1/clients/{name}"

    def call(method: str, path: str, role: str = "admin", **kw: Any) -> Any:
        return admin.api(method, path, token=token[role], **kw)

    got = _check(
        document,
        f"{base}/agents/enroll-codes",
        "post",
        call("POST", f"/api/v1/clients/{acme}/agents/enroll-codes"),
        201,
    )
    assert got["command"] == f"bulwark-agent enroll --server https://localhost --code {got['code']}"
    assert call("POST", f"/api/v1/clients/{acme}/agents/enroll-codes", "operator").status_code == 403
    cred, _ = credentials.redeem(db, got["code"], "fs9", address="192.0.2.1")
    listed = _check(document, f"{base}/agents", "get", call("GET", f"/api/v1/clients/{acme}/agents", "viewer"), 200)
    assert [(a["id"], a["hostname"], a["state"]) for a in listed["agents"]] == [(cred.id, "fs9", "active")]
    assert call("POST", f"/api/v1/clients/{acme}/agents/{cred.id}/revoke", "viewer").status_code == 403
    revoked = call("POST", f"/api/v1/clients/{acme}/agents/{cred.id}/revoke")
    assert _check(document, f"{base}/agents/{{agent_id}}/revoke", "post", revoked, 200)["state"] == "revoked"
    assert call("POST", f"/api/v1/clients/{acme}/agents/ag-0000000000000000/revoke").status_code == 404

    path = f"/api/v1/clients/{acme}/agent-settings"
    shown = _check(document, f"{base}/agent-settings", "get", call("GET", path, "viewer"), 200)
    assert (shown["paths"], shown["window"], shown["window_open"]) == ([], None, True)
    changed = call(
        "PATCH", path, "operator", json={"paths": ["/srv"], "bwlimit_kibps": 100, "window": "mon 01:00-02:00"}
    )
    changed_body = _check(document, f"{base}/agent-settings", "patch", changed, 200)
    assert changed_body["paths"] == ["/srv"] and changed_body["bwlimit_kibps"] == 100
    for bad in ({"window": "soon"}, {"paths": ["srv"]}, {"bwlimit_kibps": -1}, {"colour": "red"}, {"paths": "/srv"}):
        refused = call("PATCH", path, json=bad)
        assert refused.status_code == 400 and refused.json["error"]["hint"], bad
    assert agent_settings.get(db, acme).paths == ("/srv",)
    assert call("PATCH", path, "viewer", json={"paths": []}).status_code == 403

    job = agent_job(db, acme, cred.id, state="committed", finished_at=time.time(), files=2, point="files@bw-x")
    jobs = _check(
        document, "/api/v1/agent-jobs", "get", call("GET", f"/api/v1/agent-jobs?client={acme}", "viewer"), 200
    )
    assert [j["id"] for j in jobs["jobs"]] == [job] and jobs["jobs"][0]["stalled"] is False
    one = _check(
        document, "/api/v1/agent-jobs/{agent_job}", "get", call("GET", f"/api/v1/agent-jobs/{job}", "viewer"), 200
    )
    assert (one["files"], one["point"], one["hostname"]) == (2, "files@bw-x", "fs9")
    assert call("GET", "/api/v1/agent-jobs/j-none").status_code == 404
    assert call("GET", "/api/v1/agent-jobs?limit=0").status_code == 400


# -- /agent/v1 ---------------------------------------------------------------------------------------------------


def test_hello_serves_the_client_settings(app: Flask, db: Store, acme: str) -> None:
    _, credential = agent_credential(db, acme)
    agent_settings.update(db, acme, by="test", paths=["/srv", "/etc"], bwlimit_kibps=512)
    got = agent_call(app, "GET", "/hello", credential).json
    assert got["settings"] == {"paths": ["/srv", "/etc"], "bwlimit_kibps": 512, "window": None, "window_open": True,
                               "window_opens_at": None, "timezone": "UTC"}  # fmt: skip


def test_a_job_outside_the_window_is_refused_retryable_with_retry_after(app: Flask, db: Store, acme: str) -> None:
    _, credential = agent_credential(db, acme)
    minute = time.gmtime().tm_hour * 60 + time.gmtime().tm_min
    start = (minute + 120) % 1440  # a window that opens in two hours (UTC, the appliance's zone here)
    window = f"{start // 60:02d}:{start % 60:02d}-{(start + 60) // 60 % 24:02d}:{start % 60:02d}"
    agent_settings.update(db, acme, by="test", window=window)
    before = db.query("SELECT * FROM agent_jobs")
    for path, body in (("/jobs", {"kind": "files"}), ("/images/jobs", {"image": "sda", "size": 1 << 20})):
        response = agent_call(app, "POST", path, credential, json=body)
        assert response.status_code == 409, response.json
        error = response.json["error"]
        assert error["code"] == "outside_backup_window" and error["retryable"] is True
        assert 7000 < int(response.headers["Retry-After"]) <= 7200 and error["retry_after"] == int(
            response.headers["Retry-After"]
        )
        assert "the window opens at" in error["message"] and "widen" in error["hint"]
    assert db.query("SELECT * FROM agent_jobs") == before
    assert limits.IN_FLIGHT.running(credential.split(":")[0]) == 0  # the request slot was given back


def test_failed_authentications_throttle_the_address_with_429(app: Flask, db: Store, acme: str) -> None:
    _, credential = agent_credential(db, acme)
    wrong = credential[:-4] + "AAAA"
    for _ in range(limits.MAX_ADDRESS_FAILURES):
        assert agent_call(app, "GET", "/hello", wrong, address="192.0.2.66").status_code == 401
    throttled = agent_call(app, "GET", "/hello", credential, address="192.0.2.66")  # even the right one now
    assert throttled.status_code == 429 and throttled.json["error"]["code"] == "auth_throttled"
    assert int(throttled.headers["Retry-After"]) > 800 and throttled.json["error"]["retryable"] is True
    enroll = agent_call(app, "POST", "/enroll", None, address="192.0.2.66", json={"code": "bw1-x", "hostname": "h"})
    assert enroll.status_code == 429
    assert agent_call(app, "GET", "/hello", credential, address="192.0.2.67").status_code == 200  # others are not


def test_bad_enrollment_codes_count_as_failures(app: Flask, db: Store) -> None:
    for _ in range(limits.MAX_ADDRESS_FAILURES):
        body = {"code": "bw1-" + "a" * 26 + "-" + "b" * 52, "hostname": "h"}
        assert agent_call(app, "POST", "/enroll", None, address="192.0.2.70", json=body).status_code == 401
    assert agent_call(app, "POST", "/enroll", None, address="192.0.2.70", json=body).status_code == 429


def test_too_many_open_jobs_and_requests_at_once_are_429(app: Flask, db: Store, acme: str) -> None:
    agent_id, credential = agent_credential(db, acme)
    for _ in range(limits.MAX_OPEN_JOBS):
        agent_job(db, acme, agent_id)
    response = agent_call(app, "POST", "/jobs", credential, json={"kind": "files"})
    assert response.status_code == 429 and response.json["error"]["code"] == "too_many_jobs"
    assert int(response.headers["Retry-After"]) > 1700
    for _ in range(limits.MAX_REQUESTS):  # as if that many requests of this agent were running in this worker
        limits.IN_FLIGHT.acquire(agent_id)
    try:
        busy = agent_call(app, "GET", "/hello", credential)
        assert busy.status_code == 429 and busy.json["error"]["code"] == "rate_limited"
        assert busy.headers["Retry-After"] == "1"
    finally:
        for _ in range(limits.MAX_REQUESTS):
            limits.IN_FLIGHT.release(agent_id)
    assert agent_call(app, "GET", "/hello", credential).status_code == 200


def test_progress_and_failure_reports(app: Flask, db: Store, acme: str) -> None:
    agent_id, credential = agent_credential(db, acme)
    job = agent_job(db, acme, agent_id)
    body = {"phase": "sending", "bytes_done": 10, "bytes_total": 100, "files_done": 1, "files_total": 3}
    got = agent_call(app, "POST", f"/jobs/{job}/progress", credential, json=body)
    assert got.status_code == 200 and got.json["phase"] == "sending"
    assert progress.get_job(db, job).percent == 10.0
    bad = agent_call(app, "POST", f"/jobs/{job}/progress", credential, json={"phase": "sending", "bytes_done": -1})
    assert bad.status_code == 400 and bad.json["error"]["code"] == "protocol_error"
    db_client(db, "globex")
    _, stranger = agent_credential(db, "globex")
    assert agent_call(app, "POST", f"/jobs/{job}/progress", stranger, json=body).status_code == 404
    assert agent_call(app, "POST", f"/jobs/{job}/fail", None, json={"error": "x"}).status_code == 401
    failed = agent_call(app, "POST", f"/jobs/{job}/fail", credential, json={"error": "disk on fire"})
    assert failed.status_code == 200 and progress.get_job(db, job).state == "failed"
    again = agent_call(app, "POST", f"/jobs/{job}/progress", credential, json=body)
    assert again.status_code == 409 and again.json["error"]["code"] == "job_not_open"
