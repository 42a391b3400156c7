"""Report computations (RPO met %, gaps, counts) on recorded history, the printable HTML, and /metrics parsed
by prometheus-client's own parser."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from appliance import alerts, metrics
from appliance.clients import service
from appliance.clients.model import Client, ClientSettings
from appliance.jobs import queue
from appliance.reports import history, render, sla
from appliance.store import Store
from tests.unit.conftest import ApplianceDir
from tests.unit.test_cli_users import bulwark

H = 3600.0
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp()


def test_rpo_met_fraction_by_hand() -> None:
    # Added at 0, target 1 h, period 0..10 h; points at 0.5 h, 1 h, 4 h: met 0..2 h and 4..5 h = 3 of 10 h.
    assert sla.rpo_met_fraction([0.5 * H, H, 4 * H], H, 0, 10 * H, 0) == pytest.approx(0.3)
    # The first target-long stretch after being added counts as met even without a point.
    assert sla.rpo_met_fraction([], H, 0, 4 * H, 2 * H) == pytest.approx(0.5)
    assert sla.rpo_met_fraction([], H, 0, 4 * H, 5 * H) is None  # added after the period
    assert sla.longest_gap([0.5 * H, H, 4 * H], 0, 10 * H, 0) == 6 * H


@given(
    st.lists(st.floats(0, 100, allow_nan=False), max_size=30),
    st.floats(0.5, 20),
    st.floats(0, 50),
    st.floats(51, 120),
)
def test_rpo_met_fraction_matches_a_sampled_oracle(times: list[float], target: float, start: float, end: float) -> None:
    fraction = sla.rpo_met_fraction(times, target, start, end, 0.0)
    assert fraction is not None and 0.0 <= fraction <= 1.0
    steps = 2000
    met = 0
    for i in range(steps):
        t = start + (end - start) * (i + 0.5) / steps
        before = [p for p in times if p <= t] + [0.0]
        met += t - max(before) <= target
    assert fraction == pytest.approx(met / steps, abs=0.02)


def add_client(store: Store, name: str, *, rpo: int = 3600, created_at: float = T0) -> Client:
    client = Client(name, str(uuid.uuid4()), f"tank/clients/{name}", "active",
                    ClientSettings.build(kind="smb", rpo=rpo, schedule="off"), created_at, created_at)  # fmt: skip
    service.save_row(store, client)
    return client


def seen(store: Store, client: str, at: float, verified: str = "verified", gone: float | None = None) -> None:
    snap = f"tank/clients/{client}/share@bw-{int(at)}"
    with store.write() as conn:
        conn.execute(
            "INSERT INTO point_history (snapshot, client, area, created_at, source, verified, first_seen_at, gone_at) "
            "VALUES (?, ?, 'share', ?, 'schedule', ?, ?, ?)",
            (snap, client, at, verified, at, gone),
        )


def test_client_report_from_history(store: Store) -> None:
    add_client(store, "acme", rpo=int(6 * H), created_at=T0)
    # A point every 4 h for 10 days, except a 20 h outage on day 5; one failed verification; an old one pruned.
    times = [T0 + i * 4 * H for i in range(60) if not (120 * H < i * 4 * H < 140 * H)]
    for t in times:
        seen(store, "acme", t, verified="failed" if t == times[10] else "verified",
             gone=T0 + 9 * 86400 if t < T0 + 86400 else None)  # fmt: skip
    for day in range(10):
        history.record_usage(store, "acme", (10 + day) * 1024**3, day * 6, T0 + day * 86400)
    alerts.raise_alert(store, "rpo:acme", level="warning", category="rpo", message="client acme: stale",
                       subject="client:acme", now=T0 + 5 * 86400)  # fmt: skip
    report = sla.client_report(store, "acme", days=10, now=T0 + 10 * 86400)
    assert report.points_made == len(times) == 56
    assert report.verification == {"verified": 55, "unverified": 0, "failed": 1}
    assert report.points_by_source == {"schedule": 56}
    # Not met: the outage (points at 120 h and 140 h: 14 h past the 6 h target) and around the point that
    # failed verification (36 h to 44 h: 2 h). Of 240 h, 16 h not met. Pruned points still count.
    assert report.rpo_met_percent == pytest.approx(100 * (240 - 16) / 240, abs=0.01)
    assert report.longest_gap_seconds == 20 * H
    assert report.rpo_state == "ok" and report.last_good_at == times[-1]
    assert report.used_bytes == 19 * 1024**3 and report.used_change_bytes == 9 * 1024**3
    assert report.alerts_in_period == 1 and [a["message"] for a in report.open_alerts] == ["client acme: stale"]

    page = render.client_document(report)
    assert "<h1>Backup report: acme</h1>" in page and "93.3 %" in page and "@media print" in page
    assert '<svg class="usage-chart"' in page and "<polyline" in page and "Storage used by acme" in page
    assert "Within RPO target (6h): 93.33 %" in render.client_text(report)
    summary = sla.summary(store, days=10, now=T0 + 10 * 86400)
    assert [c.client for c in summary.clients] == ["acme"] and summary.rpo_met_percent == report.rpo_met_percent
    assert "acme" in render.summary_document(summary) and summary.to_dict()["alerts"]["open"] == 1


def test_report_of_a_client_without_history(store: Store) -> None:
    add_client(store, "new", rpo=int(H), created_at=T0)
    report = sla.client_report(store, "new", days=1, now=T0 + 1800)
    assert (report.points_made, report.rpo_state, report.rpo_met_percent) == (0, "no_point", 100.0)
    assert "Not enough history yet" in render.client_document(report)
    with pytest.raises(Exception, match="nope"):
        sla.client_report(store, "nope")


def test_record_points_marks_gone(store: Store) -> None:
    from appliance.clients.points import RecoveryPoint

    def point(t: float) -> RecoveryPoint:
        return RecoveryPoint("acme", "share", f"tank/clients/acme/share@bw-{int(t)}", t, 0, 0, "manual", None, None,
                             False, None, "unverified", 0, int(t))  # fmt: skip

    history.record_points(store, "acme", [point(T0), point(T0 + 60)], T0 + 100)
    history.record_points(store, "acme", [point(T0 + 60)], T0 + 200)
    found = {p.created_at: p.gone_at for p in history.points_seen(store, "acme")}
    assert found == {T0: T0 + 200, T0 + 60: None}
    assert history.last_good(store) == {"acme": T0 + 60}


# -- metrics ---------------------------------------------------------------------------------------------------

FAMILIES = {
    "bulwark_appliance_info", "bulwark_daemon_up", "bulwark_pool_up", "bulwark_pool_health", "bulwark_pool_size_bytes",
    "bulwark_pool_allocated_bytes", "bulwark_pool_free_bytes", "bulwark_pool_capacity_ratio", "bulwark_pool_vdev_state",
    "bulwark_pool_vdev_errors", "bulwark_disk_smart_healthy", "bulwark_disk_temperature_celsius",
    "bulwark_client_last_recovery_point_timestamp_seconds", "bulwark_client_last_recovery_point_age_seconds",
    "bulwark_client_rpo_target_seconds", "bulwark_client_rpo_met", "bulwark_client_used_bytes",
    "bulwark_client_history_timestamp_seconds", "bulwark_jobs", "bulwark_jobs_finished", "bulwark_job_duration_seconds",
    "bulwark_job_last_success_timestamp_seconds", "bulwark_alerts_open", "bulwark_alert_notifications",
    "bulwark_offsite_backlog_bytes",
}  # fmt: skip


def test_metrics_parse_and_carry_the_families(store: Store) -> None:
    add_client(store, "acme", rpo=int(H), created_at=T0)
    add_client(store, "late", rpo=int(H), created_at=T0 - 60)
    seen(store, "acme", T0 + 3000)
    history.record_usage(store, "acme", 5 * 1024**3, 1, T0 + 3000)
    job = queue.enqueue(store, "pool.scrub", {"pool": "tank"}, created_by="test")
    queue.claim(store, ["pool.scrub"], now=T0)
    with store.write() as conn:
        conn.execute("UPDATE jobs SET state = 'succeeded', finished_at = ? WHERE id = ?", (T0 + 42, job))
    alerts.raise_alert(store, "k", level="critical", category="pool", message="m", now=T0)
    text = metrics.exposition(store, None, now=T0 + 3600).decode()
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert FAMILIES <= set(parsed)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in parsed.values() for s in f.samples}
    assert samples[("bulwark_client_last_recovery_point_age_seconds", (("client", "acme"),))] == 600
    assert samples[("bulwark_client_rpo_met", (("client", "acme"),))] == 1
    assert samples[("bulwark_client_rpo_met", (("client", "late"),))] == 0  # no point, added over 1 h ago
    assert samples[("bulwark_client_used_bytes", (("client", "acme"),))] == 5 * 1024**3
    assert samples[("bulwark_jobs_finished_total", (("kind", "pool.scrub"), ("state", "succeeded")))] == 1
    assert samples[("bulwark_job_duration_seconds_bucket", (("kind", "pool.scrub"), ("le", "60.0")))] == 1
    assert samples[("bulwark_job_duration_seconds_bucket", (("kind", "pool.scrub"), ("le", "30.0")))] == 0
    assert samples[("bulwark_alerts_open", (("level", "critical"), ("status", "active")))] == 1
    assert samples[("bulwark_daemon_up", ())] == 0
    # No disk polled yet: the families exist, without a single sample (tests/unit/disks has the samples).
    for name in ("bulwark_disk_smart_healthy", "bulwark_disk_temperature_celsius"):
        assert parsed[name].samples == []


def test_metrics_token(store: Store) -> None:
    assert metrics.allowed(store, None) and not metrics.token_required(store)
    token = metrics.new_token(store)
    assert token.startswith("bwm_") and store.get_setting(metrics.TOKEN_KEY) != token
    assert metrics.allowed(store, f"Bearer {token}")
    for header in (None, "", "Bearer", f"Bearer {token}x", token[:-1]):
        assert not metrics.allowed(store, header)
    metrics.clear_token(store)
    assert metrics.allowed(store, None)


def test_report_and_metrics_commands(appliance_dir: ApplianceDir, tmp_path: Path) -> None:
    db = appliance_dir.open_store()
    try:
        add_client(db, "acme", rpo=int(H), created_at=T0)
        seen(db, "acme", T0 + 60)
    finally:
        db.close()
    as_json = bulwark(appliance_dir, "report", "client", "acme", "--days", "7", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["client"] == "acme" and json.loads(as_json.stdout)["period"]["days"] == 7
    page = tmp_path / "acme.html"
    written = bulwark(appliance_dir, "report", "client", "acme", "--html", str(page))
    assert written.returncode == 0 and "<h1>Backup report: acme</h1>" in page.read_text()
    missing = bulwark(appliance_dir, "report", "client", "nope")
    assert missing.returncode == 4 and "nope" in missing.stderr
    assert "acme" in bulwark(appliance_dir, "report", "summary").stdout
    token = bulwark(appliance_dir, "metrics", "token")
    assert token.returncode == 0 and token.stdout.startswith("bwm_") and "shown only once" in token.stderr
    db = appliance_dir.open_store()
    try:
        assert metrics.allowed(db, "Bearer " + token.stdout.strip()) and not metrics.allowed(db, None)
    finally:
        db.close()
    assert bulwark(appliance_dir, "metrics", "token", "--clear").returncode == 0
