"""``zfs send``/``zfs receive`` streams on zfs-fuse and on OpenZFS (whose streams pass through the test
machine's command channel, here and back). Received data is read through a fresh clone: zfs-fuse's kernel
FUSE cache can serve stale contents of a dataset received over (RECIPES.md)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from appliance.system.errors import InvalidInput, Unsupported
from appliance.zfs import datasets, errors, snapshots, transfer
from appliance.zfs.transfer import SendOptions
from tests.zfs_fixtures import TestPool, write_random

pytestmark = pytest.mark.zfs
MiB = 1024 * 1024


@pytest.fixture
def source(pool: TestPool) -> str:
    """``POOL/src`` with snapshots s1 (a 3 MiB file), s2 (+1 MiB) and s3 (one file changed)."""
    host = pool.host
    name = pool.ds("src")
    datasets.create(host, name, {"bulwark:client": "acme"})
    pool.fs.write_random(pool.path("src") / "a", 3 * MiB)
    snapshots.create(host, name, "s1")
    pool.fs.write_random(pool.path("src") / "b", 1 * MiB)
    snapshots.create(host, name, "s2")
    pool.fs.write(pool.path("src") / "a", b"rewritten")
    snapshots.create(host, name, "s3")
    return name


def names_of(pool: TestPool, dataset: str) -> list[str]:
    return [s.snapname for s in snapshots.list_snapshots(pool.host, dataset)]


def test_send_to_file_and_receive_from_file(pool: TestPool, source: str, tmp_path: Path) -> None:
    host = pool.host
    stream = tmp_path / "s1.zstream"
    with stream.open("wb") as out:
        transfer.send_to_file(host, f"{source}@s1", out)
    assert stream.stat().st_size > 3 * MiB
    with stream.open("rb") as src:
        transfer.receive_from_file(host, pool.ds("copy"), src)
    assert names_of(pool, pool.ds("copy")) == ["s1"]
    assert datasets.get_dataset(host, pool.ds("copy")).mounted is False  # received with -u
    assert pool.snapshot_files(f"{pool.ds('copy')}@s1") == pool.snapshot_files(f"{source}@s1")


def test_incremental_through_files(pool: TestPool, source: str, tmp_path: Path) -> None:
    host = pool.host
    full, incremental = tmp_path / "full", tmp_path / "incr"
    with full.open("wb") as out:
        transfer.send_to_file(host, f"{source}@s1", out)
    with incremental.open("wb") as out:
        transfer.send_to_file(host, f"{source}@s3", out, SendOptions(incremental_from=f"{source}@s1"))
    assert incremental.stat().st_size < full.stat().st_size
    for path in (full, incremental):
        with path.open("rb") as src:
            transfer.receive_from_file(host, pool.ds("copy"), src)
    assert names_of(pool, pool.ds("copy")) == ["s1", "s3"]  # -i: without s2
    assert pool.snapshot_files(f"{pool.ds('copy')}@s3") == pool.snapshot_files(f"{source}@s3")


def test_replicate_full_then_incremental_with_intermediates(pool: TestPool, source: str) -> None:
    host = pool.host
    transfer.replicate(host, f"{source}@s1", pool.ds("mirror"))
    transfer.replicate(
        host, f"{source}@s3", pool.ds("mirror"), SendOptions(incremental_from=f"{source}@s1", intermediates=True)
    )
    assert names_of(pool, pool.ds("mirror")) == ["s1", "s2", "s3"]
    assert pool.snapshot_files(f"{pool.ds('mirror')}@s2") == pool.snapshot_files(f"{source}@s2")


def test_replicate_with_properties(pool: TestPool, source: str) -> None:
    transfer.replicate(pool.host, f"{source}@s1", pool.ds("withprops"), SendOptions(properties=True))
    assert datasets.get_dataset(pool.host, pool.ds("withprops")).user == {"bulwark:client": "acme"}


def test_streaming_send_and_receive_in_chunks(pool: TestPool, source: str, tmp_path: Path) -> None:
    host = pool.host
    digest, size, chunks = hashlib.sha256(), 0, 0
    with transfer.send(host, f"{source}@s2") as stream, transfer.receive(host, pool.ds("streamed")) as sink:
        while chunk := stream.read(256 * 1024):
            digest.update(chunk)
            size += len(chunk)
            chunks += 1
            sink.write(chunk)
    assert chunks > 4
    with (tmp_path / "ref").open("wb") as out:
        transfer.send_to_file(host, f"{source}@s2", out)
    assert size == (tmp_path / "ref").stat().st_size
    assert names_of(pool, pool.ds("streamed")) == ["s2"]
    assert pool.snapshot_files(f"{pool.ds('streamed')}@s2") == pool.snapshot_files(f"{source}@s2")


def test_receive_garbage_is_an_invalid_stream(pool: TestPool, tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidStream):
        with transfer.receive(pool.host, pool.ds("garbage")) as sink:
            for _ in range(64):
                sink.write(os.urandom(64 * 1024))
    garbage = tmp_path / "garbage"
    write_random(garbage, 4096)
    with garbage.open("rb") as src, pytest.raises(errors.InvalidStream):
        transfer.receive_from_file(pool.host, pool.ds("garbage"), src)
    assert not datasets.exists(pool.host, pool.ds("garbage"))


def test_receive_truncated_and_empty_streams(pool: TestPool, source: str, tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    with whole.open("wb") as out:
        transfer.send_to_file(pool.host, f"{source}@s1", out)
    for size in (1000, 0):
        cut = tmp_path / f"cut-{size}"
        cut.write_bytes(whole.read_bytes()[:size])
        with cut.open("rb") as src, pytest.raises(errors.InvalidStream):
            transfer.receive_from_file(pool.host, pool.ds("cut"), src)
    assert not datasets.exists(pool.host, pool.ds("cut"))


def test_incremental_mismatch(pool: TestPool, source: str) -> None:
    host = pool.host
    transfer.replicate(host, f"{source}@s1", pool.ds("copy"))
    with pytest.raises(errors.IncrementalSourceMismatch):
        transfer.replicate(host, f"{source}@s3", pool.ds("copy"), SendOptions(incremental_from=f"{source}@s2"))
    assert names_of(pool, pool.ds("copy")) == ["s1"]


def test_destination_exists(pool: TestPool, source: str) -> None:
    transfer.replicate(pool.host, f"{source}@s1", pool.ds("copy"))
    with pytest.raises(errors.ReceiveDestinationExists) as exc_info:
        transfer.replicate(pool.host, f"{source}@s2", pool.ds("copy"))
    assert exc_info.value.args == (pool.ds("copy"),)
    with pytest.raises(errors.ReceiveDestinationExists):
        transfer.replicate(pool.host, f"{source}@s1", source)


def test_send_failures_are_the_senders(pool: TestPool, source: str, tmp_path: Path) -> None:
    host = pool.host
    with pytest.raises(errors.DatasetNotFound) as exc_info:
        with (tmp_path / "out").open("wb") as out:
            transfer.send_to_file(host, f"{source}@nope", out)
    assert exc_info.value.args == (f"{source}@nope",)
    with pytest.raises(errors.DatasetNotFound):
        with transfer.send(host, f"{source}@nope") as stream:
            stream.read()
    # the receiver of a failed sender sees an empty stream; the error reported is the sender's
    with pytest.raises(errors.DatasetNotFound) as replicated:
        transfer.replicate(host, f"{source}@s2", pool.ds("copy"), SendOptions(incremental_from=f"{source}@gone"))
    assert replicated.value.args == (f"{source}@s2",)
    assert not datasets.exists(host, pool.ds("copy"))


def test_send_options_validation_and_openzfs_only_features(pool: TestPool, source: str) -> None:
    host = pool.host
    with pytest.raises(InvalidInput):
        transfer.send_argv(host, f"{source}@s2", SendOptions(incremental_from=f"{pool.name}@s1"))
    with pytest.raises(InvalidInput):
        transfer.send_argv(host, None, SendOptions())
    with pytest.raises(InvalidInput):
        transfer.send_argv(host, f"{source}", SendOptions())
    assert transfer.send_argv(host, f"{source}@s3", SendOptions(replicate=True, incremental_from=f"{source}@s1")) == [
        "zfs",
        "send",
        "-R",
        "-i",
        f"{source}@s1",
        f"{source}@s3",
    ]
    openzfs_only = [
        (SendOptions(raw=True), ["zfs", "send", "-w", f"{source}@s2"]),
        (SendOptions(resume_token="1-abc"), ["zfs", "send", "-t", "1-abc"]),
        (SendOptions(incremental_from=f"{source}#bm"), ["zfs", "send", "-i", f"{source}#bm", f"{source}@s2"]),
    ]
    openzfs = host.caps.has("resume_tokens")
    for opts, argv in openzfs_only:
        snapshot = None if opts.resume_token else f"{source}@s2"
        if openzfs:
            assert transfer.send_argv(host, snapshot, opts) == argv
        else:
            with pytest.raises(Unsupported):
                transfer.send_argv(host, snapshot, opts)
    if openzfs:
        assert transfer.receive_argv(host, pool.ds("x"), resumable=True) == ["zfs", "receive", "-s", "-u", pool.ds("x")]
        assert transfer.resume_token(host, source) is None
        with pytest.raises(InvalidInput):
            transfer.send_argv(host, None, SendOptions(resume_token="1-abc; rm -rf /"))
    else:
        with pytest.raises(Unsupported):
            transfer.receive_argv(host, pool.ds("x"), resumable=True)
        with pytest.raises(Unsupported):
            transfer.resume_token(host, pool.ds("x"))
        with pytest.raises(Unsupported):
            transfer.abort_resumable(host, pool.ds("x"))
    assert transfer.receive_argv(host, pool.ds("x"), force=True) == ["zfs", "receive", "-F", "-u", pool.ds("x")]
