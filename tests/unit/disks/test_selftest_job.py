"""The ``disk.selftest`` job through a replaying ``smartctl`` that plays recorded real outputs in sequence:
idle drive, test accepted, test in progress (10% left), then a drive whose log shows the test failed."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from appliance import alerts
from appliance.disks import polling, selftest_job
from appliance.jobs import base, queue
from appliance.jobs.worker import Worker
from appliance.store import Store
from appliance.system import runner as runner_module
from appliance.system.errors import InvalidInput
from tests.unit.disks.conftest import DATA
from tests.unit.job_helpers import wait_final, wait_for

# Call n prints step n's recording (the last one from then on) and exits with its recorded status.
SEQUENCE = """#!/bin/sh
here=$(dirname "$0")
printf '%s\\n' "$*" >> "$here/argv.log"
n=$(cat "$here/calls" 2>/dev/null || echo 0)
echo $((n + 1)) > "$here/calls"
step="$here/step.$n"
[ -e "$step.json" ] || step="$here/step.last"
cat "$step.json"
exit $(cat "$step.status")
"""


@pytest.fixture
def sequence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "smartctl").write_text(SEQUENCE)
    (bindir / "smartctl").chmod(0o755)
    monkeypatch.setattr(runner_module, "SYSTEM_PATH", f"{bindir}:{runner_module.SYSTEM_PATH}")
    monkeypatch.setattr(base.get_kind("disk.selftest"), "poll_seconds", 0.05)

    def load(*names: str) -> Path:
        for i, name in enumerate(names):
            stem = "last" if i == len(names) - 1 else str(i)
            data = (DATA / name).read_bytes()
            (bindir / f"step.{stem}.json").write_bytes(data)
            (bindir / f"step.{stem}.status").write_text(str(json.loads(data)["smartctl"]["exit_status"]))
        return bindir / "argv.log"

    return load


def _run(store: Store, params: dict[str, str]) -> int:
    job_id = base.submit(store, "disk.selftest", params, created_by="user:olivia")
    job = queue.claim(store, ["disk.selftest"])
    assert job is not None and job.id == job_id
    worker = Worker(0, store, None, threading.Event(), threading.Event())  # type: ignore[arg-type]
    thread = threading.Thread(target=worker.execute, args=(job,))
    thread.start()
    thread.join(30)
    return job_id


IDLE = "ata_samsung_860evo_healthy.json"
RUNNING = "ata_wdc_wd140edfz_healthy.json"  # "in progress, 10% remaining"
FAILED = "ata_hitachi_hds721050dle630_failing.json"  # self-test log: "Completed: read failure"


def test_selftest_followed_to_a_failure(store: Store, sequence) -> None:  # type: ignore[no-untyped-def]
    argv = sequence(IDLE, IDLE, RUNNING, RUNNING, FAILED)
    job_id = _run(store, {"device": "/dev/sdq", "kind": "long"})
    job = wait_final(store, job_id)
    assert job.state == "succeeded", job.error
    assert job.result is not None
    assert (job.result["passed"], job.result["verdict"]) == (False, "failing")
    assert "read failure" in job.result["status"].lower()
    assert (job.progress_done, job.progress_total) == (100, 100)
    calls = argv.read_text().splitlines()
    assert calls[:3] == ["-j -x /dev/sdq", "-j -t long /dev/sdq", "-j -x /dev/sdq"]
    lines = queue.log_lines(store, job_id)
    assert any(line["level"] == "error" and "the self-test failed" in line["message"] for line in lines)
    [started] = store.query("SELECT kind, started_by, error FROM disk_selftests")
    assert tuple(started) == ("long", "user:olivia", None)
    [alert] = alerts.list_alerts(store)  # the reading after the test is recorded: the disk is failing
    assert alert.level == "critical" and polling.latest_for(store, "sdq")["verdict"] == "failing"  # type: ignore[index]


def test_short_test_passed_on_a_failing_disk(store: Store, sequence) -> None:  # type: ignore[no-untyped-def]
    """The recording's newest short test passed although the drive is failing: both are said."""
    sequence(IDLE, IDLE, FAILED)
    job = wait_final(store, _run(store, {"device": "/dev/sdq", "kind": "short"}))
    assert job.result is not None and (job.result["passed"], job.result["verdict"]) == (True, "failing")
    assert "self-test ended: Completed without error; the disk is failing" in [
        line["message"] for line in queue.log_lines(store, job.id)
    ]


def test_progress_is_reported_while_the_drive_tests(store: Store, sequence) -> None:  # type: ignore[no-untyped-def]
    sequence(IDLE, IDLE, RUNNING)  # the drive stays at 10% left until told otherwise
    job_id = base.submit(store, "disk.selftest", {"device": "/dev/sdq", "kind": "long"}, created_by="cli")
    job = queue.claim(store, ["disk.selftest"])
    assert job is not None
    worker = Worker(0, store, None, threading.Event(), threading.Event())  # type: ignore[arg-type]
    thread = threading.Thread(target=worker.execute, args=(job,))
    thread.start()
    try:
        running = wait_for(lambda: (j := queue.get(store, job_id)).progress_done == 90 and j, what="90% progress")
        assert running.progress_text == "long self-test, 10% left" and running.progress_total == 100
    finally:
        queue.request_cancel(store, job_id, by="test")
        thread.join(30)
    assert queue.get(store, job_id).state == "cancelled"


def test_a_drive_already_testing_is_not_asked_again(store: Store, sequence) -> None:  # type: ignore[no-untyped-def]
    argv = sequence(RUNNING)
    job = wait_final(store, _run(store, {"device": "/dev/sdq", "kind": "short"}))
    assert job.state == "failed" and job.error is not None and "already running a self-test" in job.error["message"]
    assert "-t" not in argv.read_text()


@pytest.mark.parametrize(
    "params",
    [{"device": "/dev/sda", "kind": "conveyance"}, {"device": "/etc/passwd", "kind": "short"},
     {"device": "/dev/../etc", "kind": "short"}, {"device": "/dev/sda"},
     {"device": "/dev/sda", "kind": "short", "x": 1}],
)  # fmt: skip
def test_bad_parameters_are_refused(store: Store, params: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        base.submit(store, "disk.selftest", params, created_by="cli")
    assert queue.list_jobs(store) == []


def test_kind_poll_intervals() -> None:
    assert selftest_job.POLL_SECONDS["short"] < selftest_job.POLL_SECONDS["long"]
