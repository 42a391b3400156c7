"""A file backup: scan, ask the appliance what it lacks, send only that (in parts, zstd where it pays), commit."""

from __future__ import annotations

import os
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from agent import scan, state
from agent.transport import AgentError, Connection

PART = 8 * 1024 * 1024
PACK_ITEM = 1024 * 1024  # contents up to this size travel in packs
PACK_BYTES = 8 * 1024 * 1024
DELTA_MAX = 12 * 1024 * 1024  # more changed blocks than this: the whole content is sent


@dataclass
class Report:
    job: str
    point: str
    files: int
    bytes_scanned: int
    bytes_hashed: int
    bytes_sent: int
    blobs_sent: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _send(conn: Connection, job: str, digest: str, local: str, size: int, start: int, progress: Any) -> int:
    """Send one content from ``start``; returns the bytes put on the wire."""
    sent = 0
    compressor = zstandard.ZstdCompressor(level=1)
    with open(local, "rb") as fh:
        fh.seek(start)
        offset = start
        while True:
            data = fh.read(PART)
            final = offset + len(data) >= size or not data
            headers = {"Bulwark-Size": str(size), "Content-Type": "application/octet-stream"}
            body = data
            packed = compressor.compress(data) if data else b""
            if data and len(packed) < len(data) * 0.9:
                body = packed
                headers["Content-Encoding"] = "zstd"
            query = f"?offset={offset}" + ("&final=1" if final else "")
            conn.request("PUT", f"/jobs/{job}/content/{digest}{query}", raw=body, headers=headers)
            sent += len(body)
            offset += len(data)
            progress(len(data))
            if final:
                return sent


