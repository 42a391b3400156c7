"""Small files laid out in the tree while the rest of a job is still arriving.

A commit that follows a clean one changes only what differs from the last manifest, which is quick. The first
commit of a client (and one after an interrupted commit) has no such base: it writes every file, and for a tree of
many small files that is most of the commit's time. So, for such an area only, the agent may send the job's
manifest ahead of the commit (``POST /jobs/<id>/prepare``, docs/agent-protocol.md). The appliance then creates the
directories, writes each file whose content already lies in a staged pack, and keeps a plan
(``staging/placing.json``: content hash → the files that want it) of the others, so that each pack arriving later
is written straight to its files instead of being staged as a pack. Only paths the last manifest does not have are
written: what it has is changed by commits only (a commit may need to copy a renamed file from there). Nothing of
this is a recovery point: the tree of such an area is not trusted until a commit has finished, and that commit
walks it and makes it match its manifest as it always does.

What was written is recorded in ledgers (path → hash): ``staging/placed.json``, written by a prepare, and one
``staging/placed-<time>-<id>.json`` per pack, a later one overriding an earlier one. Each is written only after
the files it names, so on ZFS a ledger never survives a crash without its files. A content written to the tree
this way is not kept in staging: the ledger is the record that it arrived, and a commit copies it from there
(verified by hash) wherever else it is needed. A prepare and a commit remove the ledgers and the plan before they
change anything; a prepare then records again only the files it keeps or writes, never a path of its new plan
(the pack that arrives for it overwrites that file), and packs follow only the plan saved last. So the last
ledger that names a path names what was last written there. The commit keeps a file of a ledger at its own path
only if it is still the regular file that was written (size, owner, mode, mtime); no pack is written through a
directory a commit may have replaced.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from appliance.ingest import packs, tree
from appliance.ingest.manifest import Entry

LEDGER = "placed.json"
PLAN = "placing.json"


def _ledgers(staging: Path) -> list[str]:
    return [n for n in os.listdir(staging) if n.startswith("placed") and n.endswith(".json")]


def load_ledger(staging: Path) -> dict[str, str]:
    """The files written ahead (path → hash), from every ledger that can be read, a later one overriding an
    earlier one (``placed.json`` is written first, then one per pack, named by the time it was written)."""
    placed: dict[str, str] = {}
    for name in sorted(_ledgers(staging), key=lambda n: (n != LEDGER, n)):
        try:
            raw = json.loads((staging / name).read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(raw, dict):
            placed.update({p: d for p, d in raw.items() if isinstance(p, str) and isinstance(d, str)})
    return placed


def drop_ledger(staging: Path) -> None:
    for name in _ledgers(staging):
        (staging / name).unlink(missing_ok=True)


def forget(staging: Path) -> None:
    """Before a commit changes the tree: no ledger and no plan survive it."""
    drop_ledger(staging)
    (staging / PLAN).unlink(missing_ok=True)


def _save_ledger(staging: Path, tmp: Path, placed: dict[str, str], name: str = LEDGER) -> None:
    part = tmp / name
    part.write_text(json.dumps(placed, separators=(",", ":")))
    os.replace(part, staging / name)


def placed_contents(root: Path, staging: Path) -> set[str]:
    """The contents of which a ledger names a file that is still a regular file: they need not be sent again."""
    found = set()
    for path, digest in load_ledger(staging).items():
        st = tree.lstat(root / path)
        if st is not None and stat.S_ISREG(st.st_mode):
            found.add(digest)
    return found


# -- the plan for packs still to come ---------------------------------------------------------------------

_PLANS: OrderedDict[str, tuple[tuple[int, int, int], dict[str, list[Entry]]]] = OrderedDict()  # by file
_PLANS_KEPT = 4  # plans kept per process (clients backing up at once), the oldest dropped first
_PLAN_CACHED_MAX = 250_000  # files in a plan kept in memory (some 60 MB); a larger one is read for each pack
_PLANS_LOCK = threading.Lock()


def has_plan(staging: Path) -> bool:
    return (staging / PLAN).exists()


def _save_plan(staging: Path, tmp: Path, entries: Iterable[Entry]) -> None:
    plan: dict[str, list[list[object]]] = {}
    for e in entries:
        plan.setdefault(e.hash, []).append([e.path, e.size, e.mode, e.uid, e.gid, e.mtime_ns])
    part = tmp / PLAN
    part.write_text(json.dumps(plan, separators=(",", ":")))
    os.replace(part, staging / PLAN)


def load_plan(staging: Path) -> dict[str, list[Entry]]:
    """The files that want each content still to come (hash → entries), as the last ``prepare`` saw them; empty
    if there is no plan or it cannot be read. Read once per process while it stays the same file."""
    path = staging / PLAN
    try:
        st = os.stat(path)
    except OSError:
        return {}
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _PLANS_LOCK:
        known = _PLANS.get(str(path))
    if known is not None and known[0] == key:
        return known[1]
    try:
        raw = json.loads(path.read_bytes())
        plan = {
            digest: [Entry(p, "f", mode, uid, gid, mtime, size, digest) for p, size, mode, uid, gid, mtime in files]
            for digest, files in raw.items()
        }
    except (OSError, ValueError, TypeError, AttributeError):
        return {}
    if sum(len(files) for files in plan.values()) > _PLAN_CACHED_MAX:
        return plan  # too large to keep in every web worker: read again for each pack
    with _PLANS_LOCK:
        _PLANS[str(path)] = (key, plan)
        _PLANS.move_to_end(str(path))
        while len(_PLANS) > _PLANS_KEPT:
            _PLANS.popitem(last=False)
    return plan


def place_arrived(root: Path, staging: Path, tmp: Path, items: list[tuple[str, memoryview]]) -> set[str]:
    """The contents of a pack that just arrived (verified) written to the files the plan has for them, each under
    a directory that is still a real one; returns the contents written to at least one file, which need no pack.
    The caller holds the area's lock."""
    plan = load_plan(staging)
    real: dict[str, bool] = {"": True}
    jobs = [
        (e, data, False)
        for digest, data in items
        for e in plan.get(digest, ())
        if e.size == len(data) and _real_dir(root, e.path.rpartition("/")[0], real)
    ]
    if not jobs:
        return set()
    written = tree.write_files(root, jobs, strict=False)
    placed = {e.path: e.hash for e, _, _ in jobs if e.path in written}
    if placed:
        _save_ledger(staging, tmp, placed, f"placed-{time.time_ns():020d}-{secrets.token_hex(4)}.json")
    return set(placed.values())


