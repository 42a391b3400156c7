"""The backup agent against a real running appliance (`bulwark init` + `bulwark run`: gunicorn over TLS on
loopback, a zfs-fuse pool): enrollment with a pinned certificate, a first and an incremental file backup with
edits, deletions, renames, modes, owners, symlinks and unicode names, restores identical, and kill -9 of the
agent mid-backup leaving no point with the next run resuming."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.system.runner import Service, local_runner
from tests.e2e.agent_helpers import (
    AGENT,
    agent,
    agent_appliance,
    agent_json,
    diff_r,
    enroll,
    make_tree,
    points,
    restored,
    signature,
    write,
)
from tests.e2e.conftest import Appliance, _wait_https

pytestmark = [pytest.mark.zfs, pytest.mark.slow]


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, zfs_daemon: object) -> Iterator[Appliance]:
    with agent_appliance(tmp_path_factory.mktemp("agent")) as running:
        yield running


def test_enrollment_pins_the_certificate_and_codes_are_single_use(appliance: Appliance, tmp_path: Path) -> None:
    code = json.loads(appliance.cli("client", "enroll-code", "acme", "--json").out)["code"]
    state = tmp_path / "state"
    got = agent_json(state, "enroll", "--server", appliance.url, "--code", code)
    assert got["client"] == "acme"
    assert stat.S_IMODE(os.stat(state / "agent.json").st_mode) == 0o600
    again = agent(tmp_path / "other", "enroll", "--server", appliance.url, "--code", code, ok_codes=(2,))
    assert "already used" in again.err
    # A code whose fingerprint is not the appliance's certificate: refused before anything is sent.
    code2 = json.loads(appliance.cli("client", "enroll-code", "acme", "--json").out)["code"]
    forged = code2[:-52] + ("a" if code2[-52] != "a" else "b") + code2[-51:]
    bad = agent(tmp_path / "forged", "enroll", "--server", appliance.url, "--code", forged, ok_codes=(1,))
    assert "does not match the pinned fingerprint" in bad.err
    assert not (tmp_path / "forged" / "agent.json").exists()
    # ... and the real code is still unused, so it works afterwards.
    agent_json(tmp_path / "late", "enroll", "--server", appliance.url, "--code", code2)
    refused = appliance.cli("client", "enroll-code", "smbonly", ok_codes=(3,))
    assert "SMB only" in refused.err


def test_first_and_incremental_backup_restore_identical(appliance: Appliance, tmp_path: Path) -> None:
    state = tmp_path / "state"
    enroll(appliance, "acme", state)
    before = set(points(state))
    src = tmp_path / "src"
    make_tree(src)
    first = agent_json(state, "backup", str(src))
    assert first["point"].startswith("files@bw-") and first["point"].endswith("-agent")
    assert first["blobs_sent"] == 9  # ten files, two of them identical: sent once
    assert first["bytes_sent"] < first["bytes_scanned"]  # the zeros went compressed
    assert first["written_ahead"] == 8  # the files of at most 1 MiB, written while the large ones were sent
    sig1 = signature(src)

    # Edits, a deletion, a rename, a new symlink, a mode and an owner change.
    write(src / "docs" / "report.txt", b"quarterly report v2\n" * 100, 0o640, mtime=1_600_000_100_000_000_000)
    (src / "data" / "to-delete.txt").unlink()
    os.rename(src / "data" / "to-rename.txt", src / "docs" / "renamed.txt")
    os.symlink("../bin/tool.sh", src / "data" / "tool-link")
    os.chmod(src / "data" / "big.bin", 0o600)
    os.chown(src / "same-a.txt", 42, 43)
    second = agent_json(state, "backup", str(src))
    assert second["point"] != first["point"]
    assert second["blobs_sent"] == 1  # only the edited report; the renamed file's content is on the appliance
    assert second["bytes_sent"] < 4096
    assert second["written_ahead"] == 0  # a clean base: the commit touches only what changed
    # Read again: the edit, the renamed file (a new path) and those whose ctime moved (chmod, chown); the
    # cache vouched for everything else.
    assert second["bytes_hashed"] == 2000 + 28000 + 3 * 1024 * 1024 + len(b"duplicate content\n")
    sig2 = signature(src)
    assert set(points(state)) == before | {first["point"], second["point"]}

    latest = tmp_path / "latest"
    agent_json(state, "restore", "--point", "latest", "--to", str(latest))
    assert diff_r(src, restored(latest, src)).returncode == 0
    assert signature(restored(latest, src)) == sig2

    older = tmp_path / "older"
    agent_json(state, "restore", "--point", first["point"], "--to", str(older))
    assert signature(restored(older, src)) == sig1

    one = tmp_path / "one"
    agent_json(state, "restore", "--point", "latest", "--to", str(one), str(src / "docs"))
    assert sorted(os.listdir(restored(one, src))) == ["docs"]
    assert (restored(one, src) / "docs" / "renamed.txt").read_bytes() == (src / "docs" / "renamed.txt").read_bytes()

    third = agent_json(state, "backup", str(src))  # nothing changed: nothing sent, a point all the same
    assert third["blobs_sent"] == 0 and third["bytes_sent"] == 0
    status = agent_json(state, "status")
    assert status["client"] == "acme" and status["latest"] == third["point"]


def test_kill_9_mid_backup_leaves_no_point_and_the_next_run_resumes(appliance: Appliance, tmp_path: Path) -> None:
    state = tmp_path / "state"
    enroll(appliance, "acme", state)
    src = tmp_path / "src"
    for i in range(6):
        write(src / f"part-{i}.bin", os.urandom(3 * 1024 * 1024))
    before = points(state)
    log = tmp_path / "agent.log"
    proc = _backup_in_background(state, src, 2048, log)
    try:
        deadline = time.monotonic() + 60
        while b"sending" not in log.read_bytes() or time.monotonic() < deadline - 55:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(2.5)  # about 5 MiB at 2 MiB/s: some contents complete, one half sent
        assert proc.poll() is None, "the backup finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
        proc.proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.stop(sig=signal.SIGKILL)
    assert points(state) == before  # no recovery point for the broken job

    resumed = agent_json(state, "backup", str(src))
    total = 6 * 3 * 1024 * 1024
    assert resumed["blobs_sent"] < 6  # what arrived completely is not asked for again
    assert resumed["bytes_sent"] < total - 3 * 1024 * 1024
    out = tmp_path / "out"
    agent_json(state, "restore", "--point", resumed["point"], "--to", str(out), str(src))
    assert diff_r(src, restored(out, src)).returncode == 0
    shutil.rmtree(out)


def test_a_large_file_with_a_small_change_sends_only_its_changed_blocks(appliance: Appliance, tmp_path: Path) -> None:
    state = tmp_path / "state"
    enroll(appliance, "acme", state)
    src = tmp_path / "src"
    write(src / "vm.img", os.urandom(40 * 1024 * 1024))
    agent_json(state, "backup", str(src))
    with open(src / "vm.img", "r+b") as fh:  # 1 MiB changed across two blocks, and the file grows
        fh.seek(10 * 1024 * 1024 + 4096)
        fh.write(os.urandom(1024 * 1024))
        fh.seek(0, 2)
        fh.write(os.urandom(100))
    second = agent_json(state, "backup", str(src))
    assert second["blobs_sent"] == 1
    assert second["bytes_sent"] < 3 * 1024 * 1024 + 200  # three 1 MiB blocks of 41, not the whole file
    out = tmp_path / "out"
    agent_json(state, "restore", "--to", str(out), str(src))
    assert signature(restored(out, src)) == signature(src)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _backup_in_background(state: Path, src: Path, bwlimit_kib: int, log: Path) -> Service:
    """``bulwark-agent backup`` under a bandwidth limit, its output (the progress line) going to ``log``."""
    with open(log, "wb") as out:
        return local_runner().spawn(
            [AGENT, "--state-dir", str(state), "backup", "--bwlimit", str(bwlimit_kib), str(src)],
            stderr=out,
            stdout=out,
            inherit_env=True,
        )


def _percent_sent(log: Path) -> int:
    found = re.findall(rb"\((\d+)%\)", log.read_bytes())
    return int(found[-1]) if found else 0


def test_kill_9_of_the_appliance_mid_backup_leaves_no_point_and_the_next_run_resumes(
    appliance: Appliance, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    enroll(appliance, "acme", state)
    src = tmp_path / "src"
    for i in range(6):
        write(src / f"chunk-{i}.bin", os.urandom(3 * 1024 * 1024))
    before = points(state)
    log = tmp_path / "agent.log"
    proc = _backup_in_background(state, src, 2048, log)
    try:
        deadline = time.monotonic() + 60
        while _percent_sent(log) < 60:  # the first contents (one per connection) have arrived whole
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        masters = [
            p for p in _children(appliance.service.pid) if b"gunicorn" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        assert len(masters) == 1
        victims = [masters[0], *_children(masters[0])]
        for pid in victims:  # the whole web server at once, as a power cut would
            os.kill(pid, signal.SIGKILL)
        assert proc.proc.wait(timeout=120) != 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.stop(sig=signal.SIGKILL)
    _wait_https(appliance.port, appliance.service, appliance.log)  # `bulwark run` starts it again
    assert points(state) == before
    resumed = agent_json(state, "backup", str(src))
    assert resumed["blobs_sent"] < 6
    assert resumed["bytes_sent"] < 6 * 3 * 1024 * 1024 - 3 * 1024 * 1024
    out = tmp_path / "out"
    agent_json(state, "restore", "--point", resumed["point"], "--to", str(out), str(src))
    assert diff_r(src, restored(out, src)).returncode == 0


def test_small_files_written_on_arrival_are_not_sent_again_after_a_kill_9(appliance: Appliance, tmp_path: Path) -> None:
    state = tmp_path / "state"  # a first backup of the client: its packs go straight to their files
    enroll(appliance, "scattered", state)
    src = tmp_path / "src"
    for i in range(240):
        write(src / f"dir-{i % 6}" / f"note-{i:03d}.txt", os.urandom(16 * 1024), mode=0o600 if i % 2 else 0o644)
    write(src / "large.bin", os.urandom(3 * 1024 * 1024))
    log = tmp_path / "agent.log"
    proc = _backup_in_background(state, src, 1024, log)
    try:
        deadline = time.monotonic() + 60
        while _percent_sent(log) < 50:  # many packs have arrived, and with them their files
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.stop(sig=signal.SIGKILL)
    assert points(state) == []
    (area,) = appliance.data_dir.glob("mnt/*/clients/scattered/files")
    staging = area / ".bulwark" / "staging"
    arrived = [p for p in area.rglob("note-*.txt") if p.stat().st_size == 16 * 1024]
    assert len(arrived) >= 40  # written to the tree as their packs arrived ...
    assert not [n for n in os.listdir(staging) if n.endswith(".pack")]  # ... and not kept as packs as well

    resumed = agent_json(state, "backup", str(src))
    assert resumed["blobs_sent"] < 200  # of 241: the small files written before the kill are not asked for
    assert resumed["written_ahead"] == 240  # kept by the commit: those of before the kill and the rest
    out = tmp_path / "out"
    agent_json(state, "restore", "--point", resumed["point"], "--to", str(out), str(src))
    assert diff_r(src, restored(out, src)).returncode == 0
    assert signature(restored(out, src)) == signature(src)
