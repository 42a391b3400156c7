"""A local target that fails in the middle of a stream (its disk fills up): the run stops with the target's
error, every chunk the journal counts is in place, no temporary file is left behind, and the next run resumes
from the journal and gives a stream that restores byte-identical."""

from __future__ import annotations

import os
import time

import pytest

from appliance.offsite import keys, repo, restore, state
from appliance.offsite.errors import TargetUnreachable
from appliance.offsite.targets.local import TMP_MARK, LocalTarget, StagedFile
from appliance.system.errors import OutOfSpace
from appliance.zfs import datasets
from tests.offsite_fixtures import OffsiteEnv

pytestmark = pytest.mark.zfs


def test_a_full_disk_mid_stream_leaves_no_temporary_files_and_resumes(
    offsite_env: OffsiteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = offsite_env
    env.write("acme", "big.bin", os.urandom(2_000_000))  # ~31 chunks of 64 KiB
    env.point("acme")
    real_stage, real_commit = LocalTarget.stage, StagedFile.commit
    calls: list[str] = []
    committed: list[StagedFile] = []

    def slow_disk(self: StagedFile) -> None:
        time.sleep(0.1)
        real_commit(self)
        committed.append(self)

    def filling_up(self: LocalTarget, path: str, data: bytes | bytearray | memoryview) -> StagedFile:
        calls.append(path)
        if len(calls) > 12:
            deadline = time.monotonic() + 30
            while len(committed) < 2 and time.monotonic() < deadline:  # some chunks are done, others wait
                time.sleep(0.01)
            raise OutOfSpace(f"offsite target {self.name} ({self.root})")
        return real_stage(self, path, data)

    monkeypatch.setattr(LocalTarget, "stage", filling_up)
    monkeypatch.setattr(StagedFile, "commit", slow_disk)  # chunks wait to be flushed when the disk fills up
    with pytest.raises(OutOfSpace):
        env.replicate()
    (uploading,) = state.streams(env.store, "usb", "acme", "share", "uploading")
    journal = env.paths.data_dir / "offsite" / "journal" / uploading.id
    done = journal.stat().st_size // 56
    sdir = env.usb / repo.stream_dir("acme", "share", bytes.fromhex(uploading.id))
    assert not [p for p in env.usb.rglob("*") if TMP_MARK in p.name]  # staged but not put: removed
    names = sorted(int(p.name) for p in sdir.iterdir())
    assert 0 < done < 12 and names[:done] == list(range(done))  # the journal counts only chunks in place
    assert not (sdir / "manifest").exists()

    monkeypatch.setattr(LocalTarget, "stage", real_stage)
    monkeypatch.setattr(StagedFile, "commit", real_commit)
    report = env.replicate()
    (stream,) = report.streams
    assert report.resumed == [uploading.id] and stream["resumed_from"] == done
    assert stream["uploaded_chunks"] == stream["chunks"] - done > 12
    assert not [p for p in env.usb.rglob("*") if TMP_MARK in p.name]
    target = LocalTarget("usb", env.usb)
    read_keys = keys.all_keys(env.store, env.paths)
    (chain,) = restore.catalog(target, read_keys, "acme")
    dest = f"{env.env.pool.name}/restored"
    restore.restore_chain(target, read_keys, env.zfs, chain, 0, dest)
    datasets.mount(env.zfs, dest)
    restored = (env.env.pool.mountpoint / "restored" / "big.bin").read_bytes()
    assert restored == (env.env.live("acme") / "big.bin").read_bytes()


def test_a_chunk_that_fails_to_be_put_ends_the_journal_even_when_later_ones_are_put(
    offsite_env: OffsiteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = offsite_env
    env.write("acme", "big.bin", os.urandom(1_500_000))  # ~23 chunks of 64 KiB
    env.point("acme")
    real_commit = StagedFile.commit
    put_after: list[str] = []

    def pulled_disk(self: StagedFile) -> None:
        name = self._final.name
        if name == "00000005":
            time.sleep(0.3)  # the chunks after it are put meanwhile
            raise TargetUnreachable("usb", "the disk was pulled")
        real_commit(self)
        if name.isdigit() and int(name) > 5:
            put_after.append(name)

    monkeypatch.setattr(StagedFile, "commit", pulled_disk)
    with pytest.raises(TargetUnreachable, match="pulled"):
        env.replicate()
    assert put_after  # later chunks were in place when chunk 5 failed
    (uploading,) = state.streams(env.store, "usb", "acme", "share", "uploading")
    journal = env.paths.data_dir / "offsite" / "journal" / uploading.id
    assert journal.stat().st_size == 5 * 56  # exactly the chunks before the failed one

    monkeypatch.setattr(StagedFile, "commit", real_commit)
    report = env.replicate()
    (stream,) = report.streams
    assert stream["resumed_from"] == 5 and stream["uploaded_chunks"] == stream["chunks"] - 5
    target = LocalTarget("usb", env.usb)
    read_keys = keys.all_keys(env.store, env.paths)
    (chain,) = restore.catalog(target, read_keys, "acme")
    dest = f"{env.env.pool.name}/restored"
    restore.restore_chain(target, read_keys, env.zfs, chain, 0, dest)
    datasets.mount(env.zfs, dest)
    restored = (env.env.pool.mountpoint / "restored" / "big.bin").read_bytes()
    assert restored == (env.env.live("acme") / "big.bin").read_bytes()
