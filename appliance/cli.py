"""The ``bulwark`` admin command.

Exit status 0 on success; on failure the error family's stable status (see
:mod:`appliance.system.errors`) and one line on stderr saying what went wrong and what to do.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

import appliance
from appliance import provision, server, users
from appliance.daemon import Daemon, daemon_state
from appliance.disks import pool as pool_service
from appliance.jobs import base as jobs_base
from appliance.jobs import queue
from appliance.store import Store
from appliance.system import logs, settings
from appliance.system.errors import BulwarkError, InvalidInput
from appliance.system.paths import Paths
from appliance.system.runner import local_runner
from appliance.zfs import units

Handler = Callable[[argparse.Namespace, Paths], int]


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def _open_store(paths: Paths) -> Store:
    paths.require_initialized()
    return Store.open(paths.db)


# --- init / run / daemon -----------------------------------------------------------------------


def cmd_init(args: argparse.Namespace, paths: Paths) -> int:
    devices = [d for item in args.devices for d in item.split(",") if d]
    result = provision.initialize(
        paths,
        local_runner(),
        pool_name=args.pool_name,
        devices=devices,
        layout=args.layout,
        pool_file_size=args.pool_file_size,
        hostname=args.hostname,
        web_port=args.port,
        use_existing_pool=args.use_existing_pool,
    )
    if args.json:
        _print_json(
            {
                "data_dir": str(result.data_dir),
                "pool": result.pool.to_dict(),
                "pool_created": result.pool_created,
                "admin": {"username": result.admin_username, "one_time_password": result.admin_password},
                "tls_fingerprint_sha256": result.cert_fingerprint,
                "zfs": {"implementation": result.implementation, "how": result.zfs},
            }
        )
        return 0
    pool = result.pool
    print(f"Bulwark initialized in {result.data_dir}")
    print(f"  ZFS:       {result.implementation}" + (" (zfs-fuse started)" if result.zfs == "started" else ""))
    print(
        f"  Pool:      {pool.name} {pool.health}, {units.format_size(pool.size_bytes)}"
        + (" (created)" if result.pool_created else " (existing)")
    )
    print(f"  TLS:       self-signed, SHA-256 {result.cert_fingerprint}")
    print(f"  Admin:     {result.admin_username}")
    print(f"  One-time password: {result.admin_password}")
    print("  (shown only this once; you must change it at first login)")
    return 0


def _web_options(args: argparse.Namespace, paths: Paths) -> server.WebOptions:
    store = _open_store(paths)
    try:
        config = provision.load_settings(paths, store)
    finally:
        store.close()
    return server.WebOptions(port=args.port or config.web_port, bind=args.bind, workers=args.web_workers)


def cmd_run(args: argparse.Namespace, paths: Paths) -> int:
    paths.require_initialized()  # before the log file, which would create the data dir
    logs.configure(args.log_level or "INFO", paths.log_dir / "bulwark.log")
    return server.serve(paths, local_runner(), _web_options(args, paths))


def cmd_web(args: argparse.Namespace, paths: Paths) -> int:
    """The web UI alone under gunicorn (the systemd unit's entry point)."""
    paths.require_initialized()
    logs.configure(args.log_level or "INFO")
    return server.serve_web_only(paths, local_runner(), _web_options(args, paths))


def cmd_daemon(args: argparse.Namespace, paths: Paths) -> int:
    """bulwarkd alone (the systemd unit's entry point; the web UI runs in its own unit)."""
    paths.require_initialized()  # before the log file, which would create the data dir
    logs.configure(args.log_level or "INFO", paths.log_dir / "bulwarkd.log")
    store = _open_store(paths)
    config = provision.load_settings(paths, store)
    runner = local_runner()
    zfs, _ = provision.connect_zfs(paths, runner)
    provision.bring_pool_online(paths, zfs, config)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    daemon = Daemon(store=store, zfs=zfs, pool_name=config.pool.name, runner=runner)
    daemon.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        daemon.stop()
        store.close()
    return 0


# --- status ------------------------------------------------------------------------------------


def status_report(paths: Paths) -> dict[str, Any]:
    store = _open_store(paths)
    try:
        config = provision.load_settings(paths, store)
        runner = local_runner()
        report: dict[str, Any] = {
            "version": appliance.__version__,
            "data_dir": str(paths.data_dir),
            "hostname": config.hostname,
            "web": {"port": config.web_port},
            "daemon": daemon_state(store),
            "jobs": queue.counts(store),
        }
        from appliance.zfs import service
        from appliance.zfs.host import ZfsHost

        if not service.kernel_zfs_loaded() and not service.responding(runner):
            report["zfs"] = {"implementation": None, "running": False}
            report["pool"] = {"name": config.pool.name, "health": "UNAVAILABLE"}
            return report
        zfs = ZfsHost.detect(runner)
        report["zfs"] = {**zfs.caps.to_dict(), "running": True}
        try:
            summary = pool_service.summary(zfs, config.pool.name)
        except BulwarkError as exc:
            report["pool"] = {"name": config.pool.name, "health": "UNAVAILABLE", "error": exc.to_dict()}
        else:
            pool = summary.pool
            report["pool"] = {
                "name": pool.name,
                "health": pool.health,
                "size_bytes": pool.size_bytes,
                "alloc_bytes": pool.alloc_bytes,
                "free_bytes": pool.free_bytes,
                "sizes_exact": pool.sizes_exact,
                "scan": summary.status.scan.to_dict(),
                "devices": [
                    {
                        "name": d.name,
                        "state": d.state,
                        "read_errors": d.read_errors,
                        "write_errors": d.write_errors,
                        "checksum_errors": d.checksum_errors,
                    }
                    for d in summary.status.devices()
                ],
            }
        return report
    finally:
        store.close()


def cmd_status(args: argparse.Namespace, paths: Paths) -> int:
    report = status_report(paths)
    if args.json:
        _print_json(report)
        return 0
    pool = report["pool"]
    print(f"Bulwark {report['version']} on {report['hostname']} ({report['data_dir']})")
    zfs = report["zfs"]
    print(f"  ZFS:    {zfs.get('implementation') or 'not running'} {zfs.get('version', '')}".rstrip())
    if "size_bytes" in pool:
        used = 100.0 * pool["alloc_bytes"] / pool["size_bytes"] if pool["size_bytes"] else 0.0
        print(
            f"  Pool:   {pool['name']} {pool['health']}, {units.format_size(pool['alloc_bytes'])} of "
            f"{units.format_size(pool['size_bytes'])} used ({used:.0f}%)"
        )
    else:
        print(f"  Pool:   {pool['name']} {pool['health']}")
    daemon = report["daemon"]
    print(f"  Daemon: {'running (pid ' + str(daemon['pid']) + ')' if daemon['running'] else 'not running'}")
    print(f"  Web:    port {report['web']['port']}")
    active = {k: v for k, v in report["jobs"].items() if v}
    print(f"  Jobs:   {', '.join(f'{v} {k}' for k, v in active.items()) or 'none'}")
    return 0


# --- pool and jobs -----------------------------------------------------------------------------


def _progress_line(job: queue.JobRecord) -> str:
    pct = job.percent
    eta = job.eta_seconds()
    bar = ""
    if pct is not None:
        filled = int(pct / 5)
        bar = "[" + "#" * filled + "." * (20 - filled) + f"] {pct:5.1f}%"
    eta_text = f" ETA {int(eta // 60)}m{int(eta % 60):02d}s" if eta is not None else ""
    return f"job {job.id} {job.kind} {job.state} {bar}{eta_text} {job.progress_text or ''}".rstrip()


def wait_for_job(store: Store, job_id: int, *, show: bool) -> queue.JobRecord:
    tty = sys.stderr.isatty()
    last = ""
    while True:
        job = queue.get(store, job_id)
        line = _progress_line(job)
        if show and line != last:
            sys.stderr.write(("\r\033[K" if tty else "") + line + ("" if tty else "\n"))
            sys.stderr.flush()
            last = line
        if job.state in queue.FINAL_STATES:
            if show and tty:
                sys.stderr.write("\n")
            return job
        time.sleep(0.5)


def _finish_job_command(store: Store, job_id: int, args: argparse.Namespace) -> int:
    if not args.wait:
        if args.json:
            _print_json({"job": job_id})
        else:
            print(f"job {job_id} queued (follow it with 'bulwark job show {job_id}')")
        return 0
    job = wait_for_job(store, job_id, show=not args.json)
    if args.json:
        _print_json(job.to_dict())
    if job.state != "succeeded":
        err = job.error or {}
        raise JobFailedError(job_id, job.state, err.get("message", ""))
    if not args.json:
        print(f"job {job_id} succeeded: {json.dumps(job.result)}")
    return 0


class JobFailedError(BulwarkError):
    """Job {} ended {}: {}"""

    code = "job_failed"
    exit_status = 15
    hint = "See 'bulwark job show ID' for its log."


def cmd_pool_scrub(args: argparse.Namespace, paths: Paths) -> int:
    store = _open_store(paths)
    try:
        config = provision.load_settings(paths, store)
        job_id = jobs_base.submit(store, "pool.scrub", {"pool": config.pool.name}, created_by="cli")
        store.audit("cli", "pool.scrub", config.pool.name, job=job_id)
        return _finish_job_command(store, job_id, args)
    finally:
        store.close()


def cmd_job_list(args: argparse.Namespace, paths: Paths) -> int:
    store = _open_store(paths)
    try:
        jobs = queue.list_jobs(store, limit=args.limit)
        if args.json:
            _print_json([j.to_dict() for j in jobs])
        else:
            for job in jobs:
                print(_progress_line(job))
        return 0
    finally:
        store.close()


def cmd_job_show(args: argparse.Namespace, paths: Paths) -> int:
    store = _open_store(paths)
    try:
        job = queue.get(store, args.id)
        if args.json:
            _print_json({**job.to_dict(), "log": queue.log_lines(store, job.id)})
        else:
            print(_progress_line(job))
            for line in queue.log_lines(store, job.id):
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(line["at"]))
                print(f"  {stamp} {line['level']:7} {line['message']}")
        return 0
    finally:
        store.close()


