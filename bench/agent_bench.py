"""The backup agent against rsync (daemon mode over loopback) and restic (local repository), side by side.

Run as root: ``.venv/bin/python bench/agent_bench.py [--size-mib 1024] [--big-mib 512]``. It generates one tree
of mixed files (a large file that is half random and half compressible, like a VM disk or a database; medium
files; thousands of small text files in nested folders), then, in one run:

- sets up a real appliance (``bulwark init`` on a file-backed pool of the zfs-fuse daemon, ``bulwark run``:
  gunicorn over TLS on loopback), an agent client, and enrolls ``bulwark-agent`` with a one-time code;
- starts ``rsync --daemon`` on loopback with its module on a dataset of the same pool, and initialises a restic
  repository on another dataset of the same pool;
- times a full backup with each tool, changes 1 % of the files and 1 MiB inside the large file, and times an
  incremental backup with each tool.

Bytes sent are measured the same way for the agent and rsync: both talk to their server through a counting TCP
relay in this process, so the figure is what crossed the loopback in both directions (TLS records for the agent,
rsync's protocol for rsync). Restic writes to a local repository: its figure is what its summary says was added
(``data_added``), which is the data a remote repository would have received. Caches are warm for every tool (the
tree is read once before the first backup). A zfs-fuse daemon that already answers is used and left alone;
otherwise one is started and stopped at the end. Everything the bench made is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import ssl
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from appliance.system.runner import Service, local_runner

ROOT = Path(__file__).resolve().parents[1]
BULWARK = str(ROOT / ".venv/bin/bulwark")
AGENT = str(ROOT / ".venv/bin/bulwark-agent")
MiB = 1024 * 1024
CLIENT = "bench"


# -- the tree ---------------------------------------------------------------------------------------------


def _text(rng: random.Random, size: int) -> bytes:
    words = [b"invoice", b"customer", b"total", b"amount", b"backup", b"ledger", b"quarter", b"report", b"2026"]
    lines, held = [], 0
    while held < size:
        lines.append(b" ".join(rng.choices(words, k=12)) + b"\n")
        held += len(lines[-1])
    return b"".join(lines)[:size]


def make_tree(top: Path, size_mib: int, big_mib: int, seed: int = 1) -> tuple[int, int, Path]:
    """The tree: returns (files, bytes, the large file)."""
    rng = random.Random(seed)
    top.mkdir(parents=True)
    big = top / "vm" / "disk.img"
    big.parent.mkdir()
    with big.open("wb") as fh:
        for stripe in range(big_mib):  # half random, half compressible, in 1 MiB stripes
            fh.write(rng.randbytes(MiB) if stripe % 2 == 0 else _text(rng, MiB))
    files, total = 1, big_mib * MiB
    rest = max(size_mib - big_mib, 0) * MiB
    medium_budget = rest * 3 // 5
    n = 0
    while medium_budget > 0:
        size = min(rng.randint(1, 6) * MiB, medium_budget)
        data = rng.randbytes(size) if n % 2 == 0 else _text(rng, size)
        path = top / "media" / f"dept-{n % 8}" / f"archive-{n:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files, total, medium_budget, n = files + 1, total + size, medium_budget - size, n + 1
    small_budget = rest - rest * 3 // 5
    n = 0
    while small_budget > 0:
        size = min(rng.randint(2, 64) * 1024, small_budget)
        path = top / "docs" / f"team-{n % 16:02d}" / f"year-{n % 5 + 2020}" / f"note-{n:06d} é.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_text(rng, size))
        files, total, small_budget, n = files + 1, total + size, small_budget - size, n + 1
    os.symlink("vm/disk.img", top / "current-disk")
    return files, total, big


def change_tree(top: Path, big: Path, seed: int = 2) -> tuple[int, int]:
    """1 % of the files edited (a line appended, newer mtime) and 1 MiB rewritten in the large file."""
    rng = random.Random(seed)
    others = sorted(p for p in top.rglob("*") if p.is_file() and not p.is_symlink() and p != big)
    chosen = rng.sample(others, max(1, len(others) // 100))
    later = time.time() + 60
    for path in chosen:
        with path.open("ab") as fh:
            fh.write(b"edited for the incremental run\n")
        os.utime(path, (later, later))
    with big.open("r+b") as fh:
        fh.seek(big.stat().st_size // 2 // MiB * MiB)
        fh.write(rng.randbytes(MiB))
    os.utime(big, (later, later))
    return len(chosen) + 1, MiB


def read_all(top: Path) -> None:
    for path in top.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as fh:
                while fh.read(4 * MiB):
                    pass


# -- a counting TCP relay ------------------------------------------------------------------------------


class Relay:
    """Listens on a loopback port and forwards to ``target``, counting the bytes in both directions."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.bytes = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        buf = bytearray(1024 * 1024)
        view = memoryview(buf)
        try:
            while n := src.recv_into(buf):
                dst.sendall(view[:n])
                with self._lock:
                    self.bytes += n
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def take(self) -> int:
        with self._lock:
            count, self.bytes = self.bytes, 0
        return count

    def close(self) -> None:
        self.sock.close()


