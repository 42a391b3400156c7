"""Remote access in Chromium: the Remote access page on the LAN while a real tunnel to a real sshd jump host is
up, and the same appliance reached through the jump host's forwarded port — a remote session, asked for its code,
under the remote banner, seeing the page read-only. Screenshots: artifacts/screenshots/tunnel-*.png."""

from __future__ import annotations

from typing import Any

import pyotp
import pytest

from appliance import users
from appliance.auth import totp
from tests.e2e.conftest import SCREENSHOTS
from tests.integration.test_tunnel import Site, configure, site, weak_kdf
from tests.tunnel_fixtures import JumpHost, free_port, jump_host, jump_user, wait_port

__all__ = ["jump_host", "jump_user", "site", "weak_kdf"]  # fixtures

ADA = "ada"
ADA_PASSWORD = "an admin password 42"  # noqa: S105 - a test account


def sign_in(page: Any, base: str, code: str | None) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", ADA)
    page.fill("input[name=password]", ADA_PASSWORD)
    page.click("main button[type=submit]")
    if code is not None:
        page.wait_for_url("**/login/totp")
        page.fill("input[name=code]", code)
        page.click("main button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def test_remote_access_page_on_site_and_through_the_tunnel(
    site: Site, jump_host: JumpHost, chromium: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ada = users.create_user(site.store, ADA, ADA_PASSWORD, "admin")
    secret = totp.new_secret()
    totp.enable(site.store, ada.id, secret, pyotp.TOTP(secret).now())
    remote_port = free_port()
    configure(site, jump_host, capsys, remote_port)
    site.start_tunnel()
    site.wait_for(lambda r: r["state"] == "connected" and r["bytes_sent"] > 0)
    wait_port(remote_port)

    context = chromium.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    try:
        lan = context.new_page()
        sign_in(lan, f"https://127.0.0.1:{site.lan_port}", site.code_for(ADA, secret))
        lan.goto(f"https://127.0.0.1:{site.lan_port}/remote-access/")
        assert lan.inner_text("#tunnel-state") == "connected"
        assert 'permitlisten="127.0.0.1:' in lan.inner_text("#authorized-keys-line")
        assert lan.is_visible("#remote-sessions-toggle")
        lan.screenshot(path=str(SCREENSHOTS / "tunnel-1-on-site.png"), full_page=True)

        remote = chromium.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
        try:
            tab = remote.new_page()
            base = f"https://127.0.0.1:{remote_port}"
            tab.goto(f"{base}/login")
            assert "remote-access tunnel" in tab.inner_text("main")
            tab.screenshot(path=str(SCREENSHOTS / "tunnel-2-remote-login.png"), full_page=True)
            sign_in(tab, base, site.code_for(ADA, secret))
            tab.goto(f"{base}/remote-access/")
            assert "Remote session through the MSP tunnel" in tab.inner_text("body")
            assert "can only be changed on site" in tab.inner_text("main")
            assert not tab.is_visible("#remote-sessions-toggle") and not tab.is_visible("#save-jump-host")
            tab.screenshot(path=str(SCREENSHOTS / "tunnel-3-remote-session.png"), full_page=True)

            lan.click("#remote-sessions-toggle")  # on site: block remote sessions
            lan.wait_for_selector("text=Remote sessions blocked")
            tab.goto(f"{base}/remote-access/")
            assert "switched off at the site" in tab.inner_text("body")
            tab.screenshot(path=str(SCREENSHOTS / "tunnel-4-remote-blocked.png"), full_page=True)
            lan.screenshot(path=str(SCREENSHOTS / "tunnel-5-on-site-blocked.png"), full_page=True)
        finally:
            remote.close()

        jump_host.stop()  # the jump host goes away: the page follows the tunnel going down
        site.wait_for(lambda r: r["state"] == "down" and "refused" in r["last_error"])
        lan.goto(f"https://127.0.0.1:{site.lan_port}/remote-access/")
        assert lan.inner_text("#tunnel-state") == "down"
        lan.screenshot(path=str(SCREENSHOTS / "tunnel-6-down.png"), full_page=True)
    finally:
        context.close()
