"""``appliance.zfs.errors.classify`` on every recorded stderr of a failed zfs/zpool command, from real
OpenZFS 2.3.2 and zfs-fuse 0.7.0. ``tests/integration/test_zfs_errors.py`` provokes the same errors again
on a live zfs-fuse pool; patterns only OpenZFS prints are proven here, on its recordings."""

from __future__ import annotations

import pytest

from appliance.system.errors import (
    AlreadyExists,
    BulwarkError,
    Busy,
    CommandFailed,
    Conflict,
    ExternalCommandError,
    InvalidInput,
    NotFound,
    OutOfSpace,
    all_error_classes,
)
from appliance.zfs import errors
from appliance.zfs.errors import classify
from tests.replay import OPENZFS, ZFS_FUSE, Recordings

oz = Recordings(OPENZFS)
fz = Recordings(ZFS_FUSE)

# recording → (error class, its arguments as the message shows them; "S" stands for the subject)
OPENZFS_STDERR: dict[str, tuple[type[BulwarkError], tuple[object, ...] | None]] = {
    "zfs_destroy_held": (errors.SnapshotHeld, ("S", "one or more")),
    "zfs_get_nonexistent": (errors.DatasetNotFound, ("S",)),
    "zfs_list_aborted": (errors.DatasetNotFound, ("S",)),
    "zfs_rollback_fail": (errors.NewerSnapshotsExist, ("S",)),
    # (the token the message names is the dataset's receive_resume_token, recorded right after)
    "zfs_recv_s_interrupted": (errors.ReceiveInterrupted, ("S", oz["zfs_get_resume_token"].out.strip())),
    "zfs_recv_s_partial2": (errors.ReceiveInterrupted, None),
    "zfs_mount_no_key": (errors.EncryptionKeyNotLoaded, ("S",)),
    "zfs_send_enc_no_key": (errors.EncryptionKeyNotLoaded, ("S",)),
    "zfs_load_key_wrong": (errors.IncorrectKey, ("S",)),
    # not classified (channel programs are not used by the driver): a generic error
    "zfs_program_error": (errors.ZfsCommandFailed, ("zfs get", "Channel program execution failed:")),
}

