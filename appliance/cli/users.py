"""Local accounts and API tokens: ``user list|add|reset-password|remove``, ``token create|list|revoke``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance import users
from appliance.auth import sessions, tokens
from appliance.cli.common import add_command, add_group, open_store, print_json
from appliance.system.errors import InvalidInput
from appliance.system.paths import Paths


def cmd_user_reset_password(args: argparse.Namespace, paths: Paths) -> int:
    """Give a user a new one-time password (recovery when the admin is locked out)."""
    store = open_store(paths)
    try:
        password = users.generate_password()
        users.set_password(store, users.check_username(args.username), password, must_change=True)
        sessions.revoke_user(store, users.get_user(store, args.username).id)
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
                flags = [f for f, on in (("disabled", u.disabled), ("totp", u.totp_enabled)) if on]
                print(f"{u.username}\t{u.role}\t{','.join(flags)}".rstrip())
        return 0
    finally:
        store.close()


def read_password_stdin() -> str:
    """One line from stdin, without its line end (never from argv, where other users could see it)."""
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise InvalidInput("no password on stdin")
    return password


def cmd_user_add(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        if args.password_stdin:
            password, one_time = read_password_stdin(), False
        else:
            password, one_time = users.generate_password(), True
        user = users.create_user(store, args.username, password, args.role, must_change=one_time)
        store.audit("cli", "user.create", user.username, role=user.role)
        if args.json:
            print_json({**user.to_dict(), "one_time_password": password if one_time else None})
        elif one_time:
            print(f"User {user.username} ({user.role}) added. One-time password: {password}")
            print("(shown only this once; it must be changed at the first login)")
        else:
            print(f"User {user.username} ({user.role}) added.")
        return 0
    finally:
        store.close()


def cmd_user_remove(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        users.delete_user(store, args.username)
        store.audit("cli", "user.delete", args.username)
        print(f"User {args.username} removed.")
        return 0
    finally:
        store.close()


def cmd_token_create(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        token, secret = tokens.create(
            store, name=args.name, role=args.role, created_by="cli", expires_days=args.expires
        )
        store.audit("cli", "token.create", str(token.id), name=token.name, role=token.role)
        if args.json:
            print_json({**token.to_dict(), "secret": secret})
        else:
            print(secret)
            sys.stderr.write(
                f"API token {token.id} '{token.name}' ({token.role}); shown only this once. "
                "Send it as 'Authorization: Bearer <token>'.\n"
            )
        return 0
    finally:
        store.close()


def cmd_token_list(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        found = tokens.list_tokens(store)
        if args.json:
            print_json([t.to_dict() for t in found])
        else:
            for t in found:
                print(f"{t.id}\t{t.name}\t{t.role}\t{'active' if t.active else 'revoked/expired'}")
        return 0
    finally:
        store.close()


def cmd_token_revoke(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        tokens.revoke(store, args.id)
        store.audit("cli", "token.revoke", str(args.id))
        print(f"API token {args.id} revoked.")
        return 0
    finally:
        store.close()


def register(sub: Any) -> None:
    user = add_group(sub, "user", "local user accounts")
    p = add_command(user, "list", cmd_user_list, "list users")
    p.add_argument("--json", action="store_true")
    p = add_command(user, "add", cmd_user_add, "add a user (a one-time password unless --password-stdin)")
    p.add_argument("username")
    p.add_argument("--role", choices=users.ROLES, required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.add_argument("--json", action="store_true")
    p = add_command(user, "remove", cmd_user_remove, "remove a user (not the last admin)")
    p.add_argument("username")
    p = add_command(user, "reset-password", cmd_user_reset_password, "give a user a new one-time password")
    p.add_argument("username")

    token = add_group(sub, "token", "API tokens for /api/v1")
    p = add_command(token, "create", cmd_token_create, "create a token; it is printed once")
    p.add_argument("--role", choices=users.ROLES, required=True)
    p.add_argument("--name", default="api", help="what the token is for (default %(default)s)")
    p.add_argument("--expires", type=int, metavar="DAYS", help="expire after DAYS days (default: never)")
    p.add_argument("--json", action="store_true")
    p = add_command(token, "list", cmd_token_list, "list tokens (never their secrets)")
    p.add_argument("--json", action="store_true")
    p = add_command(token, "revoke", cmd_token_revoke, "revoke a token at once")
    p.add_argument("id", type=int)
