"""SMB ingest against a real running appliance (`bulwark init` + `bulwark run`: smbd started and supervised on a
loopback port), in Chromium and over SMB with smbprotocol: the share's connection details on the client's page,
a generated password shown once and working, a file written over SMB, "backup finished" pressed in the UI and the
point's exact content, a hostile comment refused with smb.conf unchanged, the API's trigger, and the SMB page.
Screenshots: artifacts/screenshots/smb-*.png."""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import smbclient

from tests.e2e.conftest import SCREENSHOTS, Appliance, running_appliance
from tests.e2e.test_client_flow import Tab, clients_removed_afterwards, share_of, sign_in_and_first_run
from tests.smb_fixtures import open_path_to

pytestmark = [pytest.mark.zfs, pytest.mark.slow]

CLI_PASSWORD = "beta-password-from-stdin"


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, zfs_daemon: object) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("smb")) as running:
        yield running


class SmbTab(Tab):
    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SCREENSHOTS / f"smb-{name}.png"), full_page=True)


@pytest.fixture
def tab(chromium: Any, appliance: Appliance) -> Iterator[SmbTab]:
    opened = SmbTab(chromium, appliance)
    yield opened
    opened.context.close()
    assert not opened.errors, opened.errors


def api(appliance: Appliance, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(  # noqa: S310 - our own test URL
        f"{appliance.url}/api/v1{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=30) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def smb_port(appliance: Appliance) -> int:
    status = json.loads(appliance.cli("status", "--json").out)
    assert status["smb"]["running"] is True, status["smb"]
    return int(status["smb"]["port"])


def test_smb_story(tab: SmbTab, appliance: Appliance) -> None:
    page = tab.page
    with clients_removed_afterwards(appliance):
        sign_in_and_first_run(tab, appliance)
        port = smb_port(appliance)
        appliance.cli("client", "add", "acme", "--kind", "smb", "--schedule", "off")
        appliance.cli("client", "add", "beta", "--kind", "smb", "--schedule", "off")
        open_path_to(share_of(appliance, "acme").parent)
        beta = json.loads(appliance.cli("client", "smb-password", "beta", "--password-stdin", "--json",
                                        stdin=CLI_PASSWORD + "\n").out)  # fmt: skip
        assert beta["password"] is None and beta["unc"] == "\\\\clients-e2e\\beta"

        tab.goto("/clients/acme")
        page.wait_for_selector("#smb-unc")
        assert page.input_value("#smb-unc") == "\\\\clients-e2e\\acme"
        user = page.input_value("#smb-user")
        page.click("#smb-set-password")  # empty: one is generated and shown once
        page.wait_for_selector("#smb-new-password")
        password = page.input_value("#smb-password-value")
        assert len(password) == 24
        tab.shot("1-password-shown-once")
        tab.goto("/clients/acme")
        page.wait_for_selector("#smb-unc")
        assert page.locator("#smb-new-password").count() == 0

        smbclient.register_session("127.0.0.1", username=user, password=password, port=port)
        try:
            with smbclient.open_file(r"\\127.0.0.1\acme\nightly.vbk", mode="wb", port=port) as fh:
                fh.write(b"backup from the UI story " * 2000)
        finally:
            smbclient.reset_connection_cache()

        page.click("#smb-trigger")
        page.wait_for_url("**/jobs/*")
        page.wait_for_function("() => /succeeded/.test(document.querySelector('main').innerText)", timeout=90_000)
        points = json.loads(appliance.cli("snapshot", "list", "acme", "--json").out)
        assert [p["source"] for p in points] == ["smb"]
        folder = next((share_of(appliance, "acme").parent / "versions").iterdir())
        assert (folder / "nightly.vbk").read_bytes() == b"backup from the UI story " * 2000

        tab.goto("/clients/acme")
        page.wait_for_selector("#smb-unc")
        assert "1 recovery point(s) shown to Windows" in tab.main_text()
        tab.shot("2-client-section")

        conf = appliance.data_dir / "samba" / "smb.conf"
        before = conf.read_bytes()
        page.click("#smb summary")
        page.fill("#smb-options input[name=comment]", "nightly [global] 100%")
        page.click("#smb-options button[type=submit]")
        page.wait_for_selector("#smb .flash.error")
        assert "must not contain" in tab.main_text()
        assert conf.read_bytes() == before
        tab.shot("3-hostile-comment-refused")

        token = appliance.cli("token", "create", "--role", "operator", "--name", "post-job").out.split()[-1]
        status, body = api(appliance, token, "GET", "/smb")
        assert status == 200 and body["server"] == {"port": port, "running": True, "pid": body["server"]["pid"],
                                                    "error": None}  # fmt: skip
        assert [s["client"] for s in body["shares"]] == ["acme", "beta"]
        status, body = api(appliance, token, "POST", "/clients/beta/smb/trigger")
        assert status == 202 and body["job"]
        status, body = api(appliance, token, "PATCH", "/smb/settings", {"port": 446})
        assert status == 403  # operators do not change appliance settings

        tab.goto("/smb/")
        assert "running" in tab.main_text() and "\\\\clients-e2e\\beta" in tab.main_text()
        tab.shot("4-smb-page")
