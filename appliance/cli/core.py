"""Setting up and running the appliance: ``init``, ``run``, ``web``, ``daemon``, ``status``."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any

from appliance import provision, server, status
from appliance.cli.common import add_command, open_store, port, print_json
from appliance.daemon import Daemon
from appliance.system import logs, settings
from appliance.system.paths import Paths
from appliance.system.runner import local_runner
from appliance.zfs import units


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
        print_json(
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
    store = open_store(paths)
    try:
        config = provision.load_settings(paths, store)
    finally:
        store.close()
    return server.WebOptions(
        port=args.port or config.web_port,
        bind=args.bind,
        workers=args.web_workers,
        tunnel_port=config.tunnel_listen_port,
    )


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
    store = open_store(paths)
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


def cmd_status(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        report = status.report(paths, store, local_runner())
    finally:
        store.close()
    if args.json:
        print_json(report)
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


def register(sub: Any) -> None:
    p = add_command(sub, "init", cmd_init, "set up the appliance: data dir, database, TLS, admin account, pool")
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
    p.add_argument("--port", type=port, default=settings.DEFAULT_WEB_PORT, help="HTTPS port (default 8443)")
    p.add_argument("--use-existing-pool", action="store_true", help="adopt a pool of that name that exists")
    p.add_argument("--json", action="store_true")

    for name, handler, text in (
        ("run", cmd_run, "run the appliance in the foreground (daemon + web UI); Ctrl-C stops it"),
        ("web", cmd_web, "run the web UI alone under gunicorn, for the systemd unit"),
    ):
        p = add_command(sub, name, handler, text)
        p.add_argument("--port", type=port, help="HTTPS port (default: the one set at init, 8443)")
        p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default all)")  # noqa: S104
        p.add_argument("--web-workers", type=int, default=2)

    add_command(sub, "daemon", cmd_daemon, "run bulwarkd alone (job runner and scheduler), for the systemd unit")

    p = add_command(sub, "status", cmd_status, "show the appliance's state")
    p.add_argument("--json", action="store_true")
