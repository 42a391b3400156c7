"""Parsers and argument checks of the OpenZFS-only parts of the driver (encryption, bookmarks, ``zfs diff``,
hold listing, resume tokens) on recorded outputs of real OpenZFS 2.3.2, and their refusal on zfs-fuse.
``tests/integration/test_zfs_{encryption,bookmarks,diff,resume}.py`` run them against OpenZFS itself."""

from __future__ import annotations

import pytest

from appliance.system.errors import CommandFailed, InvalidInput, UnexpectedOutput, Unsupported
from appliance.system.runner import CommandResult
from appliance.zfs import bookmarks, capabilities, diff, encryption, errors, holds, properties
from appliance.zfs.host import ZfsHost, split_rows
from tests.replay import OPENZFS, Recording, Recordings, ReplayRunner

oz = Recordings(OPENZFS)
FUSE = ZfsHost(ReplayRunner(), capabilities.zfs_fuse_capabilities(23))


def rows(recording: Recording, columns: int) -> list[list[str]]:
    return split_rows(CommandResult(("zfs", "get"), 0, recording.stdout, b"", 0.0), columns)


def test_encryption_info_of_an_encryption_root() -> None:
    props = properties.parse_get(rows(oz["zfs_get_Hp_enc"], 4))["testpool/enc"]
    info = encryption.parse_info("testpool/enc", props)
    assert info == encryption.EncryptionInfo(
        "testpool/enc", "aes-256-gcm", "passphrase", "file:///tmp/enc.key", "available", "testpool/enc", 350000
    )
    assert info.encrypted and info.key_loaded
    assert info.to_dict()["key_status"] == "available"


def test_encryption_info_is_strict() -> None:
    props = properties.parse_get(rows(oz["zfs_get_Hp_enc"], 4))["testpool/enc"]
    for key, value in (("keystatus", "loaded"), ("keyformat", "pem"), ("pbkdf2iters", "many")):
        with pytest.raises(UnexpectedOutput):
            encryption.parse_info("testpool/enc", {**props, key: properties.Property(value, "-")})
    # the received raw copy was recorded without pbkdf2iters: a property missing from the answer is refused
    copy = properties.parse_get(rows(oz["zfs_get_Hp_enc_copy"], 4))["testpool/enc_copy"]
    assert copy["keystatus"].value == "unavailable"
    with pytest.raises(UnexpectedOutput, match="pbkdf2iters"):
        encryption.parse_info("testpool/enc_copy", copy)


@pytest.mark.parametrize(
    ("key", "key_format", "ok"),
    [
        (b"correct horse", "passphrase", True),
        (b"short", "passphrase", False),
        (b"x" * 513, "passphrase", False),
        (b"two\nlines!", "passphrase", False),
        (b"0123456789abcdef" * 4, "hex", True),
        (b"0123456789abcdeg" * 4, "hex", False),
        (bytes(range(32)), "raw", True),  # (newlines and NULs are fine in a raw key)
        (bytes(31), "raw", False),
        (b"correct horse", "pem", False),
    ],
)
def test_keys_are_checked_before_anything_runs(key: bytes, key_format: str, ok: bool) -> None:
    if ok:
        assert encryption.check_key(key, key_format) == key
    else:
        with pytest.raises(InvalidInput):
            encryption.check_key(key, key_format)


def test_bookmark_listing() -> None:
    [mark] = bookmarks.parse_list(rows(oz["zfs_list_bookmarks_Hp"], 4))
    assert mark == bookmarks.Bookmark("testpool/a#bm1", 9, "6306212816189357371", 1795707115)
    assert (mark.dataset, mark.mark) == ("testpool/a", "bm1")
    with pytest.raises(UnexpectedOutput):
        bookmarks.parse_list([["testpool/a@snap1", "9", "6306212816189357371", "1795707115"]])
    with pytest.raises(UnexpectedOutput):
        bookmarks.parse_list([["testpool/a#bm1", "9", "6306212816189357371", "Thu Nov 26"]])


