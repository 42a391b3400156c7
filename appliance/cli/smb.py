"""SMB ingest: ``smb status|configure|share|trigger|open-files`` and ``client smb-password``."""

from __future__ import annotations

import argparse
from typing import Any

from appliance import provision
from appliance.cli.clients import ACTOR, follow, zfs_host
from appliance.cli.common import add_command, add_group, open_store, port, print_json
from appliance.cli.users import read_password_stdin
from appliance.clients import service
from appliance.samba import activity, conf, restore_share, shares, supervise
from appliance.store import Store
from appliance.system.errors import InvalidInput
from appliance.system.paths import Paths
from appliance.system.runner import local_runner


def _hostname(paths: Paths, store: Store) -> str:
    return provision.load_settings(paths, store).hostname


def share_rows(paths: Paths, store: Store) -> list[dict[str, Any]]:
    host = _hostname(paths, store)
    rows = []
    for client in service.list_clients(store):
        if shares.has_share(client):
            opts = shares.share_options(store, client.name)
            rows.append({"client": client.name, **shares.connection(store, client, host), **vars(opts)})
    return rows


def cmd_status(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        out: dict[str, Any] = {"server": supervise.state(store), "settings": shares.load_settings(store).to_dict()}
        out["shares"] = share_rows(paths, store)
        if args.json:
            print_json(out)
            return 0
        srv = out["server"]
        state = "running" if srv["running"] else f"not running{': ' + srv['error'] if srv.get('error') else ''}"
        print(f"smbd: {state} (port {srv['port']})")
        for row in out["shares"]:
            flags = ("encrypted " if row["encrypt"] else "") + ("previous-versions" if row["previous_versions"] else "")
            print(f"  {row['unc']:40} user {row['user']:24} {flags}".rstrip())
        return 0
    finally:
        store.close()


def cmd_configure(args: argparse.Namespace, paths: Paths) -> int:
    changes: dict[str, Any] = {}
    if args.port is not None:
        changes["port"] = args.port
    if args.interface is not None:
        changes["interfaces"] = [] if args.interface == [""] else args.interface
    if args.min_protocol is not None:
        changes["min_protocol"] = args.min_protocol
    if args.quiet_seconds is not None:
        changes["quiet_seconds"] = args.quiet_seconds
    if args.account_prefix is not None:
        changes["account_prefix"] = args.account_prefix
    store = open_store(paths)
    try:
        runner = local_runner()
        zfs = zfs_host() if shares.layout(store).conf.exists() else None
        new = shares.update_settings(store, zfs, runner, by=ACTOR, **changes)
        if args.json:
            print_json(new.to_dict())
        else:
            print(f"SMB settings saved: {new.to_dict()}")
            if "port" in changes or "interfaces" in changes:
                print("The new port or interfaces take effect when 'bulwark run' is restarted.")
        return 0
    finally:
        store.close()


def cmd_share(args: argparse.Namespace, paths: Paths) -> int:
    changes: dict[str, Any] = {}
    for key in ("encrypt", "previous_versions", "comment"):
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    store = open_store(paths)
    try:
        if changes:
            shares.set_share_options(store, zfs_host(), local_runner(), args.client, by=ACTOR, **changes)
        row = next((r for r in share_rows(paths, store) if r["client"] == args.client), None)
        if row is None:
            client = service.get_client(store, args.client)
            raise InvalidInput(f"client {args.client!r} has no SMB share (its kind is {client.kind})")
        if args.json:
            print_json(row)
        else:
            for key, value in row.items():
                print(f"{key:18} {value}")
        return 0
    finally:
        store.close()


def cmd_trigger(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        job = activity.trigger(store, zfs_host(), local_runner(), args.client, by=ACTOR)
        return follow(store, job, args)
    finally:
        store.close()


def cmd_restore_share(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        runner, zfs = local_runner(), zfs_host()
        if args.off:
            done = restore_share.unpublish(store, zfs, runner, args.client, by=ACTOR)
            out: dict[str, Any] = {"unpublished": done}
            text = "restore share removed" if done else "no restore share was published"
        elif args.point:
            out = restore_share.publish(store, zfs, runner, args.client, args.point, by=ACTOR)
            host = _hostname(paths, store)
            out["unc"] = f"\\\\{host}\\{out['share']}"
            text = f"{out['unc']} (read-only, user {out['user']}) shows {out['point']}"
        else:
            raise InvalidInput("give a point (see 'bulwark snapshot list CLIENT') or --off")
        if args.json:
            print_json(out)
        else:
            print(text)
        return 0
    finally:
        store.close()


def cmd_open_files(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        files = activity.open_files(local_runner(), shares.layout(store))
        if args.json:
            print_json([vars(f) for f in files])
            return 0
        for f in files:
            print(f"{'writing' if f.writing else 'reading':8} {f.share_path}/{f.name}")
        if not files:
            print("no open files")
        return 0
    finally:
        store.close()


def cmd_password(args: argparse.Namespace, paths: Paths) -> int:
    password = read_password_stdin() if args.password_stdin else None
    store = open_store(paths)
    try:
        secret = shares.set_password(store, zfs_host(), local_runner(), args.name, password, by=ACTOR)
        client = service.get_client(store, args.name)
        info = shares.connection(store, client, _hostname(paths, store))
        if args.json:
            print_json({**info, "password": None if args.password_stdin else secret})
        else:
            print(f"Share {info['unc']}  user {info['user']}")
            if not args.password_stdin:
                print(f"Password (shown once): {secret}")
        return 0
    finally:
        store.close()


def register_client_commands(client: Any) -> None:
    p = add_command(client, "smb-password", cmd_password, "set the SMB password (generated and shown once unless "
                    "--password-stdin)")  # fmt: skip
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.add_argument("--json", action="store_true")


def register(sub: Any) -> None:
    smb = add_group(sub, "smb", "SMB shares: one per client, on the appliance's own smbd")
    p = add_command(smb, "status", cmd_status, "smbd's state and every client share with its connection details")
    p.add_argument("--json", action="store_true")
    p = add_command(smb, "configure", cmd_configure, "appliance-wide SMB settings")
    p.add_argument("--port", type=port, help="TCP port (445 for Windows clients)")
    p.add_argument("--interface", action="append", help="listen on this address or interface only (repeatable; "
                   "'' for every interface)")  # fmt: skip
    p.add_argument("--min-protocol", choices=conf.PROTOCOLS)
    p.add_argument("--quiet-seconds", type=int, help="a share quiet this long after writes gets a recovery point")
    p.add_argument("--account-prefix", help="prefix of the SMB account names (default bw-)")
    p.add_argument("--json", action="store_true")
    p = add_command(smb, "share", cmd_share, "show or change a client's share")
    p.add_argument("client")
    p.add_argument("--encrypt", action=argparse.BooleanOptionalAction, default=None, help="require SMB3 encryption")
    p.add_argument("--previous-versions", action=argparse.BooleanOptionalAction, default=None,
                   help="show recovery points as Windows Previous Versions")  # fmt: skip
    p.add_argument("--comment", help="the share's description")
    p.add_argument("--json", action="store_true")
    p = add_command(smb, "trigger", cmd_trigger, "a recovery point of the share now (for a backup's post-job script; "
                    "refused while a file is open for writing)")  # fmt: skip
    p.add_argument("client")
    p.add_argument("--wait", action="store_true", help="follow the job to its end (needs the daemon running)")
    p.add_argument("--json", action="store_true")
    p = add_command(smb, "restore-share", cmd_restore_share, "publish one recovery point read-only as "
                    "CLIENT-restore (or --off)")  # fmt: skip
    p.add_argument("client")
    p.add_argument("point", nargs="?", help="share@NAME, as 'bulwark snapshot list' shows it")
    p.add_argument("--off", action="store_true", help="remove the client's restore share")
    p.add_argument("--json", action="store_true")
    p = add_command(smb, "open-files", cmd_open_files, "files open on the shares now")
    p.add_argument("--json", action="store_true")
