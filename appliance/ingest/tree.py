"""Making the client's tree match a manifest, touching only what changed.

The tree is, by construction, what the last committed manifest (the *base*) says: only commits write it, and a
commit marks the area ``applying`` before its first change and clears the mark after the new manifest is written.
(Where there is no clean base — a first backup, or after an interrupted commit — a job may also have new files
written ahead of its commit, never at a path of the base: see :mod:`appliance.ingest.placing`.) So a commit
that follows a clean one works from the difference between the base and the new manifest alone — an entry equal
to its base entry costs no system call, a changed one only the calls its change needs — while a commit that
follows an interrupted one (the mark is still there) checks everything on disk: it walks the tree for entries to
remove and compares what it finds with the manifest, as the first commit of a client does too.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from appliance.clients.errors import UnsafePath
from appliance.ingest import delta, manifest, packs
from appliance.ingest.manifest import Entry

WRITERS = 8  # files written from packs at once: the file system daemon serves several requests together
KEEP, STAGED, DELTA, PACKED = "keep", "staged", "delta", "packed"  # where a file's content comes from


@dataclass
class Plan:
    """What :meth:`Area.gather` found: where each file's content comes from."""

    recovery: bool
    sources: dict[str, str] = field(default_factory=dict)  # path -> KEEP | STAGED | DELTA | PACKED
    deltas: dict[str, delta.Delta] = field(default_factory=dict)  # path -> its delta
    packed: dict[str, packs.Item] = field(default_factory=dict)  # path -> where its content lies in a pack
    placed: dict[str, os.stat_result] = field(default_factory=dict)  # path -> a file written ahead, as found


def lstat(path: Path | str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def inside_tree(root: Path, path: Path) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + "/")


