"""Reports and metrics on a real zfs-fuse pool: history recorded from real recovery points, a scheduled report
mailed to a real SMTP server, and /metrics with the pool's real state parsed by prometheus-client."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance import metrics
from appliance.alerts import delivery
from appliance.clients import jobs
from appliance.disks import pool as pool_service
from appliance.reports import history, schedule, sla
from appliance.system import settings
from appliance.zfs import pools
from tests.alert_servers import smtp_server
from tests.clients_fixtures import ClientEnv
from tests.integration.test_alert_channels import mail_channel

pytestmark = pytest.mark.zfs


def snapshot(env: ClientEnv, name: str) -> None:
    job_id = jobs.submit_snapshot(env.store, name, by="test")
    assert {j.id: j.state for j in env.run_jobs()}[job_id] == "succeeded"


def test_report_from_real_points_mailed_on_schedule(client_env: ClientEnv, tmp_path: Path) -> None:
    env = client_env
    settings.update(env.store, hostname="vault-1")
    env.add("acme", rpo="1h")
    (env.live("acme") / "data.bin").write_bytes(b"x" * 3 * 1024 * 1024)
    snapshot(env, "acme")
    history.sample(env.store, env.zfs, usage=True)
    (env.live("acme") / "more.bin").write_bytes(b"y" * 2 * 1024 * 1024)
    snapshot(env, "acme")
    history.sample(env.store, env.zfs, now=time.time() + 1, usage=True)
    report = sla.client_report(env.store, "acme", days=1, now=time.time() + 2)
    assert report.points_made == 2 and report.verification["unverified"] == 2 and report.rpo_state == "ok"
    assert report.rpo_met_percent == 100.0 and len(report.usage) == 2
    assert report.used_change_bytes is not None and report.used_change_bytes > 1024 * 1024
    with smtp_server(tmp_path) as server:
        channel = mail_channel(env.store, server)
        made = schedule.add(env.store, "acme", channel.name, "weekly")
        schedule.add(env.store, None, channel.name, "daily", first_at=time.time() + 3600)  # not due yet
        assert len(schedule.send_due(env.store)) == 1
        assert schedule.send_due(env.store) == []  # next week
        [done] = delivery.deliver_due(env.store)
        assert done.state == "sent", done.last_error
        [mail] = server.mails
        assert mail.message["Subject"] == "[Bulwark vault-1] Backup report: acme, last 7 day(s)"
        html = mail.message.get_body(("html",)).get_content()
        text = mail.message.get_body(("plain",)).get_content()
        assert "<h1>Backup report: acme</h1>" in html and "<svg" in html and "@media print" in html
        assert "Recovery points made: 2" in text
        [again] = [s for s in schedule.list_schedules(env.store) if s.id == made.id]
        assert again.next_at > time.time() + 6 * 86400 and again.last_sent_at is not None


def test_metrics_of_a_real_pool_and_client(client_env: ClientEnv) -> None:
    env = client_env
    env.add("acme", rpo="1h")
    snapshot(env, "acme")
    history.sample(env.store, env.zfs, usage=True)
    pool_service.record_sample(env.store, pools.get_pool(env.zfs, env.pool.name))
    started = time.monotonic()
    text = metrics.exposition(env.store, env.zfs).decode()
    seconds = time.monotonic() - started
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in parsed.values() for s in f.samples}
    name = env.pool.name
    assert values[("bulwark_pool_up", (("pool", name),))] == 1
    assert values[("bulwark_pool_health", (("health", "ONLINE"), ("pool", name)))] == 1
    assert values[("bulwark_pool_health", (("health", "DEGRADED"), ("pool", name)))] == 0
    assert values[("bulwark_pool_size_bytes", (("pool", name),))] > 200 * 1024 * 1024
    devices = [s for s in parsed["bulwark_pool_vdev_state"].samples if s.labels["kind"] == "disk"]
    assert [s.labels["state"] for s in devices] == ["ONLINE"]
    assert {s.labels["type"] for s in parsed["bulwark_pool_vdev_errors"].samples} == {"read", "write", "checksum"}
    assert values[("bulwark_client_rpo_met", (("client", "acme"),))] == 1
    assert values[("bulwark_client_last_recovery_point_age_seconds", (("client", "acme"),))] < 60
    assert values[("bulwark_jobs_finished_total", (("kind", "client.snapshot"), ("state", "succeeded")))] == 1
    print(f"/metrics with a real pool: {len(text)} bytes in {seconds * 1000:.0f} ms")
