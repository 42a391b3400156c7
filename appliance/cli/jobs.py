"""Jobs and the pool: ``pool scrub``, ``job list|show|cancel``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from appliance import provision
from appliance.cli.common import add_command, add_group, finish_job_command, open_store, print_json, progress_line
from appliance.disks import scrubs
from appliance.jobs import base as jobs_base
from appliance.jobs import queue
from appliance.system.paths import Paths
from appliance.system.runner import local_runner


def cmd_pool_scrub(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        config = provision.load_settings(paths, store)
        job_id = jobs_base.submit(store, "pool.scrub", {"pool": config.pool.name}, created_by="cli")
        store.audit("cli", "pool.scrub", config.pool.name, job=job_id)
        return finish_job_command(store, job_id, args)
    finally:
        store.close()


def cmd_pool_scrub_schedule(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        config = provision.load_settings(paths, store)
        if args.every_days is not None:
            scrubs.set_every_days(store, args.every_days)
            store.audit("cli", "pool.scrub_schedule", config.pool.name, every_days=args.every_days)
        zfs, _ = provision.connect_zfs(paths, local_runner())
        last = scrubs.last_scrub(store, zfs, config.pool.name)
        due = scrubs.next_scrub(store, zfs, config.pool.name)
        report = {"pool": config.pool.name, "every_days": scrubs.every_days(store), "last": last, "next": due}
        if args.json:
            print_json(report)
        else:
            when = "never scheduled" if report["every_days"] == 0 else f"every {report['every_days']} days"
            print(f"Scrubs of {config.pool.name}: {when}; last {_when(last, 'never')}; next {_when(due, 'not set')}")
        return 0
    finally:
        store.close()


def _when(at: float | None, none: str) -> str:
    return none if at is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


def cmd_job_list(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        jobs = queue.list_jobs(store, limit=args.limit)
        if args.json:
            print_json([j.to_dict() for j in jobs])
        else:
            for job in jobs:
                print(progress_line(job))
        return 0
    finally:
        store.close()


def cmd_job_show(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        job = queue.get(store, args.id)
        if args.json:
            print_json({**job.to_dict(), "log": queue.log_lines(store, job.id)})
        else:
            print(progress_line(job))
            for line in queue.log_lines(store, job.id):
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(line["at"]))
                print(f"  {stamp} {line['level']:7} {line['message']}")
        return 0
    finally:
        store.close()


def cmd_job_cancel(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        state = queue.request_cancel(store, args.id, by="cli")
        store.audit("cli", "job.cancel", str(args.id))
        print(f"job {args.id}: {'cancelled' if state == 'cancelled' else 'cancel requested'}")
        return 0
    finally:
        store.close()


def register(sub: Any) -> None:
    pool = add_group(sub, "pool", "the storage pool")
    p = add_command(pool, "scrub", cmd_pool_scrub, "verify every block of the pool (a job)")
    p.add_argument("--wait", action="store_true", help="follow the job to its end with a progress line")
    p.add_argument("--json", action="store_true")
    p = add_command(pool, "scrub-schedule", cmd_pool_scrub_schedule, "when bulwarkd scrubs the pool by itself")
    p.add_argument("--every-days", type=int, help="days between scrubs (0: never; default 35)")
    p.add_argument("--json", action="store_true")

    job = add_group(sub, "job", "jobs run by the daemon")
    p = add_command(job, "list", cmd_job_list, "recent jobs, newest first")
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p = add_command(job, "show", cmd_job_show, "one job with its log")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p = add_command(job, "cancel", cmd_job_cancel, "cancel a queued job or stop a running one")
    p.add_argument("id", type=int)
