"""Restoring files from a recovery point into the client's live data, at a chosen folder.

Live datasets are never rolled back: a restore copies files out of a read-only clone of the point. A file that
exists at the destination is left alone if it is newer than the point's copy (unless ``overwrite`` is asked
for) or identical (same size and modification time); an older one is replaced. Every file is written to a
temporary name in its folder and renamed into place, so a reader never sees half a file and an interrupted
restore leaves only complete files (and at most one temporary file, removed when the restore is run again).
A folder is never replaced by a file or the other way round. The destination's own symbolic links are never
followed out of the live dataset.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.clients.errors import UnsafePath
from appliance.clients.paths import clean_relative, parent_inside, resolve_inside

TMP_PREFIX = ".bulwark-restore-"
CHUNK = 1024 * 1024


@dataclass
class RestoreResult:
    copied: int = 0  # files written (new or replacing an older one)
    replaced: int = 0  # of which replaced an existing file
    unchanged: int = 0  # identical already
    skipped_newer: int = 0  # left alone: newer at the destination
    conflicts: list[str] = field(default_factory=list)  # a folder where a file would go, or the reverse
    folders: int = 0
    symlinks: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "copied": self.copied,
            "replaced": self.replaced,
            "unchanged": self.unchanged,
            "skipped_newer": self.skipped_newer,
            "conflicts": self.conflicts[:100],
            "conflict_count": len(self.conflicts),
            "folders": self.folders,
            "symlinks": self.symlinks,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class Item:
    source: Path
    rel_dest: str  # relative to the destination root
    st: os.stat_result


def plan_items(source_root: Path, paths: Sequence[str], target: str) -> Iterator[Item]:
    """What to copy: each selected path goes to ``target/<its name>`` (the point's root: into ``target``)."""
    dest_base = clean_relative(target)
    for raw in paths:
        rel = clean_relative(raw)
        top = parent_inside(source_root, rel)
        name = rel.rsplit("/", 1)[-1] if rel else ""
        yield from _walk(top, "/".join(p for p in (dest_base, name) if p))


def _walk(path: Path, rel_dest: str) -> Iterator[Item]:
    st = path.lstat()
    yield Item(path, rel_dest, st)
    if stat.S_ISDIR(st.st_mode):
        with os.scandir(path) as it:
            children = sorted(it, key=lambda e: e.name)
        for child in children:
            yield from _walk(Path(child.path), f"{rel_dest}/{child.name}" if rel_dest else child.name)


def total_bytes(source_root: Path, paths: Sequence[str]) -> int:
    return sum(i.st.st_size for i in plan_items(source_root, paths, "") if stat.S_ISREG(i.st.st_mode))


def _dest_dir(dest_root: Path, rel_dir: str, result: RestoreResult) -> Path | None:
    """The destination folder ``rel_dir`` (made if missing), or None if a file stands in its way. Refuses a
    path that leads out of the live dataset through a symbolic link."""
    real_root = Path(os.path.realpath(dest_root))
    current = real_root
    for part in [p for p in rel_dir.split("/") if p]:
        candidate = current / part
        if candidate.is_symlink() or candidate.exists():
            resolved = Path(os.path.realpath(candidate))
            if resolved != real_root and real_root not in resolved.parents:
                raise UnsafePath(rel_dir, "the destination leads outside the client's data through a symbolic link")
            if not resolved.is_dir():
                result.conflicts.append(rel_dir)
                return None
            current = resolved
        else:
            candidate.mkdir(mode=0o755)
            result.folders += 1
            current = candidate
    return current


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def _copy_file(item: Item, folder: Path, name: str, on_bytes: Callable[[int], None]) -> int:
    tmp = folder / f"{TMP_PREFIX}{os.getpid()}-{name}"[:255]
    copied = 0
    try:
        with item.source.open("rb") as src, open(tmp, "xb") as dst:
            while block := src.read(CHUNK):
                dst.write(block)
                copied += len(block)
                on_bytes(len(block))
        os.chmod(tmp, stat.S_IMODE(item.st.st_mode))
        with contextlib.suppress(PermissionError):
            os.chown(tmp, item.st.st_uid, item.st.st_gid)
        os.utime(tmp, ns=(item.st.st_atime_ns, item.st.st_mtime_ns))
        os.replace(tmp, folder / name)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return copied


def _remove_leftovers(folder: Path) -> None:
    with contextlib.suppress(OSError), os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def restore_tree(
    source_root: Path,
    paths: Sequence[str],
    dest_root: Path,
    target: str,
    *,
    overwrite: bool = False,
    on_bytes: Callable[[int], None] | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> RestoreResult:
    """Copy ``paths`` of the point mounted at ``source_root`` into ``dest_root/target`` (see the module doc)."""
    result = RestoreResult()
    resolve_inside(dest_root, "")  # the live dataset must be there
    count_bytes = on_bytes or (lambda n: None)
    cleaned: set[Path] = set()
    for item in plan_items(source_root, paths, target):
        if check_cancelled is not None:
            check_cancelled()
        mode = item.st.st_mode
        if stat.S_ISDIR(mode):
            _dest_dir(dest_root, item.rel_dest, result)
            continue
        rel_dir, _, name = item.rel_dest.rpartition("/")
        if not name:
            continue
        folder = _dest_dir(dest_root, rel_dir, result)
        if folder is None:
            continue
        if folder not in cleaned:
            _remove_leftovers(folder)
            cleaned.add(folder)
        dest = folder / name
        existing = dest.lstat() if os.path.lexists(dest) else None
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            result.conflicts.append(item.rel_dest)
            continue
        if stat.S_ISLNK(mode):
            link = os.readlink(item.source)
            if existing is not None and stat.S_ISLNK(existing.st_mode) and os.readlink(dest) == link:
                result.unchanged += 1
                continue
            if existing is not None and not overwrite:
                result.skipped_newer += 1  # something else is there now: kept, as for a newer file
                continue
            tmp = folder / f"{TMP_PREFIX}{os.getpid()}-{name}"[:255]
            os.symlink(link, tmp)
            os.replace(tmp, dest)
            result.symlinks += 1
            continue
        if not stat.S_ISREG(mode):
            continue  # devices, sockets, pipes are not restored
        if existing is not None and stat.S_ISREG(existing.st_mode) and _same(existing, item.st):
            result.unchanged += 1
            count_bytes(item.st.st_size)
            continue
        if existing is not None and not overwrite and existing.st_mtime > item.st.st_mtime:
            result.skipped_newer += 1
            count_bytes(item.st.st_size)
            continue
        result.bytes += _copy_file(item, folder, name, count_bytes)
        result.copied += 1
        result.replaced += existing is not None
    return result
