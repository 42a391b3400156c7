"""Small files laid out in the tree while the rest of a job is still arriving.

A commit that follows a clean one changes only what differs from the last manifest, which is quick. The first
commit of a client (and one after an interrupted commit) has no such base: it writes every file, and for a tree of
many small files that is most of the commit's time. So, for such an area only, the agent may send the job's
manifest ahead of the commit, once every pack has arrived (``POST /jobs/<id>/prepare``, docs/agent-protocol.md):
the appliance then creates the directories and writes each file whose content lies in a staged pack, at a path
the last manifest does not have, while the large contents are still on their way (what the last manifest
has is changed by commits only). Nothing of this is a recovery point: the tree of such an area is not
trusted until a commit has finished, and that commit walks it and makes it match its manifest as it always does.

What was written is recorded in ``staging/placed.json`` (path → hash), written only after every file it names,
so on ZFS the record never survives a crash without the files. The commit trusts a file of the record only if it
is still the regular file that was written (size, owner, mode, mtime), and removes the record before it changes
anything, as a new ``prepare`` does before it writes: a record is never left naming a file that was changed.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from appliance.ingest import packs, tree
from appliance.ingest.manifest import Entry

LEDGER = "placed.json"


def load_ledger(staging: Path) -> dict[str, str]:
    """The files the last ``prepare`` wrote (path → hash); empty if there is none or it cannot be read."""
    try:
        raw = json.loads((staging / LEDGER).read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {p: d for p, d in raw.items() if isinstance(p, str) and isinstance(d, str)}


def drop_ledger(staging: Path) -> None:
    (staging / LEDGER).unlink(missing_ok=True)


def _save_ledger(staging: Path, tmp: Path, placed: dict[str, str]) -> None:
    part = tmp / LEDGER
    part.write_text(json.dumps(placed, separators=(",", ":")))
    os.replace(part, staging / LEDGER)


def still_placed(root: Path, e: Entry) -> os.stat_result | None:
    """The file at ``e.path`` if it is still the one a ``prepare`` wrote for ``e``, else None."""
    st = tree.lstat(root / e.path)
    if (
        st is None
        or not stat.S_ISREG(st.st_mode)
        or st.st_size != e.size
        or (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (e.uid, e.gid, e.mode)
        or not tree.same_mtime(st.st_mtime_ns, e.mtime_ns)
    ):
        return None
    return st


def place(root: Path, staging: Path, tmp: Path, entries: list[Entry], base: list[Entry]) -> int:
    """Write the files of ``entries`` (sorted, checked) whose content lies in a staged pack, with the directories
    they need; returns how many were written. Only paths the last manifest (``base``) does not have are written:
    what it has stays as it is for the commit, which may copy a renamed file from there. A file that is already in
    place is left alone; anything unexpected on the way (a symlink or a file where a directory belongs) is left
    for the commit, which sorts it out."""
    placed = load_ledger(staging)
    drop_ledger(staging)  # from here on the tree may differ from what the record says
    in_base = {e.path for e in base}
    packed = packs.read_index(staging, os.listdir(staging))
    real_dirs = {""}
    todo: dict[str, list[tuple[Entry, packs.Item, bool]]] = {}
    for e in entries:
        if e.path.rpartition("/")[0] not in real_dirs:
            continue  # under something that is not (yet) a real directory: left for the commit
        if e.type == "d":
            if _directory(root / e.path):
                real_dirs.add(e.path)
            continue
        if e.type != "f":
            continue
        item = packed.get(e.hash)
        if item is None or item.size != e.size or e.path in in_base:
            continue  # not in a pack, or the commit's to change
        if placed.get(e.path) == e.hash and still_placed(root, e) is not None:
            continue
        was_placed = placed.pop(e.path, None) is not None
        todo.setdefault(item.pack, []).append((e, item, was_placed))
    written = tree.write_from_packs(root, staging, todo, strict=False)
    placed.update({e.path: e.hash for files in todo.values() for e, _, _ in files if e.path in written})
    _save_ledger(staging, tmp, placed)
    return len(written)


def _directory(path: Path) -> bool:
    """``path`` as a real directory (made, mode 0700 until the commit sets its own), or False if something else
    is there."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:  # no space, a name too long for the file system: left for the commit to report
        return False
    else:
        return True
    st = tree.lstat(path)
    return st is not None and stat.S_ISDIR(st.st_mode)
