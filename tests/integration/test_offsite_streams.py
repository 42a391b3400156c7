"""Offsite streams on real zfs-fuse pools: round trips byte-identical, no plaintext offsite, chains and policy."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from appliance.clients import service
from appliance.offsite import config, keys, repo, restore, state, upload
from appliance.offsite.targets.local import LocalTarget
from appliance.zfs import datasets, transfer
from tests.offsite_fixtures import OffsiteEnv, S3Server, bucket_name

pytestmark = [pytest.mark.zfs, pytest.mark.usefixtures("s3_server")]  # moto_server before the process snapshot
MARKER = b"BULWARK-PLAINTEXT-MARKER-7f3a"


def send_digest(env: OffsiteEnv, snapshot: str, base: str | None = None) -> str:
    """The digest of a fresh ``zfs send`` (full, or incremental from ``base``), chunked as the tests upload."""
    with transfer.send(env.zfs, snapshot, transfer.SendOptions(incremental_from=base)) as pipe:
        return upload.stream_digest(pipe, upload.CHUNK_SIZE)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_round_trip_full_then_incrementals_is_byte_identical(offsite_env: OffsiteEnv, tmp_path: Path) -> None:
    env = offsite_env
    env.write("acme", "docs/a.bin", os.urandom(300_000))
    env.write("acme", "docs/b.txt", MARKER * 5000)
    p1 = env.point("acme")
    first = env.replicate()
    assert [s["seq"] for s in first.streams] == [0] and first.streams[0]["chunks"] > 3
    env.write("acme", "docs/c.bin", os.urandom(200_000))
    p2 = env.point("acme")
    env.write("acme", "docs/a.bin", os.urandom(100_000))
    p3 = env.point("acme")
    second = env.replicate()
    assert [(s["seq"], s["base"], s["snapshot"]) for s in second.streams] == [(1, p1, p2), (2, p2, p3)]
    assert env.replicate().streams == []  # nothing new

    client = service.get_client(env.store, "acme")
    ds = client.area_dataset("share")
    target = LocalTarget("usb", env.usb)
    read_keys = keys.all_keys(env.store, env.paths)
    chains = restore.catalog(target, read_keys, "acme")
    assert len(chains) == 1 and [s["snapshot"] for s in chains[0].streams] == [p1, p2, p3]
    # The stored streams are exactly what zfs send of the originals gives:
    expected = [send_digest(env, f"{ds}@{p1}"), send_digest(env, f"{ds}@{p2}", f"{ds}@{p1}"),
                send_digest(env, f"{ds}@{p3}", f"{ds}@{p2}")]  # fmt: skip
    got = [repo.read_stream_manifest(target, read_keys, "acme", "share", e)["send_digest"] for e in chains[0].streams]
    assert got == expected

    dest = f"{env.env.pool.name}/restored"
    restored = restore.restore_chain(target, read_keys, env.zfs, chains[0], 2, dest)
    assert restored.snapshots == [p1, p2, p3]
    datasets.mount(env.zfs, dest)
    assert files(env.env.pool.mountpoint / "restored") == files(env.env.live("acme"))


def test_no_offsite_object_contains_plaintext(offsite_env: OffsiteEnv) -> None:
    env = offsite_env
    env.write("acme", "secret.txt", MARKER * 20000)
    snap = env.point("acme")
    ds = service.get_client(env.store, "acme").area_dataset("share")
    with transfer.send(env.zfs, f"{ds}@{snap}") as pipe:
        assert MARKER in pipe.read()  # the marker is in the plaintext stream…
    env.replicate()
    stored = [p for p in env.usb.rglob("*") if p.is_file()]
    assert len(stored) > 5
    for path in stored:  # …and in no object on the target
        data = path.read_bytes()
        assert MARKER not in data and MARKER[:12] not in data, path


def test_new_chain_after_chain_length_and_target_retention(offsite_env: OffsiteEnv) -> None:
    env = offsite_env
    config.set_policy(env.store, "acme", "usb", by="test", chain_length=2)
    with env.store.write() as tx:
        tx.execute("UPDATE offsite_targets SET keep_chains = 1")
    for i in range(3):
        env.write("acme", f"f{i}", os.urandom(50_000))
        env.point("acme")
        env.replicate()
    rows = state.streams(env.store, "usb", "acme", "share", "complete")
    # chain 1: full + 1 incremental; chain 2: a new full; retention keeps only the newest chain
    assert [r.seq for r in rows] == [0]
    assert len(restore.catalog(LocalTarget("usb", env.usb), keys.all_keys(env.store, env.paths))) == 1


def test_a_new_full_when_the_chain_base_is_gone_locally(offsite_env: OffsiteEnv) -> None:
    env = offsite_env
    env.write("acme", "a", b"1" * 1000)
    p1 = env.point("acme")
    env.replicate()
    ds = service.get_client(env.store, "acme").area_dataset("share")
    env.zfs.zfs("destroy", f"{ds}@{p1}", subject=ds)
    env.write("acme", "b", b"2" * 1000)
    time.sleep(1.1)  # point names have one-second resolution: not the destroyed one's name again
    env.point("acme")
    report = env.replicate()
    assert [s["seq"] for s in report.streams] == [0]


def test_s3_round_trip_with_object_lock_and_locked_retention(offsite_env: OffsiteEnv, s3_server: S3Server) -> None:
    env = offsite_env
    bucket = bucket_name()
    s3_server.make_bucket(bucket, object_lock=True)
    raw = {"bucket": bucket, "endpoint": s3_server.endpoint, "region": "us-east-1", "prefix": "site-a",
           "access_key": "test", "lock_days": 1}  # fmt: skip
    config.add_target(env.store, "s3", "s3", raw, "test", keep_chains=1, by="test")
    config.set_policy(env.store, "acme", "s3", by="test", chain_length=1)
    env.write("acme", "a.bin", os.urandom(200_000))
    env.point("acme")
    first = env.replicate(target="s3")
    target = config.open_target(env.store, env.paths, "s3")
    names = target.list()
    assert "config" in names and len(names) > 5
    head = target.client.head_object(Bucket=bucket, Key=f"site-a/{names[-1]}")  # type: ignore[attr-defined]
    assert head["ObjectLockMode"] == "COMPLIANCE"
    # a second chain; retention (keep 1) may not delete the first while its objects are locked
    env.write("acme", "b.bin", os.urandom(100_000))
    time.sleep(1.1)
    env.point("acme")
    second = env.replicate(target="s3")
    assert second.streams[0]["seq"] == 0 and second.pruned_chains == 0
    chains = restore.catalog(target, keys.all_keys(env.store, env.paths), "acme")
    assert len(chains) == 2 and first.streams[0]["stream_id"] == chains[0].streams[0]["stream_id"]
    dest = f"{env.env.pool.name}/from-s3"
    restore.restore_chain(target, keys.all_keys(env.store, env.paths), env.zfs, chains[-1], 0, dest)
    datasets.mount(env.zfs, dest)
    assert files(env.env.pool.mountpoint / "from-s3") == files(env.env.live("acme"))
    target.close()
