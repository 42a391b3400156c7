"""Scheduled scrubs on a real zfs-fuse pool: counted from when bulwarkd first saw the pool, queued once when
due, and a scrub run by hand (``zpool scrub``) moves the next one."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.disks import scrubs
from appliance.jobs import queue
from appliance.store import Store
from appliance.system.errors import InvalidInput
from appliance.system.runner import local_runner
from appliance.zfs import pools, status
from appliance.zfs.host import ZfsHost
from tests.clients_fixtures import destroy_pool

pytestmark = pytest.mark.zfs
DAY = 86400.0


@pytest.fixture
def pool(local_zfs: ZfsHost, tmp_path: Path) -> Iterator[str]:
    name = f"bwt{secrets.token_hex(4)}"
    device = tmp_path / "d.img"
    with device.open("wb") as fh:
        fh.truncate(128 * 1024 * 1024)
    local_zfs.zpool("create", "-o", "cachefile=none", "-m", str(tmp_path / "mnt"), name, str(device), subject=name)
    try:
        yield name
    finally:
        destroy_pool(local_runner(), name, tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store.open(tmp_path / "bulwark.db")
    yield db
    db.close()


def test_due_once_then_moved_by_a_scrub_by_hand(local_zfs: ZfsHost, pool: str, store: Store) -> None:
    t0 = time.time()
    assert scrubs.schedule(store, local_zfs, pool, now=t0) is None  # a fresh pool: counted from now
    assert scrubs.next_scrub(store, local_zfs, pool) == pytest.approx(t0 + scrubs.DEFAULT_DAYS * DAY)
    assert scrubs.schedule(store, local_zfs, pool, now=t0 + 34 * DAY) is None

    job_id = scrubs.schedule(store, local_zfs, pool, now=t0 + 36 * DAY)
    assert job_id is not None
    job = queue.get(store, job_id)
    assert (job.kind, job.params, job.state) == ("pool.scrub", {"pool": pool}, "queued")
    assert scrubs.schedule(store, local_zfs, pool, now=t0 + 37 * DAY) is None  # one queued is enough
    queue.request_cancel(store, job_id, by="test")

    pools.scrub_start(local_zfs, pool)  # by hand, outside Bulwark
    deadline = time.monotonic() + 60
    while status.pool_status(local_zfs, pool).scan.state != "finished":
        assert time.monotonic() < deadline, "the scrub did not finish"
        time.sleep(0.2)
    last = scrubs.last_scrub(store, local_zfs, pool)
    assert last is not None and abs(last - time.time()) < 120  # as zpool status prints it (to the second)
    assert scrubs.schedule(store, local_zfs, pool, now=last + 30 * DAY) is None
    assert scrubs.schedule(store, local_zfs, pool, now=last + 36 * DAY) is not None


def test_interval_setting(local_zfs: ZfsHost, pool: str, store: Store) -> None:
    t0 = time.time()
    assert scrubs.set_every_days(store, 0) == 0
    assert scrubs.schedule(store, local_zfs, pool, now=t0) is None
    assert scrubs.schedule(store, local_zfs, pool, now=t0 + 400 * DAY) is None  # never
    assert scrubs.next_scrub(store, local_zfs, pool) is None
    for bad in (-1, 366, True):
        with pytest.raises(InvalidInput, match="0 \\(never\\) to 365 days"):
            scrubs.set_every_days(store, bad)  # type: ignore[arg-type]
    assert scrubs.every_days(store) == 0  # unchanged by the refused values
    scrubs.set_every_days(store, 7)
    assert scrubs.schedule(store, local_zfs, pool, now=t0 + 8 * DAY) is not None
