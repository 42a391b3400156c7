"""Recovery points from SMB on a real smbd: explicit trigger, quiet-share trigger, refusal while a file is open
for writing, Previous Versions (FSCTL_SRV_ENUMERATE_SNAPSHOTS, reading an old version), quota, reload."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
import smbclient
from smbclient._io import SMBDirectoryIO, SMBFileTransaction, ioctl_request
from smbprotocol.exceptions import SMBOSError, SMBResponseException
from smbprotocol.header import NtStatus
from smbprotocol.ioctl import CtlCode, IOCTLFlags, SMB2SrvSnapshotArray

from appliance.clients import points, service
from appliance.clients.errors import PointNotFound
from appliance.samba import activity, shares
from appliance.system.runner import local_runner
from tests.smb_fixtures import SmbEnv, smb_env  # noqa: F401

pytestmark = pytest.mark.zfs

PW = "correct-horse-battery-a"
PW_B = "correct-horse-battery-b"


@pytest.fixture(autouse=True)
def _fresh_smb_client() -> object:
    yield
    smbclient.reset_connection_cache()


def unc(*parts: str) -> str:
    return "\\".join([r"\\127.0.0.1", *parts])


def login(env: SmbEnv, client: str, password: str = PW) -> None:
    smbclient.register_session("127.0.0.1", username=env.account(client), password=password, port=env.port)


def put(env: SmbEnv, client: str, name: str, data: bytes) -> None:
    with smbclient.open_file(unc(client, name), mode="wb", port=env.port) as fh:
        fh.write(data)


def trigger_and_run(env: SmbEnv, client: str) -> points.RecoveryPoint:
    activity.trigger(env.store, env.env.zfs, local_runner(), client, by="test")
    done = env.env.run_jobs()
    assert [j.state for j in done] == ["succeeded"], [j.error for j in done]
    return points.list_points(env.store, env.env.zfs, client)[0]


def enumerate_snapshots(env: SmbEnv, client: str) -> list[str]:
    with SMBDirectoryIO(unc(client), mode="r", share_access="rwd", port=env.port) as fd:
        with SMBFileTransaction(fd) as tx:
            ioctl_request(
                tx, CtlCode.FSCTL_SRV_ENUMERATE_SNAPSHOTS, output_size=65536, flags=IOCTLFlags.SMB2_0_IOCTL_IS_FSCTL
            )
        array = SMB2SrvSnapshotArray()
        array.unpack(tx.results[0])
    raw = array["snapshots"].get_value().decode("utf-16-le")
    return [s for s in raw.split("\0") if s]


def smbclient_get(env: SmbEnv, client: str, remote: str, local: Path) -> None:
    auth = local.parent / "auth"
    auth.write_text(f"username = {env.account(client)}\npassword = {PW}\n")
    auth.chmod(0o600)
    local_runner().run(
        ["smbclient", f"//127.0.0.1/{client}", "-p", str(env.port), "-A", str(auth), "-m", "SMB3",
         "-c", f"get {remote} {local}"],
        timeout=60,
    )  # fmt: skip


def test_trigger_point_has_exact_content_and_previous_versions(smb_env: SmbEnv, tmp_path: Path) -> None:  # noqa: F811
    client = smb_env.add("acme", PW)
    login(smb_env, "acme")
    put(smb_env, "acme", "job.vbk", b"first backup " * 4096)
    first = trigger_and_run(smb_env, "acme")
    assert first.source == "smb" and first.area == "share"
    # Previous Versions name a version by its second (Windows' @GMT tokens): a later point in the same
    # second replaces it there, so the second backup starts in the next second.
    time.sleep(max(0.0, first.created_at + 1.05 - time.time()))
    put(smb_env, "acme", "job.vbk", b"second backup " * 4096)
    second = trigger_and_run(smb_env, "acme")
    assert second.snapshot != first.snapshot

    versions_dir = smb_env.clients_dir / "acme" / "versions"
    folders = sorted(p.name for p in versions_dir.iterdir())
    assert len(folders) == 2
    assert (versions_dir / folders[0] / "job.vbk").read_bytes() == b"first backup " * 4096
    assert (versions_dir / folders[1] / "job.vbk").read_bytes() == b"second backup " * 4096

    listed = enumerate_snapshots(smb_env, "acme")
    assert len(listed) == 2 and all(s.startswith("@GMT-") for s in listed)
    oldest = sorted(listed)[0]
    out = tmp_path / "old.vbk"
    smbclient_get(smb_env, "acme", f"{oldest}/job.vbk", out)
    assert out.read_bytes() == b"first backup " * 4096

    # Pruning a point removes its version first (the clone would otherwise keep the snapshot).
    points.destroy(smb_env.env.zfs, points.refresh(smb_env.env.zfs, first))
    from appliance.samba import versions

    versions.sync(smb_env.store, smb_env.env.zfs, client)
    assert len(list(versions_dir.iterdir())) == 1
    smbclient.reset_connection_cache()
    login(smb_env, "acme")
    assert len(enumerate_snapshots(smb_env, "acme")) == 1


def test_no_point_while_a_file_is_open_for_writing(smb_env: SmbEnv) -> None:  # noqa: F811
    smb_env.add("acme", PW)
    login(smb_env, "acme")
    with smbclient.open_file(unc("acme", "running.vbk"), mode="wb", port=smb_env.port) as fh:
        fh.write(b"half a backup")
        with pytest.raises(activity.FilesOpenForWriting, match=r"running\.vbk"):
            activity.trigger(smb_env.store, smb_env.env.zfs, local_runner(), "acme", by="test")
        # The generic trigger (bulwark snapshot create) refuses too when its job runs.
        from appliance.clients import jobs

        jobs.submit_snapshot(smb_env.store, "acme", by="test", areas=["share"])
        done = smb_env.env.run_jobs()
        assert done[0].state in ("queued", "failed")  # retried later (the refusal is retryable)
        assert "open for writing" in str(done[0].error)
        assert points.list_points(smb_env.store, smb_env.env.zfs, "acme") == []
        # The schedule takes its point regardless, and the point says so.
        jobs.submit_snapshot(smb_env.store, "acme", by="schedule", source="schedule", areas=["share"])
        scheduled = [j for j in smb_env.env.run_jobs() if j.kind == jobs.SNAPSHOT and j.state == "succeeded"]
        assert len(scheduled) == 1
    (point,) = points.list_points(smb_env.store, smb_env.env.zfs, "acme")
    assert point.source == "schedule"
    client = service.get_client(smb_env.store, "acme")
    assert activity.open_files_marks(smb_env.env.zfs, client) == {point.snapshot: "running.vbk"}


def test_quiet_share_gets_a_point(smb_env: SmbEnv) -> None:  # noqa: F811
    smb_env.add("acme", PW)
    watcher = activity.QuietWatcher(smb_env.store, smb_env.env.zfs, local_runner())
    t0 = 1_000_000.0
    assert watcher.tick(t0) == []  # baseline
    assert watcher.tick(t0 + 100) == []  # nothing written: nothing to do
    login(smb_env, "acme")
    with smbclient.open_file(unc("acme", "nightly.bak"), mode="wb", port=smb_env.port) as fh:
        fh.write(b"nightly " * 1000)
        assert watcher.tick(t0 + 200) == []  # change seen
        assert watcher.tick(t0 + 500) == []  # quiet long enough, but a file is open
    assert watcher.tick(t0 + 201) == []  # closed, but the change was seen at t0+200 (quiet time 10 s)
    queued = watcher.tick(t0 + 215)
    assert len(queued) == 1
    assert watcher.tick(t0 + 400) == []  # no new writes: no second point
    smb_env.env.run_jobs()
    (point,) = points.list_points(smb_env.store, smb_env.env.zfs, "acme")
    assert point.source == "smb" and point.created_by == "smb-quiet"


def test_quota_full_share_and_others_keep_working(smb_env: SmbEnv) -> None:  # noqa: F811
    smb_env.add("acme", PW, quota="64M")
    smb_env.add("beta", PW_B)
    login(smb_env, "acme")
    chunk = b"\xa5" * (1024 * 1024)
    fh = smbclient.open_file(unc("acme", "big.bin"), mode="wb", port=smb_env.port)
    written = 0
    with pytest.raises(SMBResponseException) as refused:
        for _ in range(200):
            fh.write(chunk)
            fh.flush()
            written += 1
    assert refused.value.status == NtStatus.STATUS_DISK_FULL
    assert 50 <= written < 64  # stopped by the 64 MiB quota, not by the pool
    with contextlib.suppress(SMBOSError, SMBResponseException):
        fh.close()
    smbclient.reset_connection_cache()
    login(smb_env, "beta", PW_B)
    put(smb_env, "beta", "ok.bin", b"fine")
    assert (smb_env.live("beta") / "ok.bin").read_bytes() == b"fine"


def test_reload_keeps_another_clients_open_session(smb_env: SmbEnv) -> None:  # noqa: F811
    smb_env.add("acme", PW)
    login(smb_env, "acme")
    with smbclient.open_file(unc("acme", "long.vbk"), mode="wb", port=smb_env.port) as fh:
        fh.write(b"before reload ")
        smb_env.add("beta", PW_B)  # a new share: smb.conf changes and smbd reloads
        shares.set_share_options(smb_env.store, smb_env.env.zfs, local_runner(), "beta", by="test", encrypt=True)
        assert "[beta]" in shares.layout(smb_env.store).conf.read_text()
        fh.write(b"after reload")
    assert (smb_env.live("acme") / "long.vbk").read_bytes() == b"before reload after reload"
    assert smb_env.smbd.running
    assert service.get_client(smb_env.store, "beta").kind == "smb"


def test_restore_share_publishes_one_point_read_only(smb_env: SmbEnv, tmp_path: Path) -> None:  # noqa: F811
    from appliance.samba import restore_share

    smb_env.add("acme", PW)
    login(smb_env, "acme")
    put(smb_env, "acme", "report.txt", b"as it was")
    point = trigger_and_run(smb_env, "acme")
    put(smb_env, "acme", "report.txt", b"overwritten later")
    conf_path = shares.layout(smb_env.store).conf
    with pytest.raises(PointNotFound):
        restore_share.publish(smb_env.store, smb_env.env.zfs, local_runner(), "acme", "share@nope", by="test")
    assert "[acme-restore]" not in conf_path.read_text()
    restore_share.publish(smb_env.store, smb_env.env.zfs, local_runner(), "acme", point.id, by="test")
    assert "[acme-restore]" in conf_path.read_text()
    deadline = time.monotonic() + 10  # smbd loads the new share shortly after the SIGHUP
    while True:
        try:
            with smbclient.open_file(unc("acme-restore", "report.txt"), mode="rb", port=smb_env.port) as fh:
                assert fh.read() == b"as it was"
            break
        except SMBOSError as exc:
            if exc.ntstatus != NtStatus.STATUS_BAD_NETWORK_NAME or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with pytest.raises((SMBOSError, SMBResponseException)):
        put(smb_env, "acme-restore", "new.txt", b"no")  # read-only
    assert restore_share.unpublish(smb_env.store, smb_env.env.zfs, local_runner(), "acme", by="test")
    assert "[acme-restore]" not in conf_path.read_text()
