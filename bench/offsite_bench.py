"""Offsite stream throughput and memory on zfs-fuse, against peers run side by side on the same snapshot.

Run as root with zfs-fuse answering: ``.venv/bin/python bench/offsite_bench.py [--mib 256 1024]``. For each size
it makes a pool on a sparse file in a temporary directory, fills a dataset with half incompressible data and half
text, snapshots it, and times, best of ``--runs``:

* ``zfs send | zfs receive``                     (raw replication, no compression or encryption)
* ``zfs send | zstd -1 -T2 > file``               (the goal's reference: compressed, unencrypted, one file)
* ``zfs send | zstd -1 -T2 | openssl enc -aes-256-ctr > file`` (compressed and encrypted, one file, no
  authentication; ``openssl enc`` has no AEAD modes)
* Bulwark: ``zfs send`` → 4 MiB chunks → BLAKE3 + zstd -1 + AES-256-GCM → a local-folder target (one file per
  chunk, each fsynced, renamed into place and its folder fsynced before the journal for resuming records it), in
  a child process whose peak RSS is reported. The peers write into the page cache and flush nothing.

The methods take turns in each round, so other load on the machine falls on all of them alike. It prints MB/s of
send-stream bytes and the ratio of each to Bulwark's. Everything it made is destroyed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from appliance.system.runner import PIPE, local_runner
from appliance.zfs import datasets, snapshots
from appliance.zfs.host import ZfsHost

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, os, resource, sys, time
from pathlib import Path
from typing import IO
from appliance.offsite import upload
from appliance.offsite.targets.local import LocalTarget
from appliance.system.runner import local_runner
from appliance.zfs.host import ZfsHost
dataset, snap, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
zfs = ZfsHost.detect(local_runner())
spec = upload.StreamSpec(os.urandom(16), os.urandom(16), 0, "bench", "share", dataset, snap, None, {}, {})
start = time.perf_counter()
result = upload.upload_stream(LocalTarget("bench", out), zfs, spec, os.urandom(8), os.urandom(32), out / "journal")
print(json.dumps({"seconds": time.perf_counter() - start, "plain": result.plain_bytes, "stored": result.stored_bytes,
                  "chunks": result.chunks, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "cpu": sum(resource.getrusage(resource.RUSAGE_SELF)[:2])}))
"""


