"""Recovery points: ``snapshot create|list|pin|unpin|destroy``, and ``prune [CLIENT] [--dry-run]``."""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli.clients import ACTOR, follow, when, zfs_host
from appliance.cli.common import add_command, add_group, open_store, print_json
from appliance.clients import jobs, points, service
from appliance.clients.points import RecoveryPoint
from appliance.system.paths import Paths
from appliance.zfs import units


def _line(p: RecoveryPoint) -> str:
    flags = ("pinned " if p.pinned else "") + (f"locked-until {when(p.locked_until)}" if p.locked() else "")
    return (
        f"{when(p.created_at)}  {p.id:48} {p.source:8} {units.format_size(p.used_bytes):>10} "
        f"{units.format_size(p.referenced_bytes):>10}  {p.verified:10} {flags}".rstrip()
    )


def cmd_create(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        job = jobs.submit_snapshot(store, args.client, by=ACTOR, areas=args.dataset or None)
        return follow(store, job, args)
    finally:
        store.close()


def cmd_list(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        timeline = points.list_points(store, zfs_host(), args.client)
        if args.json:
            print_json([p.to_dict() for p in timeline])
            return 0
        print(f"{'CREATED':19}  {'POINT':48} {'SOURCE':8} {'USED':>10} {'REFER':>10}  {'VERIFIED':10} FLAGS")
        for p in timeline:
            print(_line(p))
        return 0
    finally:
        store.close()


def _point_command(action: str) -> Any:
    def handler(args: argparse.Namespace, paths: Paths) -> int:
        store = open_store(paths)
        try:
            zfs = zfs_host()
            if action == "pin":
                point = points.pin(store, zfs, args.client, args.point, by=ACTOR)
            elif action == "unpin":
                point = points.unpin(store, zfs, args.client, args.point, by=ACTOR)
            else:
                point = points.destroy_point(store, zfs, args.client, args.point, by=ACTOR)
            if args.json:
                print_json({**point.to_dict(), "action": action})
            else:
                print(f"{args.client} {point.id}: {'destroyed' if action == 'destroy' else action + 'ned'}")
            return 0
        finally:
            store.close()

    return handler


def cmd_prune(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        names = [args.client] if args.client else [c.name for c in service.list_clients(store)]
        if args.dry_run:
            zfs = zfs_host()
            plans = [points.prune_plan(store, zfs, name) for name in names]
            if args.json:
                print_json([plan.to_dict() for plan in plans])
                return 0
            for plan in plans:
                print(plan.summary() + (":" if plan.destroy else ""))
                for p in plan.destroy:
                    print("  " + _line(p))
            return 0
        job_ids = [jobs.submit_prune(store, name, by=ACTOR) for name in names]
        if len(job_ids) == 1:
            return follow(store, job_ids[0], args)
        if args.json and not args.wait:
            print_json({"jobs": job_ids})
            return 0
        status = 0
        for job_id in job_ids:
            status = max(status, follow(store, job_id, args))
        return status
    finally:
        store.close()


def register(sub: Any) -> None:
    snap = add_group(sub, "snapshot", "recovery points of clients")
    p = add_command(snap, "create", cmd_create, "take recovery points of a client now (a job)")
    p.add_argument("client")
    p.add_argument(
        "--dataset", action="append", metavar="AREA", help="only this dataset: share, files or images/N (repeatable)"
    )
    p.add_argument("--wait", action="store_true", help="follow the job to its end (needs the daemon running)")
    p.add_argument("--json", action="store_true")
    p = add_command(snap, "list", cmd_list, "a client's recovery points, newest first, from all its datasets")
    p.add_argument("client")
    p.add_argument("--json", action="store_true")
    for action, text in (
        ("pin", "keep a point forever: retention skips it and nothing can destroy it until unpinned"),
        ("unpin", "let retention manage a pinned point again"),
        ("destroy", "destroy one point (refused for pinned and locked points)"),
    ):
        p = add_command(snap, action, _point_command(action), text)
        p.add_argument("client")
        p.add_argument("point", help="AREA@NAME (e.g. share@bw-20260126T143400Z-manual) or NAME")
        p.add_argument("--json", action="store_true")

    p = add_command(sub, "prune", cmd_prune, "remove the points that retention policies no longer keep (a job)")
    p.add_argument("client", nargs="?", help="one client (default: every active client)")
    p.add_argument("--dry-run", action="store_true", help="only show which points would be removed")
    p.add_argument("--wait", action="store_true", help="follow the job(s) to the end (needs the daemon running)")
    p.add_argument("--json", action="store_true")
