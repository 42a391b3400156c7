"""Trees to back up and how to compare them (type, content, symlink target, mode, owner, mtime)."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.transport import Connection
from appliance.clients import browse
from appliance.store import Store
from appliance.system.paths import Paths
from appliance.system.runner import CommandResult, local_runner
from appliance.zfs.host import ZfsHost
from tests.e2e.conftest import ROOT, Appliance, running_appliance

AGENT = str(ROOT / ".venv/bin/bulwark-agent")
T0 = 1_600_000_000_000_000_000  # fixed mtimes (ns) so the comparison is exact


def agent(state_dir: Path, *args: str, ok_codes: tuple[int, ...] = (0,)) -> CommandResult:
    return local_runner().run([AGENT, "--state-dir", str(state_dir), *args], ok_codes=ok_codes, timeout=300)


def agent_json(state_dir: Path, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(agent(state_dir, "--json", *args).out)
    return result


def enroll(appliance: Appliance, client: str, state_dir: Path) -> dict[str, Any]:
    code = json.loads(appliance.cli("client", "enroll-code", client, "--json").out)["code"]
    return agent_json(state_dir, "enroll", "--server", appliance.url, "--code", code)


def connection(state_dir: Path) -> Connection:
    data = json.loads((state_dir / "agent.json").read_text())
    return Connection(data["server"], data["fingerprint"], data["credential"])


def write(path: Path, data: bytes, mode: int = 0o644, mtime: int = T0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime, mtime))


def make_tree(top: Path) -> None:
    write(top / "docs" / "report.txt", b"quarterly report v1\n" * 100, 0o640)
    write(top / "docs" / "résumé €.txt", b"unicode names work\n", 0o600)
    write(top / "docs" / ("long-" + "x" * 200 + ".bin"), os.urandom(3000))
    write(top / "bin" / "tool.sh", b"#!/bin/sh\necho hi\n", 0o755)
    write(top / "data" / "big.bin", os.urandom(3 * 1024 * 1024))
    write(top / "data" / "zeros.bin", bytes(2 * 1024 * 1024))
    write(top / "data" / "to-delete.txt", b"goes away\n")
    write(top / "data" / "to-rename.txt", b"moves but keeps its content " * 1000)
    write(top / "same-a.txt", b"duplicate content\n")
    write(top / "same-b.txt", b"duplicate content\n")
    os.symlink("docs/report.txt", top / "link-to-report")
    os.symlink("/etc/hostname", top / "absolute-link")
    (top / "empty").mkdir()
    os.chown(top / "bin" / "tool.sh", 1234, 5678)
    os.chmod(top / "empty", 0o750)
    for d in ("docs", "bin", "data", "empty", ""):
        os.utime(top / d if d else top, ns=(T0, T0))


def signature(top: Path) -> dict[str, tuple[Any, ...]]:
    """Everything a restore must reproduce, per relative path."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            st = os.lstat(path)
            rel = str(path.relative_to(top))
            if stat.S_ISLNK(st.st_mode):
                extra: Any = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                extra = path.read_bytes()
            else:
                extra = None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, extra)
    return out


def restored(target: Path, source: Path) -> Path:
    """Where ``source`` lands under a restore into ``target`` (stored paths are absolute paths without '/')."""
    return target / str(source.resolve()).lstrip("/")


def diff_r(a: Path, b: Path) -> CommandResult:
    return local_runner().run(["diff", "-r", "--no-dereference", str(a), str(b)], ok_codes=(0, 1))


@contextlib.contextmanager
def agent_appliance(tmp: Path) -> Iterator[Appliance]:
    """A running appliance with two agent clients (acme, globex) and an SMB-only one."""
    with running_appliance(tmp, pool_file_size="768M") as running:
        running.cli("client", "add", "acme", "--kind", "agent")
        running.cli("client", "add", "globex", "--kind", "agent")
        running.cli("client", "add", "scattered", "--kind", "agent")  # its first backup is cut short
        running.cli("client", "add", "smbonly", "--kind", "smb", "--schedule", "off")  # no point mid-test
        store = Store.open(Paths.resolve(str(running.data_dir)).db)
        try:  # the parent of restore clones, mounted once for the module rather than by its first test
            browse.ensure_browse_root(store, ZfsHost.detect(local_runner()))
        finally:
            store.close()
        yield running


def points(state_dir: Path) -> list[str]:
    conn = connection(state_dir)
    try:
        return sorted(p["id"] for p in conn.request("GET", "/points")["points"])
    finally:
        conn.close()
