"""The ``bulwark`` admin command.

Exit status 0 on success; on failure the error family's stable status (see
:mod:`appliance.system.errors`) and one line on stderr saying what went wrong and what to do. Each area
adds its subcommands in its own module here through ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import appliance
from appliance.cli import alerts, clients, core, disks, jobs, offsite, reports, restore, smb, snapshots, tunnel, users
from appliance.cli.common import Handler
from appliance.system import logs
from appliance.system.errors import BulwarkError
from appliance.system.paths import Paths

AREAS = (core, jobs, users, clients, snapshots, restore, alerts, reports, tunnel, offsite, disks, smb)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bulwark", description="Bulwark backup appliance administration")
    parser.add_argument("--version", action="version", version=f"bulwark {appliance.__version__}")
    parser.add_argument("--data-dir", help="state directory (default $BULWARK_DATA_DIR or /var/lib/bulwark)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (default) or ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for area in AREAS:
        area.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in ("run", "daemon", "web"):
        logs.configure(args.log_level)
    try:
        paths = Paths.resolve(args.data_dir)
        handler: Handler = args.handler
        status = handler(args, paths)
        sys.stdout.flush()  # (a closed pipe shows here, not at exit)
    except BulwarkError as exc:
        sys.stderr.write(f"bulwark: error: {exc.message} — {exc.hint}\n")
        return exc.exit_status
    except KeyboardInterrupt:
        sys.stderr.write("bulwark: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (``bulwark … | head``): stop quietly, as a program killed by SIGPIPE would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return status


if __name__ == "__main__":
    sys.exit(main())
