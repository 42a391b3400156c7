"""The file manifest an agent sends (docs/agent-protocol.md): every entry checked before anything is stored."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from appliance.clients.errors import UnsafePath
from appliance.clients.paths import clean_relative
from appliance.ingest.errors import ProtocolError

RESERVED = ".bulwark"  # the appliance's own directory at the root of the files dataset
MAX_ENTRIES = 5_000_000
MAX_NAME = 255
_HASH = re.compile(r"^[0-9a-f]{64}$")
_BLOCKS = re.compile(r"^(?:[0-9a-f]{32})*$")
BLOCK = 1024 * 1024  # the block of deltas for large files
BLOCK_HEX = 32
TYPES = ("d", "f", "l")


@dataclass(frozen=True)
class Entry:
    path: str
    type: str  # d, f or l
    mode: int  # permission bits (07777)
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    hash: str = ""  # blake3 hex of a file's content
    target: str = ""  # a symlink's target, stored as it is and never followed
    blocks: str = ""  # large files: the first 16 bytes of each 1 MiB block's BLAKE3, hex, concatenated

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "type": self.type,
            "mode": self.mode,
            "uid": self.uid,
            "gid": self.gid,
            "mtime_ns": self.mtime_ns,
        }
        if self.type == "f":
            out["size"] = self.size
            out["hash"] = self.hash
            if self.blocks:
                out["blocks"] = self.blocks
        if self.type == "l":
            out["target"] = self.target
        return out


def check_hash(value: Any) -> str:
    if not isinstance(value, str) or not _HASH.match(value):
        raise ProtocolError("a content hash must be 64 lowercase hex digits (BLAKE3)")
    return value


def _int(raw: dict[str, Any], key: str, low: int, high: int) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ProtocolError(f"entry {str(raw.get('path'))[:200]!r}: {key} must be an integer in [{low}, {high}]")
    return value


def check_path(path: Any) -> str:
    """A stored path: clean, relative, no '..', not the reserved directory, no over-long name."""
    if not isinstance(path, str):
        raise ProtocolError("an entry's path must be text")
    clean = clean_relative(path)
    if clean != path or not clean:
        raise UnsafePath(path, "paths must be relative and clean (no '.', '//', or trailing '/')")
    if clean.split("/")[0] == RESERVED:
        raise UnsafePath(path, f"'{RESERVED}' at the top is the appliance's own directory")
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME for part in clean.split("/")):
        raise UnsafePath(path[:80], "a name is longer than 255 bytes")
    return clean


def parse_entry(raw: Any) -> Entry:
    if not isinstance(raw, dict):
        raise ProtocolError("a manifest entry must be an object")
    path = check_path(raw.get("path"))
    kind = raw.get("type")
    if kind not in TYPES:
        raise ProtocolError(f"entry {path!r}: type must be one of d, f, l")
    common = {
        "path": path,
        "type": kind,
        "mode": _int(raw, "mode", 0, 0o7777),
        "uid": _int(raw, "uid", 0, 2**32 - 1),
        "gid": _int(raw, "gid", 0, 2**32 - 1),
        "mtime_ns": _int(raw, "mtime_ns", -(2**62), 2**62),
    }
    if kind == "f":
        size = _int(raw, "size", 0, 2**50)
        blocks = raw.get("blocks", "")
        count = -(-size // BLOCK)
        if not isinstance(blocks, str) or not _BLOCKS.match(blocks) or blocks and len(blocks) != count * BLOCK_HEX:
            raise ProtocolError(f"entry {path!r}: blocks must be {BLOCK_HEX} hex digits per 1 MiB block")
        return Entry(**common, size=size, hash=check_hash(raw.get("hash")), blocks=blocks)
    if kind == "l":
        target = raw.get("target")
        if not isinstance(target, str) or not target or "\0" in target or len(target) > 4096:
            raise ProtocolError(f"entry {path!r}: a symlink needs a target of 1 to 4096 characters without NUL")
        return Entry(**common, target=target)
    return Entry(**common)


def parse(raw: Any) -> list[Entry]:
    """The manifest, sorted by path, refused as a whole if any entry is bad: duplicate paths, or an entry whose
    parent is not a directory of the same manifest (so nothing can be written through a symlink)."""
    if not isinstance(raw, list):
        raise ProtocolError("the manifest must be a list of entries")
    if len(raw) > MAX_ENTRIES:
        raise ProtocolError(f"a manifest holds at most {MAX_ENTRIES} entries")
    entries = [parse_entry(item) for item in raw]
    by_path: dict[str, Entry] = {}
    for entry in entries:
        if entry.path in by_path:
            raise ProtocolError(f"path {entry.path!r} appears twice")
        by_path[entry.path] = entry
    for entry in entries:
        parent = entry.path.rpartition("/")[0]
        if parent and (parent not in by_path or by_path[parent].type != "d"):
            raise UnsafePath(entry.path, "its parent is not a directory listed in the same manifest")
    return sorted(entries, key=lambda e: e.path)


def from_stored(raw: list[dict[str, Any]]) -> list[Entry]:
    """A manifest this appliance wrote itself after :func:`parse` accepted it: read back without checking every
    entry again (a few million entries would take seconds)."""
    return [
        Entry(
            r["path"],
            r["type"],
            r["mode"],
            r["uid"],
            r["gid"],
            r["mtime_ns"],
            r.get("size", 0),
            r.get("hash", ""),
            r.get("target", ""),
            r.get("blocks", ""),
        )
        for r in raw
    ]


def to_json(entries: list[Entry]) -> list[dict[str, Any]]:
    return [e.to_dict() for e in entries]
