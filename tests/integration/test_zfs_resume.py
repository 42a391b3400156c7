"""Resumable receives on OpenZFS: a receive cut short keeps what it got and names a token; a send from that
token finishes it, or the partial state is discarded. zfs-fuse refuses all of it as unsupported."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.system.errors import Unsupported
from appliance.zfs import datasets, errors, snapshots, transfer
from appliance.zfs.transfer import SendOptions
from tests.zfs_fixtures import TestPool, only_openzfs, only_zfs_fuse

pytestmark = pytest.mark.zfs
MiB = 1024 * 1024


@pytest.fixture
def source(pool: TestPool) -> str:
    """``POOL/src@s1``: 4 MiB of random data, uncompressed."""
    name = pool.ds("src")
    datasets.create(pool.host, name, {"compression": "off"})
    pool.fs.write_random(pool.path("src") / "data", 4 * MiB)
    pool.fs.write(pool.path("src") / "note", b"small file")
    snapshots.create(pool.host, name, "s1")
    return f"{name}@s1"


@only_zfs_fuse
def test_resumable_receive_needs_openzfs(pool: TestPool) -> None:
    host = pool.host
    for call in (
        lambda: transfer.receive_argv(host, pool.ds("copy"), resumable=True),
        lambda: transfer.send_argv(host, None, SendOptions(resume_token="1-abc")),
        lambda: transfer.resume_token(host, pool.name),
        lambda: transfer.abort_resumable(host, pool.ds("copy")),
    ):
        with pytest.raises(Unsupported, match="resumable receive"):
            call()


@only_openzfs
def test_an_interrupted_receive_resumes_from_its_token(pool: TestPool, source: str) -> None:
    host, target = pool.host, pool.ds("copy")
    # The connection breaks after 2 MiB: the receiver sees its stream end early.
    with pytest.raises(errors.ReceiveInterrupted) as interrupted:
        with transfer.send(host, source) as stream, transfer.receive(host, target, resumable=True) as sink:
            sink.write(stream.read(2 * MiB))
    token = interrupted.value.resume_token
    assert token.startswith("1-")
    assert transfer.resume_token(host, target) == token
    assert snapshots.list_snapshots(host, target) == []  # nothing complete yet

    resumed = 0
    with transfer.send(host, None, SendOptions(resume_token=token)) as stream:
        with transfer.receive(host, target, resumable=True) as sink:
            while chunk := stream.read(256 * 1024):
                resumed += len(chunk)
                sink.write(chunk)
    assert 0 < resumed < 3 * MiB  # only the rest was sent
    assert [s.name for s in snapshots.list_snapshots(host, target)] == [f"{target}@s1"]
    assert transfer.resume_token(host, target) is None
    assert pool.snapshot_files(f"{target}@s1") == pool.snapshot_files(source)


@only_openzfs
def test_an_interrupted_receive_from_a_file_can_be_aborted(pool: TestPool, source: str, tmp_path: Path) -> None:
    host, target = pool.host, pool.ds("copy")
    whole = tmp_path / "stream"
    with whole.open("wb") as out:
        transfer.send_to_file(host, source, out)
    cut = tmp_path / "cut"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    with cut.open("rb") as src, pytest.raises(errors.ReceiveInterrupted):
        transfer.receive_from_file(host, target, src, resumable=True)
    assert transfer.resume_token(host, target) is not None
    transfer.abort_resumable(host, target)
    assert not datasets.exists(host, target)
    with whole.open("rb") as src:  # and the whole stream is received from the start again
        transfer.receive_from_file(host, target, src, resumable=True)
    assert pool.snapshot_files(f"{target}@s1") == pool.snapshot_files(source)
