"""The ``bulwark`` commands for clients, points, pruning and restores, end to end: ``bulwark init``, a real
``bulwark daemon``, the CLI as a separate process, and a pool exported and adopted by a fresh data directory."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.system.runner import local_runner
from tests.clients_fixtures import Appliance

pytestmark = [pytest.mark.zfs, pytest.mark.slow]


def js(app: Appliance, *args: str) -> Any:
    return json.loads(app.cli(*args, "--json").out)


def share(app: Appliance, client: str) -> Path:
    return app.data_dir / "mnt" / app.pool_name / "clients" / client / "share"


def test_clients_points_prune_restore_and_adoption(appliance: Callable[..., Appliance], tmp_path: Path) -> None:
    app = appliance()
    added = js(
        app,
        "client",
        "add",
        "acme",
        "--kind",
        "both",
        "--quota",
        "1G",
        "--rpo",
        "2h",
        "--schedule",
        "off",
        "--retention",
        "last=2",
        "--notes",
        "first floor",
    )
    assert (added["kind"], added["quota_bytes"], added["retention"]) == ("both", 1024**3, "last=2")
    js(app, "client", "add", "vault", "--kind", "smb", "--lock", "1d", "--schedule", "off")
    bad = app.cli("client", "add", "Bad_Name", "--kind", "smb", ok_codes=(3,))
    assert "client name 'Bad_Name'" in bad.err and "nothing was changed" in bad.err
    bad = app.cli("client", "add", "x", "--kind", "smb", "--retention", "last=0", ok_codes=(3,))
    assert "keeps nothing" in bad.err
    assert [c["name"] for c in js(app, "client", "list")] == ["acme", "vault"]

    (share(app, "acme") / "docs").mkdir()
    (share(app, "acme") / "docs" / "report.txt").write_text("v1")
    # without a daemon, --wait says so instead of waiting forever; the job stays queued
    nodaemon = app.cli("snapshot", "create", "acme", "--wait", ok_codes=(16,))
    assert "bulwarkd is not running" in nodaemon.err
    app.start_daemon()
    done = js(app, "snapshot", "create", "acme", "--dataset", "share", "--wait")
    assert done["state"] == "succeeded"
    (share(app, "acme") / "docs" / "report.txt").write_text("v2, newer")
    js(app, "snapshot", "create", "acme", "--dataset", "share", "--wait")
    js(app, "snapshot", "create", "acme", "--dataset", "share", "--wait")
    js(app, "snapshot", "create", "vault", "--wait")
    timeline = js(app, "snapshot", "list", "acme")
    assert len(timeline) == 5 and {p["area"] for p in timeline} == {"share", "files"}  # the first job: both
    assert all(p["source"] == "manual" and p["verified"] == "unverified" for p in timeline)
    newest_share = next(p for p in timeline if p["area"] == "share")
    first_share = [p for p in timeline if p["area"] == "share"][-1]

    # pin: destroy refused (exit 14), even by zfs itself
    js(app, "snapshot", "pin", "acme", first_share["id"])
    refused = app.cli("snapshot", "destroy", "acme", first_share["id"], ok_codes=(14,))
    assert "is pinned" in refused.err
    assert local_runner().run(["zfs", "destroy", first_share["snapshot"]], ok_codes=(1,)).returncode == 1

    # a locked point: refused by the CLI, by zfs, and never chosen by pruning
    [locked] = js(app, "snapshot", "list", "vault")
    assert locked["locked"] and locked["holds"] == 1
    assert "locked until" in app.cli("snapshot", "destroy", "vault", locked["id"], ok_codes=(14,)).err
    assert local_runner().run(["zfs", "destroy", locked["snapshot"]], ok_codes=(1,)).returncode == 1

    # prune: a dry run lists, the job removes exactly that
    [plan] = js(app, "prune", "acme", "--dry-run")
    doomed = [p["id"] for p in plan["destroy"]]
    shares = [p["id"] for p in timeline if p["area"] == "share"]
    assert doomed == [shares[2]]  # last=2 keeps the two newest, the pin keeps the oldest
    assert newest_share["id"] == shares[0] and "will be removed" in plan["summary"]
    assert "point" in app.cli("prune", "--dry-run").out
    pruned = js(app, "prune", "acme", "--wait")
    assert pruned["state"] == "succeeded" and pruned["result"]["destroyed"] == doomed
    assert js(app, "prune", "acme", "--dry-run")[0]["destroy"] == []
    assert any(p["id"] == locked["id"] for p in js(app, "snapshot", "list", "vault"))

    # browse, download, restore
    listing = js(app, "restore", "ls", "acme", first_share["id"], "docs")
    assert [e["name"] for e in listing] == ["report.txt"]
    out = tmp_path / "docs.zip"
    app.cli("restore", "zip", "acme", first_share["id"], "docs", "-o", str(out))
    assert zipfile.ZipFile(io.BytesIO(out.read_bytes())).read("docs/report.txt") == b"v1"
    restored = js(app, "restore", "files", "acme", first_share["id"], "docs", "--to", "restored", "--wait")
    assert restored["state"] == "succeeded" and restored["result"]["copied"] == 1
    assert (share(app, "acme") / "restored" / "docs" / "report.txt").read_text() == "v1"
    kept = js(app, "restore", "files", "acme", first_share["id"], "docs/report.txt", "--to", "docs", "--wait")
    assert kept["result"]["skipped_newer"] == 1
    assert (share(app, "acme") / "docs" / "report.txt").read_text() == "v2, newer"
    assert app.cli("restore", "files", "acme", first_share["id"], "../etc", "--to", ".", ok_codes=(3,))
    browse_root = f"{app.pool_name}/browse"
    clones = local_runner().run(["zfs", "list", "-H", "-o", "name", "-r", browse_root]).out.split()
    assert clones == [browse_root]  # every browse clone was cleaned up

    # remove keeps data; destroy needs the typed name
    app.cli("client", "remove", "acme")
    assert [c["name"] for c in js(app, "client", "list")] == ["vault"]
    assert (
        "needs the confirmation"
        in app.cli("client", "remove", "acme", "--destroy-data", "--confirm", "acm", ok_codes=(3,)).err
    )
    app.cli("client", "reattach", "acme")
    before_clients = js(app, "client", "list", "--all")
    before_points = {c: js(app, "snapshot", "list", c) for c in ("acme", "vault")}

    # the pool moves to a new appliance: export, move the disk, adopt it with a fresh data directory
    app.stop_daemons()
    local_runner().run(["zpool", "export", app.pool_name], timeout=120)
    new_dir = tmp_path / "fresh"
    (new_dir / "pool").mkdir(parents=True)
    (app.paths.pool_dir / f"{app.pool_name}.img").rename(new_dir / "pool" / f"{app.pool_name}.img")
    moved = appliance("fresh", pool_name=app.pool_name, adopt=True)
    after_clients = js(moved, "client", "list", "--all")
    strip = ("usage", "rpo_status", "schedule_status", "updated_at")
    assert [{k: v for k, v in c.items() if k not in strip} for c in after_clients] == [
        {k: v for k, v in c.items() if k not in strip} for c in before_clients
    ]
    for client, before in before_points.items():
        after = js(moved, "snapshot", "list", client)
        keys = ("id", "snapshot", "created_at", "source", "pinned", "locked_until", "verified", "job_id")
        assert [{k: p[k] for k in keys} for p in after] == [{k: p[k] for k in keys} for p in before]
