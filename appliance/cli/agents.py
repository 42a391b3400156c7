"""Agent enrollment and credentials: ``client enroll-code|agents|revoke-agent``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from appliance.cli.common import add_command, open_store, print_json
from appliance.ingest import credentials
from appliance.system import tls
from appliance.system.paths import Paths

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
