"""How consistent a view of a disk image the agent reports (agent/consistency.py), with real processes holding
the file open; block devices and mounts are covered end to end in tests/e2e/test_agent_image.py."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from agent import consistency
from agent.transport import AgentError
from appliance.system.runner import local_runner


def test_an_image_file_no_one_writes_is_not_in_use(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    reader = local_runner().spawn(["sh", "-c", f"exec 3<{disk}; exec sleep 30"])
    try:
        with consistency.view(str(disk)) as (path, level, note):
            assert (path, level, note) == (str(disk), "not-in-use", "")
    finally:
        reader.stop(sig=signal.SIGKILL)


def test_an_image_file_open_for_writing_is_crash_consistent_and_said_so(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    writer = local_runner().spawn(["sh", "-c", f"exec 3<>{disk}; exec sleep 30"])
    try:
        deadline = time.monotonic() + 5  # until the shell has opened the file
        while writer.pid not in consistency.writers(str(disk)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert consistency.writers(str(disk)) == [writer.pid]
        with consistency.view(str(disk)) as (_, level, note):
            assert level == "crash"
            assert f"open for writing by process(es) {writer.pid}" in note and "crash-consistent" in note
        with (
            pytest.raises(AgentError, match="no consistent view"),
            consistency.view(str(disk), require_consistent=True),
        ):
            pass
    finally:
        writer.stop(sig=signal.SIGKILL)


def test_a_missing_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="does not exist"), consistency.view(str(tmp_path / "nope")):
        pass
    assert consistency.mounted_at(str(tmp_path / "nope")) is None
