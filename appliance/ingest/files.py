"""The client's ``files`` dataset as the agent fills it.

The tree lives at the dataset's root; the appliance's own state sits in ``.bulwark/``: ``manifest.json`` (the
manifest of the tree as last committed, so every recovery point carries its own), ``staging/`` (content that
arrived for a job not committed yet, each verified by BLAKE3 as it arrived — ``<blake3>`` whole contents,
``<id>.pack`` small contents several to a file (:mod:`appliance.ingest.packs`) and ``<blake3>.delta`` changed
blocks of a large file — kept across interrupted jobs so nothing is sent twice),
``tmp/`` and, while a commit changes the tree, the mark ``applying``.
A commit first makes sure every needed content is at hand (in the tree already, staged, or copied from elsewhere
in the tree and verified by hash), then makes the tree match the manifest (see :mod:`appliance.ingest.tree`),
writes the manifest and empties staging. Every step can be repeated after a crash: the tree is made to match
again and no recovery point exists until the job's commit has finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import blake3
import zstandard

from appliance.ingest import delta, manifest, packs, parts, placing, tree
from appliance.ingest.errors import ContentMismatch, ProtocolError
from appliance.ingest.manifest import Entry

CHUNK = 1024 * 1024
MAX_PART = packs.MAX_BYTES  # one PUT carries at most this much content
_READY: set[Path] = set()  # areas whose directories this process has made sure of
STAGED_MODE = 0o644  # the mode of every staged file (the commonest mode of files: most need no chmod at the commit)


def decode_body(body: bytes, encoding: str, limit: int, what: str) -> bytes:
    """A message body as sent (identity) or zstd-compressed as a whole, never decompressed beyond ``limit``."""
    if encoding == "zstd":
        try:
            return zstandard.ZstdDecompressor().decompress(body, max_output_size=limit)
        except zstandard.ZstdError as exc:
            raise ProtocolError(f"the zstd {what} is damaged ({exc})") from exc
    if encoding not in ("", "identity"):
        raise ProtocolError(f"content encoding {encoding!r} is not supported (identity or zstd)")
    return body


@contextlib.contextmanager
def dir_lock(meta: Path) -> Iterator[None]:
    """An exclusive lock on ``meta/lock``, held across the web server's worker processes."""
    with open(meta / "lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Area:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = root / manifest.RESERVED
        self.staging = self.meta / "staging"
        self.tmp = self.meta / "tmp"
        self.manifest_path = self.meta / "manifest.json"
        self.applying = self.meta / "applying"  # present while a commit changes the tree
        self.plan: tree.Plan | None = None
        if root not in _READY or not self.staging.is_dir():
            for d in (self.meta, self.staging, self.tmp):
                d.mkdir(mode=0o700, exist_ok=True)
            _READY.add(root)

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """One commit at a time per client, across the web server's worker processes."""
        return dir_lock(self.meta)

    @staticmethod
    def read_manifest(root: Path) -> list[dict[str, object]]:
        """The manifest stored in a (read-only) copy of the dataset, as JSON."""
        path = root / manifest.RESERVED / "manifest.json"
        if not path.exists():
            return []
        return manifest.to_json(manifest.from_stored(json.loads(path.read_text())))

    def load_manifest(self) -> list[Entry]:
        """The manifest of the last commit (written by this appliance after checking every entry)."""
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return []
        return manifest.from_stored(json.loads(raw))

    # -- content ----------------------------------------------------------------------------------

    def staged(self, digest: str) -> Path:
        return self.staging / manifest.check_hash(digest)

    def partial(self, digest: str) -> Path:
        return self.staging / f"{manifest.check_hash(digest)}.part"

    def staged_names(self) -> set[str]:
        return set(os.listdir(self.staging))

    def have(self, digests: Iterable[str], base: list[Entry]) -> tuple[list[str], dict[str, int]]:
        """Of ``digests``: those neither staged (whole or as a delta) nor in the base tree nor written ahead, and how
        much of each already arrived."""
        known = {e.hash for e in base if e.type == "f"}
        if self.recovering():
            known |= placing.placed_contents(self.root, self.staging)
        names = self.staged_names()
        packed = packs.read_index(self.staging, names)
        missing, partial = [], {}
        for digest in dict.fromkeys(manifest.check_hash(d) for d in digests):
            if digest in known or digest in names or digest in packed or digest + delta.SUFFIX in names:
                continue
            missing.append(digest)
            if digest + ".part" in names:
                with contextlib.suppress(FileNotFoundError):
                    partial[digest] = self.partial(digest).stat().st_size
        return missing, partial

    def receive(self, digest: str, offset: int, total: int, final: bool, body: IO[bytes], encoding: str) -> int:
        """Write one part of ``digest``'s content at ``offset`` (0, or the bytes already held); on the final part
        verify size and hash and stage it. Returns the bytes now held. A lie (too much data, wrong size or hash)
        discards the part. Parts are hashed as they are written (see :mod:`appliance.ingest.parts`)."""
        reader: IO[bytes] = body
        if encoding == "zstd":
            reader = zstandard.ZstdDecompressor().stream_reader(body)
        elif encoding not in ("", "identity"):
            raise ProtocolError(f"content encoding {encoding!r} is not supported (identity or zstd)")
        part = self.partial(digest)
        with parts.locked(part, self.staged(digest), STAGED_MODE) as fd:
            if fd is None:
                return total
            have = os.fstat(fd).st_size
            if offset != have and offset != 0:
                if not have:
                    part.unlink()  # made just now by the lock
                raise ProtocolError(f"part of {digest[:12]}… at offset {offset}, but {have} bytes have arrived")
            hasher = parts.RUNNING.resume(part, fd, offset)
            if have != offset:
                os.ftruncate(fd, offset)
            try:
                written, last = _write_part(fd, reader, hasher, digest, offset, total)
                if final and written != total:
                    raise ContentMismatch(digest[:12] + "…", f"{written} bytes arrived, {total} were announced")  # noqa: TRY301
                if final and hasher.hexdigest() != digest:
                    raise ContentMismatch(digest[:12] + "…", "its BLAKE3 hash differs")  # noqa: TRY301
            except (ProtocolError, ContentMismatch):
                part.unlink(missing_ok=True)
                raise
            if not final:
                parts.RUNNING.keep(part, fd, written, last if written > offset else b"", hasher)
                return written
            os.replace(part, self.staged(digest))
        return written

    def receive_pack(self, body: bytes, encoding: str) -> list[str]:
        """Several small contents in one message: ``hash (64 hex) | size (8 bytes, big-endian) | content``,
        repeated; the whole optionally zstd. Every item is verified before any is staged or written to the tree
        (see :mod:`appliance.ingest.placing`)."""
        body = decode_body(body, encoding, MAX_PART, "pack")
        if len(body) > MAX_PART:
            raise ProtocolError(f"a pack holds at most {MAX_PART} bytes")
        view = memoryview(body)
        items: list[tuple[str, memoryview]] = []
        pos = 0
        while pos < len(body):
            if pos + 72 > len(body):
                raise ProtocolError("a pack item is cut short")
            digest = manifest.check_hash(body[pos : pos + 64].decode("ascii", "replace"))
            size = int.from_bytes(body[pos + 64 : pos + 72], "big")
            data = view[pos + 72 : pos + 72 + size]
            if len(data) != size:
                raise ContentMismatch(digest[:12] + "…", f"{len(data)} bytes arrived, {size} were announced")
            if blake3.blake3(data).hexdigest() != digest:
                raise ContentMismatch(digest[:12] + "…", "its BLAKE3 hash differs")
            items.append((digest, data))
            pos += 72 + size
        written: set[str] = set()
        if placing.has_plan(self.staging):  # written straight to the files that want them, where it is safe
            with self.locked():
                if self.recovering():
                    written = placing.place_arrived(self.root, self.staging, self.tmp, items)
        names = self.staged_names()
        fresh = {d: data for d, data in items if d not in names and d not in written}  # nothing is kept twice
        if fresh:
            packs.write(self.staging, self.tmp, fresh.items(), STAGED_MODE)
        return [d for d, _ in items]

    def receive_delta(self, digest: str, size: int, base: Entry, body: bytes, encoding: str) -> int:
        """A large file's changed 1 MiB blocks over its previous version in the tree (``base``):
        ``index (8 bytes, big-endian) | length (4 bytes) | data``, repeated, optionally zstd as a whole. The file
        they make must have the BLAKE3 ``digest`` (``size`` bytes), else nothing is staged; see
        :mod:`appliance.ingest.delta`."""
        names = self.staged_names()
        if digest in names or digest + delta.SUFFIX in names:
            return 0
        body = decode_body(body, encoding, MAX_PART, "delta")
        blocks = delta.parse(body, size)
        source = self.root / base.path
        if not self._base_in_tree(base, check_hash=self.recovering()):
            raise ProtocolError(f"the previous version of {base.path!r} is not in the tree; send the whole content")
        if delta.overlay_hash(source, base.size, blocks, size) != digest:
            raise ContentMismatch(digest[:12] + "…", "the file rebuilt from the delta has another BLAKE3 hash")
        delta.stage(self.staging, self.tmp, digest, base, size, blocks)
        return size

    def _base_in_tree(self, base: Entry, check_hash: bool) -> bool:
        """The tree holds ``base`` (a file of the last manifest) as that commit left it: size and mtime, and after
        an interrupted commit its hash too."""
        source = self.root / base.path
        st = tree.lstat(source)
        if (
            st is None
            or not stat.S_ISREG(st.st_mode)
            or st.st_size != base.size
            or not tree.same_mtime(st.st_mtime_ns, base.mtime_ns)
            or not tree.inside_tree(self.root, source)
        ):
            return False
        return not check_hash or hash_file(source) == base.hash

    # -- the commit -------------------------------------------------------------------------------

    def recovering(self) -> bool:
        """True when the tree may differ from the last manifest: a commit was interrupted, or there is none."""
        return self.applying.exists() or not self.manifest_path.exists()

    def gather(self, entries: list[Entry], base: list[Entry]) -> list[str]:
        """Make sure every content the manifest needs is at hand and plan where each comes from; returns the
        hashes still missing. A file equal to its base entry is in the tree by construction (the commit that
        wrote it verified it) unless a commit was interrupted since: then it is hashed where it lies."""
        plan = tree.Plan(recovery=self.recovering())
        names = self.staged_names()
        packed = packs.read_index(self.staging, names)
        placed = placing.load_ledger(self.staging) if plan.recovery else {}
        old = {e.path: e for e in base}
        in_tree: dict[str, list[str]] = {}
        for e in base:
            if e.type == "f":
                in_tree.setdefault(e.hash, []).append(e.path)
        for path, digest in placed.items():  # copied from there, verified, wherever else it is needed
            in_tree.setdefault(digest, []).append(path)
        missing: dict[str, None] = {}
        for e in entries:
            if e.type != "f":
                continue
            prev = old.get(e.path)
            if (
                prev is not None
                and prev.type == "f"
                and (prev.hash, prev.size) == (e.hash, e.size)
                and (not plan.recovery or self._base_in_tree(prev, check_hash=True))
            ):
                plan.sources[e.path] = tree.KEEP
            elif placed.get(e.path) == e.hash and (st := placing.still_placed(self.root, e)) is not None:
                plan.sources[e.path] = tree.KEEP  # written ahead by prepare()
                plan.placed[e.path] = st
            elif e.hash in names:
                plan.sources[e.path] = tree.STAGED
            elif e.hash in packed and packed[e.hash].size == e.size:
                plan.sources[e.path] = tree.PACKED
                plan.packed[e.path] = packed[e.hash]
            elif e.hash + delta.SUFFIX in names and self._delta_applies(e, prev, plan):
                plan.sources[e.path] = tree.DELTA
            elif any(self._stage_from_tree(e.hash, p) for p in in_tree.get(e.hash, [])):
                plan.sources[e.path] = tree.STAGED
                names.add(e.hash)
            else:
                missing[e.hash] = None
        self.plan = plan
        return list(missing)

    def _delta_applies(self, e: Entry, prev: Entry | None, plan: tree.Plan) -> bool:
        """A staged delta makes ``e`` only over the previous version it was checked against, at the same path."""
        try:
            found = delta.load(self.staging / f"{e.hash}{delta.SUFFIX}")
        except (OSError, ValueError, KeyError):
            return False
        if (
            found.base != e.path
            or found.size != e.size
            or prev is None
            or prev.type != "f"
            or prev.hash != found.base_hash
            or not self._base_in_tree(prev, check_hash=plan.recovery)
        ):
            return False
        plan.deltas[e.path] = found
        return True

    def _stage_from_tree(self, digest: str, rel: str) -> bool:
        """A copy of a file of the tree staged under its hash (a renamed or copied file), verified as it is
        copied."""
        path = self.root / rel
        try:
            if not tree.inside_tree(self.root, path) or not stat.S_ISREG(os.lstat(path).st_mode):
                return False
        except OSError:
            return False
        tmp = self.tmp / secrets.token_hex(8)
        h = blake3.blake3(max_threads=blake3.blake3.AUTO)
        with open(path, "rb") as src, os.fdopen(_create(tmp), "wb") as out:
            while data := src.read(4 * CHUNK):
                h.update(data)
                out.write(data)
        if h.hexdigest() != digest:
            tmp.unlink()
            return False
        os.replace(tmp, self.staged(digest))
        return True

    def apply(self, entries: list[Entry], base: list[Entry]) -> None:
        """Make the tree match ``entries`` exactly (after :meth:`gather` found every content)."""
        assert self.plan is not None, "gather() first"
        self.applying.touch()
        placing.forget(self.staging)  # self.plan holds what the ledgers said; the tree changes from here on
        st = os.lstat(self.staging)  # a staged file belongs to this process's user, and group unless set-group-ID
        gid = st.st_gid if st.st_mode & stat.S_ISGID else os.getegid()
        staged = (os.geteuid(), gid, STAGED_MODE)
        tree.Applier(self.root, self.staging, self.tmp, self.plan, staged).apply(entries, base)

    def prepare(self, entries: list[Entry]) -> int:
        """Before the commit, while large contents still arrive: write the files whose content is in a staged pack
        (see :mod:`appliance.ingest.placing`), only where the commit would write every file anyway (there is no
        clean base to diff against). Returns how many files were written."""
        if not self.recovering():
            return 0
        return placing.place(self.root, self.staging, self.tmp, entries, self.load_manifest())

    def finish(self, entries: list[Entry]) -> None:
        """Record the committed manifest, drop staged content (the tree now holds it) and clear the mark. On ZFS
        a later write never survives a crash without the earlier ones, so no fsync is needed for that order;
        the recovery point taken next writes everything out."""
        tmp = self.tmp / "manifest.json"
        with open(tmp, "w") as fh:
            json.dump(manifest.to_json(entries), fh, separators=(",", ":"))
        os.replace(tmp, self.manifest_path)
        for d in (self.staging, self.tmp):
            _empty(d)
        self.applying.unlink(missing_ok=True)


def _empty(directory: Path) -> None:
    for name in os.listdir(directory):
        path = directory / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _create(path: Path) -> int:
    """A new staged file, its mode exactly STAGED_MODE whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, STAGED_MODE)
    umask = tree.process_umask()
    if umask is None or STAGED_MODE & umask:
        os.fchmod(fd, STAGED_MODE)
    return fd


def _write_part(
    fd: int, reader: IO[bytes], hasher: blake3.blake3, digest: str, offset: int, total: int
) -> tuple[int, bytes]:
    """The part's bytes written from ``offset`` and hashed; returns the bytes held now and the last piece."""
    written, last = offset, b""
    while True:
        try:
            data = reader.read(CHUNK)
        except zstandard.ZstdError as exc:
            raise ProtocolError(f"the zstd stream is damaged ({exc})") from exc
        if not data:
            return written, last
        if written + len(data) > total or written + len(data) - offset > MAX_PART:
            raise ContentMismatch(digest[:12] + "…", "more data than the size announced")
        _pwrite_all(fd, data, written)
        written += len(data)
        hasher.update(data)
        last = data


def _pwrite_all(fd: int, data: bytes, at: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, at)
        view, at = view[n:], at + n


def hash_file(path: Path) -> str:
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(path, "rb") as fh:
        while chunk := fh.read(8 * CHUNK):
            h.update(chunk)
    return h.hexdigest()