def cmd_job_cancel(args: argparse.Namespace, paths: Paths) -> int:
    store = _open_store(paths)
    try:
        state = queue.request_cancel(store, args.id, by="cli")
        store.audit("cli", "job.cancel", str(args.id))
        print(f"job {args.id}: {'cancelled' if state == 'cancelled' else 'cancel requested'}")
        return 0
    finally:
        store.close()


# --- users -------------------------------------------------------------------------------------


def cmd_user_reset_password(args: argparse.Namespace, paths: Paths) -> int:
    """Give a user a new one-time password (recovery when the admin is locked out)."""
    store = _open_store(paths)
    try:
        password = users.generate_password()
        users.set_password(store, users.check_username(args.username), password, must_change=True)
        store.audit("cli", "user.reset_password", args.username)
        print(f"One-time password for {args.username}: {password}")
        print("(shown only this once; it must be changed at the next login)")
        return 0
    finally:
        store.close()


def cmd_user_list(args: argparse.Namespace, paths: Paths) -> int:
    store = _open_store(paths)
    try:
        found = users.list_users(store)
        if args.json:
            _print_json([{"username": u.username, "role": u.role} for u in found])
        else:
            for u in found:
                print(f"{u.username}\t{u.role}")
        return 0
    finally:
        store.close()


