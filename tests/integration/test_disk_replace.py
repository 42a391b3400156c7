"""Guided replacement on a real zfs-fuse mirror of sparse files: one side offlined (the failed disk), replaced
by a third file through the ``pool.replace`` job, which follows the resilver and leaves the pool ONLINE."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import appliance.disks.replace  # noqa: F401  (registers pool.replace)
from appliance.disks import health
from appliance.disks.replace import check_choice
from appliance.jobs import queue
from appliance.jobs.worker import Worker
from appliance.store import Store
from appliance.system.errors import InvalidInput
from appliance.system.runner import local_runner
from appliance.zfs import pools, status
from appliance.zfs.host import ZfsHost
from tests.clients_fixtures import destroy_pool

pytestmark = pytest.mark.zfs


def _sparse(path: Path, size: int = 128 * 1024 * 1024) -> str:
    with path.open("wb") as fh:
        fh.truncate(size)
    return str(path)


@pytest.fixture
def mirror(local_zfs: ZfsHost, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    name = f"bwt{secrets.token_hex(4)}"
    devices = [_sparse(tmp_path / "m1.img"), _sparse(tmp_path / "m2.img")]
    local_zfs.zpool("create", "-o", "cachefile=none", "-m", str(tmp_path / "mnt"), name, "mirror", *devices,
                    subject=name)  # fmt: skip
    try:
        yield name, devices
    finally:
        destroy_pool(local_runner(), name, tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store.open(tmp_path / "bulwark.db")
    yield db
    db.close()


def test_replace_failed_side_of_mirror(
    local_zfs: ZfsHost, mirror: tuple[str, list[str]], store: Store, tmp_path: Path
) -> None:
    name, (good, failed) = mirror
    new = _sparse(tmp_path / "m3.img")
    (tmp_path / "mnt" / "data.bin").write_bytes(secrets.token_bytes(4 * 1024 * 1024))
    pools.offline_device(local_zfs, name, failed)
    assert status.pool_status(local_zfs, name).state == "DEGRADED"
    assert [f.cls.name for f in health.check_pool(store, local_zfs, name)] == ["pool.health"]

    current = status.pool_status(local_zfs, name)
    with pytest.raises(InvalidInput, match="already a device of pool"):
        check_choice(current, failed, good)
    with pytest.raises(InvalidInput, match="is not a device of pool"):
        check_choice(current, str(tmp_path / "other.img"), new)
    with pytest.raises(InvalidInput, match="smaller than the one it replaces"):
        check_choice(current, failed, new, old_size=2 << 30, new_size=1 << 30)

    job_id = queue.enqueue(
        store, "pool.replace", {"pool": name, "old": failed, "new": new}, resource=f"pool:{name}:replace",
        created_by="test",
    )  # fmt: skip
    worker = Worker(0, store, local_zfs, threading.Event(), threading.Event())
    job = queue.claim(store, ["pool.replace"])
    assert job is not None
    worker.execute(job)
    done = queue.get(store, job_id)
    assert done.state == "succeeded", done.error
    assert done.result is not None and done.result["state"] == "ONLINE" and done.result["old"] == failed
    assert done.progress_done == done.progress_total == 10000

    after = status.pool_status(local_zfs, name)
    leaves = [v.name for v in after.devices()]
    assert after.state == "ONLINE" and new in leaves and failed not in leaves
    assert health.check_pool(store, local_zfs, name) == []  # the health alert clears


def test_replace_refuses_a_device_outside_the_pool(
    local_zfs: ZfsHost, mirror: tuple[str, list[str]], store: Store, tmp_path: Path
) -> None:
    name, (good, _) = mirror
    job_id = queue.enqueue(
        store, "pool.replace", {"pool": name, "old": str(tmp_path / "nope.img"), "new": _sparse(tmp_path / "n.img")},
        resource=f"pool:{name}:replace", created_by="test",
    )  # fmt: skip
    job = queue.claim(store, ["pool.replace"])
    assert job is not None
    Worker(0, store, local_zfs, threading.Event(), threading.Event()).execute(job)
    failed = queue.get(store, job_id)
    assert (
        failed.state == "failed" and failed.error is not None and "is not a device of pool" in failed.error["message"]
    )
    assert [v.name for v in status.pool_status(local_zfs, name).devices()] == [good, mirror[1][1]]
