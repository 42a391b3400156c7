"""Restoring from recovery points: ``restore files`` (into the client's live data, a job), ``restore ls`` and
``restore zip`` (browse and download through a read-only clone, closed again at the end)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from appliance.cli.clients import ACTOR, follow, when, zfs_host
from appliance.cli.common import add_command, add_group, open_store, print_json
from appliance.clients import browse, download, jobs
from appliance.clients.browse import BrowseSession
from appliance.store import Store
from appliance.system.errors import AlreadyExists
from appliance.system.paths import Paths
from appliance.zfs import units
from appliance.zfs.host import ZfsHost


@contextlib.contextmanager
def _session(store: Store, zfs: ZfsHost, client: str, point: str) -> Iterator[BrowseSession]:
    session = browse.open_session(store, zfs, client, point, by=f"{ACTOR}:{id(store)}")
    try:
        yield session
    finally:
        browse.close_session(store, zfs, session.id)


def cmd_files(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        job = jobs.submit_restore(
            store, zfs_host(), args.client, args.point, args.path, args.to, overwrite=args.overwrite, by=ACTOR
        )
        return follow(store, job, args)
    finally:
        store.close()


def cmd_ls(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        zfs = zfs_host()
        with _session(store, zfs, args.client, args.point) as session:
            entries = browse.list_dir(session.root, args.path)
        if args.json:
            print_json([e.to_dict() for e in entries])
            return 0
        for e in entries:
            size = units.format_size(e.size) if e.type == "file" else ""
            name = e.name + ("/" if e.type == "dir" else "") + (f" -> {e.target}" if e.target else "")
            print(f"{when(e.mtime)}  {size:>10}  {name}")
        return 0
    finally:
        store.close()


def cmd_zip(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        zfs = zfs_host()
        with _session(store, zfs, args.client, args.point) as session:
            written = 0
            out: IO[bytes]
            with contextlib.ExitStack() as stack:
                if args.output == "-":
                    out = sys.stdout.buffer
                else:
                    target = Path(args.output)
                    if target.exists() and not args.force:
                        raise AlreadyExists(f"{target} (pass --force to replace it)")
                    out = stack.enter_context(target.open("wb"))
                for chunk in download.zip_stream(session.root, args.path, compress=args.compress):
                    out.write(chunk)
                    written += len(chunk)
                out.flush()
        if args.output != "-":
            if args.json:
                print_json({"output": args.output, "bytes": written})
            else:
                print(f"{args.output}: {units.format_size(written)}")
        return 0
    finally:
        store.close()


def register(sub: Any) -> None:
    restore = add_group(sub, "restore", "files from recovery points")
    p = add_command(restore, "files", cmd_files, "restore files or folders of a point into the client's live data")
    p.add_argument("client")
    p.add_argument("point", help="AREA@NAME or NAME (see 'bulwark snapshot list CLIENT')")
    p.add_argument("path", nargs="+", help="files or folders in the point, relative to its root ('.' for all)")
    p.add_argument(
        "--to", required=True, metavar="DIR", help="folder in the same dataset of the client's live data ('.': root)"
    )
    p.add_argument("--overwrite", action="store_true", help="also replace files that are newer at the destination")
    p.add_argument("--wait", action="store_true", help="follow the job to its end (needs the daemon running)")
    p.add_argument("--json", action="store_true")
    p = add_command(restore, "ls", cmd_ls, "list a folder of a point")
    p.add_argument("client")
    p.add_argument("point")
    p.add_argument("path", nargs="?", default="")
    p.add_argument("--json", action="store_true")
    p = add_command(restore, "zip", cmd_zip, "download files or folders of a point as a zip")
    p.add_argument("client")
    p.add_argument("point")
    p.add_argument("path", nargs="+")
    p.add_argument("-o", "--output", required=True, help="zip file to write ('-': standard output)")
    p.add_argument("--compress", action="store_true", help="deflate the files (level 1; default: stored, the fastest)")
    p.add_argument("--force", action="store_true", help="replace the output file if it exists")
    p.add_argument("--json", action="store_true")
