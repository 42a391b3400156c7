"""Image backups with the agent against a real running appliance (gunicorn over TLS on loopback, zfs-fuse):
a loop device holding ext4, a change inside it, an incremental that sends only the changed blocks, and
restores onto another loop device and into a file that are byte-identical; kill -9 mid-image; hostile blocks."""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest

from agent.transport import AgentError
from appliance.system.runner import local_runner
from tests.e2e.agent_helpers import AGENT, agent, agent_appliance, agent_json, connection, enroll
from tests.e2e.conftest import Appliance

pytestmark = [pytest.mark.zfs, pytest.mark.slow]
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, zfs_daemon: object) -> Iterator[Appliance]:
    with agent_appliance(tmp_path_factory.mktemp("agent-image")) as running:
        running.cli("client", "add", "tight", "--kind", "agent", "--quota", "64M")
        yield running


@pytest.fixture(autouse=True)
def images_unmounted(appliance: Appliance) -> Iterator[None]:
    """The image datasets a test makes stay, as on a real appliance; they are unmounted after each test (the
    appliance mounts an image dataset again when it next needs it) so the per-test mount check sees none."""
    yield
    listed = local_runner().run(["zfs", "list", "-H", "-o", "name,mounted", "-r", f"{appliance.pool}/clients"])
    for line in listed.out.splitlines():
        name, is_mounted = line.split("\t")
        if "/images/" in name and is_mounted == "yes":
            local_runner().run(["zfs", "unmount", name], timeout=120)


@contextlib.contextmanager
def loop_device(backing: Path, size: int) -> Iterator[str]:
    with open(backing, "wb") as fh:
        fh.truncate(size)
    dev = local_runner().run(["losetup", "-f", "--show", str(backing)]).out.strip()
    try:
        yield dev
    finally:
        local_runner().run(["losetup", "-d", dev], ok_codes=(0, 1))


@contextlib.contextmanager
def mounted(dev: str, where: Path, *, readonly: bool = False) -> Iterator[Path]:
    where.mkdir(exist_ok=True)
    local_runner().run(["mount", *(["-o", "ro"] if readonly else []), dev, str(where)])
    try:
        yield where
    finally:
        local_runner().run(["umount", str(where)])


