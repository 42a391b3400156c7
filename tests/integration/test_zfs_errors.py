"""Every error that ``appliance.zfs.errors`` classifies, provoked on zfs-fuse and on OpenZFS.

Each test runs on both implementations; the errors of features only OpenZFS has (native encryption, resumable
receives, bookmarks, ``zfs diff``) are provoked on OpenZFS, and on zfs-fuse the same call must say the
feature is not supported there. Where the driver's own validation stops a bad value before zfs sees it,
``host.zfs``/``host.zpool`` are called directly to prove the classifier. ``PoolSuspended`` is not provoked:
a suspended pool blocks the writers of its clients (a zfs-fuse daemon's, the OpenZFS machine's kernel
threads) beyond what a test can undo, and no recording has it; it stays unverified.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

import pytest

from appliance.system.errors import Unsupported
from appliance.system.runner import CommandResult, Runner, RunningCommand, Stream
from appliance.zfs import (
    bookmarks,
    datasets,
    diff,
    encryption,
    errors,
    holds,
    pools,
    properties,
    snapshots,
    status,
    transfer,
)
from appliance.zfs.capabilities import ZFS_FUSE
from appliance.zfs.host import ZfsHost
from tests.zfs_fixtures import PoolMaker, TestPool, new_pool_name

pytestmark = pytest.mark.zfs
MiB = 1024 * 1024
F = TypeVar("F", bound=Callable[..., None])

# error class → the test below that provokes it
PROVOKED: dict[type[errors.BulwarkError], str] = {}


def provokes(*classes: type[errors.BulwarkError]) -> Callable[[F], F]:
    def mark(test: F) -> F:
        for cls in classes:
            PROVOKED[cls] = test.__name__
        return test

    return mark


class NoDaemonRunner:
    """Runs the real programs where no ZFS can be reached, in a private mount namespace: for zfs-fuse an
    empty tmpfs over the daemon's socket directory (the shared daemon is left alone); in the OpenZFS machine
    an empty /dev, without /dev/zfs (and no waiting for a module load that cannot help)."""

    def __init__(self, runner: Runner, implementation: str) -> None:
        self.runner = runner
        self.implementation = implementation

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 30,
        ok_codes: Sequence[int] = (0,),
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        if self.implementation == ZFS_FUSE:
            script = 'mount -t tmpfs tmpfs /run/zfs && exec "$@"'
            wrapped = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]
        else:
            script = 'mount -t tmpfs tmpfs /dev && exec "$@"'
            wrapped = ["env", "ZFS_MODULE_TIMEOUT=0", "unshare", "-m", "sh", "-c", script, "sh", *argv]
        return self.runner.run(wrapped, input=input, timeout=timeout, ok_codes=ok_codes, env=env)

    def stream(
        self,
        argv: Sequence[str],
        *,
        stdin: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> contextlib.AbstractContextManager[Stream]:
        raise NotImplementedError

    def running(self) -> list[RunningCommand]:
        return []


@provokes(errors.ZfsNotRunning)
def test_zfs_not_running(zfs_host: ZfsHost) -> None:
    unreachable = NoDaemonRunner(zfs_host.runner, zfs_host.caps.implementation)
    host = ZfsHost(unreachable, zfs_host.caps)
    with pytest.raises(errors.ZfsNotRunning) as exc_info:
        pools.list_pools(host)
    assert exc_info.value.retryable
    with pytest.raises(errors.ZfsNotRunning):
        datasets.list_names(host, "any")
    if zfs_host.caps.implementation == ZFS_FUSE:  # (OpenZFS's 'zfs version' answers without the module)
        with pytest.raises(errors.ZfsNotRunning):
            ZfsHost.detect(unreachable)


@provokes(errors.PoolNotFound)
def test_pool_not_found(pool: TestPool) -> None:
    host, missing = pool.host, new_pool_name()
    with pytest.raises(errors.PoolNotFound) as exc_info:
        pools.get_pool(host, missing)
    assert str(exc_info.value) == f"Pool {missing} does not exist or is not imported."
    for call in (status.pool_status, pools.scrub_start, pools.export_pool, pools.destroy_pool):
        with pytest.raises(errors.PoolNotFound):
            call(host, missing)
    with pytest.raises(errors.PoolNotFound):
        pools.import_pool(host, missing, [str(pool.directory)])


@provokes(errors.PoolExists)
def test_pool_exists(pool: TestPool, pool_maker: PoolMaker) -> None:
    with pytest.raises(errors.PoolExists):
        pools.create_pool(pool.host, pool.name, pool_maker.files(1))


@provokes(errors.DeviceInUse)
def test_device_in_use(pool: TestPool) -> None:
    other = new_pool_name()
    with pytest.raises(errors.DeviceInUse) as exc_info:
        pools.create_pool(pool.host, other, [pool.devices[0]])
    assert exc_info.value.args == (pool.devices[0],)
    assert not pools.exists(pool.host, other)


@provokes(errors.DeviceNotFound)
def test_device_not_found(pool: TestPool) -> None:
    missing = str(pool.directory / "no-such-device.img")
    with pytest.raises(errors.DeviceNotFound) as exc_info:
        pools.create_pool(pool.host, new_pool_name(), [missing])
    assert exc_info.value.args == (missing,)
    with pytest.raises(errors.DeviceNotFound) as offline:
        pools.offline_device(pool.host, pool.name, missing)
    assert offline.value.args == (missing,)


@provokes(errors.DatasetNotFound)
def test_dataset_not_found(pool: TestPool) -> None:
    host, missing = pool.host, pool.ds("nope")
    for call in (datasets.get_dataset, datasets.destroy, datasets.unmount):
        with pytest.raises(errors.DatasetNotFound) as exc_info:
            call(host, missing)
        assert exc_info.value.args == (missing,)
    with pytest.raises(errors.DatasetNotFound):
        snapshots.create(host, missing, "s1")
    with pytest.raises(errors.DatasetNotFound):
        snapshots.rollback(host, f"{pool.name}@nope")
    with pytest.raises(errors.DatasetNotFound):
        properties.set_properties(host, missing, {"bulwark:x": "1"})
    if host.caps.has("bookmarks"):
        datasets.create(host, pool.ds("a"))
        with pytest.raises(errors.DatasetNotFound):  # "bookmark '…' does not exist."
            bookmarks.destroy(host, pool.ds("a#nope"))
        with pytest.raises(errors.DatasetNotFound):
            bookmarks.create(host, pool.ds("a@nope"), "b1")


@provokes(errors.ParentNotFound)
def test_parent_not_found(pool: TestPool) -> None:
    with pytest.raises(errors.ParentNotFound) as exc_info:
        datasets.create(pool.host, pool.ds("a/b"))
    assert exc_info.value.args == (pool.ds("a/b"),)


@provokes(errors.DatasetExists)
def test_dataset_exists(pool: TestPool) -> None:
    host = pool.host
    datasets.create(host, pool.ds("a"))
    snapshots.create(host, pool.ds("a"), "s1")
    snapshots.create(host, pool.ds("a"), "s2")
    with pytest.raises(errors.DatasetExists):
        datasets.create(host, pool.ds("a"))
    with pytest.raises(errors.DatasetExists):
        snapshots.create(host, pool.ds("a"), "s1")
    with pytest.raises(errors.DatasetExists):
        snapshots.rename(host, pool.ds("a@s2"), "s1")
    with pytest.raises(errors.DatasetExists):
        snapshots.clone(host, pool.ds("a@s1"), pool.ds("a"))
    if host.caps.has("bookmarks"):
        bookmarks.create(host, pool.ds("a@s1"), "b1")
        with pytest.raises(errors.DatasetExists):  # "cannot create bookmark '…': bookmark exists"
            bookmarks.create(host, pool.ds("a@s2"), "b1")


@provokes(errors.DatasetBusy)
def test_dataset_busy(pool: TestPool) -> None:
    datasets.create(pool.host, pool.ds("busy"))
    with pool.fs.hold_open(pool.path("busy") / "open"):
        with pytest.raises(errors.DatasetBusy) as exc_info:
            datasets.unmount(pool.host, pool.ds("busy"))
    assert exc_info.value.retryable
    datasets.unmount(pool.host, pool.ds("busy"))


@provokes(errors.SnapshotHeld)
def test_snapshot_held(pool: TestPool) -> None:
    snap = f"{pool.name}@s1"
    snapshots.create(pool.host, pool.name, "s1")
    holds.hold(pool.host, snap, "keep")
    with pytest.raises(errors.SnapshotHeld) as exc_info:
        snapshots.destroy(pool.host, snap)
    assert exc_info.value.args == (snap, 1)
    assert not exc_info.value.retryable
    holds.release(pool.host, snap, "keep")


@provokes(errors.HasChildren)
def test_has_children(pool: TestPool) -> None:
    datasets.create(pool.host, pool.ds("a/clones"), parents=True)  # (a child whose name says "clones")
    with pytest.raises(errors.HasChildren):
        datasets.destroy(pool.host, pool.ds("a"))


@provokes(errors.HasDependentClones)
def test_has_dependent_clones(pool: TestPool) -> None:
    host = pool.host
    datasets.create(host, pool.ds("a"))
    snapshots.create(host, pool.ds("a"), "s1")
    snapshots.clone(host, pool.ds("a@s1"), pool.ds("clone"))
    with pytest.raises(errors.HasDependentClones):
        snapshots.destroy(host, pool.ds("a@s1"))
    with pytest.raises(errors.HasDependentClones):
        datasets.destroy(host, pool.ds("a"), recursive=True)


@provokes(errors.NewerSnapshotsExist)
def test_newer_snapshots_exist(pool: TestPool) -> None:
    snapshots.create(pool.host, pool.name, "s1")
    snapshots.create(pool.host, pool.name, "s2")
    with pytest.raises(errors.NewerSnapshotsExist):
        snapshots.rollback(pool.host, f"{pool.name}@s1")


@provokes(errors.PoolOutOfSpace)
def test_out_of_space_full_quota(pool: TestPool, tmp_path: Path) -> None:
    host = pool.host
    datasets.create(host, pool.ds("src"))
    pool.fs.write_random(pool.path("src") / "big", 4 * MiB)
    snapshots.create(host, pool.ds("src"), "s1")
    datasets.create(host, pool.ds("limited"), {"quota": "1M"})
    stream = tmp_path / "stream"
    with stream.open("wb") as out:
        transfer.send_to_file(host, pool.ds("src@s1"), out)
    with stream.open("rb") as src, pytest.raises(errors.PoolOutOfSpace):
        transfer.receive_from_file(host, pool.ds("limited/copy"), src)


@provokes(errors.QuotaTooSmall)
def test_quota_too_small(pool: TestPool) -> None:
    datasets.create(pool.host, pool.ds("full"))
    pool.fs.write_random(pool.path("full") / "data", 2 * MiB)
    with pytest.raises(errors.QuotaTooSmall):
        datasets.set_quota(pool.host, pool.ds("full"), "1M", ref=True)


@provokes(errors.InvalidZfsName)
def test_invalid_zfs_name(pool: TestPool, pool_maker: PoolMaker) -> None:
    # The driver's own validation refuses these first; straight to zfs/zpool to prove the classifier.
    for bad in (pool.ds("bad%"), pool.ds("a@b@c"), pool.ds("x" * 300), pool.ds("x/"), f"{pool.name}//x"):
        with pytest.raises(errors.InvalidZfsName):
            pool.host.zfs("create", bad, subject=bad)
    [free] = pool_maker.files(1)
    with pytest.raises(errors.InvalidZfsName, match="name is reserved"):
        pool.host.zpool("create", "mirrorpool", free, subject="mirrorpool")


@provokes(errors.InvalidProperty)
def test_invalid_property(pool: TestPool) -> None:
    host = pool.host
    unknown = "lz4" if host.caps.implementation == ZFS_FUSE else "lz5"  # (zfs-fuse has no lz4)
    with pytest.raises(errors.InvalidProperty, match="must be one of"):
        datasets.create(host, pool.ds("a"), {"compression": unknown})
    with pytest.raises(errors.InvalidProperty, match="invalid property 'nosuchprop'"):
        datasets.create(host, pool.ds("a"), {"nosuchprop": "1"})
    with pytest.raises(errors.InvalidProperty, match="'used' is readonly"):
        properties.set_properties(host, pool.name, {"used": "1"})
    with pytest.raises(errors.InvalidProperty, match="bad numeric value"):
        properties.set_properties(host, pool.name, {"quota": "lots"})
    with pytest.raises(errors.InvalidProperty, match="cannot be inherited"):
        properties.inherit(host, pool.name, "quota")
    assert not datasets.exists(host, pool.ds("a"))


@provokes(errors.HoldNotFound, errors.HoldExists)
def test_hold_tag_not_found_and_exists(pool: TestPool) -> None:
    snapshots.create(pool.host, pool.name, "s1")
    snap = f"{pool.name}@s1"
    with pytest.raises(errors.HoldNotFound):
        holds.release(pool.host, snap, "keep")
    holds.hold(pool.host, snap, "keep")
    with pytest.raises(errors.HoldExists):
        holds.hold(pool.host, snap, "keep")
    holds.release(pool.host, snap, "keep")


@provokes(errors.ReceiveDestinationExists, errors.IncrementalSourceMismatch, errors.InvalidStream)
def test_receive_errors(pool: TestPool) -> None:
    host = pool.host
    datasets.create(host, pool.ds("src"))
    for name in ("s1", "s2", "s3"):
        pool.fs.write(pool.path("src") / name, name.encode())
        snapshots.create(host, pool.ds("src"), name)
    transfer.replicate(host, pool.ds("src@s1"), pool.ds("dst"))
    with pytest.raises(errors.ReceiveDestinationExists):
        transfer.replicate(host, pool.ds("src@s2"), pool.ds("dst"))
    with pytest.raises(errors.IncrementalSourceMismatch):
        transfer.replicate(
            host, pool.ds("src@s3"), pool.ds("dst"), transfer.SendOptions(incremental_from=pool.ds("src@s2"))
        )
    with pytest.raises(errors.InvalidStream):
        with transfer.receive(host, pool.ds("junk")) as sink:
            sink.write(os.urandom(256 * 1024))


@provokes(errors.ZfsCommandFailed)
def test_unclassified_failure_is_a_generic_zfs_error(pool: TestPool) -> None:
    with pytest.raises(errors.ZfsCommandFailed, match="no valid replicas"):
        pools.offline_device(pool.host, pool.name, pool.devices[0])


PASSPHRASE = b"correct horse battery staple"


@provokes(errors.EncryptionKeyNotLoaded, errors.EncryptionKeyAlreadyLoaded, errors.IncorrectKey, errors.NotEncrypted)
def test_encryption_key_errors(pool: TestPool, tmp_path: Path) -> None:
    host, name = pool.host, pool.ds("enc")
    if not host.caps.has("native_encryption"):
        for call in (encryption.create, encryption.load_key):
            with pytest.raises(Unsupported, match="native encryption"):
                call(host, name, PASSPHRASE)
        with pytest.raises(Unsupported, match="native encryption"):
            encryption.unload_key(host, name)
        return
    encryption.create(host, name, PASSPHRASE, pbkdf2_iterations=100_000)
    snapshots.create(host, name, "s1")
    with pytest.raises(errors.EncryptionKeyAlreadyLoaded):  # "Key load error: Key already loaded for '…'."
        encryption.load_key(host, name, PASSPHRASE)
    with pytest.raises(errors.DatasetBusy):  # "Key unload error: '…' is busy." (it is mounted)
        encryption.unload_key(host, name)
    datasets.unmount(host, name)
    encryption.unload_key(host, name)
    with pytest.raises(errors.EncryptionKeyNotLoaded):  # "Key unload error: Key already unloaded for '…'."
        encryption.unload_key(host, name)
    with pytest.raises(errors.EncryptionKeyNotLoaded):  # "cannot mount '…': encryption key not loaded"
        datasets.mount(host, name)
    with pytest.raises(errors.EncryptionKeyNotLoaded):  # "… cannot send '…': dataset key must be loaded"
        with (tmp_path / "stream").open("wb") as out:
            transfer.send_to_file(host, f"{name}@s1", out)
    with pytest.raises(errors.IncorrectKey):  # "Key load error: Incorrect key provided for '…'."
        encryption.load_key(host, name, b"not the passphrase")
    with pytest.raises(errors.NotEncrypted):  # "Key load error: '…' is not encrypted."
        encryption.load_key(host, pool.name, PASSPHRASE)
    assert not encryption.info(host, name).key_loaded


@provokes(errors.ReceiveInterrupted, errors.ResumeTokenInvalid, errors.NoResumableReceive)
def test_resumable_receive_errors(pool: TestPool, tmp_path: Path) -> None:
    host = pool.host
    if not host.caps.has("resume_tokens"):
        with pytest.raises(Unsupported, match="resumable receive"):
            transfer.receive_argv(host, pool.ds("copy"), resumable=True)
        return
    datasets.create(host, pool.ds("src"))
    pool.fs.write_random(pool.path("src") / "data", 2 * MiB)
    snapshots.create(host, pool.ds("src"), "s1")
    stream = tmp_path / "stream"
    with stream.open("wb") as out:
        transfer.send_to_file(host, pool.ds("src@s1"), out)
    stream.write_bytes(stream.read_bytes()[: 1 * MiB])
    with stream.open("rb") as src, pytest.raises(errors.ReceiveInterrupted) as cut:
        transfer.receive_from_file(host, pool.ds("copy"), src, resumable=True)
    assert cut.value.resume_token == transfer.resume_token(host, pool.ds("copy"))
    assert cut.value.retryable
    with pytest.raises(errors.ResumeTokenInvalid):  # "cannot resume send: resume token is corrupt (…)"
        with transfer.send(host, None, transfer.SendOptions(resume_token="1-0123abc")) as out:
            out.read()
    transfer.abort_resumable(host, pool.ds("copy"))
    with pytest.raises(errors.NoResumableReceive):  # "'…' does not have any resumable receive state to abort"
        transfer.abort_resumable(host, pool.ds("src"))


@provokes(errors.DatasetNotMounted)
def test_diff_of_an_unmounted_dataset(pool: TestPool) -> None:
    host = pool.host
    datasets.create(host, pool.ds("a"))
    snapshots.create(host, pool.ds("a"), "s1")
    if not host.caps.has("diff"):
        with pytest.raises(Unsupported, match="'zfs diff'"):
            diff.diff(host, pool.ds("a@s1"))
        return
    datasets.unmount(host, pool.ds("a"))
    with pytest.raises(errors.DatasetNotMounted):  # "Cannot diff an unmounted snapshot: …"
        diff.diff(host, pool.ds("a@s1"))


def test_every_classified_error_is_provoked() -> None:
    classified = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.BulwarkError) and cls.__module__ == errors.__name__
    }
    not_provokable = {errors.PoolSuspended}  # (see the module docstring)
    assert classified - not_provokable == set(PROVOKED)
