"""``bulwark alert …`` and ``bulwark channel …`` as real commands (child processes) on a real data directory,
with a real SMTP server and a closed port for a broken channel."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import alerts
from appliance.store import Store
from tests.alert_servers import SMTP_PASSWORD, SMTP_USER, closed_port, smtp_server
from tests.unit.conftest import ApplianceDir
from tests.unit.test_cli_users import bulwark


@pytest.fixture
def db(appliance_dir: ApplianceDir) -> Iterator[Store]:
    store = appliance_dir.open_store()
    yield store
    store.close()


def test_alert_commands(appliance_dir: ApplianceDir, db: Store) -> None:
    alert, _ = alerts.raise_alert(db, "rpo:acme", level="warning", category="rpo", message="client acme is stale")
    listed = bulwark(appliance_dir, "alert", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [shown] = json.loads(listed.stdout)
    assert (shown["id"], shown["status"], shown["message"]) == (alert.id, "active", "client acme is stale")
    assert bulwark(appliance_dir, "alert", "ack", str(alert.id)).stdout == f"alert {alert.id} acknowledged\n"
    assert json.loads(bulwark(appliance_dir, "alert", "list", "--json", "--status", "acknowledged").stdout)[0]["id"]
    snoozed = bulwark(appliance_dir, "alert", "snooze", str(alert.id), "--for", "2h", "--json")
    assert json.loads(snoozed.stdout)["snoozed_until"] == pytest.approx(time.time() + 7200, abs=30)
    bad = bulwark(appliance_dir, "alert", "snooze", str(alert.id), "--until", "yesterday-ish")
    assert bad.returncode == 3 and "not a time such as" in bad.stderr
    assert bulwark(appliance_dir, "alert", "unsnooze", str(alert.id)).returncode == 0
    missing = bulwark(appliance_dir, "alert", "ack", "999")
    assert missing.returncode == 4 and "There is no alert 999." in missing.stderr
    alerts.clear(db, "rpo:acme")
    assert json.loads(bulwark(appliance_dir, "alert", "list", "--json").stdout) == []
    history = json.loads(bulwark(appliance_dir, "alert", "list", "--all", "--json").stdout)
    assert [a["status"] for a in history] == ["cleared"]
    detail = json.loads(bulwark(appliance_dir, "alert", "show", str(alert.id), "--json").stdout)
    assert [e["event"] for e in detail["events"]] == ["raised", "acknowledged", "snoozed", "unsnoozed", "cleared"]
    assert detail["events"][1]["actor"] == "cli"
    conflict = bulwark(appliance_dir, "alert", "ack", str(alert.id))
    assert conflict.returncode != 0 and "has already cleared" in conflict.stderr


def test_channel_commands_and_test_send(appliance_dir: ApplianceDir, db: Store, tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server:
        ca = tmp_path / "smtp-ca.pem"
        ca.write_text(server.cert_pem)
        added = bulwark(
            appliance_dir, "channel", "add", "msp-mail", "--kind", "email", "--host", "127.0.0.1",
            "--port", str(server.port), "--username", SMTP_USER, "--from", "bulwark@example.net",
            "--to", "noc@example.net", "--ca-file", str(ca), "--secret-stdin", "--json",
            stdin=SMTP_PASSWORD + "\n",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["secret"] == "********" and SMTP_PASSWORD not in added.stdout
        broken = bulwark(appliance_dir, "channel", "add", "dead-hook", "--kind", "webhook",
                         "--url", f"http://127.0.0.1:{closed_port()}/")  # fmt: skip
        assert broken.returncode == 0, broken.stderr
        listing = bulwark(appliance_dir, "channel", "list")
        assert "msp-mail" in listing.stdout and "dead-hook" in listing.stdout and SMTP_PASSWORD not in listing.stdout

        one = bulwark(appliance_dir, "alert", "test", "--channel", "msp-mail")
        assert one.returncode == 0, one.stderr
        assert "msp-mail" in one.stdout and " sent " in one.stdout
        assert server.subjects() == ["[Bulwark bulwark-test] Test message for channel msp-mail"]
        both = bulwark(appliance_dir, "alert", "test", "--json")
        assert both.returncode == 17 and "1 of 2 test message(s) could not be delivered" in both.stderr
        results = {r["channel"]: r for r in json.loads(both.stdout)}
        assert results["msp-mail"]["state"] == "sent" and results["dead-hook"]["state"] == "failed"
        assert results["dead-hook"]["last_error"] == "connection refused"
        # The broken channel raised its own alert, which the mail channel carries.
        [failing] = alerts.list_alerts(db, category="channels")
        assert failing.message.startswith("alert channel dead-hook (webhook) cannot deliver: connection refused")

        bad = bulwark(appliance_dir, "channel", "add", "x", "--kind", "webhook", "--url", "gopher://h/")
        assert bad.returncode == 3 and "must be an http:// or https:// address" in bad.stderr
        assert bulwark(appliance_dir, "channel", "set", "dead-hook", "--disable").returncode == 0
        assert bulwark(appliance_dir, "channel", "remove", "dead-hook").returncode == 0
        assert alerts.list_alerts(db, category="channels") == []  # its failure alert went with it
        names = [c["name"] for c in json.loads(bulwark(appliance_dir, "channel", "list", "--json").stdout)]
        assert names == ["msp-mail"]
