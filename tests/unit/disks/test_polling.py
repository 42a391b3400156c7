"""SMART polling: verdicts and history kept in SQLite, alerts raised by level and cleared on recovery, and
the self-test schedule — through a replaying ``smartctl`` (recorded outputs of real drives)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import alerts
from appliance.disks import polling
from appliance.disks.inventory import Disk
from appliance.store import Store
from appliance.system.errors import InvalidInput
from appliance.system.runner import local_runner
from tests.unit.disks.conftest import Replay

DAY = 86400.0
SDC = Disk("sdc", "/dev/sdc", "Hitachi HDS721050DLE630", "MSK423Y20S3HBC", "0x5000cca37fca81a8", 500 << 30, True, "ata")
LOOP = Disk("loop3", "/dev/loop3", "", "", "", 0, False, "loop")


def test_failing_then_recovered(store: Store, replay: Replay) -> None:
    replay("ata_hitachi_hds721050dle630_failing.json")
    [reading] = polling.poll(store, local_runner(), [SDC, LOOP], now=1000.0)  # the loop device is skipped
    assert reading.key == "wwn:0x5000cca37fca81a8" and reading.verdict.verdict == "failing"
    [row] = polling.latest(store)
    assert (row["name"], row["verdict"], row["temperature"], row["exit_status"]) == ("sdc", "failing", 25, 216)
    assert row["reasons"][0].startswith("failing:") and row["report"]["attributes"]
    [alert] = alerts.list_alerts(store)
    assert (alert.level, alert.category, alert.key) == ("critical", "disk", "disk:smart:wwn:0x5000cca37fca81a8")
    assert alert.message.startswith("disk sdc (Hitachi HDS721050DLE630 MSK423Y20S3HBC) is failing: ")
    [sample] = polling.samples(store, reading.key, 0)
    assert sample["counters"]["5"] == 1975 and sample["counters"]["197"] == 8 and sample["temperature"] == 25
    # the same identity now reads healthy (the drive was swapped for a good one with the same WWN in this test)
    replay("ata_samsung_860evo_healthy.json")
    polling.poll(store, local_runner(), [SDC], now=2000.0)
    assert alerts.list_alerts(store) == [] and alerts.get(store, alert.id).status() == "cleared"
    assert [s["verdict"] for s in polling.samples(store, reading.key, 0)] == ["failing", "healthy"]
    assert polling.latest_for(store, "sdc")["verdict"] == "healthy"  # type: ignore[index]


def test_levels_by_verdict(store: Store, replay: Replay) -> None:
    replay("nvme_samsung_970evo_media_errors_warning.json")
    nvme = Disk("nvme0n1", "/dev/nvme0n1", "", "S466NX0M776250H", "", 0, False, "nvme")
    polling.poll(store, local_runner(), [nvme], now=10.0)
    [alert] = alerts.list_alerts(store)
    assert alert.level == "warning" and "7 media and data integrity errors" in alert.message
    assert polling.samples(store, "serial:S466NX0M776250H", 0)[0]["counters"]["media_errors"] == 7
    replay("open_failed_unknown.json")
    polling.poll(store, local_runner(), [nvme], now=20.0)
    [alert] = alerts.list_alerts(store)
    assert alert.level == "info" and "is unknown" in alert.message  # unreadable is never healthy


def test_a_virtual_disk_is_unknown_without_an_alert(store: Store, replay: Replay) -> None:
    replay("open_failed_unknown.json")  # what smartctl says of a virtio disk: no device type to detect
    vda = Disk("vda", "/dev/vda", "", "", "", 256 << 30, True, "virtio")
    [reading] = polling.poll(store, local_runner(), [vda], now=1.0)
    assert reading.verdict.verdict == "unknown" and polling.latest_for(store, "vda")["verdict"] == "unknown"  # type: ignore[index]
    assert alerts.list_alerts(store) == []
    replay("ata_hitachi_hds721050dle630_failing.json")  # a readable failing report still alerts
    polling.poll(store, local_runner(), [vda], now=2.0)
    assert [a.level for a in alerts.list_alerts(store)] == ["critical"]
    assert polling.due_tests(store, [vda], now=400 * DAY) == []  # and no scheduled self-test to fail


def test_missing_smartctl_output_is_unknown(store: Store, replay: Replay, tmp_path: Path) -> None:
    replay("ata_samsung_860evo_healthy.json")
    (tmp_path / "bin" / "replay.json").write_text("garbage")
    [reading] = polling.poll(store, local_runner(), [SDC], now=1.0)
    assert reading.verdict.verdict == "unknown" and "smartctl failed" in reading.verdict.reasons[0]


def test_selftest_schedule(store: Store, replay: Replay) -> None:
    log = replay("ata_wdc_wd140edfz_healthy.json")
    t0 = 100 * DAY
    assert polling.due_tests(store, [SDC, LOOP], now=t0) == [(SDC, "long")]
    assert polling.run_due_tests(store, local_runner(), [SDC], now=t0) == 1
    assert log.read_text().split() == ["-j", "-t", "long", "/dev/sdc"]
    assert polling.due_tests(store, [SDC], now=t0 + 6 * DAY) == []
    assert polling.due_tests(store, [SDC], now=t0 + 7 * DAY) == [(SDC, "short")]
    polling.run_due_tests(store, local_runner(), [SDC], now=t0 + 7 * DAY)
    assert polling.due_tests(store, [SDC], now=t0 + 13 * DAY) == []
    assert polling.due_tests(store, [SDC], now=t0 + 30 * DAY) == [(SDC, "long")]
    polling.set_selftest_schedule(store, 0, 0)
    assert polling.due_tests(store, [SDC], now=t0 + 400 * DAY) == []
    for bad in (-1, 366, True):
        with pytest.raises(InvalidInput):
            polling.set_selftest_schedule(store, bad, 7)
    assert polling.selftest_schedule(store) == {"short_days": 0, "long_days": 0}


def test_refused_selftest_is_recorded(store: Store, replay: Replay) -> None:
    replay("open_failed_unknown.json")
    error = polling.start_test(store, local_runner(), SDC, "short", by="admin", now=5.0)
    assert error is not None and "Open failed" in error
    [row] = store.query("SELECT kind, started_by, error FROM disk_selftests")
    assert (row["kind"], row["started_by"]) == ("short", "admin") and "Open failed" in row["error"]


def test_metrics_samples(store: Store, replay: Replay) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from appliance import metrics

    replay("ata_hitachi_hds721050dle630_failing.json")
    polling.poll(store, local_runner(), [SDC], now=1.0)
    text = metrics.exposition(store, None).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("bulwark_disk_")
    }
    labels = (("disk", "sdc"), ("serial", "MSK423Y20S3HBC"))
    assert samples[("bulwark_disk_smart_healthy", labels)] == 0
    assert samples[("bulwark_disk_temperature_celsius", labels)] == 25
    assert samples[("bulwark_disk_smart_verdict", (*labels[:1], *labels[1:], ("verdict", "failing")))] == 1
