"""The web UI's tunnel listener as set through ``bulwark tunnel configure --listen-port`` (validated, never the web
UI's own port, nothing changed on bad input), and the status report once the tunnel is connected (an error from
before it came up is history, not its state)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.cli import main as cli_main
from appliance.daemon import HEARTBEAT_KEY
from appliance.store import Store
from appliance.system import settings
from appliance.system.errors import InvalidInput
from appliance.tunnel import config as tunnel_config
from appliance.tunnel import status
from appliance.tunnel.state import TunnelState, save_state
from tests.unit.conftest import ApplianceDir
from tests.unit.web import TUNNEL_PORT, Web, text

JUMP = ["--host", "jump.msp.example", "--user", "site-a", "--remote-port", "20001", "--no-scan"]


def cli(appliance_dir: ApplianceDir, *args: str) -> int:
    return cli_main(["--data-dir", str(appliance_dir.paths.data_dir), "tunnel", *args])


def listen_port(appliance_dir: ApplianceDir) -> int | None:
    db = appliance_dir.open_store()
    try:
        return tunnel_config.local_port(db)
    finally:
        db.close()


def test_configure_chooses_the_listener_port(appliance_dir: ApplianceDir, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(appliance_dir, "configure", *JUMP, "--listen-port", "18444") == 0
    assert listen_port(appliance_dir) == 18444
    assert cli(appliance_dir, "configure", *JUMP) == 0  # not given again: kept
    assert listen_port(appliance_dir) == 18444
    assert cli(appliance_dir, "configure", *JUMP, "--listen-port", "18445") == 0  # changed (bulwark run follows)
    assert listen_port(appliance_dir) == 18445


def test_configure_defaults_to_8444(appliance_dir: ApplianceDir) -> None:
    assert cli(appliance_dir, "configure", *JUMP) == 0
    assert listen_port(appliance_dir) == tunnel_config.DEFAULT_LOCAL_PORT


def test_the_web_ui_port_is_refused_and_nothing_changes(
    appliance_dir: ApplianceDir, capsys: pytest.CaptureFixture[str]
) -> None:
    db = appliance_dir.open_store()
    try:
        web_port = settings.load(db).web_port  # type: ignore[union-attr]
    finally:
        db.close()
    capsys.readouterr()
    assert cli(appliance_dir, "configure", *JUMP, "--listen-port", str(web_port)) != 0
    assert "cannot be the web UI's port" in capsys.readouterr().err
    assert listen_port(appliance_dir) is None
    db = appliance_dir.open_store()
    try:
        assert tunnel_config.load(db) is None  # the jump host was not saved either
    finally:
        db.close()


@pytest.mark.parametrize("bad", ["0", "65536", "-1", "port", "84 44"])
def test_bad_listener_ports(appliance_dir: ApplianceDir, bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli(appliance_dir, "configure", *JUMP, "--listen-port", bad)
    assert exit_.value.code == 2
    assert listen_port(appliance_dir) is None


def test_check_listen_port(store: Store) -> None:
    with pytest.raises(InvalidInput, match="the appliance is not initialized"):
        tunnel_config.ensure_local_listener(store)
    for bad in (0, 70000):
        with pytest.raises(InvalidInput):
            tunnel_config.check_listen_port(store, bad)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InvalidInput, match=f"port {port} on 127.0.0.1 is used by another program"):
            tunnel_config.check_listen_port(store, port)
    assert tunnel_config.check_listen_port(store, port) == port  # free again


def test_a_connected_tunnel_shows_no_old_error(appliance_dir: ApplianceDir, tmp_path: Path) -> None:
    assert cli(appliance_dir, "configure", *JUMP) == 0
    db = appliance_dir.open_store()
    try:
        now = time.time()
        db.set_setting(HEARTBEAT_KEY, {"pid": os.getpid(), "at": now, "started_at": now})
        st = TunnelState(state="down", since=now, down_since=now, updated_at=now)
        st.last_error, st.last_error_hint, st.last_error_at = "no jump host key is pinned yet", "Pin it.", now
        save_state(db, st)
        down = status.report(db, appliance_dir.paths, probe=False)
        assert down["state"] == "down" and down["last_error"] == "no jump host key is pinned yet"
        assert down["last_error_at"] == now

        st.state, st.connected_since, st.down_since = "connected", now, None
        save_state(db, st)
        up = status.report(db, appliance_dir.paths, probe=False)
        assert up["state"] == "connected" and up["connected_since"] == now
        assert up["last_error"] is None and up["last_error_hint"] is None and up["last_error_at"] is None
    finally:
        db.close()


def test_the_listener_the_web_server_was_started_with_stays_remote(
    db: Store, browser: Callable[..., Web], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the listener port changes (settings already say the new one, gunicorn still has the old one), a
    request through the old listener must not pass for a LAN one."""
    settings.update(db, tunnel_listen_port=TUNNEL_PORT + 1)
    assert "remote-access tunnel" not in text(browser(remote=True).get("/login"))  # another port: the LAN
    monkeypatch.setenv(tunnel_config.LISTENER_ENV, str(TUNNEL_PORT))  # what `bulwark run` tells its gunicorn
    assert "remote-access tunnel" in text(browser(remote=True).get("/login"))
    assert "remote-access tunnel" not in text(browser().get("/login"))
    settings.update(db, tunnel_listen_port=None)
    assert "remote-access tunnel" in text(browser(remote=True).get("/login"))