def fill(root: Path, mib: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    block = 16 * MiB
    for i in range(max(1, mib // 32)):
        (root / f"disk-{i:03d}.bin").write_bytes(os.urandom(block))
        line = f"row {i} customer invoice total amount due 2026-11-26 paid yes\n".encode()
        (root / f"ledger-{i:03d}.csv").write_bytes((line * (block // len(line) + 1))[:block])


def pipeline(*argvs: list[str], out: Path | None = None) -> None:
    """argv | argv | … (> out): the processes joined by pipes through the command runner."""
    runner = local_runner()
    with contextlib.ExitStack() as stack:
        prev: IO[bytes] | None = None
        for i, argv in enumerate(argvs):
            last = i == len(argvs) - 1
            sink: IO[bytes] | int | None = PIPE
            if last:
                sink = stack.enter_context(open(out, "wb")) if out is not None else None  # noqa: SIM115
            proc = stack.enter_context(runner.stream(argv, stdin=prev, stdout=sink, timeout=3600))
            if prev is not None:
                prev.close()  # the next process owns the pipe now
            prev = None if last else proc.stdout


def rounds(runs: int, methods: dict[str, Callable[[], None]], cleanup: Callable[[], None]) -> dict[str, float]:
    """The best time of each method over ``runs`` rounds in which the methods take turns, so that a burst of other
    load on the machine falls on all of them alike rather than on whichever ran then."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(runs):
        for name, fn in methods.items():
            cleanup()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    cleanup()
    return {name: min(t) for name, t in times.items()}


def bench_size(zfs: ZfsHost, pool: str, work: Path, mib: int, runs: int) -> None:
    ds = f"{pool}/src{mib}"
    datasets.create(zfs, ds)
    fill(work / "mnt" / f"src{mib}", mib)
    snap = snapshots.create(zfs, ds, "bench").name
    stream_bytes = 0
    with local_runner().stream(["zfs", "send", snap], stdout=PIPE) as send:
        for block in iter(lambda: send.stdout.read(MiB), b""):
            stream_bytes += len(block)
    out = work / "out"
    recv = f"{pool}/copy{mib}"

    def clean() -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        if datasets.exists(zfs, recv):
            zfs.retry_spurious_busy(lambda: zfs.zfs("destroy", "-r", recv, subject=recv))

    send_argv = ["zfs", "send", snap]
    bulwark: list[dict[str, float]] = []

    def ours() -> None:
        res = local_runner().run(
            [sys.executable, "-c", CHILD, ds, "bench", str(out)], timeout=3600,
            env={"PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", "/root")},
        )  # fmt: skip
        bulwark.append(json.loads(res.out))

    peers: dict[str, Callable[[], None]] = {
        "zfs send | zfs receive": lambda: pipeline(send_argv, ["zfs", "receive", "-u", recv]),
        "zfs send | zstd -1 -T2 > file": lambda: pipeline(
            send_argv, ["zstd", "-1", "-T2", "-q", "-c"], out=out / "stream.zst"
        ),
        "zfs send | zstd -1 -T2 | openssl aes-256-ctr > file": lambda: pipeline(
            send_argv,
            ["zstd", "-1", "-T2", "-q", "-c"],
            ["openssl", "enc", "-aes-256-ctr", "-pbkdf2", "-pass", "pass:bench-only"],
            out=out / "stream.enc",
        ),
    }
    results = rounds(runs, {**peers, "Bulwark": ours}, clean)  # Bulwark's own time is taken inside the child
    del results["Bulwark"]
    fastest = min(bulwark, key=lambda r: r["seconds"])
    rss = max(r["rss_mib"] for r in bulwark)
    ratio = fastest["stored"] / fastest["plain"]
    print(f"\nsend stream of {mib} MiB of files: {stream_bytes / MiB:.0f} MiB; best of {runs}")
    mbps = stream_bytes / fastest["seconds"] / 1e6
    print(f"  {'Bulwark (chunks, zstd -1, AES-256-GCM, local target)':58} {mbps:8.1f} MB/s  1.00x"
          f"   stored {ratio:.2f} of the stream, {fastest['chunks']:.0f} chunks, peak RSS {rss:.0f} MiB,"
          f" {fastest['cpu'] / fastest['seconds']:.1f} cores busy")  # fmt: skip
    for name, seconds in results.items():
        peer = stream_bytes / seconds / 1e6
        print(f"  {name:58} {peer:8.1f} MB/s  Bulwark is {mbps / peer:.2f}x of it")
    goal = stream_bytes / results["zfs send | zstd -1 -T2 > file"] / 1e6
    print(
        f"  goal: >= 0.8x of zfs send | zstd -1 -T2 > file -> {mbps / goal:.2f}x; peak RSS <= 256 MiB -> {rss:.0f} MiB"
    )
    zfs.retry_spurious_busy(lambda: zfs.zfs("destroy", "-r", ds, subject=ds))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, nargs="+", default=[256, 1024], help="dataset sizes in MiB")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    runner = local_runner()
    daemon = None
    if runner.run(["zpool", "list"], ok_codes=range(256)).returncode != 0:  # start zfs-fuse for this run only
        daemon = runner.spawn(["/usr/sbin/zfs-fuse", "--no-daemon", "--no-kstat-mount"])
        deadline = time.monotonic() + 15
        while runner.run(["zpool", "list"], ok_codes=range(256)).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("zfs-fuse did not start")
            time.sleep(0.1)
    try:
        run(args.mib, args.runs)
    finally:
        if daemon is not None:
            daemon.stop(timeout=30)


def run(sizes: list[int], runs: int) -> None:
    zfs = ZfsHost.detect(local_runner())
    with tempfile.TemporaryDirectory(prefix="bulwark-bench-") as tmp:
        work = Path(tmp)
        pool = f"bwb{secrets.token_hex(3)}"
        device = work / "dev.img"
        with device.open("wb") as fh:
            fh.truncate((3 * max(sizes) + 1024) * MiB)
        zfs.zpool("create", "-o", "cachefile=none", "-m", str(work / "mnt"), pool, str(device))
        try:
            for mib in sizes:
                bench_size(zfs, pool, work, mib, runs)
        finally:
            for attempt in range(40):
                if local_runner().run(["zpool", "destroy", "-f", pool], ok_codes=range(256)).returncode == 0:
                    break
                time.sleep(0.05 * (attempt + 1))


if __name__ == "__main__":
    main()
