"""Alert channels against real servers started here on loopback: aiosmtpd (STARTTLS and implicit TLS, AUTH, a
certificate made by the test and trusted through the channel's CA setting), an HTTP server that verifies the
webhook signature on its own, syslog over UDP and TCP; a broken channel raises its own alert; and the whole
life of a real condition: a client made stale by its RPO on a zfs-fuse pool, then a new recovery point."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import alerts
from appliance.alerts import channels, delivery, outbox
from appliance.clients import jobs, rpo
from appliance.daemon import Daemon
from appliance.store import Store
from appliance.system import settings
from appliance.system.runner import local_runner
from appliance.system.settings import ApplianceSettings, PoolConfig
from tests.alert_servers import (
    SMTP_PASSWORD,
    SMTP_USER,
    MailServer,
    closed_port,
    smtp_server,
    tcp_receiver,
    udp_receiver,
    wait_until,
    webhook_server,
)
from tests.clients_fixtures import ClientEnv

HOOK_SECRET = "hook-hmac-key-1"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "bulwark.db")
    settings.save(
        store,
        ApplianceSettings(pool=PoolConfig(name="tank", layout="file"), hostname="vault-1", initialized_at=time.time()),
    )
    yield store
    store.close()


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[MailServer]:
    with smtp_server(tmp_path) as server:
        yield server


def mail_channel(store: Store, server: MailServer, *, name: str = "msp-mail", password: str = SMTP_PASSWORD,
                 security: str = "starttls", **kwargs: object) -> channels.Channel:  # fmt: skip
    config = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": security,
        "username": SMTP_USER,
        "from": "bulwark@vault-1.example.net",
        "to": "noc@msp.example.net, oncall@msp.example.net",
        "ca_pem": server.cert_pem,
    }
    return channels.create(store, name, "email", config, secret=password, **kwargs)  # type: ignore[arg-type]


def test_mail_over_starttls_with_auth(db: Store, mail: MailServer) -> None:
    channel = mail_channel(db, mail)
    alert, _ = alerts.raise_alert(db, "test:disk", level="critical", category="pool", message="pool tank is DEGRADED")
    [done] = delivery.deliver_due(db)
    assert done.state == "sent" and done.note == "accepted for 2 of 2 recipient(s)", done
    [received] = mail.mails
    assert received.rcpt == ["noc@msp.example.net", "oncall@msp.example.net"]
    assert received.message["Subject"] == "[Bulwark vault-1] CRITICAL: pool tank is DEGRADED"
    assert f"Alert {alert.id} (test:disk)" in received.message.get_content()
    assert received.message["X-Bulwark-Delivery"] == f"vault-1:{done.id}"
    assert mail.tls_seen == [True] and mail.logins == [(SMTP_USER, True)]
    assert channels.get(db, channel.id).last_success_at is not None
    # Cleared: the resolution goes to the same place.
    alerts.clear(db, "test:disk")
    delivery.deliver_due(db)
    assert mail.subjects()[-1] == "[Bulwark vault-1] RESOLVED CRITICAL: pool tank is DEGRADED"


def test_mail_over_implicit_tls(db: Store, tmp_path: Path) -> None:
    with smtp_server(tmp_path, implicit_tls=True) as server:
        mail_channel(db, server, security="tls")
        alerts.raise_alert(db, "k", level="warning", category="test", message="over TLS")
        [done] = delivery.deliver_due(db)
        assert done.state == "sent", done.last_error
        assert server.subjects() == ["[Bulwark vault-1] WARNING: over TLS"]  # (the server speaks TLS only)


def test_untrusted_certificate_and_wrong_password_fail_loudly(db: Store, mail: MailServer) -> None:
    untrusted = mail_channel(db, mail, name="untrusted")
    channels.update(db, untrusted.id, config={"ca_pem": ""})
    wrong = mail_channel(db, mail, name="wrong-password", password="not-it")
    alerts.raise_alert(db, "k", level="warning", category="test", message="m")
    results = {channels.get(db, n.channel_id).name: n for n in delivery.deliver_due(db)}
    assert results["untrusted"].state == "pending" and "certificate not trusted" in (
        results["untrusted"].last_error or ""
    )
    assert results["wrong-password"].state == "pending" and "SMTP 535" in (results["wrong-password"].last_error or "")
    assert mail.mails == [] and mail.logins and all(who == SMTP_USER and not ok for who, ok in mail.logins)
    failing = {a.key: a for a in alerts.list_alerts(db, category="channels")}
    assert set(failing) == {f"channel:{untrusted.id}", f"channel:{wrong.id}"}
    assert "wrong-password (email) cannot deliver: SMTP 535" in failing[f"channel:{wrong.id}"].message
    assert "not-it" not in str([a.to_dict() for a in failing.values()])  # the secret never shows


def test_webhook_signed_and_retried_with_backoff(db: Store) -> None:
    with webhook_server(HOOK_SECRET) as hooks:
        hooks.fail_next = 1
        channels.create(db, "psa", "webhook", {"url": hooks.url}, secret=HOOK_SECRET, min_level="info")
        alert, _ = alerts.raise_alert(db, "k", level="info", category="test", message="hello hooks")
        t0 = time.time()
        [first] = delivery.deliver_due(db, now=t0)
        assert first.state == "pending" and first.last_error == "HTTP 500 Internal Server Error"
        assert first.not_before == pytest.approx(t0 + outbox.BACKOFF_BASE)
        assert delivery.deliver_due(db, now=t0 + outbox.BACKOFF_BASE - 1) == []  # not before the backoff
        [second] = delivery.deliver_due(db, now=t0 + outbox.BACKOFF_BASE)
        assert second.state == "sent" and second.attempts == 2 and second.note == "HTTP 204"
        assert [h.valid_signature for h in hooks.hooks] == [True, True]
        # The same delivery id on the retry, so that a receiver can drop a duplicate.
        assert len({h.headers["X-Bulwark-Delivery"] for h in hooks.hooks}) == 1
        import json

        document = json.loads(hooks.hooks[-1].body)
        assert document["event"] == "raised" and document["alert"]["id"] == alert.id
        assert document["alert"]["message"] == "hello hooks" and document["appliance"]["hostname"] == "vault-1"
        # A receiver with another key refuses it.
        hooks.secret = "someone-else"
        alerts.raise_alert(db, "k2", level="info", category="test", message="second")
        delivery.deliver_due(db, now=t0 + 100)
        assert hooks.hooks[-1].valid_signature is False


def test_syslog_udp_and_tcp(db: Store) -> None:
    with udp_receiver() as udp, tcp_receiver() as (tcp_port, tcp_lines):
        port = udp.getsockname()[1]
        channels.create(db, "siem-udp", "syslog", {"host": "127.0.0.1", "port": port}, min_level="info")
        channels.create(db, "siem-tcp", "syslog", {"host": "127.0.0.1", "port": tcp_port, "transport": "tcp",
                                                   "facility": "daemon"})  # fmt: skip
        alerts.raise_alert(db, "k", level="critical", category="test", message="syslog test")
        assert {n.state for n in delivery.deliver_due(db)} == {"sent"}
        line, _ = udp.recvfrom(65536)
        assert line.startswith(b"<130>1 ") and line.endswith(b"[Bulwark vault-1] CRITICAL: syslog test")
        framed = wait_until(lambda: tcp_lines)[0]
        length, _, message = framed.partition(b" ")
        assert int(length) == len(message) and message.startswith(b"<26>1 ")  # daemon(3)*8 + crit(2)


def test_a_broken_channel_raises_its_own_alert_delivered_elsewhere(db: Store, mail: MailServer) -> None:
    mail_channel(db, mail)
    broken = channels.create(db, "dead-hook", "webhook", {"url": f"http://127.0.0.1:{closed_port()}/x"})
    alerts.raise_alert(db, "k", level="warning", category="test", message="something")
    delivery.deliver_due(db)
    failure = alerts.get_active(db, channels.failure_key(broken.id))
    assert failure is not None and failure.alert_class == "channel.failed"
    assert failure.message.startswith("alert channel dead-hook (webhook) cannot deliver: connection refused")
    assert "retrying in 15 s" in failure.message
    delivery.deliver_due(db)  # the failure alert itself goes out by mail (not to the broken hook)
    failure_subject = "[Bulwark vault-1] WARNING: alert channel dead-hook (webhook) cannot deliver: connection refused"
    assert mail.subjects() == ["[Bulwark vault-1] WARNING: something", failure_subject + "; retrying in 15 s"]
    # Mended: its next delivery works and its alert clears (and the mail channel hears that too).
    with webhook_server("") as hooks:
        channels.update(db, broken.id, config={"url": hooks.url})
        delivery.deliver_due(db, now=time.time() + 3600)
        assert len(hooks.hooks) == 1 and "X-Bulwark-Signature" not in hooks.hooks[0].headers  # no key set
    assert alerts.get_active(db, channels.failure_key(broken.id)) is None
    delivery.deliver_due(db, now=time.time() + 3600)
    assert mail.subjects()[-1].startswith("[Bulwark vault-1] RESOLVED WARNING: alert channel dead-hook")


def test_test_send_is_one_attempt(db: Store, mail: MailServer) -> None:
    good = mail_channel(db, mail)
    bad = channels.create(db, "dead", "webhook", {"url": f"http://127.0.0.1:{closed_port()}/"})
    for channel in (good, bad):
        outbox.enqueue_test(db, channel, by="user:admin")
    results = {channels.get(db, n.channel_id).name: n for n in delivery.deliver_due(db)}
    assert results["msp-mail"].state == "sent" and results["dead"].state == "failed"
    assert mail.subjects() == ["[Bulwark vault-1] Test message for channel msp-mail"]
    assert "sent by user:admin" in mail.mails[0].message.get_content()


def test_alert_to_mail_latency_through_the_daemons_delivery_thread(db: Store, mail: MailServer) -> None:
    """bulwarkd's delivery loop (its real thread function) picks up what another connection queued."""
    mail_channel(db, mail)
    daemon = Daemon(db, None, "tank", local_runner())  # type: ignore[arg-type]  (delivery needs no ZFS)
    thread = threading.Thread(target=daemon._deliver, daemon=True)
    thread.start()
    try:
        latencies = []
        for i in range(5):
            raised = time.time()
            alerts.raise_alert(db, f"latency:{i}", level="warning", category="test", message=f"latency {i}")
            wait_until(lambda i=i: len(mail.mails) > i, timeout=10)
            latencies.append(mail.mails[i].received_at - raised)
    finally:
        daemon.stop_event.set()
        thread.join(10)
    print(f"alert-to-mail latency over STARTTLS+AUTH: {[round(x, 3) for x in latencies]} s")
    assert max(latencies) < 3.0


