"""Recovery points on zfs-fuse: snapshot and prune rates, and the streamed zip download against zip and tar.

Run as root with zfs-fuse answering: ``.venv/bin/python bench/clients_bench.py [--mib 256]``. It makes a pool on
a sparse file in a temporary directory, a tree of incompressible large files and small text files, takes points
through the same functions the jobs use, then reads one point through a read-only clone as the download does,
and times ``zip`` and ``tar`` on the same clone. Everything it made is destroyed at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

from appliance.clients import download, points
from appliance.clients.model import Client, ClientSettings
from appliance.system.runner import local_runner
from appliance.zfs import datasets, snapshots
from appliance.zfs.host import ZfsHost

MiB = 1024 * 1024


def make_tree(root: Path, big_mib: int) -> int:
    total = 0
    for i in range(4):
        data = os.urandom(big_mib * MiB // 4)
        (root / f"disk-{i}.bin").write_bytes(data)
        total += len(data)
    docs = root / "docs"
    for d in range(20):
        folder = docs / f"dept-{d:02d}"
        folder.mkdir(parents=True)
        for f in range(100):
            text = (f"invoice {d}-{f} " * 300).encode()[:4096]
            (folder / f"file-{f:03d}.txt").write_bytes(text)
            total += len(text)
    return total


def best_of(runs: int, fn: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256, help="size of the large files in MiB (default 256)")
    parser.add_argument("--points", type=int, default=100)
    args = parser.parse_args()
    zfs = ZfsHost.detect(local_runner())
    with tempfile.TemporaryDirectory(prefix="bulwark-bench-") as tmp:
        work = Path(tmp)
        pool = f"bwb{secrets.token_hex(3)}"
        device = work / "dev.img"
        with device.open("wb") as fh:
            fh.truncate(4 * 1024 * MiB)
        zfs.zpool("create", "-o", "cachefile=none", "-m", str(work / "mnt"), pool, str(device))
        try:
            run(zfs, pool, work, args.mib, args.points)
        finally:
            for attempt in range(40):
                if local_runner().run(["zpool", "destroy", "-f", pool], ok_codes=range(256)).returncode == 0:
                    break
                time.sleep(0.05 * (attempt + 1))


def run(zfs: ZfsHost, pool: str, work: Path, big_mib: int, n_points: int) -> None:
    datasets.create(zfs, f"{pool}/clients/bench/share", parents=True)
    client = Client(
        "bench",
        "00000000-0000-0000-0000-000000000000",
        f"{pool}/clients/bench",
        "active",
        ClientSettings.build(kind="smb", schedule="off"),
        time.time(),
        time.time(),
    )
    live = work / "mnt" / "clients" / "bench" / "share"
    start = time.perf_counter()
    total = make_tree(live, big_mib)
    write_s = time.perf_counter() - start
    print(
        f"tree: {total / MiB:.0f} MiB in {4 + 2000} files, "
        f"written in {write_s:.1f} s ({total / MiB / write_s:.0f} MiB/s)"
    )

    start = time.perf_counter()
    taken = [
        points.take_point(zfs, client, "share", f"bw-bench-{i:04d}", source="manual", created_by="bench")
        for i in range(n_points)
    ]
    snap_s = time.perf_counter() - start
    print(
        f"snapshots: {n_points} points in {snap_s:.2f} s "
        f"({n_points / snap_s:.0f}/s, {1000 * snap_s / n_points:.0f} ms each)"
    )
    start = time.perf_counter()
    for p in taken[1:]:
        points.destroy(zfs, p)
    prune_s = time.perf_counter() - start
    print(f"prune: {n_points - 1} points destroyed in {prune_s:.2f} s ({(n_points - 1) / prune_s:.0f}/s)")

    clone = f"{pool}/browse-bench"
    snapshots.clone(zfs, taken[0].snapshot, clone, {"readonly": "on"})
    root = Path(datasets.get_dataset(zfs, clone).mountpoint or "")
    try:
        subprocess.run(["tar", "-cf", "-", "."], cwd=root, stdout=subprocess.PIPE, check=True)  # warm the caches

        def zip_stream(compress: bool) -> None:
            with open(os.devnull, "wb") as out:
                for chunk in download.zip_stream(root, [""], compress=compress):
                    out.write(chunk)

        def piped(argv: list[str]) -> None:
            # (GNU tar skips reading files when its output is /dev/null itself: go through a pipe)
            producer = subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE)
            consumer = subprocess.run(["cat"], stdin=producer.stdout, stdout=subprocess.DEVNULL, check=True)
            assert producer.stdout is not None
            producer.stdout.close()
            assert producer.wait() == 0 and consumer.returncode == 0

        rows = [
            ("Bulwark zip stream, stored", lambda: zip_stream(False)),
            ("zip -r -0 (stored)", lambda: piped(["zip", "-q", "-r", "-0", "-", "."])),
            ("tar -cf", lambda: piped(["tar", "-cf", "-", "."])),
            ("Bulwark zip stream, deflate", lambda: zip_stream(True)),
            ("zip -r (deflate -6)", lambda: piped(["zip", "-q", "-r", "-", "."])),
        ]
        print(f"download of the whole point ({total / MiB:.0f} MiB, warm caches, best of 3):")
        for name, fn in rows:
            seconds = best_of(3, fn)
            print(f"  {name:30} {seconds:6.2f} s  {total / MiB / seconds:7.0f} MiB/s")
    finally:
        datasets.destroy(zfs, clone)


if __name__ == "__main__":
    main()
