"""Agent image backups against rsync (daemon mode over loopback) and restic (local repository), side by side.

Run as root: ``.venv/bin/python bench/image_bench.py [--size-mib 1024]``. It makes one disk image file (a third
random, a third compressible text, a third zeros, like a used disk), then, in one run, on a real appliance
(``bulwark init`` + ``bulwark run`` on zfs-fuse, the agent enrolled over TLS) and the same pool for the peers:

- a full backup: ``bulwark-agent image-backup FILE``, ``rsync --inplace`` of the file to an rsync daemon,
  ``restic backup FILE``;
- 64 scattered 64 KiB writes (4 MiB) inside the image, then an incremental with each tool;
- an image restore with the agent (every block verified, the file read back) against ``rsync`` pulling the
  file back from the daemon.

Bytes sent are counted the same way for the agent and rsync, by a counting TCP relay on loopback (both
directions); restic's figure is its ``data_added``. Everything the bench made is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from agent_bench import (
    AGENT,
    CLIENT,
    MiB,
    Relay,
    Result,
    appliance,
    dataset,
    ratio,
    rsync_daemon,
    timed,
    zfs_fuse,
)

from appliance.system.runner import local_runner


def make_image(path: Path, size_mib: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    words = b"invoice customer total amount backup ledger quarter report 2026 ".split()
    with path.open("wb") as fh:
        for i in range(size_mib):
            kind = i % 3
            if kind == 0:
                fh.write(rng.randbytes(MiB))
            elif kind == 1:
                line = b" ".join(rng.choice(words) for _ in range(12)) + b"\n"
                fh.write((line * (MiB // len(line) + 1))[:MiB])
            else:
                fh.seek(MiB, os.SEEK_CUR)
        fh.truncate(size_mib * MiB)


def change_image(path: Path, seed: int = 2) -> int:
    rng = random.Random(seed)
    size = path.stat().st_size
    with path.open("r+b") as fh:
        for _ in range(64):
            fh.seek(rng.randrange(0, size - 65536))
            fh.write(rng.randbytes(65536))
    return 64 * 65536


def run_agent(state: Path, image: Path, relay: Relay) -> Result:
    relay.take()
    seconds, out = timed([AGENT, "--state-dir", str(state), "--json", "image-backup", str(image), "--name", "disk"])
    got = json.loads(out)
    return Result(seconds, relay.take(), f"{got['changed_blocks']} blocks, {got['point']}")


def run_rsync(image: Path, relay: Relay) -> Result:
    relay.take()
    seconds, out = timed(["rsync", "-a", "--inplace", "--stats", str(image), f"rsync://127.0.0.1:{relay.port}/bench/"])
    literal = next((line for line in out.splitlines() if line.startswith("Literal data")), "")
    return Result(seconds, relay.take(), literal.strip())


def run_restic(repo: Path, image: Path) -> Result:
    env = {"RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(repo.parent / "restic-cache")}
    seconds, out = timed(["restic", "-r", str(repo), "backup", "--json", str(image)], env=env)
    summary = next(json.loads(line) for line in reversed(out.splitlines()) if '"summary"' in line)
    return Result(seconds, int(summary.get("data_added", 0)), "data added")


def report(phase: str, results: dict[str, Result]) -> None:
    agent = results["bulwark-agent"]
    print(f"\n{phase}:")
    for name, r in results.items():
        print(f"  {name:14} {r.seconds:8.2f} s  {r.sent / MiB:9.1f} MiB sent   {r.note}")
    for name, r in results.items():
        if name != "bulwark-agent":
            print(f"  agent / {name:7} time {ratio(agent.seconds, r.seconds)}   bytes {ratio(agent.sent, r.sent)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the disk image (default 1024)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the image goes (default a temp dir)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: zfs-fuse and the appliance need it")
    with tempfile.TemporaryDirectory(prefix="bulwark-image-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        image = work / "disk.raw"
        make_image(image, args.size_mib)
        print(f"image: {args.size_mib} MiB (a third random, a third text, a third zeros)")
        with zfs_fuse(work), appliance(work, max(4, 5 * args.size_mib // 1024 + 2)) as app:
            app.cli("client", "add", CLIENT, "--kind", "agent")
            code = json.loads(app.cli("client", "enroll-code", CLIENT, "--json"))["code"]
            state = work / "agent-state"
            relay = Relay(app.port)
            local_runner().run(
                [AGENT, "--state-dir", str(state), "--json", "enroll", "--server",
                 f"https://127.0.0.1:{relay.port}", "--code", code],
                timeout=60,
            )  # fmt: skip
            rsync_dest = dataset(app.pool, "bench-rsync", work / "rsync-dest")
            restic_repo = dataset(app.pool, "bench-restic", work / "restic-repo") / "repo"
            local_runner().run(["restic", "-r", str(restic_repo), "init"], env={"RESTIC_PASSWORD": "bench"})
            with rsync_daemon(work, rsync_dest) as rsync_port:
                rsync_relay = Relay(rsync_port)
                steps = {"full image backup": None, "incremental image backup": change_image}
                for phase, change in steps.items():
                    if change is not None:
                        print(f"\nchanged {change(image) / MiB:.0f} MiB in 64 places")
                    results = {
                        "bulwark-agent": run_agent(state, image, relay),
                        "rsync": run_rsync(image, rsync_relay),
                        "restic": run_restic(restic_repo, image),
                    }
                    report(phase, results)
                relay.take()
                restored, pulled = work / "restored.raw", work / "pulled.raw"
                t_agent, _ = timed([AGENT, "--state-dir", str(state), "--json", "image-restore", str(restored)])
                agent_bytes = relay.take()
                t_rsync, _ = timed(["rsync", "-a", f"rsync://127.0.0.1:{rsync_relay.port}/bench/disk.raw", str(pulled)])
                rsync_bytes = rsync_relay.take()
                assert restored.read_bytes() == image.read_bytes(), "the restored image differs"
                print("\nrestore (agent: every block verified and the file read back):")
                print(f"  bulwark-agent  {t_agent:8.2f} s  {agent_bytes / MiB:9.1f} MiB received")
                print(f"  rsync          {t_rsync:8.2f} s  {rsync_bytes / MiB:9.1f} MiB received")
                print(f"  agent / rsync  time {ratio(t_agent, t_rsync)}   bytes {ratio(agent_bytes, rsync_bytes)}")
                rsync_relay.close()
            relay.close()


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"\nbench finished in {time.perf_counter() - started:.0f} s")