# -- a real condition on a real pool -----------------------------------------------------------------------------


@pytest.mark.zfs
def test_stale_client_one_alert_mail_ack_snooze_and_clear(client_env: ClientEnv, mail: MailServer) -> None:
    env = client_env
    settings.update(env.store, hostname="vault-1")
    mail_channel(env.store, mail)
    env.add("acme", rpo="5m")
    job_id = jobs.submit_snapshot(env.store, "acme", by="test")
    assert {j.id: j.state for j in env.run_jobs()}[job_id] == "succeeded"
    t0 = time.time()
    # Made stale by its RPO: checked again and again, it stays one alert and one mail.
    for minutes in (6, 7, 8):
        [status] = rpo.check_all(env.store, env.zfs, now=t0 + 60 * minutes)
        assert status.stale
        delivery.deliver_due(env.store, now=t0 + 60 * minutes)
    [alert] = alerts.list_alerts(env.store)
    assert alert.key == "rpo:acme" and alert.count == 3 and alert.alert_class == "rpo.stale"
    assert alert.message == "client acme: last good recovery point is 8 min old (RPO target 5m)"
    first = "[Bulwark vault-1] WARNING: client acme: last good recovery point is 6 min old (RPO target 5m)"
    assert mail.subjects() == [first]
    # Acknowledged: still seen, no more mail.
    alerts.acknowledge(env.store, alert.id, by="user:olivia", now=t0 + 540)
    rpo.check_all(env.store, env.zfs, now=t0 + 600)
    assert alerts.get(env.store, alert.id).status(t0 + 600) == "acknowledged"
    # Snoozed for an hour; when that runs out with the client still stale, a reminder goes out.
    alerts.snooze(env.store, alert.id, until=t0 + 4200, by="user:olivia", now=t0 + 600)
    rpo.check_all(env.store, env.zfs, now=t0 + 3000)
    assert alerts.get(env.store, alert.id).status(t0 + 3000) == "snoozed"
    delivery.deliver_due(env.store, now=t0 + 3000)
    assert len(mail.mails) == 1
    rpo.check_all(env.store, env.zfs, now=t0 + 4300)
    assert alerts.get(env.store, alert.id).status(t0 + 4300) == "active"
    delivery.deliver_due(env.store, now=t0 + 4300)
    assert mail.subjects()[-1].startswith("[Bulwark vault-1] REMINDER WARNING: client acme: last good recovery")
    # A new recovery point ends the condition: the alert clears by itself and the mail says so.
    job_id = jobs.submit_snapshot(env.store, "acme", by="test")
    assert {j.id: j.state for j in env.run_jobs()}[job_id] == "succeeded"
    [status] = rpo.check_all(env.store, env.zfs)
    assert status.state == "ok"
    assert alerts.list_alerts(env.store) == []
    cleared = alerts.get(env.store, alert.id)
    assert cleared.status() == "cleared" and cleared.cleared_at is not None
    delivery.deliver_due(env.store)
    assert mail.subjects()[-1].startswith("[Bulwark vault-1] RESOLVED WARNING: client acme")
    assert [e["event"] for e in alerts.events(env.store, alert.id)] == [
        "raised", "acknowledged", "snoozed", "reminded", "cleared"
    ]  # fmt: skip
