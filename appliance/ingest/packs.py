"""Small contents as they arrived, several to a file: ``staging/<id>.pack``.

A pack file is one line of JSON — ``[[hash, offset, size], ...]``, offsets counted from the end of that line —
then the contents, each verified by BLAKE3 before the file was written (beside it, renamed into staging only once
complete). The commit writes each content straight to its place in the tree, reading one pack at a time, so a
small file costs no file of its own in staging and no rename.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.ingest import manifest
from appliance.ingest.errors import ProtocolError

SUFFIX = ".pack"
MAX_BYTES = 16 * 1024 * 1024  # a pack message holds at most this much, as any message with content
MAX_INDEX = 4 * 1024 * 1024


@dataclass(frozen=True)
class Item:
    pack: str  # the pack file's name in staging
    offset: int  # from the start of the pack file
    size: int


def write(staging: Path, tmp: Path, items: Iterable[tuple[str, memoryview]], mode: int) -> str:
    """A new pack of ``items`` (hash, verified content) in staging; returns its name."""
    index, at = [], 0
    pieces = []
    for digest, data in items:
        index.append([digest, at, len(data)])
        pieces.append(data)
        at += len(data)
    head = json.dumps(index, separators=(",", ":")).encode() + b"\n"
    name = secrets.token_hex(8) + SUFFIX
    part = tmp / name
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_all(fd, b"".join([head, *pieces]))
    finally:
        os.close(fd)
    os.replace(part, staging / name)
    return name


def read_index(staging: Path, names: Iterable[str]) -> dict[str, Item]:
    """Every content held in the packs among ``names`` (the entries of staging), by hash. A pack that cannot be
    read whole is left out: its contents are asked for again."""
    found: dict[str, Item] = {}
    for name in names:
        if not name.endswith(SUFFIX):
            continue
        try:
            with open(staging / name, "rb") as fh:
                head = fh.readline(MAX_INDEX)
                length = os.fstat(fh.fileno()).st_size
            entries = json.loads(head)
            items = {manifest.check_hash(d): Item(name, len(head) + int(o), int(s)) for d, o, s in entries}
        except (OSError, ValueError, TypeError, ProtocolError):
            continue
        if all(item.offset + item.size <= length for item in items.values()):
            found.update(items)
    return found


def read_pack(staging: Path, name: str) -> bytes:
    with open(staging / name, "rb") as fh:
        return fh.read()


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
