"""Local accounts: ``user list``, ``user reset-password``."""

from __future__ import annotations

import argparse
from typing import Any

from appliance import users
from appliance.cli.common import add_command, add_group, open_store, print_json
from appliance.system.paths import Paths


def cmd_user_reset_password(args: argparse.Namespace, paths: Paths) -> int:
    """Give a user a new one-time password (recovery when the admin is locked out)."""
    store = open_store(paths)
    try:
        password = users.generate_password()
        users.set_password(store, users.check_username(args.username), password, must_change=True)
        store.audit("cli", "user.reset_password", args.username)
        print(f"One-time password for {args.username}: {password}")
        print("(shown only this once; it must be changed at the next login)")
        return 0
    finally:
        store.close()


def cmd_user_list(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        found = users.list_users(store)
        if args.json:
            print_json([{"username": u.username, "role": u.role} for u in found])
        else:
            for u in found:
                print(f"{u.username}\t{u.role}")
        return 0
    finally:
        store.close()


def register(sub: Any) -> None:
    user = add_group(sub, "user", "local user accounts")
    p = add_command(user, "list", cmd_user_list, "list users")
    p.add_argument("--json", action="store_true")
    p = add_command(user, "reset-password", cmd_user_reset_password, "give a user a new one-time password")
    p.add_argument("username")
