"""The client's ``files`` dataset as the agent fills it.

The tree lives at the dataset's root; the appliance's own state sits in ``.bulwark/``: ``manifest.json`` (the
manifest of the tree as last committed, so every recovery point carries its own), ``staging/<blake3>`` (content
that arrived for a job not committed yet — kept across interrupted jobs so nothing is sent twice) and ``tmp/``.
A commit first gathers every needed content into staging (from what arrived, or from the tree itself, each
verified by hash), then makes the tree match the manifest exactly, writes the manifest and empties staging.
Every step can be repeated after a crash: the tree is made to match again and no recovery point exists until
the job's commit has finished.
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

from appliance.clients.errors import UnsafePath
from appliance.ingest import manifest
from appliance.ingest.errors import ContentMismatch, ProtocolError
from appliance.ingest.manifest import Entry

CHUNK = 1024 * 1024
MAX_PART = 16 * 1024 * 1024  # one PUT carries at most this much content


class Area:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = root / manifest.RESERVED
        self.staging = self.meta / "staging"
        self.tmp = self.meta / "tmp"
        self.manifest_path = self.meta / "manifest.json"
        for d in (self.meta, self.staging, self.tmp):
            d.mkdir(mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One commit at a time per client, across the web server's worker processes."""
        with open(self.meta / "lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def read_manifest(root: Path) -> list[dict[str, object]]:
        """The manifest stored in a (read-only) copy of the dataset, as JSON."""
        path = root / manifest.RESERVED / "manifest.json"
        if not path.exists():
            return []
        return manifest.to_json(manifest.parse(json.loads(path.read_text())))

    def load_manifest(self) -> list[Entry]:
        if not self.manifest_path.exists():
            return []
        return manifest.parse(json.loads(self.manifest_path.read_text()))

    # -- content ----------------------------------------------------------------------------------

    def staged(self, digest: str) -> Path:
        return self.staging / manifest.check_hash(digest)

    def partial(self, digest: str) -> Path:
        return self.staging / f"{manifest.check_hash(digest)}.part"

    def have(self, digests: Iterable[str], base: list[Entry]) -> tuple[list[str], dict[str, int]]:
        """Of ``digests``: those neither staged nor in the base tree, and how much of each already arrived."""
        known = {e.hash for e in base if e.type == "f"}
        missing, partial = [], {}
        for digest in dict.fromkeys(manifest.check_hash(d) for d in digests):
            if digest in known or self.staged(digest).exists():
                continue
            missing.append(digest)
            part = self.partial(digest)
            if part.exists():
                partial[digest] = part.stat().st_size
        return missing, partial

    def receive(self, digest: str, offset: int, total: int, final: bool, body: IO[bytes], encoding: str) -> int:
        """Append one part of ``digest``'s content at ``offset``; on the final part verify size and hash and
        stage it. Returns the bytes now held. A lie (too much data, wrong size or hash) discards the part."""
        if self.staged(digest).exists():
            return total
        part = self.partial(digest)
        have = part.stat().st_size if part.exists() else 0
        if offset != have and offset != 0:
            raise ProtocolError(f"part of {digest[:12]}… at offset {offset}, but {have} bytes have arrived")
        reader: IO[bytes] = body
        if encoding == "zstd":
            reader = zstandard.ZstdDecompressor().stream_reader(body)
        elif encoding not in ("", "identity"):
            raise ProtocolError(f"content encoding {encoding!r} is not supported (identity or zstd)")
        written = offset
        with open(part, "r+b" if offset else "wb") as out:
            out.seek(offset)
            out.truncate()
            while True:
                try:
                    data = reader.read(CHUNK)
                except zstandard.ZstdError as exc:
                    part.unlink(missing_ok=True)
                    raise ProtocolError(f"the zstd stream is damaged ({exc})") from exc
                if not data:
                    break
                written += len(data)
                if written > total or written - offset > MAX_PART:
                    part.unlink(missing_ok=True)
                    raise ContentMismatch(digest[:12] + "…", "more data than the size announced")
                out.write(data)
        if not final:
            return written
        if written != total:
            part.unlink(missing_ok=True)
            raise ContentMismatch(digest[:12] + "…", f"{written} bytes arrived, {total} were announced")
        if hash_file(part) != digest:
            part.unlink(missing_ok=True)
            raise ContentMismatch(digest[:12] + "…", "its BLAKE3 hash differs")
        os.replace(part, self.staged(digest))
        return written

    def receive_pack(self, body: bytes, encoding: str) -> list[str]:
        """Several small contents in one message: ``hash (64 hex) | size (8 bytes, big-endian) | content``,
        repeated; the whole optionally zstd. Every item is verified before any is staged."""
        if encoding == "zstd":
            try:
                body = zstandard.ZstdDecompressor().decompress(body, max_output_size=MAX_PART)
            except zstandard.ZstdError as exc:
                raise ProtocolError(f"the zstd pack is damaged ({exc})") from exc
        elif encoding not in ("", "identity"):
            raise ProtocolError(f"content encoding {encoding!r} is not supported (identity or zstd)")
        if len(body) > MAX_PART:
            raise ProtocolError(f"a pack holds at most {MAX_PART} bytes")
        items: list[tuple[str, bytes]] = []
        pos = 0
        while pos < len(body):
            if pos + 72 > len(body):
                raise ProtocolError("a pack item is cut short")
            digest = manifest.check_hash(body[pos : pos + 64].decode("ascii", "replace"))
            size = int.from_bytes(body[pos + 64 : pos + 72], "big")
            data = body[pos + 72 : pos + 72 + size]
            if len(data) != size:
                raise ContentMismatch(digest[:12] + "…", f"{len(data)} bytes arrived, {size} were announced")
            if blake3.blake3(data).hexdigest() != digest:
                raise ContentMismatch(digest[:12] + "…", "its BLAKE3 hash differs")
            items.append((digest, data))
            pos += 72 + size
        for digest, data in items:
            tmp = self.tmp / secrets.token_hex(8)
            tmp.write_bytes(data)
            os.replace(tmp, self.staged(digest))
        return [d for d, _ in items]

    def receive_delta(self, digest: str, size: int, base: Entry, body: bytes, encoding: str) -> int:
        """A large file rebuilt from its previous version in the tree (``base``) and the changed 1 MiB blocks
        sent: ``index (8 bytes, big-endian) | length (4 bytes) | data``, repeated, optionally zstd as a whole.
        The result must have ``size`` bytes and the BLAKE3 ``digest``, else nothing is staged."""
        if self.staged(digest).exists():
            return 0
        if encoding == "zstd":
            try:
                body = zstandard.ZstdDecompressor().decompress(body, max_output_size=MAX_PART)
            except zstandard.ZstdError as exc:
                raise ProtocolError(f"the zstd delta is damaged ({exc})") from exc
        elif encoding not in ("", "identity"):
            raise ProtocolError(f"content encoding {encoding!r} is not supported (identity or zstd)")
        source = self.root / base.path
        st = _lstat(source)
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_size != base.size or not _inside_tree(self.root, source):
            raise ProtocolError(f"the previous version of {base.path!r} is not in the tree; send the whole content")
        blocks = _delta_blocks(body, size)
        tmp = self.tmp / secrets.token_hex(8)
        shutil.copyfile(source, tmp)
        with open(tmp, "r+b") as out:
            for index, data in blocks:
                out.seek(index * manifest.BLOCK)
                out.write(data)
            out.truncate(size)
        if hash_file(tmp) != digest:
            tmp.unlink()
            raise ContentMismatch(digest[:12] + "…", "the file rebuilt from the delta has another BLAKE3 hash")
        os.replace(tmp, self.staged(digest))
        return size

    def gather(self, entries: list[Entry], base: list[Entry]) -> list[str]:
        """Stage every content the manifest needs that is only in the tree; returns the hashes still missing."""
        sources: dict[str, list[str]] = {}
        for e in base + entries:
            if e.type == "f":
                sources.setdefault(e.hash, []).append(e.path)
        missing = []
        for digest in dict.fromkeys(e.hash for e in entries if e.type == "f"):
            if self.staged(digest).exists():
                continue
            if not any(self._stage_from_tree(digest, p) for p in sources.get(digest, [])):
                missing.append(digest)
        return missing

    def _stage_from_tree(self, digest: str, rel: str) -> bool:
        path = self.root / rel
        try:
            if not _inside_tree(self.root, path) or not stat.S_ISREG(os.lstat(path).st_mode):
                return False
        except OSError:
            return False
        tmp = self.tmp / secrets.token_hex(8)
        shutil.copyfile(path, tmp, follow_symlinks=False)
        if hash_file(tmp) != digest:
            tmp.unlink()
            return False
        os.replace(tmp, self.staged(digest))
        return True

    # -- the tree ---------------------------------------------------------------------------------

    def apply(self, entries: list[Entry], base: list[Entry]) -> None:
        """Make the tree match ``entries`` exactly (content all staged: see :meth:`gather`)."""
        wanted = {e.path: e for e in entries}
        old = {e.path: e for e in base}
        self._remove_unwanted(wanted)
        uses: dict[str, int] = {}
        for e in entries:
            if e.type == "f" and not _unchanged(_lstat(self.root / e.path), e, old.get(e.path)):
                uses[e.hash] = uses.get(e.hash, 0) + 1
        real_dirs = {""}  # directories of this manifest seen to be real directories (never symlinks)
        fresh: dict[str, os.stat_result | None] = {}
        for e in entries:  # sorted: a parent comes before its children
            path = self.root / e.path
            if e.path.rpartition("/")[0] not in real_dirs and not _inside_tree(self.root, path.parent):
                raise UnsafePath(e.path, "its parent leads outside the client's data")
            current = _lstat(path)
            fresh[e.path] = current
            if e.type == "d":
                if current is None:
                    os.mkdir(path, 0o700)
                    fresh[e.path] = None
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    real_dirs.add(e.path)
            elif e.type == "l":
                if current is None or not stat.S_ISLNK(current.st_mode) or os.readlink(path) != e.target:
                    tmp = self.tmp / secrets.token_hex(8)
                    os.symlink(e.target, tmp)
                    os.replace(tmp, path)
                    fresh[e.path] = None
            else:
                unchanged = _unchanged(current, e, old.get(e.path))
                if not unchanged:
                    fresh[e.path] = None
                    uses[e.hash] -= 1
                    if uses[e.hash] == 0:  # its last use: moved, not copied (a rerun finds it in the tree)
                        os.replace(self.staged(e.hash), path)
                    else:
                        tmp = self.tmp / secrets.token_hex(8)
                        shutil.copyfile(self.staged(e.hash), tmp)
                        os.replace(tmp, path)
            if e.type != "d":
                _set_meta(path, e, fresh[e.path])
        for e in reversed(entries):  # directories last, deepest first: writing inside changes their mtime
            if e.type == "d":
                _set_meta(self.root / e.path, e, _lstat(self.root / e.path))

    def _remove_unwanted(self, wanted: dict[str, Entry]) -> None:
        for dirpath, dirnames, filenames in os.walk(self.root, topdown=True):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir
            if not rel_dir:
                dirnames[:] = [d for d in dirnames if d != manifest.RESERVED]
                filenames = [f for f in filenames if f != manifest.RESERVED]
            keep_dirs = []
            for name in dirnames + filenames:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                path = Path(dirpath) / name
                st = os.lstat(path)
                want = wanted.get(rel)
                kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f"
                if want is not None and want.type == kind:
                    if kind == "d":
                        keep_dirs.append(name)
                    continue
                if kind == "d":
                    os.chmod(path, 0o700)
                    shutil.rmtree(path)
                else:
                    path.unlink()
            dirnames[:] = [d for d in dirnames if d in keep_dirs]

    def finish(self, entries: list[Entry]) -> None:
        """Record the committed manifest and drop staged content (the tree now holds it)."""
        tmp = self.tmp / "manifest.json"
        with open(tmp, "w") as fh:
            json.dump(manifest.to_json(entries), fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.manifest_path)
        for d in (self.staging, self.tmp):
            shutil.rmtree(d)
            d.mkdir(mode=0o700)


def _delta_blocks(body: bytes, size: int) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(body):
        if pos + 12 > len(body):
            raise ProtocolError("a delta block is cut short")
        index = int.from_bytes(body[pos : pos + 8], "big")
        length = int.from_bytes(body[pos + 8 : pos + 12], "big")
        data = body[pos + 12 : pos + 12 + length]
        if len(data) != length or length > manifest.BLOCK or index * manifest.BLOCK >= size:
            raise ProtocolError("a delta block is malformed or lies outside the file")
        out.append((index, data))
        pos += 12 + length
    return out


def _unchanged(current: os.stat_result | None, e: Entry, prev: Entry | None) -> bool:
    """The tree already holds this file's content (as of the last commit): only metadata may need setting."""
    return (
        current is not None
        and stat.S_ISREG(current.st_mode)
        and prev is not None
        and prev.type == "f"
        and prev.hash == e.hash
        and current.st_size == e.size
        and current.st_mtime_ns == prev.mtime_ns
    )


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _inside_tree(root: Path, path: Path) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + "/")


def _set_meta(path: Path, e: Entry, current: os.stat_result | None) -> None:
    """Owner, mode and mtime as the entry says; skipped when ``current`` (the untouched entry) has them all."""
    if (
        current is not None
        and (current.st_uid, current.st_gid, current.st_mtime_ns) == (e.uid, e.gid, e.mtime_ns)
        and (e.type == "l" or stat.S_IMODE(current.st_mode) == e.mode)
    ):
        return
    if os.geteuid() == 0:
        os.lchown(path, e.uid, e.gid)
    if e.type != "l":
        os.chmod(path, e.mode)
    os.utime(path, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)


def hash_file(path: Path) -> str:
    h = blake3.blake3()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
