"""The replacement wizard on a real zfs-fuse mirror: one side offlined, a new loop device (made through
/dev/loop-control) offered and picked, ``zpool replace`` run by the job, the pool ONLINE again. Without a
hardware profile (no DMI here) the page says to identify the disk by its serial number."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.jobs import queue
from appliance.jobs.worker import Worker
from appliance.system.runner import local_runner
from appliance.zfs import pools, status
from appliance.zfs.host import ZfsHost
from tests.clients_fixtures import destroy_pool
from tests.integration.test_disk_hotplug import Loops
from tests.unit.conftest import ApplianceDir
from tests.unit.web import Web, dump, text

pytestmark = [
    pytest.mark.zfs,
    pytest.mark.skipif(not os.path.exists("/dev/loop-control"), reason="no /dev/loop-control"),
]
SIZE = 128 * 1024 * 1024


def _sparse(path: Path) -> str:
    with path.open("wb") as fh:
        fh.truncate(SIZE)
    return str(path)


@pytest.fixture
def mirror(local_zfs: ZfsHost, tmp_path: Path, appliance_dir: ApplianceDir) -> Iterator[tuple[str, list[str]]]:
    name = f"bwt{secrets.token_hex(4)}"
    devices = [_sparse(tmp_path / "m1.img"), _sparse(tmp_path / "m2.img")]
    local_zfs.zpool("create", "-o", "cachefile=none", "-m", str(tmp_path / "mnt"), name, "mirror", *devices,
                    subject=name)  # fmt: skip
    appliance_dir.use_pool(name)
    try:
        yield name, devices
    finally:
        destroy_pool(local_runner(), name, tmp_path)


@pytest.fixture
def new_disk(tmp_path: Path) -> Iterator[str]:
    loops = Loops()
    try:
        number = loops.add()
        node = f"/dev/loop{number}"
        local_runner().run(["losetup", node, _sparse(tmp_path / "new.img")])
        yield node
    finally:
        loops.cleanup()


def test_wizard_replaces_the_offlined_side(
    new_disk: str,  # made first, so removed after the pool that uses it is destroyed
    mirror: tuple[str, list[str]],
    local_zfs: ZfsHost,
    signed_in: Callable[[str], Web],
    appliance_dir: ApplianceDir,
) -> None:
    name, (good, failed) = mirror
    pools.offline_device(local_zfs, name, failed)
    admin = signed_in("admin")
    assert "Replace a disk" in text(admin.get("/disks/"))
    step1 = text(admin.get("/disks/replace"))
    assert f"Replace a disk of pool {name}" in step1 and "DEGRADED" in step1 and failed in step1
    step2 = text(admin.get(f"/disks/replace?old={failed}"))
    assert "not a disk the appliance sees" in step2 and f'value="{new_disk}"' in step2
    assert f'value="{good}"' not in step2 and 'value="/dev/vda"' not in step2  # pool members and the system disk

    db = appliance_dir.open_store()
    try:
        before = dump(db)
        form = {"old": failed, "new": new_disk}
        assert admin.post("/disks/replace", data=form).status_code == 400  # the overwrite box not ticked
        assert admin.post("/disks/replace", data={**form, "new": "/dev/vda", "confirm": "yes"}).status_code == 400
        assert admin.post("/disks/replace", data={**form, "old": "/nope", "confirm": "yes"}).status_code == 404
        assert dump(db) == before
        assert signed_in("operator").post("/disks/replace", data={**form, "confirm": "yes"}).status_code == 403

        response = admin.post("/disks/replace", data={**form, "confirm": "yes"})
        assert response.status_code == 302
        [job] = queue.list_jobs(db, kind="pool.replace")
        assert response.headers["Location"].endswith(f"/jobs/{job.id}")
        assert job.params == {"pool": name, "old": failed, "new": new_disk}
        claimed = queue.claim(db, ["pool.replace"])
        assert claimed is not None
        Worker(0, db, local_zfs, threading.Event(), threading.Event()).execute(claimed)
        done = queue.get(db, job.id)
        assert done.state == "succeeded", done.error
        page = text(admin.get(f"/jobs/{job.id}"))
        assert "resilvered" in page
    finally:
        db.close()
    after = status.pool_status(local_zfs, name)
    assert after.state == "ONLINE" and [v.name for v in after.devices()] == [good, new_disk.removeprefix("/dev/")]


def test_no_profile_names_the_serial(mirror: tuple[str, list[str]], signed_in: Callable[[str], Web]) -> None:
    """A pool device that is a disk the appliance sees would show its bay; files are not disks, and with no
    DMI no profile matches: the LED action says so and changes nothing."""
    name, (_, failed) = mirror
    admin = signed_in("admin")
    response = admin.post("/disks/replace/led", data={"old": failed, "action": "locate_on"})
    assert response.status_code == 404 and "has no bay" in text(response)
    assert admin.post("/disks/replace/led", data={"old": failed, "action": "explode"}).status_code == 400