def same_mtime(on_disk_ns: int, wanted_ns: int) -> bool:
    """The mtime on disk is the one set, as precisely as the file system keeps it (zfs-fuse: whole seconds)."""
    return on_disk_ns in (wanted_ns, wanted_ns // 1000 * 1000, wanted_ns // 10**9 * 10**9)


def _meta(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime_ns


def _entry_meta(e: Entry) -> tuple[int, int, int, int]:
    return e.uid, e.gid, e.mode, e.mtime_ns


def set_meta(path: Path, e: Entry, have: tuple[int, int, int, int] | None) -> None:
    """Owner, mode and mtime as the entry says, each set only when ``have`` (uid, gid, mode, mtime of what is on
    disk) differs; everything when ``have`` is None. A change of owner clears set-id bits, so the mode follows."""
    uid, gid, mode, mtime = have if have is not None else (-1, -1, -1, -1)
    if mtime != -1 and same_mtime(mtime, e.mtime_ns):
        mtime = e.mtime_ns
    chowned = False
    if (uid, gid) != (e.uid, e.gid) and os.geteuid() == 0:
        os.lchown(path, e.uid, e.gid)
        chowned = True
    if e.type != "l" and (mode != e.mode or chowned):
        os.chmod(path, e.mode)
    if mtime != e.mtime_ns:
        os.utime(path, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)


class Applier:
    def __init__(self, root: Path, staging: Path, tmp: Path, plan: Plan, staged: tuple[int, int, int]) -> None:
        self.root, self.staging, self.tmp, self.plan = root, staging, tmp, plan
        self.staged = staged  # owner, group and mode of every staged file (see files.STAGED_MODE)
        self.touched: set[str] = set()  # directories whose entries were added, removed or replaced
        self.from_packs: list[tuple[Entry, bool]] = []  # files written from packs after the others, pack by pack

    def _mark(self, rel: str) -> None:
        self.touched.add(rel.rpartition("/")[0])

    def apply(self, entries: list[Entry], base: list[Entry]) -> None:
        wanted = {e.path: e for e in entries}
        old = {e.path: e for e in base}
        if self.plan.recovery:
            self._remove_unwanted_walk(wanted)
        else:
            self._remove_unwanted_diff(wanted, base)
        uses: dict[str, int] = {}
        for e in entries:
            if e.type == "f" and self.plan.sources[e.path] == STAGED:
                uses[e.hash] = uses.get(e.hash, 0) + 1
        real_dirs = {""}  # directories of this manifest seen to be real directories (never symlinks)
        for e in entries:  # sorted: a parent comes before its children
            path = self.root / e.path
            prev = old.get(e.path)
            if prev is not None and prev.type != e.type:
                prev = None  # removed above
            if self.plan.recovery:
                parent = e.path.rpartition("/")[0]
                if parent not in real_dirs and not inside_tree(self.root, path.parent):
                    raise UnsafePath(e.path, "its parent leads outside the client's data")
            if e.type == "d":
                if self._directory(e, path, prev):
                    real_dirs.add(e.path)
            elif e.type == "l":
                self._symlink(e, path, prev)
            else:
                self._file(e, path, prev, uses)
        self._files_from_packs()
        for e in reversed(entries):  # directories last, deepest first: writing inside changes their mtime
            if e.type != "d":
                continue
            prev = old.get(e.path)
            if (
                self.plan.recovery
                or e.path in self.touched
                or prev is None
                or prev.type != "d"
                or _entry_meta(prev) != _entry_meta(e)
            ):
                current = lstat(self.root / e.path)
                set_meta(self.root / e.path, e, _meta(current) if current is not None else None)

    def _directory(self, e: Entry, path: Path, prev: Entry | None) -> bool:
        if self.plan.recovery:
            if lstat(path) is None:
                os.mkdir(path, 0o700)
                self._mark(e.path)
            return stat.S_ISDIR(os.lstat(path).st_mode)
        if prev is None:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise UnsafePath(e.path, "something that is not a directory is in its place") from None
            self._mark(e.path)
        return True

    def _symlink(self, e: Entry, path: Path, prev: Entry | None) -> None:
        if self.plan.recovery:
            current = lstat(path)
            same = current is not None and stat.S_ISLNK(current.st_mode) and os.readlink(path) == e.target
            have = _meta(current) if same and current is not None else None
        else:
            same = prev is not None and prev.target == e.target
            have = _entry_meta(prev) if same and prev is not None else None
        if not same:
            tmp = self.tmp / secrets.token_hex(8)
            os.symlink(e.target, tmp)
            os.replace(tmp, path)
            self._mark(e.path)
        set_meta(path, e, have)

    def _file(self, e: Entry, path: Path, prev: Entry | None, uses: dict[str, int]) -> None:
        source = self.plan.sources[e.path]
        if source == KEEP:
            if self.plan.recovery or prev is None:
                current = self.plan.placed.get(e.path) or lstat(path)
                set_meta(path, e, _meta(current) if current is not None else None)
            else:
                set_meta(path, e, _entry_meta(prev))
            return
        if source == PACKED:
            self.from_packs.append((e, prev is not None))  # a new path is tried first: it is seldom there
            self._mark(e.path)
            return
        if source == DELTA:
            delta.write_in_place(path, self.plan.deltas[e.path])
            set_meta(path, e, _meta(os.lstat(path)))
            return
        uses[e.hash] -= 1
        staged = self.staging / e.hash
        if uses[e.hash] == 0:  # its last use: moved, not copied (a rerun finds it in the tree)
            os.replace(staged, path)
            have = (*self.staged, -1)  # renaming keeps owner and mode; the mtime is set in any case
        else:
            tmp = self.tmp / secrets.token_hex(8)
            shutil.copyfile(staged, tmp)
            os.replace(tmp, path)
            have = _meta(os.lstat(path))
        self._mark(e.path)
        set_meta(path, e, have)

    def _files_from_packs(self) -> None:
        by_pack: dict[str, list[tuple[Entry, packs.Item, bool]]] = {}
        for e, replaces in self.from_packs:
            item = self.plan.packed[e.path]
            by_pack.setdefault(item.pack, []).append((e, item, replaces))
        write_from_packs(self.root, self.staging, by_pack)

    def _remove(self, path: Path, is_dir: bool) -> None:
        if is_dir:
            os.chmod(path, 0o700)
            shutil.rmtree(path)
        else:
            path.unlink()

    def _remove_unwanted_diff(self, wanted: dict[str, Entry], base: list[Entry]) -> None:
        """The base entries the new manifest drops or turns into another type, children before parents."""
        for prev in reversed(base):
            want = wanted.get(prev.path)
            if want is not None and want.type == prev.type:
                continue
            path = self.root / prev.path
            st = lstat(path)
            if st is not None:
                self._remove(path, stat.S_ISDIR(st.st_mode))
            self._mark(prev.path)

    def _remove_unwanted_walk(self, wanted: dict[str, Entry]) -> None:
        """Everything on disk the manifest does not have with the same type (after an interrupted commit). The
        types come from the directory listings, never following a symlink."""
        todo = [""]
        while todo:
            rel_dir = todo.pop()
            with os.scandir(self.root / rel_dir) as listing:
                found = list(listing)
            for entry in found:
                if not rel_dir and entry.name == manifest.RESERVED:
                    continue
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                is_dir = entry.is_dir(follow_symlinks=False)
                kind = "d" if is_dir else "l" if entry.is_symlink() else "f"
                want = wanted.get(rel)
                if want is not None and want.type == kind:
                    if is_dir:
                        todo.append(rel)
                    continue
                self._remove(Path(entry.path), is_dir)
                self._mark(rel)


@functools.cache
def process_umask() -> int | None:
    """This process's umask (set once when it starts), read without changing it."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


def write_from_packs(
    root: Path, staging: Path, by_pack: dict[str, list[tuple[Entry, packs.Item, bool]]], *, strict: bool = True
) -> set[str]:
    """Each file whose content lies in a pack, written in place: one pack read at a time, each file created anew
    (never through a symlink) with its mode, owner and mtime set on the open file; ``True`` in a job says something
    is probably at its path already. Returns the paths written. Not ``strict``: a file that cannot be written is
    left out instead of stopping the rest."""
    done: set[str] = set()
    for name, files in by_pack.items():
        data = memoryview(packs.read_pack(staging, name))
        jobs = []
        for e, item, replaces in files:
            content = data[item.offset : item.offset + item.size]
            if len(content) != e.size:
                if strict:
                    raise OSError(f"the staged pack {name} is shorter than it says")
                continue
            jobs.append((e, content, replaces))
        done |= write_files(root, jobs, strict=strict)
    return done


def write_files(root: Path, jobs: list[tuple[Entry, memoryview, bool]], *, strict: bool = True) -> set[str]:
    """Each file of ``jobs`` (entry, its content, whether something is probably at its path) created anew by
    WRITERS threads; returns the paths written. Not ``strict``: a file that cannot be written is left out."""

    def write(job: tuple[Entry, memoryview, bool]) -> str | None:
        e, content, replaces = job
        try:
            _write_new(root / e.path, e, content, replaces)
        except OSError:
            if strict:
                raise
            return None
        return e.path

    if len(jobs) == 1:
        return {p for p in map(write, jobs) if p is not None}
    with concurrent.futures.ThreadPoolExecutor(max_workers=WRITERS) as pool:
        return {p for p in pool.map(write, jobs) if p is not None}  # the first error stops a strict run


def _write_new(path: Path, e: Entry, content: memoryview, replaces: bool) -> None:
    """``path`` created with ``content``, then ``e``'s owner, mode and mtime; whatever was there first removed."""
    if replaces:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, e.mode & 0o777)
    except FileExistsError:  # not where the manifest put it: something the last commit did not leave
        os.unlink(path)
        fd = os.open(path, flags, e.mode & 0o777)
    try:
        packs.write_all(fd, content)
        chowned = False
        if os.geteuid() == 0 and (e.uid, e.gid) != (os.geteuid(), os.getegid()):
            os.fchown(fd, e.uid, e.gid)
            chowned = True
        umask = process_umask()
        if chowned or e.mode & ~0o777 or umask is None or e.mode & umask:
            os.fchmod(fd, e.mode)
        os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
    finally:
        os.close(fd)
