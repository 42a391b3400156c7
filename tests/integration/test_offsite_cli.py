"""Offsite end to end through the ``bulwark`` command and a real daemon: a key and its recovery kit, an SFTP target
on a real sshd, replication and verification as jobs, then disaster recovery on a fresh appliance (new data
directory, new pool) with only the target's credentials and the kit."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.system.runner import CommandResult, local_runner
from tests.clients_fixtures import BULWARK, Appliance
from tests.offsite_fixtures import PASSPHRASE, SftpServer

pytestmark = [pytest.mark.zfs, pytest.mark.slow]


def cli(app: Appliance, *args: str, stdin: str | None = None, ok: tuple[int, ...] = (0,)) -> CommandResult:
    return local_runner().run(
        [BULWARK, "--data-dir", str(app.data_dir), *args],
        input=stdin.encode() if stdin is not None else None,
        ok_codes=ok,
        timeout=180,
        env={"BULWARK_TESTONLY_WEAK_KDF": "1"},
    )


def js(app: Appliance, *args: str, stdin: str | None = None) -> Any:
    return json.loads(cli(app, *args, "--json", stdin=stdin).out)


def share(app: Appliance, client: str) -> Path:
    return app.data_dir / "mnt" / app.pool_name / "clients" / client / "share"


def add_sftp(app: Appliance, server: SftpServer, tmp_path: Path) -> None:
    identity = tmp_path / "offsite_id"
    identity.write_text(server.client_key)
    identity.chmod(0o600)
    c = server.config()
    cli(app, "offsite", "target", "add", "vault", "--type", "sftp", "--host", c.host, "--port", str(c.port),
        "--user", c.user, "--path", c.path, "--host-key", c.host_key, "--identity-file", str(identity))  # fmt: skip


def test_replicate_verify_and_disaster_recovery(
    appliance: Callable[..., Appliance], sftp_server: SftpServer, tmp_path: Path
) -> None:
    site = appliance("site")
    cli(site, "client", "add", "acme", "--kind", "smb", "--schedule", "off")
    (share(site, "acme") / "docs").mkdir()
    (share(site, "acme") / "docs" / "report.txt").write_text("quarterly numbers v1")
    (share(site, "acme") / "disk.img").write_bytes(os.urandom(3_000_000))

    # no key yet: a clear error, never plaintext
    add_sftp(site, sftp_server, tmp_path)
    site.start_daemon()
    js(site, "snapshot", "create", "acme", "--wait")
    refused = cli(site, "offsite", "run", "acme", "--wait", ok=(20,))
    assert "No offsite data key" in refused.err and "key init --passphrase-stdin" in refused.err
    short = cli(site, "offsite", "key", "init", "--passphrase-stdin", stdin="short\n", ok=(3,))
    assert "at least 12 characters" in short.err
    cli(site, "offsite", "key", "init", "--passphrase-stdin", stdin=PASSPHRASE + "\n")

    done = js(site, "offsite", "run", "acme", "--wait")
    assert done["state"] == "succeeded" and len(done["result"]["streams"]) == 1
    (share(site, "acme") / "docs" / "report.txt").write_text("quarterly numbers v2")
    js(site, "snapshot", "create", "acme", "--wait")
    done = js(site, "offsite", "run", "acme", "--target", "vault", "--wait")
    assert [s["seq"] for s in done["result"]["streams"]] == [1]
    verified = js(site, "offsite", "verify", "acme", "--target", "vault", "--wait")
    assert verified["state"] == "succeeded"
    (area,) = verified["result"]["areas"]
    assert area["ok"] and area["files"] == 2 and area["streams"] == 2
    status = js(site, "offsite", "status")
    assert status[0]["verification"]["ok"] is True and status[0]["streams"] == 2
    kit_file = tmp_path / "kit.txt"
    cli(site, "offsite", "key", "export-kit", "--out", str(kit_file))
    assert oct(kit_file.stat().st_mode & 0o777) == "0o600" and "BEGIN BULWARK OFFSITE KIT" in kit_file.read_text()
    points = js(site, "snapshot", "list", "acme")
    site.stop_daemons()

    # the site is lost: a fresh appliance with a new pool, the target's credentials and the kit
    fresh = appliance("dr")
    add_sftp(fresh, sftp_server, tmp_path)
    wrong = cli(fresh, "offsite", "list", "--target", "vault", "--kit", str(kit_file), "--passphrase-stdin",
                stdin="not the passphrase\n", ok=(21,))  # fmt: skip
    assert "passphrase does not open the recovery kit" in wrong.err
    nokey = cli(fresh, "offsite", "list", "--target", "vault", ok=(21,))
    assert "does not have" in nokey.err and "recovery kit" in nokey.err
    listing = js(fresh, "offsite", "list", "--target", "vault", "--kit", str(kit_file), "--passphrase-stdin",
                 stdin=PASSPHRASE + "\n")  # fmt: skip
    assert [c["client"] for c in listing] == ["acme"]
    held = [p["snapshot"] for p in listing[0]["areas"]["share"][0]["points"]]
    assert held == [p["snapshot"].split("@")[1] for p in reversed(points)]
    result = js(fresh, "offsite", "restore", "--target", "vault", "--client", "acme", "--point", "latest",
                "--kit", str(kit_file), "--passphrase-stdin", stdin=PASSPHRASE + "\n")  # fmt: skip
    assert result["imported"] == ["acme"] and result["restored"][0]["snapshots"] == held
    back = js(fresh, "snapshot", "list", "acme")
    assert [p["id"] for p in back] == [p["id"] for p in points]
    assert (share(fresh, "acme") / "docs" / "report.txt").read_text() == "quarterly numbers v2"
    assert (share(fresh, "acme") / "disk.img").read_bytes() == (share(site, "acme") / "disk.img").read_bytes()
    assert js(fresh, "client", "list")[0]["name"] == "acme"
