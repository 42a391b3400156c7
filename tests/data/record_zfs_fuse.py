#!/usr/bin/env python3
"""Record real zfs-fuse outputs for Bulwark's parser tests.

Run as root on a machine with the Debian package ``zfs-fuse``::

    .venv/bin/python tests/data/record_zfs_fuse.py [OUT_DIR]

It uses a running zfs-fuse daemon or starts one (``zfs-fuse --no-daemon``) and stops it again, builds
pools on sparse files in a temporary directory (a single-device pool, a mirror that is degraded by
offlining a device, resilvered, scrubbed, damaged and repaired, a raidz, a pool with log and spare
groups and a large pool whose scrub is caught in progress and stopped), runs the commands the driver in
``appliance/zfs`` runs plus the failing commands whose stderr ``appliance/zfs/errors.py`` classifies
(the "no daemon" ones in a private mount namespace, leaving a running daemon alone),
and writes each step's exact stdout (``NAME.out``), stderr (``NAME.err``) and exit status
(``index.tsv``: name, rc, seconds, command, stdin) into OUT_DIR (default: ``zfs-fuse-0.7.0`` next to
this script). Every pool it creates is destroyed at the end, also on failure.

Pool names are fixed (``fz…``); file paths and dates, GUIDs and txg numbers differ on every run.
Outputs are never edited: a step whose exit status is not the expected one stops the script.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from appliance.system.runner import CommandResult, Service, local_runner

ZFS_FUSE = "/usr/sbin/zfs-fuse"
LIST_COLUMNS = "name,size,allocated,free,health,guid,altroot"
GET = ["zfs", "get", "-H", "-p", "-o", "name,property,value,source"]
MiB = 1024 * 1024

runner = local_runner()


class Recorder:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.rows: list[str] = []
        self.names: set[str] = set()

    def step(
        self,
        name: str,
        argv: Sequence[str],
        *,
        rc: int | None = 0,
        stdin: bytes | None = None,
        stdin_note: str = "-",
    ) -> CommandResult:
        """Run ``argv`` and record its stdout, stderr and exit status as step ``name``."""
        result = runner.run(argv, input=stdin, ok_codes=range(256), timeout=300)
        self.save(name, result, stdin_note=stdin_note)
        if rc is not None and result.returncode != rc:
            raise SystemExit(f"step {name}: expected exit status {rc}, got {result.returncode}: {result.err}")
        return result

    def save(self, name: str, result: CommandResult, *, stdin_note: str = "-") -> None:
        """Record a finished command as step ``name``."""
        assert name not in self.names, name
        self.names.add(name)
        (self.out / f"{name}.out").write_bytes(result.stdout)
        (self.out / f"{name}.err").write_bytes(result.stderr)
        self.rows.append(
            "\t".join([name, str(result.returncode), f"{result.duration:.2f}", shlex.join(result.argv), stdin_note])
        )
        print(f"{name:40} rc={result.returncode} {result.duration:.2f}s", flush=True)

    def step_retrying_busy(self, name: str, argv: Sequence[str]) -> CommandResult:
        """A destroy or export: zfs-fuse reports a pool or dataset "busy" while a mount is still settling
        (right after an import, a create or its own unmount); record the first such refusal once, as
        ``busy_NAME``, and the attempt that succeeds as ``NAME``."""
        for _ in range(40):
            result = runner.run(argv, ok_codes=range(256), timeout=300)
            if result.returncode == 0 or "busy" not in result.err:
                break
            if f"busy_{name}" not in self.names:
                self.save(f"busy_{name}", result)
            time.sleep(0.05)
        self.save(name, result)
        if result.returncode != 0:
            raise SystemExit(f"step {name}: {result.err}")
        return result

    def write_index(self) -> None:
        header = "name\trc\tseconds\tcommand\tstdin\n"
        (self.out / "index.tsv").write_text(header + "".join(row + "\n" for row in self.rows))


def zpool_answers() -> bool:
    return runner.run(["zpool", "list", "-H", "-o", "name"], ok_codes=range(256), timeout=30).returncode == 0


def start_daemon(log: Path) -> Service:
    with log.open("wb") as fh:
        service = runner.spawn([ZFS_FUSE, "--no-daemon", "--no-kstat-mount"], stdout=fh, stderr=fh)
    deadline = time.monotonic() + 15
    while not zpool_answers():
        if service.poll() is not None or time.monotonic() > deadline:
            service.stop()
            raise SystemExit(f"zfs-fuse did not start; see {log}")
        time.sleep(0.05)
    return service


def sparse(path: Path, size: int) -> str:
    with path.open("wb") as fh:
        fh.truncate(size)
    return str(path)


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as fh:
        for _ in range(size // MiB):
            fh.write(os.urandom(MiB))


def record(rec: Recorder, work: Path, created: list[str]) -> None:
    mnt = work / "mnt"
    mnt.mkdir()

    def mp(pool: str) -> str:
        return str(mnt / pool)

    def create(name: str, pool: str, argv: Sequence[str], rc: int | None = 0) -> CommandResult:
        result = rec.step(name, argv, rc=rc)
        if result.returncode == 0:
            created.append(pool)
        return result

    # -- capabilities and empty listings --------------------------------------------------------
    rec.step("zfs_version", ["zfs", "version"], rc=2)
    rec.step("zpool_upgrade_v", ["zpool", "upgrade", "-v"])
    rec.step("zfs_holds_usage", ["zfs", "holds"], rc=None)
    empty = work / "empty"
    empty.mkdir()
    rec.step("zpool_import_d_empty", ["zpool", "import", "-d", str(empty)], rc=1)
    rec.step("zpool_import_d_missing", ["zpool", "import", "-d", str(empty), "fznope"], rc=1)
    if not runner.run(["zpool", "list", "-H", "-o", "name"]).out:  # only when no pool at all is imported
        rec.step("zpool_list_Ho_empty", ["zpool", "list", "-H", "-o", LIST_COLUMNS])
        rec.step("zpool_list_empty", ["zpool", "list"])
        rec.step("zpool_status_empty", ["zpool", "status"])

    # -- a single-device pool ---------------------------------------------------------------------
    single = sparse(work / "single.img", 256 * MiB)
    spare_file = sparse(work / "free.img", 128 * MiB)
    create("zpool_create_single", "fzsingle", ["zpool", "create", "-m", mp("fzsingle"), "fzsingle", single])
    rec.step("zpool_create_exists", ["zpool", "create", "-m", mp("x"), "fzsingle", spare_file], rc=1)
    rec.step("zpool_create_in_use", ["zpool", "create", "-m", mp("x"), "fzother", single], rc=1)
    rec.step("zpool_create_no_device", ["zpool", "create", "-m", mp("x"), "fzother", str(work / "nope.img")], rc=1)
    rec.step("zpool_create_reserved", ["zpool", "create", "-m", mp("x"), "mirror2", spare_file], rc=1)
    rec.step("zpool_create_bad_name", ["zpool", "create", "-m", mp("x"), "fz%bad", spare_file], rc=1)
    rec.step("zpool_list_Ho_single", ["zpool", "list", "-H", "-o", LIST_COLUMNS, "fzsingle"])
    rec.step("zpool_list_Ho_missing", ["zpool", "list", "-H", "-o", LIST_COLUMNS, "fznope"], rc=1)
    rec.step("zpool_list_p", ["zpool", "list", "-H", "-p", "-o", LIST_COLUMNS], rc=2)
    rec.step("zpool_status_single", ["zpool", "status", "fzsingle"])
    rec.step("zpool_status_missing", ["zpool", "status", "fznope"], rc=1)
    rec.step("zpool_scrub_missing", ["zpool", "scrub", "fznope"], rc=1)
    rec.step("zpool_offline_no_replicas", ["zpool", "offline", "fzsingle", single], rc=1)

    # -- datasets and properties ------------------------------------------------------------------
    rec.step("zfs_create_a", ["zfs", "create", "-o", "bulwark:client=acme", "-o", "quota=104857600", "fzsingle/a"])
    rec.step("zfs_get_Hpo_all_a", [*GET, "all", "fzsingle/a"])
    write_random(mnt / "fzsingle" / "a" / "f1", 3 * MiB)
    rec.step("zfs_snapshot_s1", ["zfs", "snapshot", "-o", "bulwark:source=agent", "fzsingle/a@s1"])
    rec.step("zfs_get_Hpo_all_s1", [*GET, "all", "fzsingle/a@s1"])
    write_random(mnt / "fzsingle" / "a" / "f2", 1 * MiB)
    rec.step("zfs_snapshot_s2", ["zfs", "snapshot", "fzsingle/a@s2"])
    rec.step("zfs_snapshot_s3", ["zfs", "snapshot", "fzsingle/a@s3"])
    rec.step("zfs_create_child", ["zfs", "create", "fzsingle/a/child"])
    rec.step("zfs_snapshot_child", ["zfs", "snapshot", "fzsingle/a/child@c1"])
    rec.step("zfs_get_Hpo_d1_all_a", [*GET, "-d", "1", "all", "fzsingle/a"])
    rec.step(
        "zfs_get_Hpo_d1_props_a",
        [*GET, "-d", "1", "type,creation,used,referenced,userrefs,bulwark:source", "fzsingle/a"],
    )
    rec.step("zfs_list_Ho_r", ["zfs", "list", "-H", "-o", "name", "-t", "filesystem,volume", "-r", "fzsingle"])
    rec.step("zfs_list_Ho_a", ["zfs", "list", "-H", "-o", "name", "-t", "filesystem,volume", "fzsingle/a"])
    rec.step(
        "zfs_list_Ho_missing", ["zfs", "list", "-H", "-o", "name", "-t", "filesystem,volume", "fzsingle/nope"], rc=1
    )
    rec.step("zfs_get_Hpo_all_many", [*GET, "all", "fzsingle", "fzsingle/a", "fzsingle/a/child"])
    rec.step("zfs_get_Hpo_user_unset", [*GET, "bulwark:missing", "fzsingle/a"])
    rec.step("zfs_get_Hpo_missing", [*GET, "all", "fzsingle/nope"], rc=1)
    rec.step("zfs_get_t", [*GET, "-t", "snapshot", "all", "fzsingle"], rc=2)
    rec.step("zfs_list_p", ["zfs", "list", "-H", "-p", "-o", "name", "fzsingle"], rc=2)
    rec.step("zfs_set_user", ["zfs", "set", "bulwark:note=hello world", "fzsingle/a"])
    rec.step("zfs_get_Hpo_user_set", [*GET, "bulwark:note,bulwark:client", "fzsingle/a", "fzsingle/a/child"])
    rec.step("zfs_set_user_empty", ["zfs", "set", "bulwark:note=", "fzsingle/a"], rc=2)
    rec.step("zfs_inherit_user", ["zfs", "inherit", "bulwark:note", "fzsingle/a"])
    rec.step("zfs_set_quota", ["zfs", "set", "refquota=52428800", "fzsingle/a"])
    rec.step("zfs_set_quota_small", ["zfs", "set", "quota=1024", "fzsingle/a"], rc=1)
    rec.step("zfs_set_readonly_prop", ["zfs", "set", "used=5", "fzsingle/a"], rc=1)
    rec.step("zfs_inherit_readonly_prop", ["zfs", "inherit", "used", "fzsingle/a"], rc=1)
    rec.step("zfs_inherit_quota", ["zfs", "inherit", "quota", "fzsingle/a"], rc=1)
    rec.step("zfs_set_bad_number", ["zfs", "set", "quota=lots", "fzsingle/a"], rc=1)
    rec.step("zfs_set_bad_value", ["zfs", "set", "compression=bogus", "fzsingle/a"], rc=1)
    rec.step("zfs_create_bad_prop", ["zfs", "create", "-o", "bogusprop=1", "fzsingle/c"], rc=1)
    rec.step("zfs_create_bad_char", ["zfs", "create", "fzsingle/bad%"], rc=1)
    rec.step("zfs_create_two_at", ["zfs", "create", "fzsingle/a@b@c"], rc=1)
    rec.step("zfs_create_too_long", ["zfs", "create", "fzsingle/" + "x" * 300], rc=1)
    rec.step("zfs_create_empty_component", ["zfs", "create", "fzsingle//x"], rc=1)
    rec.step("zfs_create_trailing_slash", ["zfs", "create", "fzsingle/x/"], rc=1)
    rec.step("zfs_snapshot_bad_char", ["zfs", "snapshot", "fzsingle/a@bad%"], rc=1)
    rec.step("zfs_create_no_parent", ["zfs", "create", "fzsingle/nope/x"], rc=1)
    rec.step("zfs_create_exists", ["zfs", "create", "fzsingle/a"], rc=1)
    rec.step("zfs_snapshot_exists", ["zfs", "snapshot", "fzsingle/a@s1"], rc=1)
    rec.step("zfs_snapshot_missing_ds", ["zfs", "snapshot", "fzsingle/nope@x"], rc=1)

    # -- holds ------------------------------------------------------------------------------------
    rec.step("zfs_hold", ["zfs", "hold", "keep", "fzsingle/a@s1"])
    rec.step("zfs_hold_exists", ["zfs", "hold", "keep", "fzsingle/a@s1"], rc=1)
    rec.step("zfs_holds_Hp", ["zfs", "holds", "-H", "-p", "fzsingle/a@s1"], rc=None)
    rec.step("zfs_get_Hpo_all_s1_held", [*GET, "all", "fzsingle/a@s1"])
    rec.step("zfs_destroy_held", ["zfs", "destroy", "fzsingle/a@s1"], rc=1)
    rec.step("zfs_release_missing", ["zfs", "release", "nokeep", "fzsingle/a@s1"], rc=1)
    rec.step("zfs_release", ["zfs", "release", "keep", "fzsingle/a@s1"])

    # -- destroy, rollback, clone, rename -----------------------------------------------------------
    rec.step("zfs_destroy_has_children", ["zfs", "destroy", "fzsingle/a"], rc=1)
    rec.step("zfs_rollback_newer", ["zfs", "rollback", "fzsingle/a@s1"], rc=1)
    rec.step("zfs_rollback_missing", ["zfs", "rollback", "fzsingle/a@nope"], rc=1)
    rec.step("zfs_rollback", ["zfs", "rollback", "fzsingle/a@s3"])
    rec.step("zfs_clone", ["zfs", "clone", "-o", "readonly=on", "fzsingle/a@s2", "fzsingle/cl"])
    rec.step("zfs_get_Hpo_all_cl", [*GET, "all", "fzsingle/cl"])
    rec.step("zfs_destroy_snap_clones", ["zfs", "destroy", "fzsingle/a@s2"], rc=1)
    rec.step("zfs_destroy_r_clones", ["zfs", "destroy", "-r", "fzsingle/a"], rc=1)
    rec.step("zfs_destroy_mounted_first", ["zfs", "destroy", "fzsingle/cl"], rc=1)
    rec.step_retrying_busy("zfs_destroy_mounted_again", ["zfs", "destroy", "fzsingle/cl"])
    rec.step("zfs_create_busy", ["zfs", "create", "fzsingle/busy"])
    (mnt / "fzsingle" / "busy" / "open").write_bytes(b"x")
    with (mnt / "fzsingle" / "busy" / "open").open("rb"):
        rec.step("zfs_unmount_busy", ["zfs", "unmount", "fzsingle/busy"], rc=1)
    rec.step("zfs_unmount", ["zfs", "unmount", "fzsingle/busy"])
    rec.step("zfs_unmount_not_mounted", ["zfs", "unmount", "fzsingle/busy"], rc=1)
    rec.step_retrying_busy("zfs_destroy_unmounted", ["zfs", "destroy", "fzsingle/busy"])
    rec.step("zfs_rename", ["zfs", "rename", "fzsingle/a@s3", "fzsingle/a@s3r"])
    rec.step("zfs_rename_exists", ["zfs", "rename", "fzsingle/a@s3r", "fzsingle/a@s2"], rc=1)

    # -- send and receive ------------------------------------------------------------------------
    full = runner.run(["zfs", "send", "fzsingle/a@s1"]).stdout
    incremental = runner.run(["zfs", "send", "-i", "fzsingle/a@s2", "fzsingle/a@s3r"]).stdout
    note_full = f"zfs send fzsingle/a@s1 ({len(full)} bytes)"
    rec.step("zfs_receive_full", ["zfs", "receive", "-u", "fzsingle/r"], stdin=full, stdin_note=note_full)
    rec.step("zfs_receive_exists", ["zfs", "receive", "-u", "fzsingle/r"], rc=1, stdin=full, stdin_note=note_full)
    rec.step(
        "zfs_receive_incremental_mismatch",
        ["zfs", "receive", "-u", "fzsingle/r"],
        rc=1,
        stdin=incremental,
        stdin_note=f"zfs send -i fzsingle/a@s2 fzsingle/a@s3r ({len(incremental)} bytes)",
    )
    rec.step(
        "zfs_receive_garbage",
        ["zfs", "receive", "-u", "fzsingle/g"],
        rc=1,
        stdin=os.urandom(65536),
        stdin_note="65536 random bytes",
    )
    rec.step(
        "zfs_receive_truncated",
        ["zfs", "receive", "-u", "fzsingle/t"],
        rc=1,
        stdin=full[:1000],
        stdin_note="the first 1000 bytes of " + note_full,
    )
    rec.step("zfs_receive_empty", ["zfs", "receive", "-u", "fzsingle/t"], rc=1, stdin=b"", stdin_note="0 bytes")
    rec.step(
        "zfs_receive_no_parent", ["zfs", "receive", "-u", "fzsingle/nope/x"], rc=1, stdin=full, stdin_note=note_full
    )
    rec.step("zfs_create_quota", ["zfs", "create", "-o", "quota=1048576", "fzsingle/q"])
    rec.step("zfs_receive_quota", ["zfs", "receive", "-u", "fzsingle/q/x"], rc=1, stdin=full, stdin_note=note_full)
    rec.step("zfs_send_missing", ["zfs", "send", "fzsingle/a@nope"], rc=1)
    rec.step("zfs_send_i_missing", ["zfs", "send", "-i", "fzsingle/a@nope", "fzsingle/a@s2"], rc=1)
    rec.step_retrying_busy("zfs_destroy_r", ["zfs", "destroy", "-r", "fzsingle/r"])

    # -- a mirror: degraded, resilvered, scrubbed, damaged and repaired ----------------------------
    m1 = sparse(work / "m1.img", 256 * MiB)
    m2 = sparse(work / "m2.img", 256 * MiB)
    create("zpool_create_mirror", "fzmirror", ["zpool", "create", "-m", mp("fzmirror"), "fzmirror", "mirror", m1, m2])
    rec.step("zpool_status_mirror", ["zpool", "status", "fzmirror"])
    rec.step("zpool_status_all", ["zpool", "status"])
    rec.step("zpool_list_Ho_all", ["zpool", "list", "-H", "-o", LIST_COLUMNS])
    rec.step("zpool_offline", ["zpool", "offline", "fzmirror", m2])
    rec.step("zpool_status_degraded", ["zpool", "status", "fzmirror"])
    rec.step("zpool_list_Ho_degraded", ["zpool", "list", "-H", "-o", LIST_COLUMNS, "fzmirror"])
    rec.step("zpool_offline_missing", ["zpool", "offline", "fzmirror", str(work / "nope.img")], rc=1)
    rec.step("zpool_online", ["zpool", "online", "fzmirror", m2])
    rec.step("zpool_status_resilvered", ["zpool", "status", "fzmirror"])
    rec.step("zpool_scrub", ["zpool", "scrub", "fzmirror"])
    rec.step("zpool_status_scrubbed", ["zpool", "status", "fzmirror"])
    rec.step("zfs_set_compression_off", ["zfs", "set", "compression=off", "fzmirror"])
    write_random(mnt / "fzmirror" / "data", 64 * MiB)
    rec.step_retrying_busy("zpool_export", ["zpool", "export", "fzmirror"])
    created.remove("fzmirror")
    with open(m2, "r+b") as fh:  # damage one side of the mirror, sparing its labels
        fh.seek(8 * MiB)
        for _ in range(160):
            fh.write(os.urandom(MiB))
    rec.step("zpool_import_d_list", ["zpool", "import", "-d", str(work)])
    rec.step("zpool_import_d", ["zpool", "import", "-d", str(work), "fzmirror"])
    created.append("fzmirror")
    rec.step("zpool_status_imported", ["zpool", "status", "fzmirror"])
    rec.step("zpool_scrub_repair", ["zpool", "scrub", "fzmirror"])
    rec.step("zpool_status_repaired", ["zpool", "status", "fzmirror"])
    rec.step("zpool_list_Ho_repaired", ["zpool", "list", "-H", "-o", LIST_COLUMNS, "fzmirror"])
    rec.step_retrying_busy("zpool_destroy_mirror", ["zpool", "destroy", "fzmirror"])
    created.remove("fzmirror")

    # -- raidz, and a pool with log, cache and spare groups ---------------------------------------
    r = [sparse(work / f"r{i}.img", 128 * MiB) for i in range(3)]
    create("zpool_create_raidz", "fzraidz", ["zpool", "create", "-m", mp("fzraidz"), "fzraidz", "raidz", *r])
    rec.step("zpool_status_raidz", ["zpool", "status", "fzraidz"])
    rec.step("zpool_list_Ho_raidz", ["zpool", "list", "-H", "-o", LIST_COLUMNS, "fzraidz"])
    rec.step_retrying_busy("zpool_destroy_raidz", ["zpool", "destroy", "fzraidz"])
    created.remove("fzraidz")
    g = [sparse(work / f"g{i}.img", 128 * MiB) for i in range(4)]
    # zfs-fuse refuses file cache devices ("cache device must be a disk or disk slice"): log and spare only.
    create(
        "zpool_create_groups",
        "fzgroups",
        ["zpool", "create", "-m", mp("fzgroups"), "fzgroups", "mirror", g[0], g[1], "log", g[2], "spare", g[3]],
    )
    rec.step("zpool_status_groups", ["zpool", "status", "fzgroups"])
    rec.step_retrying_busy("zpool_destroy_groups", ["zpool", "destroy", "fzgroups"])
    created.remove("fzgroups")

    # -- a scrub caught in progress, then stopped -------------------------------------------------
    # sha256 checksums and a cold page cache make the scrub slow enough to be watched and stopped.
    big = sparse(work / "big.img", 1024 * MiB)
    create(
        "zpool_create_big",
        "fzscrub",
        ["zpool", "create", "-m", mp("fzscrub"), "-O", "compression=off", "-O", "checksum=sha256", "fzscrub", big],
    )
    write_random(mnt / "fzscrub" / "data", 600 * MiB)
    rec.step_retrying_busy("zpool_export_big", ["zpool", "export", "fzscrub"])
    created.remove("fzscrub")
    Path("/proc/sys/vm/drop_caches").write_text("1\n")
    rec.step("zpool_import_big", ["zpool", "import", "-d", str(work), "fzscrub"])
    created.append("fzscrub")
    # zfs-fuse's 'zpool scrub' returns only when the scrub has finished; watch it from here meanwhile,
    # and once it is under way (a stop asked for in its first moments is not honoured) stop it. The
    # scrub sometimes ends while 'zpool scrub -s' waits; then scrub again (at most five times).
    in_progress: CommandResult | None = None
    for _attempt in range(5):
        stop = stopped = None
        with runner.stream(["zpool", "scrub", "fzscrub"]):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = runner.run(["zpool", "status", "fzscrub"])
                progress = re.search(r"scrub in progress for \S+, ([\d.]+)% done", status.out)
                if progress and float(progress.group(1)) >= 10:
                    in_progress = status
                    stop = runner.run(["zpool", "scrub", "-s", "fzscrub"])
                    stopped = runner.run(["zpool", "status", "fzscrub"])
                    break
                if "scrub completed" in status.out:
                    break
        if stop is not None and stopped is not None and "scrub stopped" in stopped.out:
            assert in_progress is not None
            rec.save("zpool_status_scrub_in_progress", in_progress)
            rec.save("zpool_scrub_stop", stop)
            rec.save("zpool_status_scrub_stopped", stopped)
            break
    else:
        if in_progress is not None:
            rec.save("zpool_status_scrub_in_progress", in_progress)
        print("NOTE: no scrub was seen stopped; that recording was not made", file=sys.stderr)
    if in_progress is None:
        print("NOTE: no scrub was seen in progress; that recording was not made", file=sys.stderr)
    rec.step_retrying_busy("zpool_destroy_big", ["zpool", "destroy", "fzscrub"])
    created.remove("fzscrub")

    rec.step_retrying_busy("zpool_destroy_single", ["zpool", "destroy", "fzsingle"])
    created.remove("fzsingle")
    rec.step("zpool_destroy_missing", ["zpool", "destroy", "fzsingle"], rc=1)


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root (zfs-fuse mounts FUSE filesystems)")
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "zfs-fuse-0.7.0"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.out"):
        old.unlink()
    for old in out.glob("*.err"):
        old.unlink()
    daemon_was_running = zpool_answers()
    work = Path(tempfile.mkdtemp(prefix="bwrec-"))
    rec = Recorder(out)
    created: list[str] = []
    service: Service | None = None
    try:
        # Without a daemon: run the commands where the daemon's socket directory is empty (a private
        # mount namespace with a fresh tmpfs over /run/zfs), so that a daemon running here is untouched.
        for name, command in (
            ("zpool_list_no_daemon", f"zpool list -H -o {LIST_COLUMNS}"),
            ("zfs_list_no_daemon", "zfs list -H -o name"),
        ):
            script = f"mount -t tmpfs tmpfs /run/zfs && exec {command}"
            rec.step(name, ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], rc=1)
        if not daemon_was_running:
            print("(starting zfs-fuse)")
            service = start_daemon(work / "zfs-fuse.log")
        record(rec, work, created)
    finally:
        rec.write_index()
        for pool in reversed(created):
            for _ in range(10):
                if runner.run(["zpool", "destroy", "-f", pool], ok_codes=range(256)).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                print(f"WARNING: could not destroy pool {pool}", file=sys.stderr)
        if service is not None:
            print("(stopping zfs-fuse)")
            service.stop(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
