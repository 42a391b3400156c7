"""Tampering with what is offsite is detected, restore refuses and says which object; a broken upload resumes at
the chunk where it stopped (kill -9 of a real process, or an SFTP server gone mid-stream), re-uploading no
completed chunk."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.clients import service
from appliance.offsite import config, envelope, keys, repo, restore, state
from appliance.offsite.errors import KeyMissing, OffsiteError, Tampered, TargetUnreachable
from appliance.offsite.targets.local import TMP_MARK, LocalTarget
from appliance.system.runner import local_runner
from appliance.zfs import datasets
from tests.clients_fixtures import REPO
from tests.offsite_fixtures import OffsiteEnv, SftpServer

pytestmark = pytest.mark.zfs


def two_streams(env: OffsiteEnv) -> tuple[list[Path], list[Path], repo.ChainInfo]:
    """A full and an incremental of several chunks each; their chunk files and the chain."""
    env.write("acme", "a.bin", os.urandom(400_000))
    env.point("acme")
    env.replicate()
    env.write("acme", "b.bin", os.urandom(300_000))
    env.point("acme")
    env.replicate()
    target = LocalTarget("usb", env.usb)
    (chain,) = restore.catalog(target, keys.all_keys(env.store, env.paths), "acme")
    dirs = [env.usb / repo.stream_dir("acme", "share", bytes.fromhex(s["stream_id"])) for s in chain.streams]
    chunks = [sorted(p for p in d.iterdir() if p.name != "manifest") for d in dirs]
    assert len(chunks[0]) > 4 and len(chunks[1]) > 3
    return chunks[0], chunks[1], chain


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def swap(a: Path, b: Path) -> None:
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


def cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def replay(env: OffsiteEnv, path: Path, index: int, stream_id: bytes) -> None:
    """Replace a chunk with another authentic version of itself (as an older upload of it would be)."""
    read_keys = keys.all_keys(env.store, env.paths)
    opened = envelope.Opener(read_keys, envelope.CHUNK, stream_id, limit=1 << 24).open(
        path.name, path.read_bytes(), index
    )
    key_id = opened.header.key_id
    blob, _ = envelope.Sealer(read_keys[key_id], key_id, envelope.CHUNK, stream_id).seal(opened.payload, index)
    path.write_bytes(blob)


CASES: dict[str, tuple[Callable[[OffsiteEnv, list[Path], list[Path], repo.ChainInfo], None], str]] = {
    "flipped byte in a chunk": (lambda e, a, b, c: flip(a[2], 300), "authentication tag does not match"),
    "flipped byte in a header": (lambda e, a, b, c: flip(a[2], 6), "authentication tag does not match"),
    "chunk removed": (lambda e, a, b, c: a[2].unlink(), "is missing"),
    "two chunks swapped": (lambda e, a, b, c: swap(a[1], a[2]), "reordered"),
    "chunk from another stream": (lambda e, a, b, c: a[1].write_bytes(b[1].read_bytes()), "spliced"),
    "stream truncated": (lambda e, a, b, c: [p.unlink() for p in a[-2:]] and None, "cut short"),
    "last chunk cut in half": (
        lambda e, a, b, c: a[-1].write_bytes(a[-1].read_bytes()[: a[-1].stat().st_size // 2]),
        "authentication tag",
    ),
    "stream manifest edited": (lambda e, a, b, c: flip(a[0].parent / "manifest", 70), "not the stream manifest"),
    "chain manifest edited": (
        lambda e, a, b, c: flip(e.usb / repo.chain_path("acme", "share", c.chain_id), 80),
        "authentication tag does not match",
    ),
    "chunk replayed": (
        lambda e, a, b, c: replay(e, a[1], 1, bytes.fromhex(c.streams[0]["stream_id"])),
        "replayed or replaced chunk",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_detected_and_restore_refuses(offsite_env: OffsiteEnv, case: str) -> None:
    env = offsite_env
    first, second, chain = two_streams(env)
    tamper, expected = CASES[case]
    tamper(env, first, second, chain)
    target = LocalTarget("usb", env.usb)
    read_keys = keys.all_keys(env.store, env.paths)
    dest = f"{env.env.pool.name}/restored"
    with pytest.raises(Tampered, match=expected) as caught:
        chains = restore.catalog(target, read_keys, "acme")
        restore.restore_chain(target, read_keys, env.zfs, chains[0], 1, dest)
    assert "clients/acme/share/" in caught.value.message  # it names the object
    assert not datasets.exists(env.zfs, dest)  # nothing unauthenticated was received


def test_wrong_or_missing_key_is_a_hard_error(offsite_env: OffsiteEnv) -> None:
    env = offsite_env
    two_streams(env)
    target = LocalTarget("usb", env.usb)
    (key_id,) = keys.all_keys(env.store, env.paths)
    with pytest.raises(KeyMissing, match=key_id.hex()):
        restore.catalog(target, {os.urandom(8): os.urandom(32)}, "acme")
    with pytest.raises(Tampered, match="wrong key"):
        restore.catalog(target, {key_id: os.urandom(32)}, "acme")
    # the kit with a wrong passphrase never yields a key
    doc = keys.kit_document(env.store, "test")
    with pytest.raises(OffsiteError, match="passphrase"):
        keys.keys_from_kit(doc, "not the passphrase at all")
    assert keys.keys_from_kit(doc, "correct horse battery staple") == keys.all_keys(env.store, env.paths)


UPLOADER = """
import sys
from pathlib import Path
from appliance.offsite import upload
from appliance.offsite.replicate import Replicator
from appliance.store import Store
from appliance.system.paths import Paths
from appliance.system.runner import local_runner
from appliance.zfs.host import ZfsHost
upload.CHUNK_SIZE = 64 * 1024
Replicator(Store.open(sys.argv[1]), Paths(Path(sys.argv[2])), ZfsHost.detect(local_runner()), "acme", "usb").run()
"""


def test_kill_9_mid_upload_resumes_without_reuploading_completed_chunks(
    offsite_env: OffsiteEnv, tmp_path: Path
) -> None:
    env = offsite_env
    env.write("acme", "big.bin", os.urandom(1_500_000))
    env.point("acme")
    config.set_policy(env.store, "acme", "usb", by="test", default_kbps=200)  # ~8 s for the whole stream
    log = (tmp_path / "uploader.log").open("wb")
    proc = local_runner().spawn(
        [sys.executable, "-c", UPLOADER, str(tmp_path / "bulwark.db"), str(env.paths.data_dir)],
        stdout=log, stderr=log, inherit_env=True, env={"PYTHONPATH": str(REPO)}, cwd=str(REPO),
    )  # fmt: skip
    journal_dir = env.paths.data_dir / "offsite" / "journal"
    deadline = time.monotonic() + 60
    while not (list(journal_dir.glob("*")) and list(journal_dir.glob("*"))[0].stat().st_size >= 5 * 56):
        assert proc.poll() is None, (tmp_path / "uploader.log").read_text()
        assert time.monotonic() < deadline, "the upload did not get going"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.stop(timeout=10) == -signal.SIGKILL
    (uploading,) = state.streams(env.store, "usb", "acme", "share", "uploading")
    done = (journal_dir / uploading.id).stat().st_size // 56
    sdir = env.usb / repo.stream_dir("acme", "share", bytes.fromhex(uploading.id))
    chunks = [p for p in sdir.iterdir() if TMP_MARK not in p.name]  # a killed run may leave temporary files
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in chunks if int(p.name) < done}
    assert len(before) == done and not (sdir / "manifest").exists()

    config.set_policy(env.store, "acme", "usb", by="test", default_kbps=None)
    report = env.replicate()
    assert report.resumed == [uploading.id]
    (stream,) = report.streams
    assert stream["resumed_from"] == done and stream["uploaded_chunks"] == stream["chunks"] - done
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sdir.iterdir() if p.name in before}
    assert after == before  # no completed chunk was uploaded again
    assert not [p for p in env.usb.rglob("*") if TMP_MARK in p.name]  # the resumed run swept them
    target = LocalTarget("usb", env.usb)
    read_keys = keys.all_keys(env.store, env.paths)
    (chain,) = restore.catalog(target, read_keys, "acme")
    dest = f"{env.env.pool.name}/restored"
    restore.restore_chain(target, read_keys, env.zfs, chain, 0, dest)
    datasets.mount(env.zfs, dest)
    live = env.env.live("acme")
    assert (env.env.pool.mountpoint / "restored" / "big.bin").read_bytes() == (live / "big.bin").read_bytes()
    assert service.get_client(env.store, "acme").name == "acme"


def test_broken_sftp_link_resumes_at_the_chunk_where_it_stopped(
    offsite_env: OffsiteEnv, sftp_server: SftpServer, tmp_path: Path
) -> None:
    env = offsite_env
    identity = sftp_server.client_key
    c = sftp_server.config()
    raw = {"host": c.host, "port": c.port, "user": c.user, "path": c.path, "host_key": c.host_key}
    config.add_target(env.store, "dc", "sftp", raw, identity, by="test")
    config.set_policy(env.store, "acme", "dc", by="test", default_kbps=400)
    env.write("acme", "big.bin", os.urandom(1_200_000))
    env.point("acme")
    outcome: list[BaseException | None] = []

    def upload() -> None:
        try:
            env.replicate(target="dc")
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)
        finally:
            env.store.close_thread()

    worker = threading.Thread(target=upload)
    worker.start()
    journal_dir = env.paths.data_dir / "offsite" / "journal"
    deadline = time.monotonic() + 60
    while not (list(journal_dir.glob("*")) and list(journal_dir.glob("*"))[0].stat().st_size >= 4 * 56):
        assert worker.is_alive() and time.monotonic() < deadline, outcome
        time.sleep(0.05)
    sftp_server.stop()  # the link breaks mid-stream
    worker.join(timeout=120)
    (error,) = outcome
    assert isinstance(error, TargetUnreachable), error
    (uploading,) = state.streams(env.store, "dc", "acme", "share", "uploading")
    done = (journal_dir / uploading.id).stat().st_size // 56

    sftp_server.start()
    config.set_policy(env.store, "acme", "dc", by="test", default_kbps=None)
    report = env.replicate(target="dc")
    (stream,) = report.streams
    assert report.resumed == [uploading.id] and stream["resumed_from"] == done >= 4
    assert stream["uploaded_chunks"] == stream["chunks"] - done
    target = config.open_target(env.store, env.paths, "dc")
    (chain,) = restore.catalog(target, keys.all_keys(env.store, env.paths), "acme")
    dest = f"{env.env.pool.name}/from-sftp"
    restore.restore_chain(target, keys.all_keys(env.store, env.paths), env.zfs, chain, 0, dest)
    target.close()
    datasets.mount(env.zfs, dest)
    restored = (env.env.pool.mountpoint / "from-sftp" / "big.bin").read_bytes()
    assert restored == (env.env.live("acme") / "big.bin").read_bytes()