# -- the peers -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def zpool_answers() -> bool:
    return local_runner().run(["zpool", "list", "-H"], ok_codes=range(256), timeout=10).returncode == 0


@contextlib.contextmanager
def zfs_fuse(work: Path) -> Iterator[None]:
    if zpool_answers():
        yield
        return
    log = (work / "zfs-fuse.log").open("wb")
    service = local_runner().spawn(["/usr/sbin/zfs-fuse", "--no-daemon", "--no-kstat-mount"], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while not zpool_answers():
            if service.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("zfs-fuse did not start; see " + str(work / "zfs-fuse.log"))
            time.sleep(0.1)
        yield
    finally:
        service.stop(timeout=30)
        log.close()


@dataclass
class ApplianceRun:
    data_dir: Path
    pool: str
    port: int

    def cli(self, *args: str) -> str:
        return local_runner().run([BULWARK, "--data-dir", str(self.data_dir), *args], timeout=120).out


def _wait_https(port: int, service: Service, log: Path) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise SystemExit(f"bulwark run exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/login", context=ctx, timeout=5):  # noqa: S310
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the appliance did not answer:\n{log.read_text()}")


@contextlib.contextmanager
def appliance(work: Path, pool_gib: int) -> Iterator[ApplianceRun]:
    runner = local_runner()
    data_dir, pool, port = work / "appliance", f"bwb{secrets.token_hex(4)}", free_port()
    runner.run(
        [BULWARK, "--data-dir", str(data_dir), "init", "--pool-name", pool, "--pool-file-size", f"{pool_gib}G",
         "--port", str(port), "--json"],
        timeout=180,
    )  # fmt: skip
    prefix = f"{pool}-"
    runner.run(
        [BULWARK, "--data-dir", str(data_dir), "smb", "configure", "--port", str(free_port()),
         "--interface", "127.0.0.1", "--account-prefix", prefix],
        timeout=60,
    )  # fmt: skip
    log = work / "appliance.log"
    service = None
    try:
        with log.open("wb") as out:
            service = runner.spawn(
                [BULWARK, "--data-dir", str(data_dir), "run"], stdout=out, stderr=out, inherit_env=True
            )
        _wait_https(port, service, log)
        yield ApplianceRun(data_dir, pool, port)
    finally:
        if service is not None and service.poll() is None:
            service.stop(timeout=60, sig=signal.SIGINT)
        for line in Path("/etc/passwd").read_text().splitlines():
            if line.startswith(prefix):
                runner.run(["userdel", line.split(":", 1)[0]], ok_codes=range(256))
        for attempt in range(1, 30):
            if runner.run(["zpool", "destroy", "-f", pool], ok_codes=range(256)).returncode == 0:
                break
            if runner.run(["zpool", "list", pool], ok_codes=range(256)).returncode != 0:
                break
            time.sleep(0.1 * attempt)


def dataset(pool: str, name: str, mountpoint: Path) -> Path:
    local_runner().run(["zfs", "create", "-o", f"mountpoint={mountpoint}", f"{pool}/{name}"], timeout=60)
    return mountpoint


@contextlib.contextmanager
def rsync_daemon(work: Path, dest: Path) -> Iterator[int]:
    port = free_port()
    conf = work / "rsyncd.conf"
    conf.write_text(
        f"pid file = {work / 'rsyncd.pid'}\nuse chroot = no\nlog file = {work / 'rsyncd.log'}\n"
        f"[bench]\n  path = {dest}\n  read only = no\n  uid = root\n  gid = root\n"
    )
    service = local_runner().spawn(
        ["rsync", "--daemon", "--no-detach", f"--config={conf}", f"--port={port}", "--address=127.0.0.1"]
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline or service.poll() is not None:
                raise SystemExit("rsync --daemon did not start")
            time.sleep(0.1)
        yield port
    finally:
        service.stop(timeout=10)


# -- the runs ----------------------------------------------------------------------------------------------


@dataclass
class Result:
    seconds: float
    sent: int
    note: str = ""


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    out = local_runner().run(argv, timeout=7200, env=env).out
    return time.perf_counter() - start, out


def run_agent(state: Path, tree: Path, relay: Relay) -> Result:
    relay.take()
    seconds, out = timed([AGENT, "--state-dir", str(state), "--json", "backup", str(tree)])
    report = json.loads(out)
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in report.get("phases", {}).items())
    return Result(seconds, relay.take(), f"payload {report.get('bytes_sent', 0) / MiB:.1f} MiB ({phases})")


def run_rsync(tree: Path, relay: Relay) -> Result:
    relay.take()
    seconds, out = timed(
        ["rsync", "-a", "--delete", "--numeric-ids", "--stats", f"{tree}/", f"rsync://127.0.0.1:{relay.port}/bench/"]
    )
    literal = next((line for line in out.splitlines() if line.startswith("Literal data")), "")
    return Result(seconds, relay.take(), literal.strip())


def run_restic(repo: Path, tree: Path) -> Result:
    env = {"RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(repo.parent / "restic-cache")}
    seconds, out = timed(["restic", "-r", str(repo), "backup", "--json", str(tree)], env=env)
    summary = next(json.loads(line) for line in reversed(out.splitlines()) if '"summary"' in line)
    return Result(seconds, int(summary.get("data_added", 0)), f"{summary.get('files_new', 0)} new files")


def ratio(a: float, b: float) -> str:
    return f"{a / b:5.2f}x" if b else "   - "


def report(phase: str, results: dict[str, Result], goal: float) -> None:
    agent, peers = results["bulwark-agent"], {k: v for k, v in results.items() if k != "bulwark-agent"}
    print(f"\n{phase}:")
    for name, r in results.items():
        print(f"  {name:14} {r.seconds:8.2f} s  {r.sent / MiB:9.1f} MiB sent   {r.note}")
    for name, r in peers.items():
        print(f"  agent / {name:7} time {ratio(agent.seconds, r.seconds)}   bytes {ratio(agent.sent, r.sent)}")
    rsync = peers["rsync"]
    verdict = "met" if agent.seconds <= goal * rsync.seconds else "NOT met"
    print(f"  goal: agent time <= {goal:.1f}x rsync: {verdict} ({agent.seconds / rsync.seconds:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="total size of the tree (default 1024)")
    parser.add_argument("--big-mib", type=int, default=512, help="size of the large file in it (default 512)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the tree goes (default a temp dir)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: zfs-fuse and the appliance need it")
    with tempfile.TemporaryDirectory(prefix="bulwark-agent-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        tree = work / "tree"
        started = time.perf_counter()
        files, total, big = make_tree(tree, args.size_mib, min(args.big_mib, args.size_mib))
        print(f"tree: {files} files, {total / MiB:.0f} MiB (large file {big.stat().st_size / MiB:.0f} MiB), "
              f"made in {time.perf_counter() - started:.1f} s")  # fmt: skip
        pool_gib = max(4, 4 * args.size_mib // 1024 + 2)
        with zfs_fuse(work), appliance(work, pool_gib) as app:
            bench(work, app, tree, big)


def bench(work: Path, app: ApplianceRun, tree: Path, big: Path) -> None:
    app.cli("client", "add", CLIENT, "--kind", "agent")
    code = json.loads(app.cli("client", "enroll-code", CLIENT, "--json"))["code"]
    state = work / "agent-state"
    agent_relay = Relay(app.port)
    local_runner().run(
        [AGENT, "--state-dir", str(state), "--json", "enroll", "--server", f"https://127.0.0.1:{agent_relay.port}",
         "--code", code],
        timeout=60,
    )  # fmt: skip
    rsync_dest = dataset(app.pool, "bench-rsync", work / "rsync-dest")
    restic_repo = dataset(app.pool, "bench-restic", work / "restic-repo") / "repo"
    local_runner().run(["restic", "-r", str(restic_repo), "init"], env={"RESTIC_PASSWORD": "bench"}, timeout=120)
    read_all(tree)
    with rsync_daemon(work, rsync_dest) as rsync_port:
        rsync_relay = Relay(rsync_port)
        full = {
            "bulwark-agent": run_agent(state, tree, agent_relay),
            "rsync": run_rsync(tree, rsync_relay),
            "restic": run_restic(restic_repo, tree),
        }
        report("full backup", full, 1.0)
        changed, in_big = change_tree(tree, big)
        print(f"\nchanged {changed} files, {in_big / MiB:.0f} MiB inside {big.name}")
        read_all(tree)
        incremental = {
            "bulwark-agent": run_agent(state, tree, agent_relay),
            "rsync": run_rsync(tree, rsync_relay),
            "restic": run_restic(restic_repo, tree),
        }
        report("incremental backup", incremental, 0.5)
        rsync_relay.close()
    agent_relay.close()


if __name__ == "__main__":
    main()
