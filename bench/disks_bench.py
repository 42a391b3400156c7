"""Disk hot-plug latency and SMART judging speed, side by side with named peers.

Run as root: ``.venv/bin/python bench/disks_bench.py [--rounds 20]``.

- Hot-plug: loop devices added and removed through /dev/loop-control (real kernel uevents). Bulwark's
  ``DiskMonitor`` (pyudev observer thread, inventory updated per event) against the peer ``udevadm monitor
  --kernel --subsystem-match=block`` (systemd's own uevent listener, when installed) and a bare pyudev netlink
  monitor polled in this thread (the floor: reception of the uevent alone). Printed: median and worst time from
  the ioctl to the device being visible, and Bulwark's ratio to each peer.
- SMART: parsing and judging every recorded real smartctl output in tests/data/smart, against the peer
  ``smartctl``-free floor of ``json.loads`` alone (what any tool must at least do), as reports per second.

Loop devices made here are removed at the end.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyudev  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.disks import smart  # noqa: E402
from appliance.disks.monitor import DiskMonitor  # noqa: E402
from appliance.disks.verdict import judge  # noqa: E402
from appliance.store import Store  # noqa: E402

ADD, REMOVE = 0x4C80, 0x4C81
DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "smart"


def _free_number() -> int:
    return next(n for n in range(230, 256) if not Path(f"/sys/block/loop{n}").exists())


def _ctl(request: int, number: int) -> None:
    fd = os.open("/dev/loop-control", os.O_RDWR)
    try:
        fcntl.ioctl(fd, request, number)
    finally:
        os.close(fd)


def _time_until(action: Callable[[], None], seen: Callable[[], bool], timeout: float = 5.0) -> float:
    start = time.monotonic()
    action()
    while not seen():
        if time.monotonic() - start > timeout:
            raise RuntimeError("not seen within 5 s")
        time.sleep(0.0002)
    return time.monotonic() - start


def bench_bulwark(rounds: int) -> tuple[list[float], list[float]]:
    tmp = Path(tempfile.mkdtemp())
    store = Store.open(tmp / "bench.db")
    monitor = DiskMonitor(store, dict)
    monitor.start()
    adds, removes = [], []
    try:
        for _ in range(rounds):
            n = _free_number()
            name = f"loop{n}"
            adds.append(_time_until(lambda n=n: _ctl(ADD, n), lambda name=name: monitor.get(name) is not None))
            removes.append(_time_until(lambda n=n: _ctl(REMOVE, n), lambda name=name: monitor.get(name) is None))
    finally:
        monitor.stop()
        store.close()
        shutil.rmtree(tmp)
    return adds, removes


def bench_bare_pyudev(rounds: int) -> tuple[list[float], list[float]]:
    monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
    monitor.filter_by(subsystem="block")
    monitor.start()
    adds, removes = [], []
    for _ in range(rounds):
        n = _free_number()
        for request, action, out in ((ADD, "add", adds), (REMOVE, "remove", removes)):
            start = time.monotonic()
            _ctl(request, n)
            while True:
                device = monitor.poll(timeout=5)
                if device is None:
                    raise RuntimeError("no uevent within 5 s")
                if device.sys_name == f"loop{n}" and device.action == action:
                    break
            out.append(time.monotonic() - start)
    return adds, removes


def bench_udevadm(rounds: int) -> tuple[list[float], list[float]] | None:
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        return None
    proc = subprocess.Popen(  # a peer program, started only by this bench
        [udevadm, "monitor", "--kernel", "--subsystem-match=block"], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert proc.stdout is not None
    try:
        proc.stdout.readline()  # banner lines
        time.sleep(0.3)
        adds, removes = [], []
        for _ in range(rounds):
            n = _free_number()
            for request, action, out in ((ADD, "add", adds), (REMOVE, "remove", removes)):
                start = time.monotonic()
                _ctl(request, n)
                while True:
                    line = proc.stdout.readline()
                    if f" {action} " in line and line.rstrip().endswith(f"/loop{n} (block)"):
                        break
                out.append(time.monotonic() - start)
        return adds, removes
    finally:
        proc.terminate()
        proc.wait(5)


def bench_smart(seconds: float = 2.0) -> tuple[float, float]:
    texts = [p.read_text() for p in sorted(DATA.glob("*.json"))]

    def rate(fn: Callable[[str], object]) -> float:
        done, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            for text in texts:
                fn(text)
            done += len(texts)
        return done / (time.monotonic() - start)

    return rate(lambda t: judge(smart.parse_text(t))), rate(json.loads)


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:6.2f} ms, worst {max(values) * 1000:6.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/loop-control"):
        print("needs root and /dev/loop-control", file=sys.stderr)
        return 2
    ours = bench_bulwark(args.rounds)
    peers = {"bare pyudev netlink monitor": bench_bare_pyudev(args.rounds)}
    udevadm = bench_udevadm(args.rounds)
    if udevadm is not None:
        peers["udevadm monitor --kernel"] = udevadm
    print(f"hot-plug, {args.rounds} loop devices added and removed (ioctl → visible):")
    print(f"  Bulwark DiskMonitor          add {_ms(ours[0])} | remove {_ms(ours[1])}")
    for name, (adds, removes) in peers.items():
        ratio_add = statistics.median(ours[0]) / statistics.median(adds)
        ratio_remove = statistics.median(ours[1]) / statistics.median(removes)
        print(f"  {name:<28} add {_ms(adds)} | remove {_ms(removes)}")
        print(f"    Bulwark / {name}: add ×{ratio_add:.2f}, remove ×{ratio_remove:.2f}")
    if udevadm is None:
        print("  (udevadm not installed: Debian package udev)")
    judged, loaded = bench_smart()
    print(f"SMART: parse + judge {judged:,.0f} reports/s; json.loads alone {loaded:,.0f}/s", end="")
    print(f"; ratio ×{judged / loaded:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
