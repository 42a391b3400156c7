"""One contract for every offsite target: memory, a local folder, SFTP through a real sshd, S3 on moto_server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.offsite.errors import HostKeyMismatch, ObjectMissing, TargetUnreachable
from appliance.offsite.targets.base import MemoryTarget, Target
from appliance.offsite.targets.local import LocalTarget
from appliance.offsite.targets.sftp import SftpTarget
from appliance.system.errors import InvalidInput
from tests.offsite_fixtures import S3Server, SftpServer, bucket_name

# moto_server starts once for the module, before any test takes its snapshot of running child processes.
pytestmark = pytest.mark.usefixtures("s3_server")

KINDS = ["memory", "local", "sftp", "s3"]


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    kind = request.param
    made: Target
    if kind == "memory":
        made = MemoryTarget()
    elif kind == "local":
        (tmp_path / "usb").mkdir()
        made = LocalTarget("usb", tmp_path / "usb")
    elif kind == "sftp":
        server: SftpServer = request.getfixturevalue("sftp_server")
        made = server.target(tmp_path / "ssh")
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = bucket_name()
        s3.make_bucket(bucket)
        made = s3.target(bucket)
    try:
        yield made
    finally:
        made.close()


def test_put_get_replace_and_missing(target: Target) -> None:
    target.put("config", b"{}")
    assert target.get("config") == b"{}"
    blob = bytes(range(256)) * 4097  # binary, not a multiple of any block size
    target.put("clients/acme/share/streams/ab/00000000", blob)
    assert target.get("clients/acme/share/streams/ab/00000000") == blob
    target.put("clients/acme/share/streams/ab/00000000", b"second")
    assert target.get("clients/acme/share/streams/ab/00000000") == b"second"
    with pytest.raises(ObjectMissing):
        target.get("clients/acme/share/streams/ab/00000001")
    target.put("empty", b"")
    assert target.get("empty") == b""


def test_list_is_recursive_sorted_and_by_prefix(target: Target) -> None:
    assert target.list() == []
    paths = [
        "config",
        "clients/acme/share/chains/c1",
        "clients/acme/share/streams/s1/00000001",
        "clients/acme/share/streams/s1/00000000",
        "clients/acme/images~0/streams/s2/manifest",
        "clients/bravo/files/chains/c2",
    ]
    for p in paths:
        target.put(p, p.encode())
    assert target.list() == sorted(paths)
    assert target.list("clients/acme/") == sorted(p for p in paths if p.startswith("clients/acme/"))
    assert target.list("clients/acme/share/streams/s1/") == [
        "clients/acme/share/streams/s1/00000000",
        "clients/acme/share/streams/s1/00000001",
    ]
    assert target.list("clients/nobody/") == []


def test_delete(target: Target) -> None:
    target.put("clients/acme/share/streams/s1/00000000", b"x")
    target.put("clients/acme/share/streams/s1/manifest", b"y")
    assert target.delete("clients/acme/share/streams/s1/00000000") is True
    assert target.delete("clients/acme/share/streams/s1/00000000") is False
    assert target.list() == ["clients/acme/share/streams/s1/manifest"]


@pytest.mark.parametrize(
    "path", ["../escape", "/abs", "a//b", "a/../b", ".hidden", "a/b\nc", "a b", "", "x" * 600, "a/.tmp/b"]
)
def test_hostile_paths_are_refused(target: Target, path: str) -> None:
    with pytest.raises(InvalidInput):
        target.put(path, b"x")
    with pytest.raises(InvalidInput):
        target.get(path)
    assert target.list() == []


def test_local_target_missing_disk_is_clear(tmp_path: Path) -> None:
    usb = LocalTarget("usb", tmp_path / "not-plugged-in")
    with pytest.raises(TargetUnreachable, match="plugged in"):
        usb.put("config", b"x")
    mounted = LocalTarget("usb", tmp_path, require_mount=True)
    with pytest.raises(TargetUnreachable, match="not a mounted disk"):
        mounted.list()


def test_local_put_is_atomic_no_temporary_left(tmp_path: Path) -> None:
    usb = LocalTarget("usb", tmp_path)
    usb.put("a/b", b"1")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]


def test_sftp_refuses_a_changed_host_key(sftp_server: SftpServer, tmp_path: Path) -> None:
    pinned = sftp_server.config()
    sftp = SftpTarget("sftp", pinned, sftp_server.client_key, tmp_path / "ssh")
    sftp.put("config", b"x")
    sftp.close()
    sftp_server.restart_with_new_host_key()  # a man in the middle, or a reinstalled server
    again = SftpTarget("sftp", pinned, sftp_server.client_key, tmp_path / "ssh2")
    with pytest.raises(HostKeyMismatch, match="pinned host key"):
        again.get("config")
    again.close()


def test_s3_object_lock_is_applied(s3_server: S3Server) -> None:
    bucket = bucket_name()
    s3_server.make_bucket(bucket, object_lock=True)
    s3 = s3_server.target(bucket)
    s3.put("clients/acme/share/streams/s1/00000000", b"locked")
    head = s3.client.head_object(Bucket=bucket, Key="appliance-1/clients/acme/share/streams/s1/00000000")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"].timestamp() > 0
    assert s3.delete("clients/acme/share/streams/s1/00000000") is False  # the lock keeps it
    assert s3.get("clients/acme/share/streams/s1/00000000") == b"locked"
    s3.close()
