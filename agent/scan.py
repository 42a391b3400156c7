"""Walk the paths to back up into a manifest, hashing only what the local cache cannot vouch for (same size,
mtime, ctime and inode as when it was last hashed)."""

from __future__ import annotations

import concurrent.futures
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

CHUNK = 1024 * 1024  # also the block of deltas
READ = 8 * CHUNK
DELTA_MIN = 16 * 1024 * 1024  # files this large also get a hash per block, so a change sends only its blocks


def hash_file(path: str | Path, with_blocks: bool = False) -> tuple[str, str]:
    """BLAKE3 of the content and, if asked, the first 16 bytes (hex) of each 1 MiB block's BLAKE3. The two run
    side by side: the whole-content hash in a helper thread (BLAKE3 lets go of the interpreter lock)."""
    h = blake3.blake3()
    if not with_blocks:
        with open(path, "rb") as fh:
            while chunk := fh.read(READ):
                h.update(chunk)
        return h.hexdigest(), ""
    blocks = []
    with open(path, "rb") as fh, concurrent.futures.ThreadPoolExecutor(max_workers=1) as helper:
        pending: concurrent.futures.Future[blake3.blake3] | None = None
        while chunk := fh.read(READ):
            if pending is not None:
                pending.result()
            pending = helper.submit(h.update, chunk)
            view = memoryview(chunk)
            blocks += [blake3.blake3(view[i : i + CHUNK]).hexdigest()[:32] for i in range(0, len(chunk), CHUNK)]
        if pending is not None:
            pending.result()
    return h.hexdigest(), "".join(blocks)


def stored_path(abs_path: str) -> str:
    """The path as stored: absolute local path without its leading '/' (unicode kept as it is)."""
    return abs_path.lstrip("/")


@dataclass
class Scan:
    entries: list[dict[str, Any]] = field(default_factory=list)
    local: dict[str, str] = field(default_factory=dict)  # stored path → local path, for regular files
    bytes_scanned: int = 0
    bytes_hashed: int = 0
    skipped: list[str] = field(default_factory=list)
    unhashed: dict[str, list[int]] = field(default_factory=dict)  # stored path → cache key, until hashed


def _entry(rel: str, st: os.stat_result) -> dict[str, Any]:
    return {
        "path": rel,
        "mode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime_ns": st.st_mtime_ns,
    }


def _walk(top: str) -> Iterator[tuple[str, os.stat_result]]:
    st = os.lstat(top)
    yield top, st
    if stat.S_ISDIR(st.st_mode):
        with os.scandir(top) as it:
            names = sorted(e.name for e in it)
        for name in names:
            yield from _walk(os.path.join(top, name))


def walk(paths: list[str], cache: dict[str, list[Any]]) -> Scan:
    """Every entry under ``paths`` with its metadata. A file the cache vouches for has its hash; the others wait
    in ``unhashed`` for :func:`hash_files`, so the content that takes longest to send can be hashed (and sent)
    before the rest."""
    out = Scan()
    seen: set[str] = set()
    for given in paths:
        top = os.path.abspath(given)
        if not os.path.lexists(top):
            raise FileNotFoundError(f"{given} does not exist")
        parts = top.strip("/").split("/")
        for i in range(1, len(parts)):  # the parents, so the tree can be rebuilt with their metadata
            parent = "/" + "/".join(parts[:i])
            rel = stored_path(parent)
            if rel not in seen:
                seen.add(rel)
                out.entries.append({**_entry(rel, os.stat(parent)), "type": "d"})
        for local, st in _walk(top):
            rel = stored_path(local)
            if rel in seen or not rel:
                continue
            seen.add(rel)
            entry = _entry(rel, st)
            if stat.S_ISDIR(st.st_mode):
                entry["type"] = "d"
            elif stat.S_ISLNK(st.st_mode):
                entry["type"] = "l"
                entry["target"] = os.readlink(local)
            elif stat.S_ISREG(st.st_mode):
                key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
                entry.update(type="f", size=st.st_size)
                cached = cache.get(rel)
                if cached is not None and cached[:4] == key and len(cached) == 6:
                    _hashed(entry, cached[4], cached[5])
                else:
                    out.unhashed[rel] = key
                out.local[rel] = local
                out.bytes_scanned += st.st_size
            else:
                out.skipped.append(local)  # sockets, fifos, devices
                continue
            out.entries.append(entry)
    for gone in set(cache) - set(out.local):
        del cache[gone]
    return out


def hash_files(found: Scan, cache: dict[str, list[Any]], only: set[str] | None = None) -> None:
    """Hash the files of ``found`` still unhashed (or those of them in ``only``), recording each in the cache."""
    for entry in found.entries:
        rel = entry["path"]
        key = found.unhashed.get(rel)
        if entry["type"] != "f" or key is None or (only is not None and rel not in only):
            continue
        digest, blocks = hash_file(found.local[rel], key[0] >= DELTA_MIN)
        found.bytes_hashed += key[0]
        cache[rel] = [*key, digest, blocks]
        _hashed(entry, digest, blocks)
        del found.unhashed[rel]


def _hashed(entry: dict[str, Any], digest: str, blocks: str) -> None:
    entry["hash"] = digest
    if blocks:
        entry["blocks"] = blocks


def scan(paths: list[str], cache: dict[str, list[Any]]) -> Scan:
    found = walk(paths, cache)
    hash_files(found, cache)
    return found