def _changed_blocks(old: str, new: str) -> list[int]:
    w = 32
    return [i for i in range(len(new) // w) if new[i * w : (i + 1) * w] != old[i * w : (i + 1) * w]]


def _send_delta(conn: Connection, job: str, entry: dict[str, Any], local: str, changed: list[int]) -> int:
    """Only the changed 1 MiB blocks of a large file; the appliance rebuilds it from its previous version."""
    parts = []
    with open(local, "rb") as fh:
        for index in changed:
            fh.seek(index * scan.CHUNK)
            data = fh.read(scan.CHUNK)
            parts.append(index.to_bytes(8, "big") + len(data).to_bytes(4, "big") + data)
    body = b"".join(parts)
    headers = {"Bulwark-Size": str(entry["size"]), "Content-Type": "application/octet-stream"}
    packed = zstandard.ZstdCompressor(level=1).compress(body)
    if len(packed) < len(body) * 0.9:
        body = packed
        headers["Content-Encoding"] = "zstd"
    base = urllib.parse.quote(entry["path"])
    conn.request("PUT", f"/jobs/{job}/delta/{entry['hash']}?base={base}", raw=body, headers=headers)
    return len(body)


def _send_packs(conn: Connection, job: str, items: list[tuple[str, str, int]], progress: Any) -> int:
    """Small contents several to a message (fewer round trips), zstd when it pays."""
    sent = 0
    batch: list[bytes] = []
    raw = 0

    def flush() -> int:
        body = b"".join(batch)
        headers = {"Content-Type": "application/octet-stream"}
        packed = zstandard.ZstdCompressor(level=1).compress(body)
        if len(packed) < len(body) * 0.9:
            body = packed
            headers["Content-Encoding"] = "zstd"
        conn.request("PUT", f"/jobs/{job}/pack", raw=body, headers=headers)
        batch.clear()
        return len(body)

    for digest, local, size in items:
        with open(local, "rb") as fh:
            data = fh.read(size + 1)
        if len(data) != size:
            raise AgentError(f"{local} changed while it was backed up", "run the backup again")
        if raw + 72 + size > PACK_BYTES and batch:
            sent += flush()
            raw = 0
        batch.append(digest.encode() + size.to_bytes(8, "big") + data)
        raw += 72 + size
        progress(size)
    if batch:
        sent += flush()
    return sent


def run(state_dir: Path, paths: list[str], *, bwlimit: int = 0, quiet: bool = False) -> Report:
    began = time.monotonic()
    enrolled = state.load_enrollment(state_dir)
    conn = Connection(enrolled["server"], enrolled["fingerprint"], enrolled["credential"], bwlimit)
    try:
        cache = state.load_cache(state_dir)
        found = scan.scan(paths, cache)
        state.save_cache(state_dir, cache)
        for skipped in found.skipped:
            sys.stderr.write(f"bulwark-agent: skipped {skipped} (not a file, directory or symlink)\n")
        opened = conn.request("POST", "/jobs", {"kind": "files"})
        job = opened["job"]
        hashes = sorted({e["hash"] for e in found.entries if e["type"] == "f"})
        answer = conn.request("POST", f"/jobs/{job}/missing", {"hashes": hashes})
        missing: list[str] = answer["missing"]
        partial: dict[str, int] = answer["partial"]
        by_hash = {e["hash"]: (found.local[e["path"]], e["size"]) for e in found.entries if e["type"] == "f"}
        total = sum(by_hash[d][1] - partial.get(d, 0) for d in missing)
        done = [0]
        last = [0.0]

        def progress(count: int) -> None:
            done[0] += count
            now = time.monotonic()
            if not quiet and (now - last[0] > 1 or done[0] >= total):
                last[0] = now
                pct = 100 * done[0] / total if total else 100
                sys.stderr.write(f"\rsending {done[0] / 1e6:.1f} of {total / 1e6:.1f} MB ({pct:.0f}%)")
                sys.stderr.flush()

        base = {e["path"]: e for e in opened["manifest"] if e.get("type") == "f" and e.get("blocks")}
        sent = 0
        deltas = {}
        for e in found.entries:
            if e["type"] == "f" and e["hash"] in missing and e.get("blocks") and e["path"] in base:
                changed = _changed_blocks(base[e["path"]]["blocks"], e["blocks"])
                if len(changed) * scan.CHUNK <= DELTA_MAX:
                    deltas[e["hash"]] = (e, changed)
        delivered = set()
        for digest, (e, changed) in deltas.items():
            try:
                sent += _send_delta(conn, job, e, found.local[e["path"]], changed)
            except AgentError as exc:  # the previous version is gone on the appliance: send it whole below
                if exc.code != "protocol_error":
                    raise
                continue
            delivered.add(digest)
            progress(by_hash[digest][1] - partial.get(digest, 0))
        small = [d for d in missing if by_hash[d][1] <= PACK_ITEM and d not in partial]
        for digest in missing:
            if digest not in small and digest not in delivered:
                local, size = by_hash[digest]
                sent += _send(conn, job, digest, local, size, partial.get(digest, 0), progress)
        sent += _send_packs(conn, job, [(d, *by_hash[d]) for d in small], progress)
        if not quiet and total:
            sys.stderr.write("\n")
        for _ in range(3):
            try:
                result = conn.request("POST", f"/jobs/{job}/commit", {"manifest": found.entries})
                break
            except AgentError as exc:  # content the appliance could not find after all: send it, then again
                if exc.code != "missing_content" or not isinstance(exc.body, dict):
                    raise
                for digest in exc.body.get("missing", []):
                    if digest not in by_hash:
                        raise
                    local, size = by_hash[digest]
                    sent += _send(conn, job, digest, local, size, 0, progress)
        else:
            raise AgentError("the appliance kept asking for content", "run the backup again")
        return Report(
            job,
            result["point"],
            result["files"],
            found.bytes_scanned,
            found.bytes_hashed,
            sent,
            len(missing),
            time.monotonic() - began,
        )
    finally:
        conn.close()


def check_paths(paths: list[str]) -> list[str]:
    for p in paths:
        if not os.path.lexists(p):
            raise AgentError(f"{p} does not exist", "give paths that exist on this machine")
    return paths
