"""The Remote access page and ``/api/v1/tunnel``: configuration on site, the restricted key line, pinning the jump
host's key, the on-site switch (which a remote session cannot change and which then refuses everything through
the tunnel), every answer checked against the published OpenAPI document, and bad input changing nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyotp
import pytest

from appliance import users
from appliance.auth import totp
from appliance.store import Store
from appliance.system import settings
from appliance.system.paths import Paths
from appliance.system.runner import local_runner
from appliance.tunnel import config as tunnel_config
from appliance.tunnel import keys
from tests.unit.api_fixtures import response_validator
from tests.unit.conftest import ADMIN_NEW_PASSWORD, ApplianceDir
from tests.unit.web import TUNNEL_PORT, Web, dump, text, totp_code

JUMP_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbf/efhd8ZRVF78pisOHrJhJcDC+Y3cZLVwjc8v1IDH"
API = "/api/v1"


@pytest.fixture
def admin(signed_in: Callable[[str], Web]) -> Web:
    return signed_in("admin")


@pytest.fixture
def tunnel_port(db: Store) -> None:
    settings.update(db, tunnel_listen_port=TUNNEL_PORT)


def call(web: Web, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    headers = {"X-CSRF-Token": web.csrf()} if method != "GET" else {}
    return web.api(method, f"{API}{path}", json=body, headers=headers)


def checked(web: Web, method: str, path: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
    """Call the API and validate the answer against the OpenAPI document."""
    response = call(web, method, path, body)
    assert response.status_code == status, response.get_data(as_text=True)
    document = web.get(f"{API}/openapi.json").json
    errors = list(response_validator(document, f"{API}{path}", method, status).iter_errors(response.json))
    assert errors == [], errors
    return response.json


def configure(web: Web, **extra: Any) -> Any:
    body = {"host": "jump.msp.example", "port": 2222, "user": "site-a", "remote_port": 20001, **extra}
    return checked(web, "POST", "/tunnel", body)


def test_api_configure_status_pubkey_and_pin(admin: Web, db: Store, appliance_dir: ApplianceDir) -> None:
    before = checked(admin, "GET", "/tunnel")
    assert before["state"] == "disabled" and before["configured"] is False and before["public_key"] is None
    assert checked(admin, "GET", "/tunnel/pubkey") == {"key": None, "fingerprint": None, "authorized_keys_line": None}

    report = configure(admin, alert_after=300)
    assert report["configured"] and report["jump_host"]["alert_after"] == 300
    assert report["state"] == "down" and "bulwarkd is not running" in report["last_error"]  # nothing supervises here
    line = report["authorized_keys_line"]
    assert line.startswith('restrict,port-forwarding,permitlisten="127.0.0.1:20001",permitopen="127.0.0.1:1",')
    assert line.endswith("bulwark@bulwark-test") or "bulwark@" in line
    key = keys.private_key_path(appliance_dir.paths)
    assert key.stat().st_mode & 0o777 == 0o600
    pub = checked(admin, "GET", "/tunnel/pubkey")
    assert pub["authorized_keys_line"] == line and pub["fingerprint"].startswith("SHA256:")
    assert settings.load(db).tunnel_listen_port == tunnel_config.DEFAULT_LOCAL_PORT  # type: ignore[union-attr]

    pinned = checked(admin, "POST", "/tunnel/host-key/trust", {"key": f"[jump]:2222 {JUMP_KEY}"})
    assert pinned["key"] == JUMP_KEY and pinned["fingerprint"] == keys.parse_public_key(JUMP_KEY).fingerprint
    assert checked(admin, "GET", "/tunnel")["jump_host"]["host_key"] == JUMP_KEY

    # The same host again keeps the pin; another host forgets it (it must be confirmed again).
    assert configure(admin)["jump_host"]["host_key"] == JUMP_KEY
    moved = configure(admin, host="jump2.msp.example")
    assert moved["jump_host"]["host_key"] is None

    assert checked(admin, "POST", "/tunnel/disable")["state"] == "disabled"
    assert checked(admin, "POST", "/tunnel/enable")["enabled"] is True
    assert checked(admin, "POST", "/tunnel/reconnect") == {"ok": True}
    actions = [r["action"] for r in db.query("SELECT action FROM audit WHERE action LIKE 'tunnel.%' ORDER BY id")]
    assert actions[:2] == ["tunnel.configure", "tunnel.host_key.pin"] and "tunnel.reconnect" in actions
    assert checked(admin, "DELETE", "/tunnel") == {"ok": True}
    assert checked(admin, "GET", "/tunnel")["configured"] is False


@pytest.mark.parametrize(
    "body",
    [
        {"host": "-oProxyCommand=touch /tmp/x", "user": "site-a", "remote_port": 20001},
        {"host": "jump.example\nevil", "user": "site-a", "remote_port": 20001},
        {"host": "jump.example", "user": "-l root", "user2": 1, "remote_port": 20001},
        {"host": "jump.example", "user": "Site A", "remote_port": 20001},
        {"host": "jump.example", "user": "site-a", "remote_port": 22},
        {"host": "jump.example", "user": "site-a", "remote_port": 20001, "host_key": "ssh-ed25519 AAAAbroken"},
        {"host": "jump.example", "user": "site-a", "remote_port": 20001, "alert_after": 0},
    ],
)
def test_api_bad_configuration_changes_nothing(admin: Web, db: Store, body: dict[str, Any]) -> None:
    before = dump(db)
    response = call(admin, "POST", "/tunnel", body)
    assert response.status_code == 400, response.json
    assert response.json["error"]["hint"]
    assert dump(db) == before


def test_trust_needs_the_right_fingerprint(admin: Web, db: Store) -> None:
    configure(admin)
    assert call(admin, "POST", "/tunnel/host-key/trust", {"fingerprint": "SHA256:" + "A" * 43}).status_code == 409
    tunnel_config.update(db, pending_host_key=JUMP_KEY)  # as a scan leaves it
    wrong = call(admin, "POST", "/tunnel/host-key/trust", {"fingerprint": "SHA256:" + "A" * 43})
    assert wrong.status_code == 400 and wrong.json["error"]["code"] == "host_key_mismatch"
    assert call(admin, "POST", "/tunnel/host-key/trust", {"fingerprint": "nonsense"}).status_code == 400
    both = call(admin, "POST", "/tunnel/host-key/trust", {"fingerprint": "x", "key": JUMP_KEY})
    assert both.status_code == 400
    assert tunnel_config.load(db).host_key is None  # type: ignore[union-attr]
    right = checked(
        admin, "POST", "/tunnel/host-key/trust", {"fingerprint": keys.parse_public_key(JUMP_KEY).fingerprint}
    )
    assert right["key"] == JUMP_KEY and tunnel_config.load(db).pending_host_key is None  # type: ignore[union-attr]


def test_scan_of_an_unreachable_jump_host_says_so(admin: Web, db: Store) -> None:
    from tests.tunnel_fixtures import free_port

    configure(admin, host="127.0.0.1", port=free_port())
    response = call(admin, "POST", "/tunnel/host-key/scan")
    assert response.status_code == 502 and response.json["error"]["code"] == "host_key_scan_failed"
    assert tunnel_config.load(db).pending_host_key is None  # type: ignore[union-attr]


def test_viewer_and_operator_see_but_cannot_change(signed_in: Callable[[str], Web], admin: Web) -> None:
    configure(admin)
    for role in ("operator", "viewer"):
        web = signed_in(role)
        assert call(web, "GET", "/tunnel").status_code == 200
        assert call(web, "POST", "/tunnel/disable").status_code == 403
        assert call(web, "POST", "/tunnel/remote-sessions", {"allowed": False}).status_code == 403
        page = text(web.get("/remote-access/"))
        assert (
            "authorized_keys" in page
            and 'id="remote-sessions-toggle"' not in page
            and 'id="save-jump-host"' not in page
        )


# -- remote sessions ---------------------------------------------------------------------------------------------


@pytest.fixture
def remote_admin(tunnel_port: None, admin: Web, browser: Callable[..., Web], db: Store) -> Web:
    """The admin signed in through the tunnel (with the second factor)."""
    secret = pyotp.random_base32()
    totp.enable(db, users.get_user(db, "admin").id, secret, totp_code(secret, -1))
    web = browser(remote=True)
    assert web.sign_in("admin", ADMIN_NEW_PASSWORD, code=totp_code(secret)).status_code == 302
    return web


def test_a_remote_session_cannot_change_the_switch_nor_the_tunnel(remote_admin: Web, admin: Web, db: Store) -> None:
    configure(admin)
    before = dump(db)
    refused = call(remote_admin, "POST", "/tunnel/remote-sessions", {"allowed": False})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "remote_switch_on_site_only"
    for method, path, body in (
        ("POST", "/tunnel", {"host": "evil.example", "user": "x", "remote_port": 20001}),
        ("POST", "/tunnel/host-key/trust", {"key": JUMP_KEY}),
        ("POST", "/tunnel/disable", None),
        ("DELETE", "/tunnel", None),
    ):
        answer = call(remote_admin, method, path, body)
        assert answer.status_code == 403 and answer.json["error"]["code"] == "tunnel_on_site_only", path
    form = remote_admin.post("/remote-access/remote-sessions", {"allowed": "0"})
    assert form.status_code == 403 and "only be switched on or off on site" in text(form)
    assert dump(db) == before
    page = text(remote_admin.get("/remote-access/"))
    assert "can only be changed on site" in page and 'id="remote-sessions-toggle"' not in page
    # A reconnect is allowed (it changes nothing) and is audited as remote.
    assert call(remote_admin, "POST", "/tunnel/reconnect").status_code == 200
    (row,) = db.query("SELECT * FROM audit WHERE action = 'tunnel.reconnect'")
    assert '"remote": true' in row["details"]
    assert 'badge warn">remote' in text(admin.get("/audit/"))


def test_the_switch_on_site_blocks_everything_through_the_tunnel(remote_admin: Web, admin: Web, db: Store) -> None:
    assert remote_admin.get("/jobs/").status_code == 200
    page = text(admin.get("/remote-access/"))
    assert 'id="remote-sessions-toggle"' in page and "Block remote sessions" in page
    assert admin.post("/remote-access/remote-sessions", {"allowed": "0"}).status_code == 302
    assert tunnel_config.remote_switch(db).allowed is False
    assert tunnel_config.remote_switch(db).changed_by == "user:admin"
    for path in ("/jobs/", "/login", "/static/app.css", "/remote-access/"):
        answer = remote_admin.get(path)
        assert answer.status_code == 403 and "switched off at the site" in text(answer), path
    api = remote_admin.api("GET", f"{API}/status")
    assert api.status_code == 403 and api.json["error"]["code"] == "remote_sessions_blocked"
    assert admin.get("/jobs/").status_code == 200  # the LAN is not affected
    assert "Allow remote sessions" in text(admin.get("/remote-access/"))
    assert admin.post("/remote-access/remote-sessions", {"allowed": "1"}).status_code == 302
    assert remote_admin.get("/jobs/").status_code == 200


# -- the page -----------------------------------------------------------------------------------------------------


def test_page_configure_scan_pin_and_partial(admin: Web, db: Store, appliance_dir: ApplianceDir) -> None:
    page = text(admin.get("/remote-access/"))
    assert "Remote access" in page and 'id="tunnel-state">disabled' in page and 'id="save-jump-host"' in page
    bad = admin.post("/remote-access/configure", {"host": "jump.example", "user": "site-a", "remote_port": "80"})
    assert bad.status_code == 400 and "1024 to 65535" in text(bad) and 'value="jump.example"' in text(bad)
    saved = admin.post(
        "/remote-access/configure",
        {"host": "jump.example", "port": "22", "user": "site-a", "remote_port": "20001", "alert_after": "5m"},
    )
    assert saved.status_code == 302
    page = text(admin.get(saved.headers["Location"]))
    assert "Ask the jump host for its key" in page and "not pinned" in page
    assert 'permitlisten="127.0.0.1:20001"' in page.replace("&#34;", '"')
    assert tunnel_config.load(db).alert_after == 300  # type: ignore[union-attr]
    tunnel_config.update(db, pending_host_key=JUMP_KEY)
    fingerprint = keys.parse_public_key(JUMP_KEY).fingerprint
    page = text(admin.get("/remote-access/"))
    assert f'id="pending-fingerprint">{fingerprint}' in page
    assert admin.post("/remote-access/trust", {"fingerprint": fingerprint}).status_code == 302
    assert f'id="pinned-fingerprint">{fingerprint}' in text(admin.get("/remote-access/"))
    partial = admin.get("/remote-access/", headers={"HX-Request": "true", "HX-Target": "tunnel-status"})
    body = text(partial)
    assert body.startswith('<article id="tunnel-status"') and "<html" not in body
    assert admin.post("/remote-access/switch", {"enabled": "0"}).status_code == 302
    assert 'id="tunnel-state">disabled' in text(admin.get("/remote-access/"))
    nav = text(admin.get("/"))
    assert 'href="/remote-access/"' in nav


def test_key_pair_is_made_once(appliance_dir: ApplianceDir) -> None:
    paths: Paths = appliance_dir.paths
    first = keys.ensure_key_pair(paths, local_runner(), "bulwark@site")
    again = keys.ensure_key_pair(paths, local_runner(), "bulwark@site")
    assert first == again and first.type == "ssh-ed25519" and first.comment == "bulwark@site"
    assert keys.tunnel_dir(paths).stat().st_mode & 0o777 == 0o700
    with pytest.raises(Exception, match="comment"):
        keys.ensure_key_pair(paths, local_runner(), "bad comment\n")


def test_metrics_families(admin: Web, db: Store) -> None:
    from appliance import metrics

    configure(admin)
    found = metrics.families(metrics.exposition(db, None).decode())
    states = {s.labels["state"]: s.value for s in found["bulwark_tunnel_state"].samples}
    assert states == {"connected": 0, "connecting": 0, "down": 1, "disabled": 0}  # configured, no bulwarkd here
    assert found["bulwark_tunnel_remote_sessions_allowed"].samples[0].value == 1
    assert {s.labels["direction"] for s in found["bulwark_tunnel_bytes"].samples} == {"sent", "received"}
    assert "bulwark_tunnel_reconnects" in found and "bulwark_tunnel_host_key_changed" in found