ZFS_FUSE_STDERR: dict[str, tuple[type[BulwarkError], tuple[object, ...] | None]] = {
    "zpool_list_no_daemon": (errors.ZfsNotRunning, ("internal error: failed to initialize ZFS library",)),
    "zfs_list_no_daemon": (errors.ZfsNotRunning, ("internal error: failed to initialize ZFS library",)),
    "zpool_import_d_missing": (errors.PoolNotFound, ("S",)),
    "zpool_list_Ho_missing": (errors.PoolNotFound, ("S",)),
    "zpool_status_missing": (errors.PoolNotFound, ("S",)),
    "zpool_scrub_missing": (errors.PoolNotFound, ("S",)),
    "zpool_destroy_missing": (errors.PoolNotFound, ("S",)),
    "zpool_create_exists": (errors.PoolExists, ("S",)),
    "zpool_create_in_use": (errors.DeviceInUse, None),
    "zpool_create_no_device": (errors.DeviceNotFound, None),
    "zpool_offline_missing": (errors.DeviceNotFound, None),
    "zpool_create_reserved": (errors.InvalidZfsName, ("S", "cannot create 'mirror2': name is reserved")),
    "zpool_create_bad_name": (
        errors.InvalidZfsName,
        ("S", "cannot create 'fz%bad': invalid character '%' in pool name"),
    ),
    "zfs_create_bad_char": (errors.InvalidZfsName, ("S", "cannot create 'fzsingle/bad%': invalid character % in name")),
    "zfs_create_two_at": (
        errors.InvalidZfsName,
        ("S", "cannot create 'fzsingle/a@b@c': multiple '@' delimiters in name"),
    ),
    "zfs_create_too_long": (errors.InvalidZfsName, None),
    "zfs_create_empty_component": (
        errors.InvalidZfsName,
        ("S", "cannot create 'fzsingle//x': empty component in name"),
    ),
    "zfs_create_trailing_slash": (errors.InvalidZfsName, ("S", "cannot create 'fzsingle/x/': trailing slash in name")),
    "zfs_snapshot_bad_char": (errors.InvalidZfsName, None),
    "zfs_list_Ho_missing": (errors.DatasetNotFound, ("S",)),
    "zfs_get_Hpo_missing": (errors.DatasetNotFound, ("S",)),
    "zfs_snapshot_missing_ds": (errors.DatasetNotFound, ("S",)),
    "zfs_rollback_missing": (errors.DatasetNotFound, ("S",)),
    "zfs_send_missing": (errors.DatasetNotFound, ("S",)),
    "zfs_send_i_missing": (errors.DatasetNotFound, ("S",)),
    "zfs_receive_no_parent": (errors.DatasetNotFound, ("S",)),
    "zfs_create_no_parent": (errors.ParentNotFound, ("S",)),
    "zfs_create_exists": (errors.DatasetExists, ("S",)),
    "zfs_snapshot_exists": (errors.DatasetExists, ("S",)),
    "zfs_rename_exists": (errors.DatasetExists, ("S",)),
    "zfs_set_quota_small": (errors.QuotaTooSmall, ("S",)),
    "zfs_set_readonly_prop": (
        errors.InvalidProperty,
        ("S", "cannot set property for 'fzsingle/a': 'used' is readonly"),
    ),
    "zfs_inherit_readonly_prop": (errors.InvalidProperty, ("S", "used property is read-only")),
    "zfs_inherit_quota": (errors.InvalidProperty, None),
    "zfs_set_bad_number": (
        errors.InvalidProperty,
        ("S", "cannot set property for 'fzsingle/a': bad numeric value 'lots'"),
    ),
    "zfs_set_bad_value": (errors.InvalidProperty, None),
    "zfs_create_bad_prop": (errors.InvalidProperty, ("S", "cannot create 'fzsingle/c': invalid property 'bogusprop'")),
    # an option zfs-fuse lacks: the driver asks Capabilities first and never sends these
    "zpool_list_p": (errors.InvalidProperty, None),
    "zfs_get_t": (errors.InvalidProperty, None),
    "zfs_list_p": (errors.InvalidProperty, None),
    "zfs_hold_exists": (errors.HoldExists, ("S", "?")),
    "zfs_release_missing": (errors.HoldNotFound, ("S", "nokeep")),
    # zfs-fuse refuses a held snapshot with a plain "dataset is busy"; snapshots.destroy() tells the two apart
    "zfs_destroy_held": (errors.DatasetBusy, ("S",)),
    "zfs_destroy_mounted_first": (errors.DatasetBusy, ("S",)),
    "zfs_unmount_busy": (errors.DatasetBusy, ("S",)),
    "zfs_destroy_has_children": (errors.HasChildren, ("S",)),
    "zfs_destroy_snap_clones": (errors.HasDependentClones, ("S",)),
    "zfs_destroy_r_clones": (errors.HasDependentClones, ("S",)),
    "zfs_rollback_newer": (errors.NewerSnapshotsExist, ("S",)),
    "zfs_receive_exists": (errors.ReceiveDestinationExists, ("fzsingle/r",)),
    "zfs_receive_incremental_mismatch": (
        errors.IncrementalSourceMismatch,
        ("cannot receive incremental stream: most recent snapshot of fzsingle/r does not match incremental source",),
    ),
    "zfs_receive_garbage": (errors.InvalidStream, ("cannot receive: invalid stream (bad magic number)",)),
    "zfs_receive_truncated": (errors.InvalidStream, ("cannot receive new filesystem stream: invalid backup stream",)),
    "zfs_receive_empty": (errors.InvalidStream, ("cannot receive: failed to read from stream",)),
    "zfs_receive_quota": (errors.PoolOutOfSpace, ("S",)),
    # not classified: a generic ZfsCommandFailed carrying the first line
    "zfs_version": (errors.ZfsCommandFailed, ("zfs get", "unrecognized command 'version'")),
    "zfs_holds_usage": (errors.ZfsCommandFailed, ("zfs get", "(no output)")),  # pyzfs.py not found (stdout)
    "zfs_holds_Hp": (errors.ZfsCommandFailed, ("zfs get", "(no output)")),
    "zpool_import_d_empty": (errors.ZfsCommandFailed, ("zfs get", "(no output)")),
    "zpool_offline_no_replicas": (errors.ZfsCommandFailed, None),
    "zfs_set_user_empty": (errors.ZfsCommandFailed, ("zfs get", "missing value in property=value argument")),
    "zfs_unmount_not_mounted": (
        errors.ZfsCommandFailed,
        ("zfs get", "cannot unmount 'fzsingle/busy': not currently mounted"),
    ),
}


