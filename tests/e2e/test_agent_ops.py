"""Operating agents against a real running appliance (`bulwark init` + `bulwark run`, zfs-fuse pool) and the real
agent: the client's default paths and bandwidth limit set on the appliance and used by `bulwark-agent backup`,
a job refused outside the backup window (agent exit 75, the protocol's 409 with Retry-After), the per-job report
(CLI and jobs page), enrollment and revocation through the API, and Chromium screenshots of the client's Agents
section and the jobs page (artifacts/screenshots/agents-*.png)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.agent_helpers import agent, agent_appliance, agent_json, connection, enroll, points, write
from tests.e2e.conftest import SCREENSHOTS, Appliance
from tests.e2e.test_client_flow import PASSWORD, Tab, tab  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.zfs, pytest.mark.slow]


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, zfs_daemon: object) -> Iterator[Appliance]:
    with agent_appliance(tmp_path_factory.mktemp("agentops")) as running:
        yield running


def api(appliance: Appliance, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - our own test URL
        f"{appliance.url}/api/v1{path}", data=data, method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=30) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def admin_token(appliance: Appliance) -> str:
    return appliance.cli("token", "create", "--role", "admin", "--name", f"e2e-{time.time_ns()}").out.strip()


def test_default_paths_and_the_bandwidth_limit_come_from_the_appliance(appliance: Appliance, tmp_path: Path) -> None:
    state = tmp_path / "state"
    enroll(appliance, "acme", state)
    src = tmp_path / "srv"
    write(src / "notes.txt", b"set on the appliance\n")
    write(src / "random.bin", os.urandom(1536 * 1024))  # incompressible: the limit shows in the time it takes
    refused = agent(state, "backup", ok_codes=(1,))
    assert "no paths to back up" in refused.err and "Agents" in refused.err
    appliance.cli("client", "agent-settings", "acme", "--path", str(src), "--bwlimit", "512")
    began = time.monotonic()
    report = agent_json(state, "backup")  # no PATH: the client's default paths
    took = time.monotonic() - began
    assert report["files"] == 2 and report["point"] in points(state)
    assert took >= 2.5, took  # 1.5 MiB at the appliance's 512 KiB/s (the agent set no limit of its own)
    jobs = json.loads(appliance.cli("client", "agent-jobs", "acme", "--json").out)
    job = next(j for j in jobs if j["id"] == report["job"])
    assert (job["state"], job["files"], job["point"]) == ("committed", 2, report["point"])
    assert job["bytes_scanned"] == 1536 * 1024 + 21 and job["bytes_sent"] >= 1536 * 1024
    assert job["duration"] > 0 and job["hostname"]
    # The agent reported its progress while it ran (every 3 s and at each phase): the last report stays.
    assert job["phase"] in ("sending", "committing") and job["progress_at"] is not None
    assert job["bytes_total"] == 1536 * 1024 + 21 and job["files_total"] == 2
    appliance.cli("client", "agent-settings", "acme", "--bwlimit", "none")


def test_a_backup_outside_the_window_is_refused_with_when_it_opens(appliance: Appliance, tmp_path: Path) -> None:
    state = tmp_path / "state"
    enroll(appliance, "acme", state)
    zone = json.loads(appliance.cli("client", "agent-settings", "acme", "--json").out)["timezone"]
    start = dt.datetime.now(ZoneInfo(zone)) + dt.timedelta(hours=2)  # a one-hour window two hours from now
    window = f"{start:%H}:00-{(start + dt.timedelta(hours=1)):%H}:00"
    appliance.cli("client", "agent-settings", "acme", "--window", window)
    shown = json.loads(appliance.cli("client", "agent-settings", "acme", "--json").out)
    try:
        assert shown["window"] == window and shown["window_open"] is False
        refused = agent(state, "backup", str(tmp_path), ok_codes=(75,))
        assert f"only within {window}" in refused.err and "the window opens at" in refused.err
        conn = connection(state)  # the appliance itself refuses, whatever the agent checked first
        try:
            before = json.loads(appliance.cli("client", "agent-jobs", "acme", "--json").out)
            with pytest.raises(Exception) as caught:
                conn.request("POST", "/jobs", {"kind": "files"})
            err = caught.value
            assert getattr(err, "status", None) == 409 and getattr(err, "code", None) == "outside_backup_window"
            body = err.body["error"]  # type: ignore[attr-defined]
            assert body["retryable"] is True and 3600 < body["retry_after"] <= 3 * 3600
            assert body["opens_at"] == shown["window_opens_at"]
            assert json.loads(appliance.cli("client", "agent-jobs", "acme", "--json").out) == before  # no job
        finally:
            conn.close()
    finally:
        appliance.cli("client", "agent-settings", "acme", "--window", "any")
    assert agent_json(state, "backup", str(tmp_path / "state"))["point"]  # open again: it runs


def test_enrollment_and_revocation_through_the_api(appliance: Appliance, tmp_path: Path) -> None:
    token = admin_token(appliance)
    status, made = api(appliance, token, "POST", "/clients/globex/agents/enroll-codes")
    assert status == 201 and made["command"].startswith(f"bulwark-agent enroll --server {appliance.url} --code bw1-")
    state = tmp_path / "state"
    argv = shlex.split(made["command"])[1:]  # the exact command the UI shows, run as it is
    enrolled = agent_json(state, *argv)
    assert enrolled["client"] == "globex"
    status, listed = api(appliance, token, "GET", "/clients/globex/agents")
    assert status == 200 and enrolled["agent_id"] in [a["id"] for a in listed["agents"]]
    assert agent_json(state, "status")["client"] == "globex"
    status, revoked = api(appliance, token, "POST", f"/clients/globex/agents/{enrolled['agent_id']}/revoke")
    assert status == 200 and revoked["state"] == "revoked"
    refused = agent(state, "status", ok_codes=(2,))
    assert "revoked" in refused.err
    status, err = api(appliance, token, "POST", f"/clients/acme/agents/{enrolled['agent_id']}/revoke")
    assert status == 400 and "another client" in err["error"]["message"]


def first_sign_in(tab: Tab, appliance: Appliance) -> None:  # noqa: F811
    """The admin's first sign-in: the one-time password, the forced change, the first-run wizard."""
    page = tab.page
    tab.goto("/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", appliance.password)
    page.click("#sign-in")
    page.wait_for_url("**/password")
    page.fill("input[name=current]", appliance.password)
    page.fill("input[name=new]", PASSWORD)
    page.fill("input[name=confirm]", PASSWORD)
    page.click("text=Save password")
    page.wait_for_url("**/setup/")
    page.fill("input[name=hostname]", "agents-e2e")
    page.click("#finish-setup")
    page.wait_for_url(appliance.url + "/")


