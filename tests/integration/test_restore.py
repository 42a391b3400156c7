"""Browsing, downloading and restoring from recovery points on a real zfs-fuse pool."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import pytest

from appliance.clients import browse, download, jobs, points
from appliance.clients.errors import BrowseSessionNotFound, PointInUse, UnsafePath
from appliance.system.errors import BulwarkError
from appliance.zfs import datasets, snapshots
from tests.clients_fixtures import ClientEnv

pytestmark = pytest.mark.zfs
MiB = 1024 * 1024


def fill(root: Path) -> dict[str, bytes]:
    files = {
        "docs/report.txt": b"quarterly report v1",
        "docs/sub/data.bin": os.urandom(2 * MiB + 3),
        "photos/cat.jpg": os.urandom(300_000),
        "readme.txt": b"top level",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    os.symlink("/etc/passwd", root / "docs" / "escape")
    os.utime(root / "docs/report.txt", (1_700_000_000, 1_700_000_000))
    return files


@pytest.fixture
def with_point(client_env: ClientEnv) -> tuple[ClientEnv, points.RecoveryPoint, dict[str, bytes]]:
    env = client_env
    env.add("acme")
    files = fill(env.live("acme"))
    jobs.submit_snapshot(env.store, "acme", by="test")
    assert [j.state for j in env.run_jobs()] == ["succeeded"]
    [point] = points.list_points(env.store, env.zfs, "acme")
    # the live data moves on after the point
    (env.live("acme") / "docs/report.txt").write_bytes(b"quarterly report v2 (edited later)")
    (env.live("acme") / "photos/cat.jpg").unlink()
    (env.live("acme") / "new.txt").write_text("written after the point")
    return env, point, files


def browse_clones(env: ClientEnv) -> list[str]:
    root = f"{env.pool.name}/browse"
    return [n for n in datasets.list_names(env.zfs, root) if n != root] if datasets.exists(env.zfs, root) else []


def test_browse_a_point_through_a_read_only_clone(with_point: tuple[ClientEnv, points.RecoveryPoint, dict]) -> None:
    env, point, files = with_point
    session = browse.open_session(env.store, env.zfs, "acme", point.id, by="user:alice")
    assert session.root.is_dir() and str(session.root).startswith(str(env.pool.mountpoint / "browse"))
    assert browse_clones(env) == [session.clone]
    top = browse.browse(env.store, session.id)
    assert [(e.name, e.type) for e in top] == [("docs", "dir"), ("photos", "dir"), ("readme.txt", "file")]
    docs = {e.name: e for e in browse.browse(env.store, session.id, "docs")}
    assert docs["report.txt"].size == len(files["docs/report.txt"]) and docs["report.txt"].mtime == 1_700_000_000
    assert docs["escape"].type == "symlink" and docs["escape"].target == "/etc/passwd"
    assert (session.root / "docs/report.txt").read_bytes() == b"quarterly report v1"  # the point, not live data
    with pytest.raises(OSError):
        (session.root / "readme.txt").write_text("no")  # read-only
    for bad in ("../..", "/etc", "docs/escape"):
        with pytest.raises(UnsafePath):
            browse.browse(env.store, session.id, bad)
    # the same person opening the same point again gets the same session
    assert browse.open_session(env.store, env.zfs, "acme", point.id, by="user:alice").id == session.id
    other = browse.open_session(env.store, env.zfs, "acme", point.id, by="user:bob")
    assert other.id != session.id
    # a point in use by a session cannot be destroyed
    with pytest.raises(PointInUse):
        points.destroy_point(env.store, env.zfs, "acme", point.id, by="test")
    browse.close_session(env.store, env.zfs, session.id)
    browse.close_session(env.store, env.zfs, other.id)
    assert browse_clones(env) == []
    with pytest.raises(BrowseSessionNotFound):
        browse.browse(env.store, session.id)


def test_download_a_folder_as_a_streamed_zip(with_point: tuple[ClientEnv, points.RecoveryPoint, dict]) -> None:
    env, point, files = with_point
    session = browse.open_session(env.store, env.zfs, "acme", point.id, by="test")
    try:
        chunks = list(download.zip_stream(session.root, ["docs", "photos/cat.jpg"]))
        one = download.read_file(session.root, "docs/sub/data.bin")
        assert b"".join(one.chunks) == files["docs/sub/data.bin"]
    finally:
        browse.close_session(env.store, env.zfs, session.id)
    zf = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert zf.testzip() is None
    assert zf.read("docs/report.txt") == files["docs/report.txt"]
    assert zf.read("docs/sub/data.bin") == files["docs/sub/data.bin"]
    assert zf.read("cat.jpg") == files["photos/cat.jpg"]
    assert zf.read("docs/escape") == b"/etc/passwd"  # a link, not the file it names
    assert zf.getinfo("docs/report.txt").date_time == time.localtime(1_700_000_000)[:6]


def test_sweep_removes_stale_clones_and_keeps_live_ones(
    with_point: tuple[ClientEnv, points.RecoveryPoint, dict],
) -> None:
    env, point, _ = with_point
    live = browse.open_session(env.store, env.zfs, "acme", point.id, by="user:alice")
    stale = browse.open_session(env.store, env.zfs, "acme", point.id, by="user:bob")
    with env.store.write() as conn:
        conn.execute("UPDATE browse_sessions SET expires_at = 1 WHERE id = ?", (stale.id,))
    # a clone left by a crash: no session row at all
    orphan = f"{env.pool.name}/browse/orphan"
    snapshots.clone(env.zfs, point.snapshot, orphan, {"readonly": "on", browse.P_OWNER: "session:gone"})
    # a clone of a restore job that is not running any more
    dead_job = f"{env.pool.name}/browse/job-999"
    snapshots.clone(env.zfs, point.snapshot, dead_job, {"readonly": "on", browse.P_OWNER: "job:999"})
    report = browse.sweep(env.store, env.zfs)
    assert sorted(report.destroyed) == sorted([stale.clone, orphan, dead_job])
    assert report.dropped_sessions == [stale.id]
    assert browse_clones(env) == [live.clone]
    assert browse.browse(env.store, live.id)  # still works
    browse.close_session(env.store, env.zfs, live.id)


def test_restore_into_live_data_without_overwriting_newer_files(
    with_point: tuple[ClientEnv, points.RecoveryPoint, dict],
) -> None:
    env, point, files = with_point
    live = env.live("acme")
    snapshots_before = [s.name for s in snapshots.list_snapshots(env.zfs, point.dataset)]

    # into a new folder: everything of the point's folder, as it was
    job = jobs.submit_restore(env.store, env.zfs, "acme", point.id, ["docs"], "restored/2026-11", by="user:alice")
    [done] = env.run_jobs()
    assert done.id == job and done.state == "succeeded", done.error
    assert done.result is not None and done.result["copied"] == 2 and done.progress_done == done.progress_total
    assert (live / "restored/2026-11/docs/report.txt").read_bytes() == files["docs/report.txt"]
    assert (live / "restored/2026-11/docs/sub/data.bin").read_bytes() == files["docs/sub/data.bin"]
    assert os.readlink(live / "restored/2026-11/docs/escape") == "/etc/passwd"

    # in place: the deleted photo comes back, the edited (newer) report is kept
    jobs.submit_restore(env.store, env.zfs, "acme", point.id, ["docs/report.txt", "photos"], "docs", by="test")
    jobs.submit_restore(env.store, env.zfs, "acme", point.id, ["photos/cat.jpg"], "photos", by="test")
    first, second = env.run_jobs()
    assert first.result is not None and first.result["skipped_newer"] == 1
    assert second.result is not None and second.result["copied"] == 1
    assert (live / "docs/report.txt").read_bytes() == b"quarterly report v2 (edited later)"
    assert (live / "photos/cat.jpg").read_bytes() == files["photos/cat.jpg"]

    # unless asked
    jobs.submit_restore(env.store, env.zfs, "acme", point.id, ["docs/report.txt"], "docs", overwrite=True, by="test")
    [forced] = env.run_jobs()
    assert forced.result is not None and forced.result["replaced"] == 1
    assert (live / "docs/report.txt").read_bytes() == files["docs/report.txt"]

    # the live dataset was never rolled back: later files and points are all there; no clone is left
    assert (live / "new.txt").read_text() == "written after the point"
    assert [s.name for s in snapshots.list_snapshots(env.zfs, point.dataset)] == snapshots_before
    assert browse_clones(env) == []


def test_restore_refuses_bad_paths_before_queuing(with_point: tuple[ClientEnv, points.RecoveryPoint, dict]) -> None:
    env, point, _ = with_point
    for paths, target in ((["../etc"], "x"), (["docs"], "/etc"), (["docs"], "a/../../b")):
        with pytest.raises(UnsafePath):
            jobs.submit_restore(env.store, env.zfs, "acme", point.id, paths, target, by="test")
    os.symlink("/tmp", env.live("acme") / "trap")
    jobs.submit_restore(env.store, env.zfs, "acme", point.id, ["docs"], "trap/x", by="test")
    [job] = env.run_jobs()
    assert job.state == "failed" and job.error is not None and job.error["code"] == "unsafe_path"
    assert browse_clones(env) == []


def test_session_downloads_check_paths_first_and_keep_the_session_alive(
    with_point: tuple[ClientEnv, points.RecoveryPoint, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, point, files = with_point
    session = browse.open_session(env.store, env.zfs, "acme", point.id, by="test")
    try:
        for bad in (["../x"], ["docs/escape/x"], ["nothing"]):
            with pytest.raises((UnsafePath, FileNotFoundError, BulwarkError)):
                browse.stream_zip(env.store, session.id, bad)  # before any byte is sent
        monkeypatch.setattr(browse, "KEEPALIVE", 0.0)
        before = browse.get_session(env.store, session.id).expires_at
        time.sleep(0.05)
        data = b"".join(browse.stream_zip(env.store, session.id, ["photos"]))
        assert zipfile.ZipFile(io.BytesIO(data)).read("photos/cat.jpg") == files["photos/cat.jpg"]
        assert browse.get_session(env.store, session.id).expires_at > before
        one = browse.stream_file(env.store, session.id, "readme.txt")
        assert (one.name, one.size, b"".join(one.chunks)) == ("readme.txt", 9, b"top level")
    finally:
        browse.close_session(env.store, env.zfs, session.id)
