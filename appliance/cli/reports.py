"""Reports and metrics: ``report client|summary``, ``report schedule add|list|remove``, ``metrics token``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from appliance import metrics
from appliance.cli.common import add_command, add_group, open_store, print_json
from appliance.clients import service
from appliance.reports import history, render, schedule, sla
from appliance.store import Store
from appliance.system.errors import BulwarkError
from appliance.system.paths import Paths
from appliance.system.runner import local_runner
from appliance.zfs.host import ZfsHost

ACTOR = "cli"


def _refresh(store: Store, client: str | None) -> None:
    """Record the points as they are now (bulwarkd does it every minute; a report asked for now is current)."""
    try:
        zfs = ZfsHost.detect(local_runner())
        if client:
            history.sample_client(store, zfs, service.get_client(store, client), time.time())
        else:
            history.sample(store, zfs)
    except BulwarkError as exc:
        sys.stderr.write(f"bulwark: warning: the recorded history is used as it is ({exc.message})\n")


def _write(path: str, html: str) -> None:
    Path(path).write_text(html, encoding="utf-8")
    sys.stderr.write(f"report written to {path}\n")


def cmd_report_client(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        service.get_client(store, args.name)
        _refresh(store, args.name)
        report = sla.client_report(store, args.name, days=args.days)
        if args.html:
            _write(args.html, render.client_document(report))
        if args.json:
            print_json(report.to_dict())
        elif not args.html:
            sys.stdout.write(render.client_text(report))
        return 0
    finally:
        store.close()


def cmd_report_summary(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        _refresh(store, None)
        summary = sla.summary(store, days=args.days)
        if args.html:
            _write(args.html, render.summary_document(summary))
        if args.json:
            print_json(summary.to_dict())
        elif not args.html:
            sys.stdout.write(render.summary_text(summary))
        return 0
    finally:
        store.close()


def cmd_schedule_add(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        made = schedule.add(store, args.client, args.channel, args.every)
        store.audit(ACTOR, "report.schedule", args.client or "summary", channel=args.channel, every=args.every)
        print_json(made.to_dict()) if args.json else print(f"report schedule {made.id} added")
        return 0
    finally:
        store.close()


def cmd_schedule_list(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        found = [s.to_dict() for s in schedule.list_schedules(store)]
        if args.json:
            print_json(found)
        for s in [] if args.json else found:
            print(f"{s['id']:>4} {s['client'] or '(summary)':24} {s['every']:8} channel {s['channel_id']}")
        return 0
    finally:
        store.close()


def cmd_schedule_remove(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        schedule.delete(store, args.id)
        store.audit(ACTOR, "report.unschedule", str(args.id))
        print(f"report schedule {args.id} removed")
        return 0
    finally:
        store.close()


def cmd_metrics_token(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        if args.clear:
            metrics.clear_token(store)
            store.audit(ACTOR, "metrics.token_clear")
            sys.stderr.write("/metrics is open again (no token required)\n")
            return 0
        token = metrics.new_token(store)
        store.audit(ACTOR, "metrics.token_set")
        sys.stderr.write("scrapes of /metrics now need 'Authorization: Bearer <token>'; the token, shown only once:\n")
        print(token)
        return 0
    finally:
        store.close()


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 1 <= days <= 400:
        raise argparse.ArgumentTypeError("a report covers 1 to 400 days")
    return days


def register(sub: Any) -> None:
    report = add_group(sub, "report", "SLA reports of clients and the appliance summary")
    p = add_command(report, "client", cmd_report_client, "a client's SLA report (text, --json, or --html FILE)")
    p.add_argument("name")
    p.add_argument("--days", type=_days, default=sla.DEFAULT_DAYS)
    p.add_argument("--html", metavar="FILE", help="write the printable HTML report to FILE")
    p.add_argument("--json", action="store_true")
    p = add_command(report, "summary", cmd_report_summary, "every client's figures and the open alerts")
    p.add_argument("--days", type=_days, default=sla.DEFAULT_DAYS)
    p.add_argument("--html", metavar="FILE")
    p.add_argument("--json", action="store_true")
    sched = report.add_parser("schedule", help="mail reports regularly").add_subparsers(
        dest="schedule_command", required=True, metavar="SUBCOMMAND"
    )
    p = add_command(sched, "add", cmd_schedule_add, "mail a report daily, weekly or monthly to an e-mail channel")
    p.add_argument("--client", help="the client (without it: the appliance summary)")
    p.add_argument("--channel", required=True)
    p.add_argument("--every", choices=list(schedule.PERIODS), default="weekly")
    p.add_argument("--json", action="store_true")
    p = add_command(sched, "list", cmd_schedule_list, "scheduled report mails")
    p.add_argument("--json", action="store_true")
    p = add_command(sched, "remove", cmd_schedule_remove, "stop a scheduled report")
    p.add_argument("id", type=int)

    group = add_group(sub, "metrics", "the Prometheus endpoint /metrics")
    p = add_command(group, "token", cmd_metrics_token, "require a bearer token for /metrics (printed once)")
    p.add_argument("--clear", action="store_true", help="open /metrics again")