def test_agents_section_and_jobs_page_in_chromium(appliance: Appliance, tab: Tab, tmp_path: Path) -> None:  # noqa: F811
    state = tmp_path / "state"
    enroll(appliance, "acme", state)
    src = tmp_path / "data"
    write(src / "a.txt", b"agent backup shown on the jobs page\n")
    done = agent_json(state, "backup", str(src))
    appliance.cli("client", "agent-settings", "acme", "--path", "/etc", "--path", "/home", "--bwlimit", "4096",
                  "--window", "22:00-06:00")  # fmt: skip
    conn = connection(state)  # an open job with a progress report, as a running agent leaves it
    try:
        appliance.cli("client", "agent-settings", "acme", "--window", "any")
        opened = conn.request("POST", "/jobs", {"kind": "files"})["job"]
        report = {"phase": "sending", "bytes_done": 0, "bytes_total": 800 << 20, "files_done": 0, "files_total": 40}
        conn.request("POST", f"/jobs/{opened}/progress", report)
        time.sleep(1.2)
        conn.request("POST", f"/jobs/{opened}/progress", {**report, "bytes_done": 300 << 20, "files_done": 12})
        appliance.cli("client", "agent-settings", "acme", "--window", "22:00-06:00")
        first_sign_in(tab, appliance)
        page = tab.page
        tab.goto("/clients/acme")
        page.wait_for_selector("#agents #agent-credentials")
        section = page.locator("#agents").inner_text()
        assert "Enrolled agents" in section and "Last agent backups" in section and "22:00-06:00" in section
        assert done["job"] in section and opened in section
        page.locator("#agents").scroll_into_view_if_needed()
        page.locator("#agents").screenshot(path=str(SCREENSHOTS / "agents-client-section.png"))
        page.click("#create-enroll-code")
        page.wait_for_selector("#enroll-code")
        command = page.locator("#enroll-command-value").input_value()
        assert command.startswith(f"bulwark-agent enroll --server {appliance.url} --code bw1-")
        page.screenshot(path=str(SCREENSHOTS / "agents-enroll-code.png"), full_page=True)
        tab.goto("/jobs/")
        page.wait_for_selector(f"#agent-job-{opened} progress")
        row = page.locator(f"#agent-job-{opened}").inner_text()
        assert "300.0 MiB of 800.0 MiB" in row and "12 of 40 files" in row and "left" in row
        finished = page.locator(f"#agent-job-{done['job']}").inner_text()
        assert "1 file ·" in finished and done["point"] in finished
        page.screenshot(path=str(SCREENSHOTS / "agents-jobs-page.png"), full_page=True)
        conn.request("POST", f"/jobs/{opened}/fail", {"error": "stopped by the test"})
        page.click(f"#agent-job-{done['job']} a")
        page.wait_for_selector("#agent-job-report")
        assert done["point"] in tab.main_text()
        page.screenshot(path=str(SCREENSHOTS / "agents-job-report.png"), full_page=True)
    finally:
        conn.close()
        appliance.cli("client", "agent-settings", "acme", "--window", "any", "--clear-paths")