def _check(stderr: str, returncode: int, expected: tuple[type[BulwarkError], tuple[object, ...] | None]) -> None:
    failure = CommandFailed(["zfs", "get", "x"], returncode, stderr)
    error = classify(failure, "S")
    cls, args = expected
    assert type(error) is cls
    if args is not None:
        assert error.args == args
    assert error.__cause__ is failure
    assert error.message  # the docstring template formats


@pytest.mark.parametrize("name", sorted(OPENZFS_STDERR))
def test_classify_openzfs(name: str) -> None:
    recording = oz[name]
    _check(recording.err, recording.returncode, OPENZFS_STDERR[name])


@pytest.mark.parametrize("name", sorted(ZFS_FUSE_STDERR))
def test_classify_zfs_fuse(name: str) -> None:
    recording = fz[name]
    _check(recording.err, recording.returncode, ZFS_FUSE_STDERR[name])


def test_every_failed_step_is_classified_here() -> None:
    for recordings, table in ((oz, OPENZFS_STDERR), (fz, ZFS_FUSE_STDERR)):
        failed = {n for n, r in recordings.items() if r.returncode != 0 and not n.startswith("busy_")}
        assert failed == set(table)


def test_classify_spurious_busy_recordings() -> None:
    # made at random while a mount settles: whichever this recording run caught
    for name in [n for n in fz if n.startswith("busy_")]:
        recording = fz[name]
        assert "is busy" in recording.err
        assert type(classify(recording.failure(), "S")) is errors.DatasetBusy


def test_classified_messages_name_the_device() -> None:
    in_use = classify(fz["zpool_create_in_use"].failure(), "fzother")
    assert in_use.args[0].endswith("/single.img")
    assert str(in_use).endswith("/single.img is in use (part of another pool).")
    for name in ("zpool_create_no_device", "zpool_offline_missing"):
        missing = classify(fz[name].failure(), "pool")
        assert missing.args[0].endswith("/nope.img")


def test_has_children_is_not_mistaken_for_clones() -> None:
    # the list of datasets after "has children" may name a clone; only the message decides
    stderr = fz["zfs_destroy_has_children"].err.replace("fzsingle/a/child@c1", "fzsingle/a/clones@c1")
    assert "clones" in stderr
    assert type(classify(CommandFailed(["zfs", "destroy", "x"], 1, stderr), "x")) is errors.HasChildren


def test_error_families() -> None:
    """Each typed ZFS error belongs to the family whose exit status, HTTP status and retry advice fit."""
    families = {
        errors.PoolNotFound: NotFound,
        errors.DatasetNotFound: NotFound,
        errors.ParentNotFound: NotFound,
        errors.HoldNotFound: NotFound,
        errors.DeviceNotFound: NotFound,
        errors.PoolExists: AlreadyExists,
        errors.DatasetExists: AlreadyExists,
        errors.HoldExists: AlreadyExists,
        errors.ReceiveDestinationExists: AlreadyExists,
        errors.DatasetBusy: Busy,
        errors.SnapshotHeld: Busy,
        errors.HasChildren: Busy,
        errors.HasDependentClones: Busy,
        errors.DeviceInUse: Busy,
        errors.NewerSnapshotsExist: Conflict,
        errors.IncrementalSourceMismatch: Conflict,
        errors.PoolOutOfSpace: OutOfSpace,
        errors.QuotaTooSmall: InvalidInput,
        errors.InvalidZfsName: InvalidInput,
        errors.InvalidProperty: InvalidInput,
        errors.InvalidStream: InvalidInput,
        errors.ReceiveInterrupted: InvalidInput,
        errors.ResumeTokenInvalid: InvalidInput,
        errors.NoResumableReceive: NotFound,
        errors.EncryptionKeyNotLoaded: Conflict,
        errors.EncryptionKeyAlreadyLoaded: Conflict,
        errors.IncorrectKey: InvalidInput,
        errors.NotEncrypted: Conflict,
        errors.DatasetNotMounted: Conflict,
        errors.ZfsCommandFailed: ExternalCommandError,
        errors.ZfsNotRunning: ExternalCommandError,
        errors.PoolSuspended: ExternalCommandError,
    }
    for cls, family in families.items():
        assert issubclass(cls, family), cls
    assert errors.DatasetBusy.retryable and not errors.SnapshotHeld.retryable
    codes = [cls.code for cls in all_error_classes()]
    for cls in families:
        assert codes.count(cls.code) == 1, f"error code {cls.code} is not unique"
