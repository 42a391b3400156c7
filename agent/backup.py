"""A file backup: scan, ask the appliance what it lacks, send only that (in parts, zstd where it pays), commit."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from agent import reporting, scan, state
from agent.transport import AgentError, Connection

PART = 16 * 1024 * 1024
PACK_ITEM = 1024 * 1024  # contents up to this size travel in packs
PACK_BYTES = 8 * 1024 * 1024
DELTA_MAX = 12 * 1024 * 1024  # more changed blocks than this: the whole content is sent
STREAMS = 3  # uploads at once, each on its own connection: reading, compressing and the appliance's writes overlap
SAMPLE = 8 * 1024  # compression is tried on a few samples of a part before the whole of it
SAMPLES = 8
PACED = 64 * 1024  # the smallest message under a bandwidth limit


def _message_size(largest: int, bwlimit: int) -> int:
    """Under a bandwidth limit a message carries about a quarter second's worth, so the pace stays even."""
    return max(PACED, min(largest, bwlimit // 4)) if bwlimit else largest


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
    phases: dict[str, float]  # seconds spent scanning, sending and committing
    written_ahead: int  # small files the appliance wrote while the rest was sent, kept by the commit

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_local = threading.local()


def _compressed(data: bytes, headers: dict[str, str]) -> bytes:
    """``data`` as zstd (level 1) when that saves 10 % or more, sampled first so random data costs little."""
    if not data:
        return data
    compressor = getattr(_local, "zstd", None)
    if compressor is None:
        compressor = _local.zstd = zstandard.ZstdCompressor(level=1)
    if len(data) > 4 * SAMPLES * SAMPLE:  # from the middle of each eighth: stripes of 1 or 2 MiB all show
        step = len(data) // SAMPLES
        sample = b"".join(data[o : o + SAMPLE] for o in range(step // 2, len(data), step))
        if len(compressor.compress(sample)) > len(sample) * 0.9:
            return data
    packed = compressor.compress(data)
    if len(packed) < len(data) * 0.9:
        headers["Content-Encoding"] = "zstd"
        return packed
    return data


class Progress:
    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet = total, quiet
        self.settled = True  # False while the total may still grow: no line is shown then
        self.done = 0
        self.last = 0.0
        self.lock = threading.Lock()

    def grow(self, count: int) -> None:
        with self.lock:
            self.total += count

    def __call__(self, count: int) -> None:
        with self.lock:
            self.done += count
            now = time.monotonic()
            if not self.quiet and self.settled and (now - self.last > 1 or self.done >= self.total):
                self.last = now
                pct = 100 * self.done / self.total if self.total else 100
                sys.stderr.write(f"\rsending {self.done / 1e6:.1f} of {self.total / 1e6:.1f} MB ({pct:.0f}%)")
                sys.stderr.flush()


class Streams:
    """One connection per sending thread, each with its share of the bandwidth limit."""

    def __init__(self, enrolled: dict[str, Any], bwlimit: int) -> None:
        self.enrolled, self.bwlimit = enrolled, bwlimit
        self.local = threading.local()
        self.made: list[Connection] = []
        self.lock = threading.Lock()

    def conn(self) -> Connection:
        conn: Connection | None = getattr(self.local, "conn", None)
        if conn is None:
            e = self.enrolled
            conn = self.local.conn = Connection(e["server"], e["fingerprint"], e["credential"], self.bwlimit // STREAMS)
            with self.lock:
                self.made.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.made:
            conn.close()


def _send(
    conn: Connection,
    job: str,
    digest: str,
    local: str,
    size: int,
    start: int,
    progress: Any,
    stop: threading.Event | None = None,
) -> int:
    """Send one content from ``start``; returns the bytes put on the wire. The next part is read and compressed
    while the appliance takes in the one before. A ``stop`` set meanwhile ends it after the current part."""
    sent = 0
    part = _message_size(PART, conn.bwlimit)

    def read(fd: int, at: int) -> tuple[int, bytes, dict[str, str]]:
        data = os.pread(fd, part, at)
        headers = {"Bulwark-Size": str(size), "Content-Type": "application/octet-stream"}
        return len(data), _compressed(data, headers), headers

    with open(local, "rb") as fh, concurrent.futures.ThreadPoolExecutor(max_workers=1) as ahead:
        offset = start
        coming = ahead.submit(read, fh.fileno(), offset)
        while True:
            length, body, headers = coming.result()
            if stop is not None and stop.is_set():
                raise AgentError("the backup failed elsewhere; this upload stopped", "see the error above")
            final = offset + length >= size or not length
            if not final:
                coming = ahead.submit(read, fh.fileno(), offset + length)
            query = f"?offset={offset}" + ("&final=1" if final else "")
            conn.request("PUT", f"/jobs/{job}/content/{digest}{query}", raw=body, headers=headers)
            sent += len(body)
            offset += length
            progress(length)
            if final:
                return sent


def _changed_blocks(old: str, new: str) -> list[int]:
    w = 32
    return [i for i in range(len(new) // w) if new[i * w : (i + 1) * w] != old[i * w : (i + 1) * w]]


def _send_delta(conn: Connection, job: str, entry: dict[str, Any], local: str, changed: list[int]) -> int:
    """Only the changed 1 MiB blocks of a large file; the appliance lays them over its previous version."""
    parts = []
    with open(local, "rb") as fh:
        for index in changed:
            fh.seek(index * scan.CHUNK)
            data = fh.read(scan.CHUNK)
            parts.append(index.to_bytes(8, "big") + len(data).to_bytes(4, "big") + data)
    headers = {"Bulwark-Size": str(entry["size"]), "Content-Type": "application/octet-stream"}
    body = _compressed(b"".join(parts), headers)
    base = urllib.parse.quote(entry["path"])
    conn.request("PUT", f"/jobs/{job}/delta/{entry['hash']}?base={base}", raw=body, headers=headers)
    return len(body)


def _packs(items: list[tuple[str, str, int]], limit: int) -> list[list[tuple[str, str, int]]]:
    """Small contents grouped into packs of at most ``limit`` bytes (or one content)."""
    out: list[list[tuple[str, str, int]]] = []
    raw = limit
    for item in items:
        if raw + 72 + item[2] > limit:
            out.append([])
            raw = 0
        out[-1].append(item)
        raw += 72 + item[2]
    return out


def _send_pack(conn: Connection, job: str, items: list[tuple[str, str, int]], progress: Any) -> int:
    """Small contents several to a message (fewer round trips), zstd when it pays."""
    batch = []
    for digest, local, size in items:
        with open(local, "rb") as fh:
            data = fh.read(size + 1)
        if len(data) != size:
            raise AgentError(f"{local} changed while it was backed up", "run the backup again")
        batch.append(digest.encode() + size.to_bytes(8, "big") + data)
    headers = {"Content-Type": "application/octet-stream"}
    body = _compressed(b"".join(batch), headers)
    conn.request("PUT", f"/jobs/{job}/pack", raw=body, headers=headers)
    progress(sum(size for _, _, size in items))
    return len(body)


class Upload:
    """Everything the appliance lacks, on STREAMS connections at once: deltas first (a delta the appliance cannot
    use is sent whole after all), the largest content, the packs, then the other contents largest first. The
    largest content may be started on its own (:meth:`lead`) while the rest of the tree is still hashed."""

    def __init__(
        self, streams: Streams, job: str, found: scan.Scan, base: dict[str, dict[str, Any]], progress: Progress
    ) -> None:
        self.streams, self.job, self.found, self.base, self.progress = streams, job, found, base, progress
        self.by_hash: dict[str, tuple[str, int]] = {}  # content → a local file holding it, its size
        self.deltas: dict[str, tuple[dict[str, Any], list[int]]] = {}
        self.partial: dict[str, int] = {}  # how much of a content the appliance already holds
        self.started: list[concurrent.futures.Future[int]] = []
        self.sending: set[str] = set()
        self.stop = threading.Event()  # set when the backup failed: uploads end after their current message
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=STREAMS)

    def _learn(self, entries: list[dict[str, Any]], missing: list[str], partial: dict[str, int]) -> list[str]:
        """Note where each of ``missing`` comes from; returns those not being sent yet."""
        wanted = set(missing) - self.sending
        for e in entries:
            if e["type"] != "f" or e.get("hash") not in wanted:
                continue
            self.by_hash[e["hash"]] = (self.found.local[e["path"]], e["size"])
            if e.get("blocks") and e["path"] in self.base:
                changed = _changed_blocks(self.base[e["path"]]["blocks"], e["blocks"])
                if len(changed) * scan.CHUNK <= DELTA_MAX:
                    self.deltas[e["hash"]] = (e, changed)
        self.partial.update({d: held for d, held in partial.items() if d in wanted})
        todo = [d for d in dict.fromkeys(missing) if d in wanted]
        self.progress.grow(sum(self.by_hash[d][1] - self.partial.get(d, 0) for d in todo))
        self.sending.update(todo)
        return todo

    def _delta(self, digest: str) -> int:
        e, changed = self.deltas[digest]
        try:
            sent = _send_delta(self.streams.conn(), self.job, e, self.found.local[e["path"]], changed)
        except AgentError as exc:  # the previous version is not on the appliance as it was: send it whole
            if exc.code not in ("protocol_error", "content_mismatch"):
                raise
            return self._whole(digest)
        self.progress(self.by_hash[digest][1] - self.partial.get(digest, 0))
        return sent

    def _whole(self, digest: str) -> int:
        local, size = self.by_hash[digest]
        start = self.partial.get(digest, 0)
        return _send(self.streams.conn(), self.job, digest, local, size, start, self.progress, self.stop)

    def _pack(self, items: list[tuple[str, str, int]]) -> int:
        return _send_pack(self.streams.conn(), self.job, items, self.progress)

    def _content(self, digest: str) -> concurrent.futures.Future[int]:
        return self.pool.submit(self._delta if digest in self.deltas else self._whole, digest)

    def lead(self, entry: dict[str, Any], missing: list[str], partial: dict[str, int]) -> None:
        """Start sending ``entry``'s content, if it is among ``missing``, before the rest is known."""
        self.started += [self._content(d) for d in self._learn([entry], missing, partial)]

    def rest(self, missing: list[str], partial: dict[str, int], prepare: Callable[[], object] | None) -> int:
        """Send the rest of ``missing`` and wait for everything; returns the bytes sent. A ``prepare`` (sending
        the manifest ahead) goes before the packs."""
        todo = self._learn(self.found.entries, missing, partial)
        size = {d: self.by_hash[d][1] for d in todo}
        deltas = [d for d in todo if d in self.deltas]
        whole = [d for d in todo if d not in self.deltas]
        small = [d for d in whole if size[d] <= PACK_ITEM and d not in self.partial]
        packing = set(small)
        large = sorted((d for d in whole if d not in packing), key=size.__getitem__, reverse=True)
        futures = self.started + [self._content(d) for d in deltas + large[:1]]
        if prepare is not None and todo:  # the appliance learns where packs go, so it writes them there at once
            with contextlib.suppress(AgentError, OSError):  # only saves time: the commit meets any real problem
                prepare()
        pack_bytes = _message_size(PACK_BYTES, self.streams.bwlimit // STREAMS)
        items = [(d, *self.by_hash[d]) for d in small]
        futures += [self.pool.submit(self._pack, group) for group in _packs(items, pack_bytes)]
        futures += [self._content(d) for d in large[1:]]
        self.progress.settled = True  # every total is known: the progress line may show
        try:
            return _total(futures)
        except BaseException:
            self.stop.set()
            raise

    def close(self, failed: bool) -> None:
        """Wait for the uploads still running (told to stop if the backup failed)."""
        if failed:
            self.stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _total(futures: list[concurrent.futures.Future[int]]) -> int:
    """The sum of the uploads' results once all are done; the first failure is raised as soon as it happens."""
    finished, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
    for f in finished:
        if f.exception() is not None:
            return f.result()  # raises it
    return sum(f.result() for f in futures)


def _lead(found: scan.Scan) -> dict[str, Any] | None:
    """The largest file if it is sent on its own (not in a pack): it may be sent while the rest is hashed."""
    files = [e for e in found.entries if e["type"] == "f"]
    largest = max(files, key=lambda e: e["size"], default=None)
    return largest if largest is not None and largest["size"] > PACK_ITEM else None


def run(state_dir: Path, paths: list[str], *, bwlimit: int = 0, quiet: bool = False) -> Report:
    began = time.monotonic()
    enrolled = state.load_enrollment(state_dir)
    streams = Streams(enrolled, bwlimit)
    reporter: reporting.JobReporter | None = None
    upload: Upload | None = None
    try:
        conn = streams.conn()
        opened = conn.request("POST", "/jobs", {"kind": "files"})  # before the scan: refused at once if not now
        job = opened["job"]
        reporter = reporting.JobReporter(enrolled, job).start("scanning")
        phases: dict[str, float] = {}
        mark = time.monotonic()
        cache = state.load_cache(state_dir)
        found = scan.walk(paths, cache)
        base = {e["path"]: e for e in opened["manifest"] if e.get("type") == "f" and e.get("blocks")}
        progress = Progress(0, quiet)
        progress.settled = False
        upload = Upload(streams, job, found, base, progress)
        lead = _lead(found)
        if lead is not None:  # the content that takes longest to send goes first, while the rest is hashed
            scan.hash_files(found, cache, {lead["path"]})
            answer = conn.request("POST", f"/jobs/{job}/missing", {"hashes": [lead["hash"]]})
            upload.lead(lead, answer["missing"], answer["partial"])
        scan.hash_files(found, cache)
        state.save_cache(state_dir, cache)
        for skipped in found.skipped:
            sys.stderr.write(f"bulwark-agent: skipped {skipped} (not a file, directory or symlink)\n")
        hashes = sorted({e["hash"] for e in found.entries if e["type"] == "f"})
        answer = conn.request("POST", f"/jobs/{job}/missing", {"hashes": hashes})
        missing: list[str] = answer["missing"]
        by_hash = {e["hash"]: (found.local[e["path"]], e["size"]) for e in found.entries if e["type"] == "f"}
        reporter.phase("sending", lambda: {"bytes_done": min(progress.done, progress.total),
                                           "bytes_total": progress.total, "files_total": len(missing)})  # fmt: skip
        phases["scan"], mark = time.monotonic() - mark, time.monotonic()
        prepare = None
        if opened.get("prepare"):  # no base to diff against: small files can be written while the rest arrives

            def prepare() -> object:
                return streams.conn().request("POST", f"/jobs/{job}/prepare", {"manifest": found.entries})

        sent = upload.rest(missing, answer["partial"], prepare)
        phases["send"], mark = time.monotonic() - mark, time.monotonic()
        if not quiet and progress.total:
            sys.stderr.write("\n")
        reporter.phase("committing")
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
                    upload.sending.add(digest)
                    progress.grow(size)
                    sent += _send(conn, job, digest, local, size, 0, progress)
        else:
            raise AgentError("the appliance kept asking for content", "run the backup again")
        phases["commit"] = time.monotonic() - mark
        return Report(
            job,
            result["point"],
            result["files"],
            found.bytes_scanned,
            found.bytes_hashed,
            sent,
            len(upload.sending),
            time.monotonic() - began,
            {k: round(v, 3) for k, v in phases.items()},
            int(result.get("written_ahead", 0)),
        )
    finally:
        failure = sys.exc_info()[1]
        if upload is not None:
            upload.close(failed=failure is not None)
        if reporter is not None:
            if isinstance(failure, AgentError | OSError):  # the job ends as failed, with why, on the jobs page
                reporter.fail(str(failure))
            else:
                reporter.stop()
        streams.close()


def check_paths(paths: list[str]) -> list[str]:
    for p in paths:
        if not os.path.lexists(p):
            raise AgentError(f"{p} does not exist", "give paths that exist on this machine")
    return paths
