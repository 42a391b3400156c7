"""Clients: ``client add|list|show|set|remove|reattach``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from appliance.cli.agents import register_client_commands
from appliance.cli.common import JobFailedError, add_command, add_group, open_store, print_json, progress_line
from appliance.clients import overview, removal, service
from appliance.clients.errors import DaemonNotRunning
from appliance.clients.model import ClientSettings
from appliance.daemon import daemon_state
from appliance.jobs import queue
from appliance.store import Store
from appliance.system.durations import describe_age, format_duration
from appliance.system.errors import BulwarkError
from appliance.system.paths import Paths
from appliance.system.runner import local_runner
from appliance.zfs import units
from appliance.zfs.host import ZfsHost

ACTOR = "cli"


def zfs_host() -> ZfsHost:
    """The local ZFS (never started from here: ``bulwark run`` or the zfs-fuse service does that)."""
    return ZfsHost.detect(local_runner())


def when(epoch: float | None) -> str:
    return "-" if not epoch else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def follow(store: Store, job_id: int, args: argparse.Namespace) -> int:
    """Print the queued job, or with ``--wait`` follow it to its end. Waiting needs a live daemon: without a
    fresh heartbeat, say so instead of waiting forever (exit 16; the job stays queued)."""
    if not getattr(args, "wait", False):
        if args.json:
            print_json({"job": job_id})
        else:
            print(f"job {job_id} queued (follow it with 'bulwark job show {job_id}')")
        return 0
    tty = sys.stderr.isatty() and not args.json
    last, checked = "", 0.0
    while True:
        job = queue.get(store, job_id)
        if job.state in queue.FINAL_STATES:
            break
        if time.monotonic() - checked > 5.0:
            checked = time.monotonic()
            if not daemon_state(store)["running"]:
                raise DaemonNotRunning(job_id)
        line = progress_line(job)
        if not args.json and line != last:
            sys.stderr.write(("\r\033[K" if tty else "") + line + ("" if tty else "\n"))
            sys.stderr.flush()
            last = line
        time.sleep(0.3)
    if tty:
        sys.stderr.write("\n")
    if args.json:
        print_json({**job.to_dict(), "log": queue.log_lines(store, job_id)})
    if job.state != "succeeded":
        raise JobFailedError(job_id, job.state, (job.error or {}).get("message", ""))
    if not args.json:
        print(f"job {job_id} succeeded")
    return 0


def _settings_args(args: argparse.Namespace) -> dict[str, Any]:
    names = {"quota": "quota", "rpo": "rpo", "schedule": "schedule", "window": "window", "lock": "lock"}
    out = {key: getattr(args, attr) for key, attr in names.items() if getattr(args, attr) is not None}
    if args.retention is not None:
        out["retention"] = args.retention
    if args.notes is not None:
        out["notes"] = args.notes
    return out


def cmd_add(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        raw = _settings_args(args)
        settings = ClientSettings.build(
            kind=args.kind,
            quota=raw.get("quota"),
            rpo=raw.get("rpo"),
            schedule=raw.get("schedule"),
            window=raw.get("window"),
            retention_spec=raw.get("retention"),
            lock=raw.get("lock"),
            notes=raw.get("notes"),
        )
        client = service.create_client(store, zfs_host(), args.name, settings, by=ACTOR)
        if args.json:
            print_json(client.to_dict())
        else:
            print(f"client {client.name} added ({client.kind}); dataset {client.dataset}")
        return 0
    finally:
        store.close()


def cmd_set(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        changes = _settings_args(args)
        if args.kind is not None:
            changes["kind"] = args.kind
        client = service.update_client(store, zfs_host(), args.name, by=ACTOR, **changes)
        if args.json:
            print_json(client.to_dict())
        else:
            print(f"client {client.name} updated")
        return 0
    finally:
        store.close()


def cmd_list(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        try:
            zfs: ZfsHost | None = zfs_host()
        except BulwarkError:
            zfs = None  # the list still shows what the database knows
        rows = [o.to_dict() for o in overview.overviews(store, zfs, include_removed=args.all)]
        if args.json:
            print_json(rows)
            return 0
        print(f"{'NAME':20} {'KIND':6} {'STATE':8} {'USED':>10} {'POINTS':>6}  {'RPO':14} RETENTION")
        for r in rows:
            used = units.format_size(r["usage"]["used_bytes"]) if r["usage"] else "?"
            status = r["rpo_status"] or {}
            age = status.get("age_seconds")
            rpo_text = f"{status.get('state', '?')}" + (f" {describe_age(age)}" if age is not None else "")
            points = "?" if r["points"] is None else str(r["points"])
            print(f"{r['name']:20} {r['kind']:6} {r['state']:8} {used:>10} {points:>6}  {rpo_text:14} {r['retention']}")
        return 0
    finally:
        store.close()


def cmd_show(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        info = overview.overview(store, zfs_host(), args.name).to_dict()
        if args.json:
            print_json(info)
            return 0
        print(f"client {info['name']} ({info['kind']}, {info['state']}), dataset {info['dataset']}")
        quota = info["quota_bytes"]
        print(f"  quota:     {units.format_size(quota) if quota else 'none'}")
        print(f"  schedule:  {info['schedule']}" + (f" within {info['window']}" if info["window"] else ""))
        print(f"  next run:  {when(info['schedule_status']['next_run'])}")
        print(f"  retention: {info['retention']}")
        print(f"  lock:      {info['lock']}  RPO target: {format_duration(info['rpo_seconds'])}")
        if info["rpo_status"] is not None:
            print(f"  RPO:       {info['rpo_status']['message']} [{info['rpo_status']['state']}]")
            print(f"  points:    {info['points']}, using {units.format_size(info['usage']['used_bytes'])}")
        if info["notes"]:
            print("  notes:     " + info["notes"].replace("\n", "\n             "))
        return 0
    finally:
        store.close()


def cmd_remove(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        zfs = zfs_host()
        if args.destroy_data:
            client = service.get_client(store, args.name)
            if client.active:
                removal.remove_client(store, zfs, args.name, by=ACTOR)
            removal.destroy_client(store, zfs, args.name, confirm=args.confirm or "", by=ACTOR)
            message = f"client {args.name} and all its data destroyed"
        else:
            removal.remove_client(store, zfs, args.name, by=ACTOR)
            message = f"client {args.name} removed; its data is kept ('bulwark client reattach {args.name}')"
        if args.json:
            print_json({"client": args.name, "destroyed": bool(args.destroy_data)})
        else:
            print(message)
        return 0
    finally:
        store.close()


def cmd_reattach(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        client = removal.reattach_client(store, zfs_host(), args.name, by=ACTOR)
        if args.json:
            print_json(client.to_dict())
        else:
            print(f"client {client.name} is active again")
        return 0
    finally:
        store.close()


def _setting_options(p: argparse.ArgumentParser, *, kind_required: bool) -> None:
    p.add_argument("--kind", choices=["smb", "agent", "both"], required=kind_required, help="how it is backed up")
    p.add_argument("--quota", help="space limit for its data and points, e.g. 500G ('none' to clear)")
    p.add_argument("--rpo", help="recovery point objective: the oldest the last good point may be, e.g. 1h, 24h")
    p.add_argument("--schedule", help="'off', 'every 15m' (at least 5m) or a cron expression ('0 */4 * * *')")
    p.add_argument("--window", help="backup window, e.g. '20:00-06:00' or 'mon-fri 08:00-18:00' ('any' to clear)")
    p.add_argument("--retention", metavar="SPEC", help="e.g. last=24,daily=7,weekly=4,monthly=12,yearly=3")
    p.add_argument("--lock", help="immutability period of new points, e.g. 7d ('0' for none)")
    p.add_argument("--notes")
    p.add_argument("--json", action="store_true")


def register(sub: Any) -> None:
    client = add_group(sub, "client", "protected machines")
    p = add_command(client, "add", cmd_add, "add a client: its datasets, settings and schedule")
    p.add_argument("name")
    _setting_options(p, kind_required=True)
    p = add_command(client, "set", cmd_set, "change a client's settings")
    p.add_argument("name")
    _setting_options(p, kind_required=False)
    p = add_command(client, "list", cmd_list, "clients with usage, points and RPO state")
    p.add_argument("--all", action="store_true", help="include removed clients")
    p.add_argument("--json", action="store_true")
    p = add_command(client, "show", cmd_show, "one client in detail")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p = add_command(client, "remove", cmd_remove, "remove a client; its data is kept unless --destroy-data")
    p.add_argument("name")
    p.add_argument("--destroy-data", action="store_true", help="also destroy its datasets and every point")
    p.add_argument("--confirm", metavar="NAME", help="with --destroy-data: the client's name, typed again")
    p.add_argument("--json", action="store_true")
    register_client_commands(client)
    from appliance.cli.smb import register_client_commands as smb_client_commands  # (smb imports this module)

    smb_client_commands(client)
    p = add_command(client, "reattach", cmd_reattach, "bring a removed client (or one found on the pool) back")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