def _real_dir(root: Path, rel: str, known: dict[str, bool]) -> bool:
    """``rel`` and each directory above it are real directories (not symlinks)."""
    if rel not in known:
        st = tree.lstat(root / rel)
        known[rel] = _real_dir(root, rel.rpartition("/")[0], known) and st is not None and stat.S_ISDIR(st.st_mode)
    return known[rel]


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
    they need, and keep the plan for the others; returns how many were written. Only paths the last manifest
    (``base``) does not have are written: what it has stays as it is for the commit, which may copy a renamed file
    from there. A file that is already in place is left alone; anything unexpected on the way (a symlink or a file
    where a directory belongs) is left for the commit, which sorts it out."""
    placed = load_ledger(staging)
    forget(staging)  # the tree may differ from the ledgers from here on, and no pack follows an old plan
    in_base = {e.path for e in base}
    packed = packs.read_index(staging, os.listdir(staging))
    real_dirs = {""}
    todo: dict[str, list[tuple[Entry, packs.Item, bool]]] = {}
    later: list[Entry] = []
    for e in entries:
        if e.path.rpartition("/")[0] not in real_dirs:
            continue  # under something that is not (yet) a real directory: left for the commit
        if e.type == "d":
            if _directory(root / e.path):
                real_dirs.add(e.path)
            continue
        if e.type != "f":
            continue
        if e.path in in_base:
            continue  # the commit's to change
        if placed.get(e.path) == e.hash and still_placed(root, e) is not None:
            continue
        item = packed.get(e.hash)
        if item is None or item.size != e.size:
            placed.pop(e.path, None)  # whatever was written there is replaced when the pack arrives
            later.append(e)
            continue
        was_placed = placed.pop(e.path, None) is not None
        todo.setdefault(item.pack, []).append((e, item, was_placed))
    written = tree.write_from_packs(root, staging, todo, strict=False)
    placed.update({e.path: e.hash for files in todo.values() for e, _, _ in files if e.path in written})
    _save_ledger(staging, tmp, placed)
    _save_plan(staging, tmp, (e for e in later if e.size <= packs.MAX_BYTES))
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
