"""Offsite replication: ``offsite key|target|policy|run|status|verify|list|restore``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from appliance.cli.clients import ACTOR, follow, when, zfs_host
from appliance.cli.common import add_command, add_group, open_store, print_json
from appliance.offsite import config, jobs, keys, kit, restore
from appliance.offsite.errors import BadKit
from appliance.store import Store
from appliance.system import settings
from appliance.system.durations import format_duration, parse_duration
from appliance.system.errors import AlreadyExists, InvalidInput
from appliance.system.paths import Paths
from appliance.zfs import units


def _read_secret(what: str) -> str:
    """One line from standard input (a passphrase, a secret key): never an argument, never echoed."""
    line = sys.stdin.readline()
    if not line.strip():
        raise InvalidInput(f"give the {what} on standard input (one line)")
    return line.rstrip("\r\n")


def _read_kit(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadKit(f"{path}: {exc}") from None
    return kit.parse(text)


def _hostname(store: Store) -> str:
    loaded = settings.load(store)
    return loaded.hostname if loaded else "bulwark"


# -- keys ------------------------------------------------------------------------------------------------------------


def cmd_key_init(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        info = keys.init_key(store, paths, _read_secret("recovery passphrase"))
        store.audit(ACTOR, "offsite.key.init", info.id)
        if args.json:
            print_json(info.to_dict())
        else:
            print(f"offsite data key {info.id} created. Now export the recovery kit and keep it apart from the "
                  "appliance: bulwark offsite key export-kit --out FILE")  # fmt: skip
        return 0
    finally:
        store.close()


def cmd_key_rotate(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        info = keys.rotate(store, paths, _read_secret("recovery passphrase"))
        store.audit(ACTOR, "offsite.key.rotate", info.id)
        if args.json:
            print_json(info.to_dict())
        else:
            print(f"new streams now use data key {info.id}; export the recovery kit again (it holds every key)")
        return 0
    finally:
        store.close()


def cmd_key_list(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        found = keys.list_keys(store)
        if args.json:
            print_json([k.to_dict() for k in found])
            return 0
        if not found:
            print("no offsite data key yet: bulwark offsite key init --passphrase-stdin")
        for k in found:
            state = "active " if k.active else "retired"
            print(f"{k.id}  {state}  created {when(k.created_at)}  kit exported {when(k.kit_exported_at)}")
        return 0
    finally:
        store.close()


def cmd_key_export(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        document = keys.kit_document(store, _hostname(store))
        out = Path(args.out)
        if out.exists() and not args.force:
            raise AlreadyExists(f"{out} (pass --force to overwrite it)")
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(kit.render(document))
        keys.mark_exported(store)
        store.audit(ACTOR, "offsite.key.export_kit", str(out), keys=len(document["keys"]))
        if args.json:
            print_json({"out": str(out), "keys": [k["key_id"] for k in document["keys"]]})
        else:
            print(f"recovery kit written to {out} ({len(document['keys'])} key(s)); print it or store it apart "
                  "from the appliance, and remember the passphrase (it is not in the kit)")  # fmt: skip
        return 0
    finally:
        store.close()


def cmd_key_import(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        found = keys.import_kit(store, paths, _read_kit(args.kit), _read_secret("recovery passphrase"))
        store.audit(ACTOR, "offsite.key.import", args.kit, keys=len(found))
        if args.json:
            print_json([k.to_dict() for k in found])
        else:
            print(f"{len(found)} offsite data key(s) on this appliance")
        return 0
    finally:
        store.close()


# -- targets ---------------------------------------------------------------------------------------------------------


def cmd_target_add(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        raw: dict[str, Any] = {}
        secret: str | None = None
        if args.type == "local":
            raw = {"path": args.path, "require_mount": args.require_mount}
        elif args.type == "sftp":
            host_key = args.host_key or (Path(args.host_key_file).read_text().strip() if args.host_key_file else "")
            if not args.identity_file:
                raise InvalidInput("an SFTP target needs --identity-file (an OpenSSH private key without passphrase)")
            secret = Path(args.identity_file).read_text()
            raw = {"host": args.host, "port": args.port, "user": args.user, "path": args.path, "host_key": host_key}
        elif args.type == "s3":
            secret = _read_secret("S3 secret key") if args.secret_key_stdin else None
            raw = {"bucket": args.bucket, "endpoint": args.endpoint, "region": args.region, "prefix": args.prefix,
                   "access_key": args.access_key, "lock_days": args.lock_days}  # fmt: skip
        record = config.add_target(store, args.name, args.type, raw, secret, keep_chains=args.keep_chains, by=ACTOR)
        if args.json:
            print_json(record.to_dict())
        else:
            print(f"offsite target {record.name} added: {record.describe()}")
        return 0
    finally:
        store.close()


def cmd_target_list(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        found = config.list_targets(store)
        if args.json:
            print_json([t.to_dict() for t in found])
            return 0
        for t in found:
            print(f"{t.name:16} {t.type:6} keep {t.keep_chains} chain(s)  {t.describe()}")
        return 0
    finally:
        store.close()


def cmd_target_remove(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        config.remove_target(store, args.name, by=ACTOR)
        print(f"offsite target {args.name} removed from this appliance (nothing on it was deleted)")
        return 0
    finally:
        store.close()


def _only_target(store: Store, name: str | None) -> str:
    if name:
        return config.get_target(store, name).name
    found = config.list_targets(store)
    if len(found) != 1:
        raise InvalidInput("name the target with --target (there are " + str(len(found)) + " targets)")
    return found[0].name


# -- policy, run, status, verify -------------------------------------------------------------------------------------


def cmd_policy(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        target = _only_target(store, args.target)
        policy = config.set_policy(
            store, args.client, target, by=ACTOR,
            enabled=True if args.enable else False if args.disable else None,
            interval_s=parse_duration(args.interval, what="interval") if args.interval else None,
            chain_length=args.chain_length,
            chain_age_s=parse_duration(args.chain_age, what="chain age") if args.chain_age else None,
            bandwidth_rules=args.bandwidth,
            default_kbps=("keep" if args.default_kbps is None else None if args.default_kbps == "none"
                          else _kbps(args.default_kbps)),
        )  # fmt: skip
        if args.json:
            print_json(policy.to_dict())
        else:
            state = "enabled" if policy.enabled else "disabled"
            print(f"{args.client} → {target}: {state}, every {format_duration(policy.interval_s)}, new full after "
                  f"{policy.chain_length} streams or {format_duration(policy.chain_age_s)}")  # fmt: skip
        return 0
    finally:
        store.close()


def _kbps(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(f"--default-kbps {text!r} must be KiB/s or 'none'") from None


def cmd_run(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        target = _only_target(store, args.target)
        job = jobs.submit(store, jobs.REPLICATE, args.client, target, by=ACTOR)
        return follow(store, job, args)
    finally:
        store.close()


def cmd_verify(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        target = _only_target(store, args.target)
        job = jobs.submit(store, jobs.VERIFY, args.client, target, by=ACTOR, receive=not args.no_receive)
        return follow(store, job, args)
    finally:
        store.close()


def cmd_status(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        rows = jobs.overview(store)
        if args.json:
            print_json(rows)
            return 0
        print(f"{'CLIENT':16} {'TARGET':12} {'BACKLOG':>10} {'ETA':>8}  {'LAST SENT':19}  VERIFIED")
        for r in rows:
            backlog = "-" if r["backlog_bytes"] is None else units.format_size(r["backlog_bytes"])
            eta = "-" if r["eta_seconds"] is None else format_duration(int(r["eta_seconds"]))
            last = r["last_stream"]["completed_at"] if r["last_stream"] else None
            ver = r["verification"]
            verified = "-" if ver is None else f"{'ok' if ver['ok'] else 'FAILED'} {when(ver['at'])}"
            print(f"{r['client']:16} {r['target']:12} {backlog:>10} {eta:>8}  {when(last):19}  {verified}")
        return 0
    finally:
        store.close()


# -- reading a target: list and disaster recovery --------------------------------------------------------------------


def _read_keys(args: argparse.Namespace, store: Store, paths: Paths) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    if keys.list_keys(store):
        found.update(keys.all_keys(store, paths))
    if args.kit:
        found.update(keys.keys_from_kit(_read_kit(args.kit), _read_secret("recovery passphrase")))
    return found


def cmd_list(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        read_keys = _read_keys(args, store, paths)
        target = config.open_target(store, paths, args.target)
        try:
            listing = restore.catalog_dict(restore.catalog(target, read_keys, args.client))
        finally:
            target.close()
        if args.json:
            print_json(listing)
            return 0
        for c in listing:
            for chains in c["areas"].values():
                for chain in chains:
                    for p in chain["points"]:
                        size = units.format_size(p["stored_bytes"] or 0)
                        print(f"{c['client']:16} {p['point']:48} {when(p['created_at'])}  {size:>10}")
        return 0
    finally:
        store.close()


def cmd_restore(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        read_keys = _read_keys(args, store, paths)
        tty = sys.stderr.isatty() and not args.json
        last = [0.0]

        def progress(done: int, total: int, text: str) -> None:
            if args.json or time.monotonic() - last[0] < 0.5:
                return
            last[0] = time.monotonic()
            pct = 100.0 * done / total if total else 0.0
            line = f"restoring {text}: {units.format_size(done)} of {units.format_size(total)} ({pct:.0f}%)"
            sys.stderr.write(("\r\033[K" if tty else "") + line + ("" if tty else "\n"))

        result = restore.disaster_restore(store, paths, zfs_host(), args.target, args.client, args.point, read_keys,
                                          progress=progress, by=ACTOR)  # fmt: skip
        if tty:
            sys.stderr.write("\n")
        if args.json:
            print_json(result)
        else:
            for r in result["restored"]:
                print(f"restored {args.client} {r['area']}: {', '.join(r['snapshots'])}")
        return 0
    finally:
        store.close()


def register(sub: Any) -> None:
    g = add_group(sub, "offsite", "encrypted offsite replication")
    kg = add_group(g, "key", "the offsite data keys and the recovery kit")
    p = add_command(kg, "init", cmd_key_init, "create the data key; the recovery passphrase is read from stdin")
    p.add_argument("--passphrase-stdin", action="store_true", required=True)
    p.add_argument("--json", action="store_true")
    p = add_command(kg, "rotate", cmd_key_rotate, "a new data key for new streams (same passphrase, from stdin)")
    p.add_argument("--passphrase-stdin", action="store_true", required=True)
    p.add_argument("--json", action="store_true")
    p = add_command(kg, "list", cmd_key_list, "the data keys")
    p.add_argument("--json", action="store_true")
    p = add_command(kg, "export-kit", cmd_key_export, "write the recovery kit (keys wrapped by the passphrase)")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--json", action="store_true")
    p = add_command(kg, "import", cmd_key_import, "adopt the keys of a recovery kit (passphrase from stdin)")
    p.add_argument("--kit", required=True)
    p.add_argument("--passphrase-stdin", action="store_true", required=True)
    p.add_argument("--json", action="store_true")

    tg = add_group(g, "target", "where offsite copies go")
    p = add_command(tg, "add", cmd_target_add, "add a local, SFTP or S3 target")
    p.add_argument("name")
    p.add_argument("--type", choices=config.TYPES, required=True)
    p.add_argument("--path", help="local: folder or disk mount point; sftp: folder on the server")
    p.add_argument("--require-mount", action="store_true", help="local: refuse unless --path is a mounted disk")
    p.add_argument("--host")
    p.add_argument("--port", type=int, default=22)
    p.add_argument("--user")
    p.add_argument("--host-key", help="sftp: the server's public host key line ('ssh-ed25519 AAAA…')")
    p.add_argument("--host-key-file", help="sftp: a file holding that line")
    p.add_argument("--identity-file", help="sftp: the OpenSSH private key to sign in with")
    p.add_argument("--bucket")
    p.add_argument("--endpoint", help="s3: e.g. https://s3.example.com (default AWS)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--prefix", default="")
    p.add_argument("--access-key")
    p.add_argument("--secret-key-stdin", action="store_true", help="s3: read the secret key from stdin")
    p.add_argument("--lock-days", type=int, default=30, help="s3: Object Lock retention when the bucket has it")
    p.add_argument("--keep-chains", type=int, default=2, help="complete chains kept on the target per dataset")
    p.add_argument("--json", action="store_true")
    p = add_command(tg, "list", cmd_target_list, "the targets")
    p.add_argument("--json", action="store_true")
    p = add_command(tg, "remove", cmd_target_remove, "forget a target (its contents stay)")
    p.add_argument("name")

    p = add_command(g, "policy", cmd_policy, "a client's replication schedule, chains and bandwidth to a target")
    p.add_argument("client")
    p.add_argument("--target")
    on = p.add_mutually_exclusive_group()
    on.add_argument("--enable", action="store_true")
    on.add_argument("--disable", action="store_true")
    p.add_argument("--interval", help="e.g. 6h, 1d")
    p.add_argument("--chain-length", type=int, help="a new full after this many streams")
    p.add_argument("--chain-age", help="…or when the chain's full is older than this (e.g. 30d)")
    p.add_argument("--bandwidth", action="append", help="'[DAYS ]HH:MM-HH:MM=KIBPS|off', repeatable")
    p.add_argument("--default-kbps", help="limit outside the windows in KiB/s, or 'none'")
    p.add_argument("--json", action="store_true")

    p = add_command(g, "run", cmd_run, "replicate a client's new recovery points now")
    p.add_argument("client")
    p.add_argument("--target")
    p.add_argument("--wait", action="store_true", help="follow the job to its end with a progress line")
    p.add_argument("--json", action="store_true")
    p = add_command(g, "verify", cmd_verify, "download, authenticate and test-restore the latest offsite chain")
    p.add_argument("client")
    p.add_argument("--target")
    p.add_argument("--no-receive", action="store_true", help="authenticate only, skip the scratch restore")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--json", action="store_true")
    p = add_command(g, "status", cmd_status, "per client: backlog, ETA, last stream, last verification")
    p.add_argument("--json", action="store_true")
    p = add_command(g, "list", cmd_list, "the clients and points held on a target")
    p.add_argument("--target", required=True)
    p.add_argument("--client")
    p.add_argument("--kit", help="a recovery kit to read with (passphrase from stdin)")
    p.add_argument("--passphrase-stdin", action="store_true")
    p.add_argument("--json", action="store_true")
    p = add_command(g, "restore", cmd_restore, "bring a client's offsite point back as recovery points")
    p.add_argument("--target", required=True)
    p.add_argument("--client", required=True)
    p.add_argument("--point", default="latest", help="AREA@SNAPSHOT, SNAPSHOT or latest")
    p.add_argument("--kit", help="the recovery kit (passphrase from stdin)")
    p.add_argument("--passphrase-stdin", action="store_true")
    p.add_argument("--json", action="store_true")
