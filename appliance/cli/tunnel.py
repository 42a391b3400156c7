"""MSP remote access: ``bulwark tunnel configure|pubkey|status|scan|trust|enable|disable|reconnect|remove`` and
``bulwark tunnel remote-sessions allow|block`` (the on-site switch: the console is on site)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from appliance.cli.common import add_command, add_group, open_store, port, print_json
from appliance.store import Store
from appliance.system.durations import format_duration, parse_duration
from appliance.system.errors import InvalidInput
from appliance.system.paths import Paths
from appliance.system.runner import local_runner
from appliance.tunnel import config as tunnel_config
from appliance.tunnel import keys, service, status
from appliance.tunnel.errors import HostKeyScanFailed, TunnelNotConfigured

ACTOR = "cli"


def _duration(text: str) -> int:
    try:
        return tunnel_config.check_alert_after(parse_duration(text, what="--alert-after"))
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc.args[0])) from None


def _remote_port(text: str) -> int:
    try:
        return tunnel_config.check_remote_port(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc.args[0])) from None


def when(epoch: float | None) -> str:
    return "-" if not epoch else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _confirm(question: str) -> bool:
    sys.stdout.write(question)
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _host_key_step(args: argparse.Namespace, store: Store) -> str:
    """After configure: pin the key given, or scan and confirm. Returns a line saying what happened."""
    if args.host_key:
        return "jump host key pinned (pasted)"
    if args.host_key_fingerprint:
        key = service.scan_and_trust(store, local_runner(), args.host_key_fingerprint)
        return f"jump host key {key.fingerprint} ({key.type}) matches the fingerprint given: pinned"
    if args.no_scan:
        pinned = tunnel_config.load(store)
        if pinned is not None and pinned.host_key:  # the same jump host as before: its key stays pinned
            return f"jump host key {keys.parse_public_key(pinned.host_key).fingerprint} still pinned"
        return "jump host key not pinned yet: run 'bulwark tunnel scan' then 'bulwark tunnel trust FINGERPRINT'"
    key = service.scan(store, local_runner())
    if args.yes or (sys.stdin.isatty() and not args.json and _confirm(
        f"The jump host presents the {key.type} key {key.fingerprint}.\n"
        "Is this the fingerprint your MSP gave you? [y/N] "
    )):  # fmt: skip
        service.trust(store, key.fingerprint)
        return f"jump host key {key.fingerprint} pinned"
    return (
        f"the jump host presents {key.fingerprint} ({key.type}); once you have compared it with the MSP's, "
        f"pin it with 'bulwark tunnel trust {key.fingerprint}'"
    )


def cmd_configure(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        cfg = service.configure(
            store,
            paths,
            local_runner(),
            host=args.host,
            user=args.user,
            remote_port=args.remote_port,
            port=args.port,
            alert_after=args.alert_after,
            host_key=args.host_key,
            listen_port=args.listen_port,
        )
        store.audit(ACTOR, "tunnel.configure", cfg.destination(), remote_port=cfg.remote_port)
        try:
            outcome = _host_key_step(args, store)
        except HostKeyScanFailed as exc:
            outcome = f"configuration saved, but {exc.message}"
            sys.stderr.write(f"bulwark: {outcome} — {exc.hint}\n")
            if not args.json:
                _print_line(store, paths)
            return exc.exit_status
        report = status.report(store, paths, probe=False)
        if args.json:
            print_json({**report, "outcome": outcome})
            return 0
        print(f"Remote access to {cfg.destination()}, remote port {cfg.remote_port}: {outcome}.")
        print("Add this line to the jump host user's authorized_keys:")
        _print_line(store, paths)
        return 0
    finally:
        store.close()


def _print_line(store: Store, paths: Paths) -> None:
    cfg = tunnel_config.load(store)
    if cfg is None:
        raise TunnelNotConfigured()
    print(keys.authorized_keys_line(keys.public_key(paths), cfg.remote_port))


def cmd_pubkey(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        if args.key_only:
            print(keys.public_key(paths).line())
        else:
            _print_line(store, paths)
        return 0
    finally:
        store.close()


def _print_status(report: dict[str, Any]) -> None:
    jump = report["jump_host"]
    where = f" to {jump['user']}@{jump['host']}:{jump['port']} (remote port {jump['remote_port']})" if jump else ""
    print(f"Tunnel: {report['state']}{where}")
    if report["state"] == "connected":
        print(f"  connected since {when(report['connected_since'])}")
    if report["last_error"] and report["state"] != "connected":
        print(f"  last error: {report['last_error']} ({when(report['last_error_at'])})")
        print(f"  what to do: {report['last_error_hint']}")
    if report["next_attempt_at"]:
        print(f"  next attempt in {max(0.0, report['next_attempt_at'] - time.time()):.0f} s")
    print(f"  reconnects {report['reconnects']}, sent {report['bytes_sent']} B, received {report['bytes_received']} B")
    if jump:
        print(f"  jump host key: {jump['host_key_fingerprint'] or 'NOT PINNED'}")
        if jump["pending_host_key_fingerprint"]:
            print(f"  waiting for confirmation: {jump['pending_host_key_fingerprint']}")
        print(f"  down alert after {format_duration(jump['alert_after'])}")
    listener = "listening" if report["local_listener"] else "NOT listening (restart bulwark)"
    print(f"  web UI tunnel listener: 127.0.0.1:{report['local_port']} {listener}")
    switch = report["remote_sessions"]
    print(f"  remote sessions: {'allowed' if switch['allowed'] else 'BLOCKED on site'}")


def cmd_status(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        report = status.report(store, paths)
    finally:
        store.close()
    if args.json:
        print_json(report)
    else:
        _print_status(report)
    return 0


def cmd_scan(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        key = service.scan(store, local_runner())
        if args.json:
            print_json({"type": key.type, "fingerprint": key.fingerprint, "key": key.bare()})
        else:
            print(f"The jump host presents the {key.type} key {key.fingerprint}.")
            print(f"Compare it with the MSP's, then pin it: bulwark tunnel trust {key.fingerprint}")
        return 0
    finally:
        store.close()


def cmd_trust(args: argparse.Namespace, paths: Paths) -> int:
    if bool(args.fingerprint) == bool(args.host_key):
        raise InvalidInput("give either the FINGERPRINT of the scanned key or --host-key with the key itself")
    store = open_store(paths)
    try:
        key = service.trust(store, args.fingerprint) if args.fingerprint else service.pin(store, args.host_key)
        store.audit(ACTOR, "tunnel.host_key.pin", key.fingerprint)
        print_json({"pinned": key.fingerprint}) if args.json else print(f"jump host key {key.fingerprint} pinned")
        return 0
    finally:
        store.close()


def _simple(action: str) -> Any:
    def handler(args: argparse.Namespace, paths: Paths) -> int:
        store = open_store(paths)
        try:
            if action == "enable":
                service.set_enabled(store, True)
            elif action == "disable":
                service.set_enabled(store, False)
            elif action == "reconnect":
                service.reconnect(store)
            elif action == "remove":
                service.remove(store)
            store.audit(ACTOR, f"tunnel.{action}", None)
            print(
                {
                    "enable": "remote access switched on",
                    "disable": "remote access switched off",
                    "reconnect": "reconnect asked",
                    "remove": "remote access configuration removed (the key pair is kept)",
                }[action]
            )
            return 0
        finally:
            store.close()

    return handler


def cmd_alert_after(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        service.set_alert_after(store, args.delay)
        store.audit(ACTOR, "tunnel.alert_after", None, seconds=args.delay)
        print(f"an alert is raised when the tunnel is down for {format_duration(args.delay)}")
        return 0
    finally:
        store.close()


def cmd_remote_sessions(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        allowed = args.choice == "allow"
        service.set_remote_sessions(store, allowed, by=ACTOR, remote=False)
        store.audit(ACTOR, "tunnel.remote_sessions", "allow" if allowed else "block")
        print("remote sessions allowed" if allowed else "remote sessions BLOCKED: the tunnel's listener refuses all")
        return 0
    finally:
        store.close()


def register(sub: Any) -> None:
    group = add_group(sub, "tunnel", "MSP remote access through an outbound SSH tunnel")
    p = add_command(group, "configure", cmd_configure, "set the jump host, make the key, pin the host key")
    p.add_argument("--host", required=True, help="the MSP's jump host (name or address)")
    p.add_argument("--port", type=port, default=tunnel_config.DEFAULT_SSH_PORT, help="its SSH port (default 22)")
    p.add_argument("--user", required=True, help="the user on the jump host that holds the appliance's key")
    p.add_argument("--remote-port", type=_remote_port, required=True, help="the jump host port leading here")
    p.add_argument(
        "--listen-port",
        type=port,
        help=f"the web UI's loopback port the tunnel leads to (default {tunnel_config.DEFAULT_LOCAL_PORT})",
    )
    p.add_argument("--alert-after", type=_duration, help="alert when down this long (e.g. 15m; default 15m)")
    pin = p.add_mutually_exclusive_group()
    pin.add_argument("--host-key", help="the jump host's key, pasted ('ssh-ed25519 AAAA…')")
    pin.add_argument("--host-key-fingerprint", help="pin the scanned key only if it has this SHA256: fingerprint")
    pin.add_argument("--no-scan", action="store_true", help="do not contact the jump host now")
    p.add_argument("--yes", action="store_true", help="trust the scanned key without asking (not recommended)")
    p.add_argument("--json", action="store_true")
    p = add_command(group, "pubkey", cmd_pubkey, "print the restricted authorized_keys line for the jump host")
    p.add_argument("--key-only", action="store_true", help="the bare public key, without the restrictions")
    p = add_command(group, "status", cmd_status, "the tunnel's state, last error, counters")
    p.add_argument("--json", action="store_true")
    p = add_command(group, "scan", cmd_scan, "ask the jump host for its key and show the fingerprint")
    p.add_argument("--json", action="store_true")
    p = add_command(group, "trust", cmd_trust, "pin the scanned jump host key (by its fingerprint) or a pasted one")
    p.add_argument("fingerprint", nargs="?", help="SHA256:… of the scanned key, as compared with the MSP's")
    p.add_argument("--host-key", help="the key itself, pasted")
    p.add_argument("--json", action="store_true")
    for action, text in (
        ("enable", "switch the tunnel on"),
        ("disable", "switch the tunnel off"),
        ("reconnect", "try to connect now instead of waiting for the backoff"),
        ("remove", "forget the jump host"),
    ):
        add_command(group, action, _simple(action), text)
    p = add_command(group, "alert-after", cmd_alert_after, "how long the tunnel may be down before an alert")
    p.add_argument("delay", type=_duration, help="e.g. 5m, 1h")
    p = add_command(group, "remote-sessions", cmd_remote_sessions, "on site: allow or block every remote session")
    p.add_argument("choice", choices=("allow", "block"))
