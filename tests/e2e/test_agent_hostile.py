"""Hostile agents against a real running appliance: path traversal, absolute paths, the appliance's own
directory, symlink escapes, lying sizes and hashes, damaged compression, malformed messages, another client's
credential, a wrong or revoked credential. Each is refused with a clear error and nothing stored changes:
the points are the same, refused content is not kept, and the last point still restores identical."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest

from agent.transport import AgentError, Connection
from tests.e2e.agent_helpers import (
    agent,
    agent_appliance,
    agent_json,
    connection,
    enroll,
    points,
    restored,
    signature,
    write,
)
from tests.e2e.conftest import Appliance

pytestmark = [pytest.mark.zfs, pytest.mark.slow]


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, zfs_daemon: object) -> Iterator[Appliance]:
    with agent_appliance(tmp_path_factory.mktemp("hostile")) as running:
        yield running


@pytest.fixture
def backed_up(appliance: Appliance, tmp_path: Path) -> Iterator[tuple[Path, Path, Connection]]:
    state = tmp_path / "state"
    enroll(appliance, "acme", state)
    src = tmp_path / "src"
    write(src / "keep.txt", b"precious\n")
    os.symlink("keep.txt", src / "link")
    agent_json(state, "backup", str(src))
    conn = connection(state)
    yield state, src, conn
    conn.close()


def refused(conn: Connection, method: str, path: str, body: Any = None, **kw: Any) -> AgentError:
    with pytest.raises(AgentError) as caught:
        conn.request(method, path, body, **kw)
    return caught.value


def _entry(path: str, kind: str = "d", **extra: Any) -> dict[str, Any]:
    return {"path": path, "type": kind, "mode": 0o755, "uid": 0, "gid": 0, "mtime_ns": 0, **extra}


def unchanged(state: Path, src: Path, before: list[str], tmp: Path) -> None:
    assert points(state) == before
    out = tmp / f"check{len(list(tmp.iterdir()))}"
    agent_json(state, "restore", "--to", str(out))
    assert signature(restored(out, src)) == signature(src)


HOSTILE_MANIFESTS = {
    "dot-dot": ([_entry("a"), _entry("a/../../escape", "f", size=1, hash="0" * 64)], "'..' is not allowed"),
    "absolute": ([_entry("/etc"), _entry("/etc/passwd", "f", size=1, hash="0" * 64)], "absolute paths"),
    "own-directory": ([_entry(".bulwark"), _entry(".bulwark/manifest.json", "f", size=1, hash="0" * 64)], ".bulwark"),
    "symlink-escape": (
        [_entry("a", "l", target="/etc"), _entry("a/passwd", "f", size=1, hash="0" * 64)],
        "parent is not a directory",
    ),
    "not-clean": ([_entry("a//b")], "relative and clean"),
    "duplicate": ([_entry("a"), _entry("a")], "appears twice"),
    "bad-mode": ([_entry("a", mode=-1)], "mode must be an integer"),
    "bad-type": ([_entry("a", "x")], "type must be one of"),
    "not-a-list": ({"path": "a"}, "must be a list"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_MANIFESTS))
def test_hostile_manifests_are_refused_and_change_nothing(
    backed_up: tuple[Path, Path, Connection], tmp_path: Path, case: str
) -> None:
    state, src, conn = backed_up
    before = points(state)
    job = conn.request("POST", "/jobs", {"kind": "files"})["job"]
    manifest, words = HOSTILE_MANIFESTS[case]
    err = refused(conn, "POST", f"/jobs/{job}/commit", {"manifest": manifest})
    assert err.status == 400 and words in err.message, err
    assert err.hint
    err = refused(conn, "POST", f"/jobs/{job}/prepare", {"manifest": manifest})
    assert err.status == 400 and words in err.message, err
    unchanged(state, src, before, tmp_path)


def test_lying_content_is_refused_and_not_kept(backed_up: tuple[Path, Path, Connection], tmp_path: Path) -> None:
    state, src, conn = backed_up
    before = points(state)
    job = conn.request("POST", "/jobs", {"kind": "files"})["job"]
    real = b"the real content\n" * 10
    digest = blake3.blake3(real).hexdigest()
    put = f"/jobs/{job}/content/{digest}"
    size = {"Bulwark-Size": str(len(real))}
    err = refused(conn, "PUT", f"{put}?final=1", raw=b"something else entirely.." * 10 + b"!", headers=size)
    assert err.code == "content_mismatch" and "more data" in err.message
    err = refused(conn, "PUT", f"{put}?final=1", raw=real[:-1] + b"?", headers=size)
    assert err.code == "content_mismatch" and "BLAKE3" in err.message
    err = refused(conn, "PUT", f"{put}?final=1", raw=real[:50], headers=size)
    assert err.code == "content_mismatch" and "were announced" in err.message
    err = refused(
        conn, "PUT", f"{put}?final=1", raw=b"\x28\xb5\x2f\xfd garbage", headers={**size, "Content-Encoding": "zstd"}
    )
    assert err.code == "protocol_error" and "zstd" in err.message
    err = refused(conn, "PUT", f"{put}?offset=99", raw=real, headers=size)
    assert err.code == "protocol_error"
    assert conn.request("POST", f"/jobs/{job}/missing", {"hashes": [digest]}) == {"missing": [digest], "partial": {}}
    # A manifest naming content that never arrived: refused with the list, nothing applied.
    manifest = [_entry("x"), _entry("x/new.txt", "f", size=len(real), hash=digest)]
    err = refused(conn, "POST", f"/jobs/{job}/commit", {"manifest": manifest})
    assert err.code == "missing_content" and err.body["missing"] == [digest]
    unchanged(state, src, before, tmp_path)


def test_a_prepare_on_a_clean_base_or_a_closed_job_changes_nothing(
    backed_up: tuple[Path, Path, Connection], tmp_path: Path
) -> None:
    state, src, conn = backed_up
    before = points(state)
    opened = conn.request("POST", "/jobs", {"kind": "files"})
    assert opened["prepare"] is False  # acme has a committed backup: its commit touches only what changed
    small = b"would be a new file\n"
    digest = blake3.blake3(small).hexdigest()
    pack = digest.encode() + len(small).to_bytes(8, "big") + small
    conn.request("PUT", f"/jobs/{opened['job']}/pack", raw=pack, headers={"Content-Type": "application/octet-stream"})
    manifest = [_entry("x"), _entry("x/new.txt", "f", size=len(small), hash=digest)]
    assert conn.request("POST", f"/jobs/{opened['job']}/prepare", {"manifest": manifest})["written"] == 0
    conn.request("POST", "/jobs", {"kind": "files"})  # supersedes the first job
    err = refused(conn, "POST", f"/jobs/{opened['job']}/prepare", {"manifest": manifest})
    assert err.status == 409 and err.code == "job_not_open"
    unchanged(state, src, before, tmp_path)


def test_malformed_messages_get_a_protocol_error(backed_up: tuple[Path, Path, Connection]) -> None:
    _, _, conn = backed_up
    err = refused(conn, "POST", "/jobs", raw=b"{not json", headers={"Content-Type": "application/json"})
    assert err.status == 400 and err.code == "protocol_error"
    err = refused(conn, "GET", "/hello", headers={"Bulwark-Protocol": "99"})
    assert err.status == 400 and "speaks protocol 1" in err.message
    err = refused(conn, "POST", "/jobs", {"kind": "tape"})
    assert err.code == "protocol_error"
    job = conn.request("POST", "/jobs", {"kind": "files"})["job"]
    err = refused(conn, "POST", f"/jobs/{job}/missing", {"hashes": ["not-a-hash"]})
    assert err.code == "protocol_error" and "64 lowercase hex" in err.message


def test_another_clients_credential_reaches_nothing_of_acme(
    appliance: Appliance, backed_up: tuple[Path, Path, Connection], tmp_path: Path
) -> None:
    state, src, conn = backed_up
    acme_point = points(state)[-1]
    acme_job = conn.request("POST", "/jobs", {"kind": "files"})["job"]
    acme_restore = conn.request("POST", "/restores", {"point": "latest"})["session"]
    other = tmp_path / "globex"
    enroll(appliance, "globex", other)
    g = connection(other)
    try:
        assert g.request("GET", "/hello")["client"] == "globex"
        assert g.request("GET", "/points")["points"] == []
        err = refused(g, "POST", "/restores", {"point": acme_point})
        assert err.status == 404
        digest = blake3.blake3(b"x").hexdigest()
        err = refused(g, "PUT", f"/jobs/{acme_job}/content/{digest}?final=1", raw=b"x", headers={"Bulwark-Size": "1"})
        assert err.status == 404 and err.code == "job_not_found"
        err = refused(g, "POST", f"/jobs/{acme_job}/commit", {"manifest": []})
        assert err.code == "job_not_found"
        err = refused(g, "POST", f"/jobs/{acme_job}/prepare", {"manifest": []})
        assert err.code == "job_not_found"
        err = refused(g, "GET", f"/restores/{acme_restore}/content?path=keep.txt")
        assert err.status == 404
    finally:
        g.close()
        conn.request("DELETE", f"/restores/{acme_restore}")


def test_wrong_and_revoked_credentials_are_refused_at_once(
    appliance: Appliance, backed_up: tuple[Path, Path, Connection], tmp_path: Path
) -> None:
    state, src, conn = backed_up
    data = json.loads((state / "agent.json").read_text())
    wrong = Connection(data["server"], data["fingerprint"], data["agent_id"] + ":not-the-secret")
    try:
        err = refused(wrong, "GET", "/hello")
        assert err.status == 401 and "wrong or unknown" in err.message and "enroll" in err.hint
    finally:
        wrong.close()
    nobody = Connection(data["server"], data["fingerprint"])
    try:
        assert refused(nobody, "POST", "/jobs", {"kind": "files"}).status == 401
    finally:
        nobody.close()
    before = points(state)
    appliance.cli("client", "revoke-agent", data["agent_id"])
    err = refused(conn, "GET", "/hello")  # the same (replayed) credential, on a connection already open
    assert err.status == 401 and "revoked" in err.message
    result = agent(state, "backup", str(src), ok_codes=(2,))
    assert "revoked" in result.err
    listed = json.loads(appliance.cli("client", "agents", "acme", "--json").out)
    assert {a["id"]: a["state"] for a in listed}[data["agent_id"]] == "revoked"
    assert points(tmp_path_state(appliance, tmp_path)) == before


def tmp_path_state(appliance: Appliance, tmp_path: Path) -> Path:
    """A fresh, valid agent of acme, to look at the points after the revoked one was refused."""
    fresh = tmp_path / "fresh"
    enroll(appliance, "acme", fresh)
    return fresh


def test_lying_deltas_are_refused(backed_up: tuple[Path, Path, Connection], tmp_path: Path) -> None:
    state, src, conn = backed_up
    before = points(state)
    job = conn.request("POST", "/jobs", {"kind": "files"})["job"]
    base = str(src / "keep.txt").lstrip("/")
    target = b"precious!\n"
    digest = blake3.blake3(target).hexdigest()
    block = (0).to_bytes(8, "big") + (3).to_bytes(4, "big") + b"XYZ"  # not what makes the target
    headers = {"Bulwark-Size": str(len(target))}
    err = refused(conn, "PUT", f"/jobs/{job}/delta/{digest}?base={base}", raw=block, headers=headers)
    assert err.code == "content_mismatch" and "rebuilt from the delta" in err.message
    outside = (5).to_bytes(8, "big") + (1).to_bytes(4, "big") + b"!"
    err = refused(conn, "PUT", f"/jobs/{job}/delta/{digest}?base={base}", raw=outside, headers=headers)
    assert err.code == "protocol_error" and "outside the file" in err.message
    err = refused(conn, "PUT", f"/jobs/{job}/delta/{digest}?base=../../etc/passwd", raw=block, headers=headers)
    assert err.status == 400 and "'..' is not allowed" in err.message
    err = refused(conn, "PUT", f"/jobs/{job}/delta/{digest}?base=etc/passwd", raw=block, headers=headers)
    assert err.code == "protocol_error" and "not a file of the last backup" in err.message
    assert conn.request("POST", f"/jobs/{job}/missing", {"hashes": [digest]})["missing"] == [digest]
    unchanged(state, src, before, tmp_path)
