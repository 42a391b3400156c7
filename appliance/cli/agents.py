"""Agents of a client: ``client enroll-code|agents|revoke-agent|agent-settings|agent-jobs``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from appliance.cli.common import add_command, open_store, print_json
from appliance.ingest import agent_settings, credentials, progress
from appliance.system import tls
from appliance.system.durations import format_duration
from appliance.system.paths import Paths
from appliance.zfs.units import format_size

ACTOR = "cli"


def cmd_enroll_code(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        fingerprint = tls.fingerprint(paths.tls_cert.read_bytes())
        code = credentials.create_code(store, args.name, fingerprint, by=ACTOR)
        if args.json:
            print_json({"code": code.code, "client": code.client, "expires_at": code.expires_at})
        else:
            until = time.strftime("%Y-%m-%d %H:%M", time.localtime(code.expires_at))
            print(f"enrollment code for {code.client} (single use, valid until {until}):\n{code.code}")
            print("on the client: bulwark-agent enroll --server https://APPLIANCE:PORT --code CODE")
        return 0
    finally:
        store.close()


def cmd_agents(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        found = credentials.list_for(store, args.name)
        if args.json:
            print_json([c.to_dict() for c in found])
        else:
            for c in found:
                seen = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.last_seen_at)) if c.last_seen_at else "-"
                print(f"{c.id}  {c.client:<16} {c.state:<8} {c.hostname or '-':<24} last seen {seen}")
        return 0
    finally:
        store.close()


def cmd_revoke(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        cred = credentials.revoke(store, args.agent_id, by=ACTOR)
        if args.json:
            print_json(cred.to_dict())
        else:
            print(f"agent {cred.id} of {cred.client} revoked; it is refused from now on")
        return 0
    finally:
        store.close()


def _settings_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.clear_paths or args.path:
        changes["paths"] = [] if args.clear_paths and not args.path else list(args.path)
    if args.bwlimit is not None:
        changes["bwlimit_kibps"] = args.bwlimit
    if args.window is not None:
        changes["window"] = args.window
    return changes


def cmd_agent_settings(args: argparse.Namespace, paths: Paths) -> int:
    """Show, or with options change, the client's agent settings (default paths, bandwidth limit, window)."""
    store = open_store(paths)
    try:
        changes = _settings_changes(args)
        found = (
            agent_settings.update(store, args.name, by=ACTOR, **changes)
            if changes
            else agent_settings.get(store, args.name)
        )
        window = agent_settings.window_state(store, found)
        if args.json:
            print_json(
                {
                    **found.to_dict(),
                    "window_open": window["open"],
                    "window_opens_at": window["opens_at"],
                    "timezone": window["timezone"],
                }
            )
            return 0
        print(f"paths:     {' '.join(found.paths) if found.paths else '- (the agent must be given paths)'}")
        print(f"bandwidth: {f'{found.bwlimit_kibps} KiB/s' if found.bwlimit_kibps else 'no limit'}")
        if found.window is None:
            print("window:    any time")
        else:
            state = "open now" if window["open"] else f"closed, opens {_when(window['opens_at'])}"
            print(f"window:    {found.window} ({window['timezone']}): {state}")
        return 0
    finally:
        store.close()


def _when(epoch: float | None) -> str:
    return "-" if not epoch else time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def cmd_agent_jobs(args: argparse.Namespace, paths: Paths) -> int:
    """Agent backup jobs: progress of the open ones, the report of the finished ones."""
    store = open_store(paths)
    try:
        found = progress.list_jobs(store, client=args.name, limit=args.limit)
        if args.json:
            print_json([j.to_dict() for j in found])
            return 0
        for j in found:
            if j.is_open:
                done = f"{j.percent:.0f}% of {format_size(j.bytes_total or 0)}" if j.percent is not None else ""
                what = f"{j.phase or 'starting'} {done}".strip()
            elif j.state == "committed":
                what = (
                    f"{j.files} files, {format_size(j.bytes_scanned)} scanned, {format_size(j.bytes_sent)} sent, "
                    f"{format_duration(j.duration or 0)} -> {j.point}"
                )
            else:
                what = j.error or ""
            print(f"{j.id}  {j.client:<16} {j.label:<10} {j.state:<9} {_when(j.started_at)}  {what}")
        return 0
    finally:
        store.close()


def register_client_commands(client: Any) -> None:
    p = add_command(client, "enroll-code", cmd_enroll_code, "a one-time code (24 h) to enroll a backup agent")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p = add_command(client, "agents", cmd_agents, "enrolled agents and their state")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p = add_command(client, "revoke-agent", cmd_revoke, "revoke an agent's credential at once")
    p.add_argument("agent_id")
    p.add_argument("--json", action="store_true")
    p = add_command(client, "agent-settings", cmd_agent_settings, "show or change the client's agent settings")
    p.add_argument("name")
    p.add_argument("--path", action="append", default=[], help="a default path to back up (repeat; replaces them)")
    p.add_argument("--clear-paths", action="store_true", help="no default paths (agents must be given paths)")
    p.add_argument("--bwlimit", metavar="KIB_PER_S", help="bandwidth limit in KiB/s, or 'none'")
    p.add_argument("--window", help="backup window, e.g. '22:00-06:00' or 'mon-fri 20:00-06:00', or 'any'")
    p.add_argument("--json", action="store_true")
    p = add_command(client, "agent-jobs", cmd_agent_jobs, "agent backup jobs: progress and reports")
    p.add_argument("name", nargs="?")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
