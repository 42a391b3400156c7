"""A local target that fails in the middle of a stream (its disk fills up): the run stops with the target's
error, every chunk the journal counts is in place, no temporary file is left behind, and the next run resumes
from the journal and gives a stream that restores byte-identical."""

from __future__ import annotations

import os
import time

import pytest

from appliance.offsite import keys, repo, restore, state
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
