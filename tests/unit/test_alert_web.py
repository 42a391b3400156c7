"""The Alerts pages (tabs, acknowledge, snooze, levels), channels (add, edit with the secret kept and never
shown, test send through the outbox), reports pages, /metrics with and without its token, and every alerts
API route's happy path checked against the published OpenAPI document."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from appliance import alerts, metrics
from appliance.alerts import channels, delivery, outbox
from appliance.reports import history
from appliance.store import Store
from tests.alert_servers import closed_port
from tests.alert_web_helpers import add_client_row
from tests.unit.api_fixtures import API, Api, api_rules, error_of, response_validator
from tests.unit.web import SignedIn, Web, text


@pytest.fixture
def admin(signed_in: SignedIn) -> Web:
    return signed_in("admin")


@pytest.fixture
def operator(signed_in: SignedIn) -> Web:
    return signed_in("operator")


@pytest.fixture
def viewer(signed_in: SignedIn) -> Web:
    return signed_in("viewer")


def stale(db: Store, name: str = "acme", level: str = "warning") -> alerts.Alert:
    return alerts.raise_alert(db, f"rpo:{name}", level=level, category="rpo", message=f"client {name} is stale",
                              subject=f"client:{name}")[0]  # fmt: skip


def test_alert_tabs_acknowledge_and_snooze(operator: Web, viewer: Web, db: Store) -> None:
    warning = stale(db)
    critical = stale(db, "bigco", "critical")
    page = text(operator.get("/alerts/"))
    assert "client acme is stale" in page and "client bigco is stale" in page
    assert 'class="level-critical"' in page and 'class="badge level bad">critical' in page
    assert "<strong>2</strong> need attention" in page
    assert 'id="ack-' in page and "/alerts/" in text(viewer.get("/alerts/"))
    assert 'id="ack-' not in text(viewer.get("/alerts/"))  # a viewer sees, cannot act
    assert viewer.post(f"/alerts/{warning.id}/acknowledge", {}).status_code == 403

    response = operator.post(f"/alerts/{warning.id}/acknowledge", {"next": "/alerts/?tab=active"})
    assert response.status_code == 302 and response.headers["Location"] == "/alerts/?tab=active"
    assert alerts.get(db, warning.id).acknowledged_by == "user:olivia"
    assert "client acme is stale" in text(operator.get("/alerts/?tab=acknowledged"))
    assert "client acme is stale" not in text(operator.get("/alerts/?tab=active"))

    operator.post(f"/alerts/{critical.id}/snooze", {"duration": "4h"})
    snoozed = alerts.get(db, critical.id)
    assert snoozed.status() == "snoozed" and snoozed.snoozed_until == pytest.approx(time.time() + 4 * 3600, abs=60)
    assert "snoozed until" in text(operator.get("/alerts/?tab=snoozed"))
    bad = operator.post(f"/alerts/{critical.id}/snooze", {"until": "2001-01-01T08:00"})
    assert bad.status_code == 302 and "error=" in bad.headers["Location"]
    assert "already passed" in text(operator.get(bad.headers["Location"]))
    assert alerts.get(db, critical.id).snoozed_until == snoozed.snoozed_until  # nothing changed
    operator.post(f"/alerts/{critical.id}/unsnooze", {})
    assert alerts.get(db, critical.id).status() == "active"

    alerts.clear(db, "rpo:acme")
    history_page = text(operator.get("/alerts/?tab=cleared"))
    assert "client acme is stale" in history_page and "No alert has cleared yet" not in history_page
    detail = text(operator.get(f"/alerts/{warning.id}"))
    assert "acknowledged by user:olivia" in detail and "cleared" in detail
    assert operator.get("/alerts/999").status_code == 404


def test_channels_secret_kept_and_never_shown(admin: Web, operator: Web, db: Store) -> None:
    form = {"name": "msp-mail", "kind": "email", "host": "smtp.example.net", "port": "587", "security": "starttls",
            "username": "bulwark", "from": "bulwark@example.net", "to": "noc@example.net, oncall@example.net",
            "min_level": "warning", "quiet_hours": "22:00-07:00", "secret": "hunter2-smtp", "notify_cleared": "on",
            "verify_tls": "on"}  # fmt: skip
    assert operator.post("/alerts/channels", form).status_code == 403
    response = admin.post("/alerts/channels", form)
    assert response.status_code == 302, text(response)[:500]
    channel = channels.get(db, "msp-mail")
    assert channel.secret == "hunter2-smtp" and channel.config["to"] == ["noc@example.net", "oncall@example.net"]
    listing = text(admin.get("/alerts/channels"))
    assert "msp-mail" in listing and "noc@example.net, oncall@example.net" in listing and "hunter2" not in listing
    edit = text(admin.get(f"/alerts/channels/{channel.id}"))
    assert "hunter2" not in edit and "set: leave empty to keep it" in edit
    saved = admin.post(f"/alerts/channels/{channel.id}", {**form, "secret": "", "port": "2525", "enabled": "on"})
    assert saved.status_code == 302
    channel = channels.get(db, "msp-mail")
    assert channel.secret == "hunter2-smtp" and channel.config["port"] == 2525
    # Bad input: a clear 400, nothing changed.
    before = channels.get(db, "msp-mail")
    bad = admin.post(f"/alerts/channels/{channel.id}", {**form, "port": "99999", "enabled": "on"})
    assert bad.status_code == 400 and "port 99999 is not between 1 and 65535" in text(bad)
    assert channels.get(db, "msp-mail") == before
    bad = admin.post("/alerts/channels", {**form, "name": "other", "to": "not-an-address"})
    assert bad.status_code == 400 and "is not an e-mail address" in text(bad)
    assert [c.name for c in channels.list_channels(db)] == ["msp-mail"]
    syslog = admin.post("/alerts/channels", {"name": "siem", "kind": "syslog", "syslog_host": "127.0.0.1",
                                             "syslog_port": "5514", "transport": "tcp", "facility": "local3",
                                             "min_level": "critical"})  # fmt: skip
    assert syslog.status_code == 302 and channels.get(db, "siem").config["port"] == 5514


def test_test_send_shows_its_result(admin: Web, db: Store) -> None:
    dead = channels.create(db, "dead-hook", "webhook", {"url": f"http://127.0.0.1:{closed_port()}/"})
    response = admin.post(f"/alerts/channels/{dead.id}/test", {})
    assert response.status_code == 302 and "/alerts/notifications/" in response.headers["Location"]
    page = text(admin.get(response.headers["Location"]))
    assert "Waiting for bulwarkd" in page and "hx-get" in page  # follows itself while pending
    delivery.deliver_due(db)  # what bulwarkd does
    partial = admin.get(response.headers["Location"], headers={"HX-Request": "true", "HX-Target": "notification-state"})
    body = text(partial)
    assert "Not delivered: connection refused" in body and "hx-get" not in body and "<html" not in body
    assert "dead-hook" in text(admin.get("/alerts/?tab=active"))  # its failure is an alert


def test_metrics_endpoint_and_token(browser: Any, admin: Web, db: Store) -> None:
    anonymous = browser()
    response = anonymous.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    names = {f.name for f in text_string_to_metric_families(text(response))}
    assert {"bulwark_pool_up", "bulwark_client_rpo_met", "bulwark_alerts_open"} <= names
    page = admin.post("/alerts/metrics-token", {"action": "new"})
    token = re.search(r'<code id="shown-once">([^<]+)</code>', text(page))
    assert token is not None and metrics.allowed(db, f"Bearer {token.group(1)}")
    assert anonymous.get("/metrics").status_code == 401
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert anonymous.get("/metrics", headers={"Authorization": f"Bearer {token.group(1)}"}).status_code == 200
    admin.post("/alerts/metrics-token", {"action": "clear"})
    assert anonymous.get("/metrics").status_code == 200


def test_reports_pages(admin: Web, viewer: Web, db: Store) -> None:
    add_client_row(db, "acme")
    now = time.time()
    with db.write() as conn:
        conn.execute(
            "INSERT INTO point_history VALUES ('tank/clients/acme/share@bw-1', 'acme', 'share', ?, 'schedule', "
            "'verified', ?, NULL)",
            (now - 600, now - 600),
        )
    history.record_usage(db, "acme", 3 * 1024**3, 1, now - 7200)
    history.record_usage(db, "acme", 4 * 1024**3, 1, now - 60)
    summary = text(viewer.get("/reports/"))
    assert "Appliance summary" in summary and 'href="/reports/clients/acme?days=30"' in summary
    report = text(viewer.get("/reports/clients/acme?days=7"))
    assert "<h1>Backup report: acme</h1>" in report and "<polyline" in report and "alerts.css" in report
    assert "4.0 GiB" in report or "4 GiB" in report
    assert viewer.get("/reports/clients/nope").status_code == 404
    channel = channels.create(db, "mail", "email", {"host": "h", "from": "a@example.net", "to": "b@example.net"})
    assert (
        viewer.post("/reports/schedules", {"client": "acme", "channel": "mail", "every": "weekly"}).status_code == 403
    )
    assert admin.post("/reports/schedules", {"client": "acme", "channel": "mail", "every": "weekly"}).status_code == 302
    assert "client acme" in text(admin.get("/reports/")) and channel.id


# -- the API: every route's happy path against the published document ----------------------------------------


@pytest.fixture
def document(api: Api) -> dict[str, Any]:
    response = api.call("GET", f"{API}/openapi.json", role="viewer")
    body: dict[str, Any] = response.json
    return body


def check(document: dict[str, Any], response: Any, template: str, method: str, status: int) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    validator = response_validator(document, API + template, method, status)
    errors = [e.message for e in validator.iter_errors(response.json)]
    assert errors == [], errors
    return response.json


def test_alert_api_happy_paths(api: Api, document: dict[str, Any], app: Flask) -> None:
    db = api.db
    alert = stale(db)
    add_client_row(db, "acme")
    done: set[tuple[str, str]] = set()

    def call(method: str, path: str, template: str, status: int = 200, **kwargs: Any) -> Any:
        done.add((API + template, method))
        return check(document, api.call(method, API + path, **kwargs), template, method, status)

    assert [a["id"] for a in call("GET", "/alerts/status/active", "/alerts/status/{status}")["alerts"]] == [alert.id]
    assert call("GET", "/alerts/counts", "/alerts/counts")["active"] == 1
    assert "rpo.stale" in {c["name"] for c in call("GET", "/alerts/classes", "/alerts/classes")["classes"]}
    assert call("POST", f"/alerts/{alert.id}/acknowledge", "/alerts/{alert_id}/acknowledge")["status"] == "acknowledged"
    snoozed = call("POST", f"/alerts/{alert.id}/snooze", "/alerts/{alert_id}/snooze", json={"duration": "2h"})
    assert snoozed["status"] == "snoozed" and snoozed["snoozed_by"].startswith("token:")
    assert call("POST", f"/alerts/{alert.id}/unsnooze", "/alerts/{alert_id}/unsnooze")["status"] == "active"
    detail = call("GET", f"/alerts/{alert.id}", "/alerts/{alert_id}")
    assert [e["event"] for e in detail["events"]] == ["raised", "acknowledged", "snoozed", "unsnoozed"]

    body = {"name": "psa", "kind": "webhook", "config": {"url": "https://psa.example.net/hook"}, "secret": "k3y",
            "min_level": "info", "quiet_hours": "22:00-07:00"}  # fmt: skip
    made = call("POST", "/channels", "/channels", 201, json=body)
    assert made["secret"] == "********" and made["secret_set"] and "k3y" not in str(made)
    cid = made["id"]
    assert [c["name"] for c in call("GET", "/channels", "/channels")["channels"]] == ["psa"]
    assert call("GET", f"/channels/{cid}", "/channels/{channel_id}")["quiet_hours"] == "22:00-07:00"
    patched = call("PATCH", f"/channels/{cid}", "/channels/{channel_id}", json={"min_level": "critical",
                                                                                 "quiet_hours": ""})  # fmt: skip
    assert patched["min_level"] == "critical" and patched["quiet_hours"] is None and patched["secret_set"]
    queued = call("POST", f"/channels/{cid}/test", "/channels/{channel_id}/test", 202)["notification"]
    assert call("GET", f"/notifications/{queued}", "/notifications/{notification_id}")["state"] == "pending"

    mail = channels.create(db, "mail", "email", {"host": "h", "from": "a@example.net", "to": "b@example.net"})
    assert call("GET", "/reports/clients/acme?days=7", "/reports/clients/{client}")["period"]["days"] == 7
    assert call("GET", "/reports/summary?days=30", "/reports/summary")["days"] == 30
    sched = call("POST", "/report-schedules", "/report-schedules", 201, json={"client": "acme", "channel": "mail"})
    assert sched["every"] == "weekly" and sched["channel_id"] == mail.id
    assert len(call("GET", "/report-schedules", "/report-schedules")["schedules"]) == 1
    call("DELETE", f"/report-schedules/{sched['id']}", "/report-schedules/{schedule_id}")
    token = call("POST", "/metrics/token", "/metrics/token", 201)["token"]
    assert metrics.allowed(db, f"Bearer {token}")
    call("DELETE", "/metrics/token", "/metrics/token")
    call("DELETE", f"/channels/{cid}", "/channels/{channel_id}")
    assert outbox.list_notifications(db, channel_id=cid) == []

    mine = ("/api/v1/alerts/", "/api/v1/channels", "/api/v1/notifications", "/api/v1/report", "/api/v1/metrics")

    assert {r for r in api_rules(app) if r[0].startswith(mine)} == done


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/alerts/999/acknowledge", None, 404, "alert_not_found"),
        ("POST", "/alerts/{alert}/snooze", {"duration": "4 hours"}, 400, "invalid_snooze"),
        ("POST", "/alerts/{alert}/snooze", {}, 400, "invalid_snooze"),
        ("POST", "/alerts/{alert}/snooze", {"until": "tomorrow"}, 400, "invalid_snooze"),
        ("GET", "/alerts/status/bogus", None, 404, "not_found"),
        ("POST", "/channels", {"name": "x", "kind": "webhook", "config": {"url": "ftp://x/"}}, 400, "invalid_channel"),
        ("POST", "/channels", {"name": "Bad", "kind": "webhook", "config": {}}, 400, "invalid_input"),
        ("PATCH", "/channels/999", {"min_level": "info"}, 404, "channel_not_found"),
        ("GET", "/reports/clients/nope", None, 404, "client_not_found"),
        ("POST", "/report-schedules", {"channel": "nope"}, 404, "channel_not_found"),
    ],
)
def test_alert_api_errors_change_nothing(api: Api, method: str, path: str, body: Any, status: int, code: str) -> None:
    from tests.unit.web import dump

    def state() -> list[str]:  # (the token's last use is recorded on every call)
        return [line for line in dump(api.db) if "api_tokens" not in line]

    alert = stale(api.db)
    before = state()
    response = api.call(method, API + path.replace("{alert}", str(alert.id)), json=body)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert error_of(response)["code"] == code
    assert state() == before


@pytest.mark.parametrize(("role", "expected"), [("viewer", 403), ("operator", 200), ("admin", 200)])
def test_alert_api_roles(api: Api, role: str, expected: int) -> None:
    alert = stale(api.db)
    assert api.call("POST", f"{API}/alerts/{alert.id}/acknowledge", role=role).status_code == expected
    body = {"name": "x", "kind": "webhook", "config": {"url": "http://127.0.0.1/"}}
    creating = api.call("POST", f"{API}/channels", role=role, json=body)
    assert creating.status_code == (201 if role == "admin" else 403)
