"""Restore files of a recovery point into a directory, each verified by its BLAKE3 hash."""

from __future__ import annotations

import os
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

import blake3

from agent import state
from agent.transport import AgentError, Connection


def _safe(rel: Any) -> str:
    """A path from the appliance, refused if it could land outside the target (it is never trusted)."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\0" in rel:
        raise AgentError(f"the appliance sent an unsafe path {rel!r}", "nothing was written there; report this")
    if any(part in ("", ".", "..") for part in rel.split("/")):
        raise AgentError(f"the appliance sent an unsafe path {rel!r}", "nothing was written there; report this")
    return rel


def _selected(rel: str, wanted: list[str]) -> bool:
    if not wanted:
        return True
    return any(rel == w or rel.startswith(w + "/") or w.startswith(rel + "/") for w in wanted)


def run(state_dir: Path, point: str, target: Path, wanted: list[str]) -> dict[str, Any]:
    enrolled = state.load_enrollment(state_dir)
    conn = Connection(enrolled["server"], enrolled["fingerprint"], enrolled["credential"])
    wanted = [os.path.abspath(w).strip("/") for w in wanted]
    target.mkdir(parents=True, exist_ok=True)
    real_target = os.path.realpath(target)
    opened = conn.request("POST", "/restores", {"point": point})
    sid = opened["session"]
    files = size = 0
    try:
        entries = [e for e in opened["manifest"] if _selected(_safe(e["path"]), wanted)]
        for e in entries:  # sorted by path: parents first
            path = Path(real_target, e["path"])
            parent = os.path.realpath(path.parent)
            if parent != real_target and not parent.startswith(real_target + "/"):
                raise AgentError(f"{e['path']} would be written outside {target}", "restore into an empty directory")
            if e["type"] == "d":
                path.mkdir(exist_ok=True)
            elif e["type"] == "l":
                if path.is_symlink() or path.exists():
                    path.unlink()
                os.symlink(e["target"], path)
            else:
                q = urllib.parse.quote(e["path"])
                resp = conn.request("GET", f"/restores/{sid}/content?path={q}", stream=True)
                tmp = path.with_name(f".{path.name[:200]}.bulwark-{secrets.token_hex(4)}")
                h = blake3.blake3()
                with open(tmp, "wb") as out:
                    for block in conn.chunks(resp):
                        h.update(block)
                        out.write(block)
                if h.hexdigest() != e["hash"]:
                    tmp.unlink()
                    raise AgentError(f"{e['path']} does not match its hash", "the point may be damaged; try another")
                os.replace(tmp, path)
                files += 1
                size += e["size"]
            if e["type"] != "d":
                _meta(path, e)
        for e in reversed(entries):
            if e["type"] == "d":
                _meta(Path(real_target, e["path"]), e)
    finally:
        try:
            conn.request("DELETE", f"/restores/{sid}")
        finally:
            conn.close()
    return {"point": opened["point"], "files": files, "bytes": size, "to": str(target)}


def _meta(path: Path, e: dict[str, Any]) -> None:
    if os.geteuid() == 0:
        os.lchown(path, e["uid"], e["gid"])
    if e["type"] != "l":
        os.chmod(path, e["mode"])
    os.utime(path, ns=(e["mtime_ns"], e["mtime_ns"]), follow_symlinks=False)
