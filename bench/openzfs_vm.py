"""The OpenZFS test machine's figures: boot, command round trip, stream throughput, send | receive.

    .venv/bin/python bench/openzfs_vm.py [ARTIFACT_DIR]   (default: the cached build, build.py --find)

Peers: RECIPES.md's measurements of the same kind of machine (boot to a pool ~11 s, 26–48 ms per round trip,
``send | recv`` ~50 MB/s inside the guest) and zfs-fuse on this host (``send | recv`` ~200 MB/s). A stream
goes out of the guest and back in over virtio-serial; the peak memory of this process shows that it is
never held whole.
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.system.runner import PIPE, local_runner  # noqa: E402
from appliance.system.vm import OpenZfsVm  # noqa: E402
from appliance.zfs import transfer  # noqa: E402
from appliance.zfs.host import ZfsHost  # noqa: E402

MiB = 1 << 20
SIZE = 100 * MiB


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    if len(sys.argv) > 1:
        artifacts = Path(sys.argv[1])
    else:
        found = local_runner().run([sys.executable, str(REPO / "image/openzfs-vm/build.py"), "--find"])
        artifacts = Path(found.out.strip())
    with tempfile.TemporaryDirectory(prefix="bwvm-bench-") as work:
        vm = OpenZfsVm(artifacts, Path(work), disks=1, disk_size=2 << 30)
        started = time.monotonic()
        runner = vm.start()
        print(f"boot to the agent answering      {time.monotonic() - started:6.1f} s")
        try:
            for argv in (["true"], ["zfs", "version"], ["zpool", "list"]):
                times = []
                for _ in range(10):
                    t = time.monotonic()
                    runner.run(argv)
                    times.append(time.monotonic() - t)
                print(f"round trip {' '.join(argv):<22}{1000 * statistics.median(times):6.0f} ms (median of 10)")

            t = time.monotonic()
            with runner.stream(["dd", "if=/dev/zero", "bs=65536", f"count={SIZE // 65536}"], stdout=PIPE) as out:
                got = sum(len(chunk) for chunk in iter(lambda: out.stdout.read(MiB), b""))
            print(f"guest -> host stream             {got / (time.monotonic() - t) / 1e6:6.1f} MB/s ({got // MiB} MiB)")
            t = time.monotonic()
            with runner.stream(["dd", "of=/dev/null", "bs=65536"], stdin=PIPE) as sink:
                for _ in range(SIZE // MiB):
                    sink.stdin.write(bytes(MiB))
            print(f"host -> guest stream             {SIZE / (time.monotonic() - t) / 1e6:6.1f} MB/s")

            host = ZfsHost.detect(runner)
            runner.run(["zpool", "create", "-f", "-O", "compression=off", "bench", vm.disk_paths[0]])
            runner.shell("dd if=/dev/urandom of=/bench/data bs=65536 count=$1 2>/dev/null", str(SIZE // 65536))
            runner.run(["zfs", "snapshot", "bench@s"])
            t = time.monotonic()
            runner.shell("zfs send bench@s | zfs receive -u bench/inside")
            inside = time.monotonic() - t
            t = time.monotonic()
            transfer.replicate(host, "bench@s", "bench/copy")
            through = time.monotonic() - t
            print(f"send | recv inside the guest     {SIZE / inside / 1e6:6.1f} MB/s")
            print(f"send | recv through this host    {SIZE / through / 1e6:6.1f} MB/s (transfer.replicate)")
            print(f"peak memory of this process      {peak_rss_mib():6.0f} MiB (streams of {SIZE // MiB} MiB)")
        finally:
            vm.stop()


if __name__ == "__main__":
    main()