def test_diff_of_two_snapshots() -> None:
    changes = diff.parse_diff(oz["zfs_diff_FHt"].stdout)
    assert [(c.change, c.kind, c.path, c.new_path) for c in changes] == [
        ("modified", "file", "/testpool/a/f1", None),
        ("modified", "directory", "/testpool/a/", None),
        ("removed", "file", "/testpool/a/f3", None),
        ("renamed", "file", "/testpool/a/f4", "/testpool/a/f5"),
        ("modified", "file", "/testpool/a/dir/x", None),
        ("added", "file", "/testpool/a/f2", None),
    ]
    assert changes[0].changed_at == 1795707115.652
    assert changes[3].to_dict()["new_path"] == "/testpool/a/f5"


def test_diff_paths_are_unescaped_exactly() -> None:
    # as OpenZFS escapes every byte that is not printable ASCII (seen from the machine: "sp ace", "ünï")
    assert diff.unescape(b"/m/a/sp\\0040ace") == "/m/a/sp ace"
    assert diff.unescape(b"/m/a/\\0303\\0274n\\0303\\0257") == "/m/a/ünï"
    assert diff.unescape(b"/m/a/back\\0134slash\\0011tab") == "/m/a/back\\slash\ttab"
    assert diff.unescape(b"/m/a/\\0377") == "/m/a/\udcff"  # not UTF-8: kept as a surrogate


def test_diff_is_strict() -> None:
    for line in (
        b"1795707115.652000000\tM\tF",  # too few fields
        b"1795707115.652000000\tX\tF\t/a",  # unknown change
        b"1795707115.652000000\tM\t?\t/a",  # unknown type
        b"yesterday\tM\tF\t/a",  # not a time
        b"1795707115.652000000\tR\tF\t/a",  # a rename without its new name
        b"1795707115.652000000\tM\tF\t/a\t/b",  # a new name without a rename
    ):
        with pytest.raises(UnexpectedOutput):
            diff.parse_diff(line + b"\n")
    assert diff.parse_diff(b"") == []


def test_hold_listing_needs_exact_times() -> None:
    assert holds.parse_holds(rows(oz["zfs_holds_Hp_r"], 3)) == [holds.Hold("testpool/a@snap1", "keep", 1795707121)]
    with pytest.raises(UnexpectedOutput):  # without -p the time is a date: refused, never guessed
        holds.parse_holds(rows(oz["zfs_holds_H"], 3))


def test_resume_token_from_an_interrupted_receive() -> None:
    recording = oz["zfs_recv_s_interrupted"]  # (a pipeline: its receive's stderr)
    failure = CommandFailed(["zfs", "receive", "-s", "testpool/resume"], recording.returncode, recording.err)
    interrupted = errors.classify(failure, "testpool/resume")
    assert isinstance(interrupted, errors.ReceiveInterrupted)
    assert isinstance(interrupted, errors.InvalidStream)  # (a caller that knows only streams still sees one)
    assert interrupted.resume_token == oz["zfs_get_resume_token"].out.strip()
    assert interrupted.retryable
    assert (
        str(interrupted) == "The receive into testpool/resume was interrupted; it can be resumed from where it stopped."
    )


def test_names_of_bookmarks() -> None:
    from appliance.zfs import names

    assert names.bookmark_name("pool/a#b1") == "pool/a#b1"
    for bad in ("pool/a", "pool/a#", "pool/a#b#c", "pool/a@s#b", "#b", "pool/a#-x"):
        with pytest.raises(InvalidInput):
            names.bookmark_name(bad)


def test_openzfs_features_are_refused_on_zfs_fuse() -> None:
    for call, feature in (
        (lambda: encryption.info(FUSE, "pool/a"), "native encryption"),
        (lambda: bookmarks.list_bookmarks(FUSE, "pool/a"), "bookmarks"),
        (lambda: diff.diff(FUSE, "pool/a@s1"), "'zfs diff'"),
        (lambda: holds.list_holds(FUSE, "pool/a@s1"), "listing hold tags"),
    ):
        with pytest.raises(Unsupported, match=f"{feature}.* needs OpenZFS; this appliance runs zfs-fuse"):
            call()
    assert isinstance(FUSE.runner, ReplayRunner)
    FUSE.runner.assert_done()  # (refused before anything ran)