# --- parser ------------------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        return settings.check_port(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    except InvalidInput as exc:  # argparse reports only its own error types; anything else is a traceback
        raise argparse.ArgumentTypeError(str(exc.args[0])) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bulwark", description="Bulwark backup appliance administration")
    parser.add_argument("--version", action="version", version=f"bulwark {appliance.__version__}")
    parser.add_argument("--data-dir", help="state directory (default $BULWARK_DATA_DIR or /var/lib/bulwark)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (default) or ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str, parent: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = add("init", cmd_init, "set up the appliance: data dir, database, TLS, admin account, pool")
    p.add_argument("--pool-name", default=provision.DEFAULT_POOL_NAME)
    p.add_argument(
        "--devices",
        action="append",
        default=[],
        metavar="DEV[,DEV…]",
        help="disks for the pool (default: a file-backed pool in the data dir)",
    )
    p.add_argument("--layout", choices=["single", "stripe", "mirror", "raidz", "raidz2", "raidz3"])
    p.add_argument(
        "--pool-file-size",
        default=provision.DEFAULT_POOL_FILE_SIZE,
        help="size of the sparse pool file (default %(default)s)",
    )
    p.add_argument("--hostname", help="name for the TLS certificate and UI (default: this machine's)")
    p.add_argument("--port", type=_port, default=settings.DEFAULT_WEB_PORT, help="HTTPS port (default 8443)")
    p.add_argument("--use-existing-pool", action="store_true", help="adopt a pool of that name that exists")
    p.add_argument("--json", action="store_true")

    p = add("run", cmd_run, "run the appliance in the foreground (daemon + web UI); Ctrl-C stops it")
    p.add_argument("--port", type=_port, help="HTTPS port (default: the one set at init, 8443)")
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default all)")  # noqa: S104
    p.add_argument("--web-workers", type=int, default=2)

    p = add("web", cmd_web, "run the web UI alone under gunicorn, for the systemd unit")
    p.add_argument("--port", type=_port, help="HTTPS port (default: the one set at init, 8443)")
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default all)")  # noqa: S104
    p.add_argument("--web-workers", type=int, default=2)

    add("daemon", cmd_daemon, "run bulwarkd alone (job runner and scheduler), for the systemd unit")

    p = add("status", cmd_status, "show the appliance's state")
    p.add_argument("--json", action="store_true")

    pool = add("pool", lambda a, p: 2, "the storage pool")
    pool_sub = pool.add_subparsers(dest="pool_command", required=True, metavar="SUBCOMMAND")
    p = add("scrub", cmd_pool_scrub, "verify every block of the pool (a job)", pool_sub)
    p.add_argument("--wait", action="store_true", help="follow the job to its end with a progress line")
    p.add_argument("--json", action="store_true")

    job = add("job", lambda a, p: 2, "jobs run by the daemon")
    job_sub = job.add_subparsers(dest="job_command", required=True, metavar="SUBCOMMAND")
    p = add("list", cmd_job_list, "recent jobs, newest first", job_sub)
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p = add("show", cmd_job_show, "one job with its log", job_sub)
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p = add("cancel", cmd_job_cancel, "cancel a queued job or stop a running one", job_sub)
    p.add_argument("id", type=int)

    user = add("user", lambda a, p: 2, "local user accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="SUBCOMMAND")
    p = add("list", cmd_user_list, "list users", user_sub)
    p.add_argument("--json", action="store_true")
    p = add("reset-password", cmd_user_reset_password, "give a user a new one-time password", user_sub)
    p.add_argument("username")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in ("run", "daemon"):
        logs.configure(args.log_level)
    try:
        paths = Paths.resolve(args.data_dir)
        handler: Handler = args.handler
        return handler(args, paths)
    except BulwarkError as exc:
        sys.stderr.write(f"bulwark: error: {exc.message} — {exc.hint}\n")
        return exc.exit_status
    except KeyboardInterrupt:
        sys.stderr.write("bulwark: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
