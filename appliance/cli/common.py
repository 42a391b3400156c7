"""Helpers shared by the ``bulwark`` subcommands."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from appliance.jobs import queue
from appliance.store import Store
from appliance.system import settings
from appliance.system.errors import BulwarkError, InvalidInput
from appliance.system.paths import Paths

Handler = Callable[[argparse.Namespace, Paths], int]


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def open_store(paths: Paths) -> Store:
    paths.require_initialized()
    return Store.open(paths.db)


def add_command(parent: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    """A subcommand whose handler is ``handler(args, paths)``."""
    p: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(handler=handler)
    return p


def add_group(parent: Any, name: str, help_text: str) -> Any:
    """A subcommand group (``bulwark job …``); returns the parent for its subcommands."""
    p = parent.add_parser(name, help=help_text, description=help_text)
    return p.add_subparsers(dest=f"{name}_command", required=True, metavar="SUBCOMMAND")


def port(text: str) -> int:
    try:
        return settings.check_port(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    except InvalidInput as exc:  # argparse reports only its own error types; anything else is a traceback
        raise argparse.ArgumentTypeError(str(exc.args[0])) from None


class JobFailedError(BulwarkError):
    """Job {} ended {}: {}"""

    code = "job_failed"
    exit_status = 15
    hint = "See 'bulwark job show ID' for its log."


def progress_line(job: queue.JobRecord) -> str:
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
        line = progress_line(job)
        if show and line != last:
            sys.stderr.write(("\r\033[K" if tty else "") + line + ("" if tty else "\n"))
            sys.stderr.flush()
            last = line
        if job.state in queue.FINAL_STATES:
            if show and tty:
                sys.stderr.write("\n")
            return job
        time.sleep(0.5)


def finish_job_command(store: Store, job_id: int, args: argparse.Namespace) -> int:
    """Print the queued job, or with ``--wait`` follow it to its end (exit 15 unless it succeeded)."""
    if not args.wait:
        if args.json:
            print_json({"job": job_id})
        else:
            print(f"job {job_id} queued (follow it with 'bulwark job show {job_id}')")
        return 0
    job = wait_for_job(store, job_id, show=not args.json)
    if args.json:
        print_json(job.to_dict())
    if job.state != "succeeded":
        err = job.error or {}
        raise JobFailedError(job_id, job.state, err.get("message", ""))
    if not args.json:
        print(f"job {job_id} succeeded: {json.dumps(job.result)}")
    return 0