def agent_jobs(appliance: Appliance, client: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = json.loads(appliance.cli("client", "agent-jobs", client, "--json").out)
    return jobs


def device_bytes(dev: str, size: int) -> bytes:
    with open(dev, "rb") as fh:
        return fh.read(size)


def image_points(state: Path) -> list[str]:
    conn = connection(state)
    try:
        return sorted(p["id"] for i in conn.request("GET", "/images")["images"] for p in i["points"])
    finally:
        conn.close()


def test_ext4_loop_device_full_incremental_and_byte_identical_restores(appliance: Appliance, tmp_path: Path) -> None:
    state = tmp_path / "state"
    enroll(appliance, "acme", state)
    size = 64 * MIB
    with loop_device(tmp_path / "a.img", size) as dev_a, loop_device(tmp_path / "b.img", size) as dev_b:
        local_runner().run(["mkfs.ext4", "-q", "-F", dev_a])
        with mounted(dev_a, tmp_path / "mnt") as mnt:
            (mnt / "docs").mkdir()
            (mnt / "docs" / "report.txt").write_bytes(b"quarterly report\n" * 5000)
            (mnt / "random.bin").write_bytes(os.urandom(6 * MIB))
        first_state = device_bytes(dev_a, size)

        first = agent_json(state, "image-backup", dev_a, "--name", "disk0")
        assert first["point"].startswith("images/disk0@bw-") and first["consistency"] == "unmounted"
        assert first["bytes_scanned"] == size
        assert 6 * MIB < first["bytes_sent"] < 12 * MIB  # the random file and ext4's metadata; zeros are free

        with mounted(dev_a, tmp_path / "mnt") as mnt:
            with open(mnt / "random.bin", "r+b") as fh:  # a change inside the filesystem
                fh.seek(2 * MIB)
                fh.write(os.urandom(MIB))
            (mnt / "docs" / "new.txt").write_text("added after the first backup\n")
        second = agent_json(state, "image-backup", dev_a, "--name", "disk0")
        assert second["point"] != first["point"]
        assert second["changed_blocks"] < 12  # the 1 MiB changed, plus inode tables, bitmaps and journal
        assert second["bytes_sent"] < 6 * MIB
        assert set(image_points(state)) >= {first["point"], second["point"]}

        with open(dev_b, "r+b") as fh:  # old content on the target: every byte must be overwritten
            fh.write(os.urandom(size))
        restored = agent_json(state, "image-restore", "--point", "latest", dev_b)
        assert restored["point"] == second["point"] and restored["verified"] is True
        assert device_bytes(dev_b, size) == device_bytes(dev_a, size)
        local_runner().run(["e2fsck", "-n", "-f", dev_b])  # and it is a sound filesystem
        with mounted(dev_b, tmp_path / "mnt-b", readonly=True) as mnt:
            assert (mnt / "docs" / "new.txt").read_text() == "added after the first backup\n"

        older = tmp_path / "older.img"
        agent_json(state, "image-restore", "--point", first["point"], str(older))
        assert older.read_bytes() == first_state
        assert os.stat(older).st_blocks * 512 < size  # written sparse: zero blocks never written
        assert not Path(f"{older}.bulwark-partial").exists()

        status = agent_json(state, "status")
        assert status["images"] == {"disk0": second["point"]}
        report = {j["id"]: j for j in agent_jobs(appliance, "acme")}[second["job"]]  # the jobs page's report
        assert report["kind"] == "image" and report["image"] == "disk0" and report["state"] == "committed"
        assert report["point"] == second["point"] and report["bytes_scanned"] == size
        assert report["bytes_sent"] >= second["bytes_sent"] and report["phase"] == "committing"


def test_mounted_read_write_is_crash_consistent_and_said_so(appliance: Appliance, tmp_path: Path) -> None:
    state = tmp_path / "state"
    enroll(appliance, "globex", state)
    with loop_device(tmp_path / "live.img", 32 * MIB) as dev:
        local_runner().run(["mkfs.ext4", "-q", "-F", dev])
        before = image_points(state)
        with mounted(dev, tmp_path / "mnt"):
            refused = agent(state, "image-backup", dev, "--name", "live", "--require-consistent", ok_codes=(1,))
            assert "no consistent view" in refused.err and "mounted read-write" in refused.err
            assert image_points(state) == before
            done = agent(state, "--json", "image-backup", dev, "--name", "live")
            assert "crash-consistent" in done.err
            assert json.loads(done.out)["consistency"] == "crash"
            busy = agent(state, "image-restore", "--point", "latest", "--image", "live", dev, ok_codes=(1,))
            assert "is mounted at" in busy.err
        with mounted(dev, tmp_path / "mnt", readonly=True):
            assert agent_json(state, "image-backup", dev, "--name", "live")["consistency"] == "readonly"


def test_kill_9_mid_image_backup_leaves_no_point_and_the_next_run_resumes(appliance: Appliance, tmp_path: Path) -> None:
    state = tmp_path / "state"
    enroll(appliance, "acme", state)
    src = tmp_path / "vm-disk.raw"
    src.write_bytes(os.urandom(24 * MIB))
    before = image_points(state)
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        proc = local_runner().spawn(
            [AGENT, "--state-dir", str(state), "image-backup", str(src), "--name", "vm", "--bwlimit", "2048"],
            stdout=out,
            stderr=out,
            inherit_env=True,
        )
    try:
        deadline = time.monotonic() + 60
        while b"reading" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(2)  # reading shows after a second: about 6 of the 24 MiB sent at 2 MiB/s
        assert proc.poll() is None, "the backup finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
        proc.proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.stop(sig=signal.SIGKILL)
    assert image_points(state) == before  # no point for the broken job
    second = agent_json(state, "image-backup", str(src), "--name", "vm")
    assert 0 < second["changed_blocks"] < 24  # what arrived before the kill is not sent again
    assert set(image_points(state)) == {*before, second["point"]}
    back = tmp_path / "back.raw"
    agent_json(state, "image-restore", "--point", second["point"], str(back))
    assert filecmp.cmp(src, back, shallow=False)


def _record(index: int, data: bytes, digest: bytes | None = None) -> bytes:
    digest = digest or blake3.blake3(data).digest(length=16)
    return index.to_bytes(8, "big") + len(data).to_bytes(4, "big") + digest + data


def test_hostile_image_messages_are_refused_and_change_nothing(appliance: Appliance, tmp_path: Path) -> None:
    state, other = tmp_path / "state", tmp_path / "other"
    enroll(appliance, "acme", state)
    enroll(appliance, "globex", other)
    conn, stranger = connection(state), connection(other)
    try:
        for bad_name in ("../x", "a/b", "", "UPPER", "x\ny"):
            with pytest.raises(AgentError) as exc:
                conn.request("POST", "/images/jobs", {"image": bad_name, "size": MIB})
            assert exc.value.code == "protocol_error"
        with pytest.raises(AgentError):
            conn.request("POST", "/images/jobs", {"image": "h", "size": -1})
        job = conn.request("POST", "/images/jobs", {"image": "h", "size": 4 * MIB})["job"]
        block_map = conn.request("GET", f"/images/jobs/{job}/map", stream=True).read()
        assert len(block_map) == 4 * 16

        data = os.urandom(MIB)
        lying = _record(2, data, blake3.blake3(b"other").digest(length=16))
        cases = [
            (_record(1, data) + lying, "content_mismatch"),  # one bad record refuses the whole message
            (_record(4, data), "protocol_error"),  # outside the image
            (_record(1, data[:1000]), "protocol_error"),  # a short block
            (_record(1, data) + _record(1, data), "protocol_error"),  # twice
            (_record(1, data)[:-10], "protocol_error"),  # cut short
            (b"\0" * 8 + (0).to_bytes(4, "big") + b"\1" * 16, "content_mismatch"),  # "zeros" with another hash
        ]
        for body, code in cases:
            with pytest.raises(AgentError) as exc:
                conn.request("PUT", f"/images/jobs/{job}/blocks", raw=body)
            assert exc.value.code == code, body[:20]
        with pytest.raises(AgentError) as exc:
            conn.request("PUT", f"/images/jobs/{job}/blocks", raw=b"garbage", headers={"Content-Encoding": "zstd"})
        assert exc.value.code == "protocol_error"
        assert conn.request("GET", f"/images/jobs/{job}/map", stream=True).read() == block_map  # nothing changed

        with pytest.raises(AgentError) as exc:  # another client's credential cannot touch the job
            stranger.request("PUT", f"/images/jobs/{job}/blocks", raw=_record(1, data))
        assert exc.value.status == 404
        with pytest.raises(AgentError) as exc:  # a commit whose map the appliance does not hold: no point
            conn.request("POST", f"/images/jobs/{job}/commit", {"map": "0" * 64})
        assert exc.value.code == "image_incomplete"
        assert not [p for p in image_points(state) if p.startswith("images/h@")]

        conn.request("PUT", f"/images/jobs/{job}/blocks", raw=_record(1, data))
        mine = bytearray(block_map)
        mine[16:32] = blake3.blake3(data).digest(length=16)
        done = conn.request("POST", f"/images/jobs/{job}/commit", {"map": blake3.blake3(bytes(mine)).hexdigest()})
        assert done["point"].startswith("images/h@")
        with pytest.raises(AgentError) as exc:
            stranger.request("POST", "/images/restores", {"point": done["point"]})
        assert exc.value.status == 404
    finally:
        conn.close()
        stranger.close()


def test_several_agents_at_once(appliance: Appliance, tmp_path: Path) -> None:
    """Two clients' agents and a second agent of the same client, all at the same time: a file backup, an
    image backup of another client and a second image of the first; each gets its point, nothing mixes."""
    states = {n: tmp_path / n for n in ("files", "image", "image2")}
    enroll(appliance, "acme", states["files"])
    enroll(appliance, "globex", states["image"])
    enroll(appliance, "acme", states["image2"])
    src = tmp_path / "tree"
    for i in range(20):
        (src / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 4}" / f"f{i}.bin").write_bytes(os.urandom(256 * 1024))
    disk1, disk2 = tmp_path / "g.raw", tmp_path / "a2.raw"
    disk1.write_bytes(os.urandom(12 * MIB))
    disk2.write_bytes(os.urandom(9 * MIB))
    commands = [
        ("files", ["backup", str(src)]),
        ("image", ["image-backup", str(disk1), "--name", "g"]),
        ("image2", ["image-backup", str(disk2), "--name", "second"]),
    ]
    procs = []
    for key, args in commands:
        out = open(tmp_path / f"{key}.json", "wb")  # noqa: SIM115 (closed below)
        procs.append((key, out, local_runner().spawn(
            [AGENT, "--state-dir", str(states[key]), "--json", *args], stdout=out, stderr=out, inherit_env=True
        )))  # fmt: skip
    for _key, out, proc in procs:
        assert proc.proc.wait(timeout=240) == 0, (tmp_path / f"{_key}.json").read_text()
        out.close()
    got = {key: json.loads((tmp_path / f"{key}.json").read_text()) for key, _, _ in procs}
    assert got["files"]["point"].startswith("files@") and got["files"]["files"] == 20
    assert got["image"]["point"].startswith("images/g@") and got["image2"]["point"].startswith("images/second@")
    assert got["image"]["point"] in image_points(states["image"])  # globex's
    assert got["image"]["point"] not in image_points(states["files"])  # not acme's
    for key, disk in (("image", disk1), ("image2", disk2)):
        back = tmp_path / f"{key}.back"
        agent_json(states[key], "image-restore", "--point", got[key]["point"], str(back))
        assert filecmp.cmp(disk, back, shallow=False)


def test_a_full_quota_is_a_clear_error_and_changes_no_point(appliance: Appliance, tmp_path: Path) -> None:
    state = tmp_path / "state"
    enroll(appliance, "tight", state)
    small = tmp_path / "small.raw"
    small.write_bytes(os.urandom(8 * MIB))
    first = agent_json(state, "image-backup", str(small), "--name", "small")
    before = image_points(state)
    big = tmp_path / "big.raw"
    big.write_bytes(os.urandom(80 * MIB))
    refused = agent(state, "image-backup", str(big), "--name", "big", ok_codes=(1,))
    assert "No space left on the appliance for client tight" in refused.err and "--quota" in refused.err
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(80 * MIB))
    refused = agent(state, "backup", str(src), ok_codes=(1,))
    assert "No space left on the appliance for client tight" in refused.err
    assert image_points(state) == before  # no point made, none lost
    failed = [j for j in agent_jobs(appliance, "tight") if j["kind"] == "image" and j["image"] == "big"]
    assert failed[0]["state"] == "failed" and "No space left" in failed[0]["error"]
    back = tmp_path / "back.raw"
    agent_json(state, "image-restore", "--point", first["point"], str(back))
    assert filecmp.cmp(small, back, shallow=False)
