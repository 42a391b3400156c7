"""Alerts and channels: ``alert list|show|ack|snooze|unsnooze|test``, ``channel add|set|list|remove``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from appliance import alerts
from appliance.alerts import channels, delivery, outbox
from appliance.cli.common import add_command, add_group, open_store, print_json
from appliance.store import Store
from appliance.system import settings
from appliance.system.errors import BulwarkError, InvalidInput
from appliance.system.paths import Paths

ACTOR = "cli"
TEST_WAIT = 60.0


class ChannelTestFailed(BulwarkError):
    """{} of {} test message(s) could not be delivered."""

    code = "channel_test_failed"
    exit_status = 17
    hint = "See the reason printed for each channel; fix the channel with 'bulwark channel set'."


def when(epoch: float | None) -> str:
    return "-" if not epoch else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _timezone(store: Store) -> str:
    config = settings.load(store)
    return config.timezone if config is not None else "UTC"


def cmd_alert_list(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        found = alerts.list_alerts(store, active_only=not args.all, status=args.status, limit=args.limit)
        if args.json:
            print_json([a.to_dict() for a in found])
        else:
            for a in found:
                print(f"{a.id:>5} {when(a.raised_at)} {a.level:8} {a.status():12} {a.category:8} {a.message}")
        return 0
    finally:
        store.close()


def cmd_alert_show(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        alert = alerts.get(store, args.id)
        history = alerts.events(store, alert.id)
        sent = [n.to_dict() for n in outbox.list_notifications(store, alert_id=alert.id)]
        if args.json:
            print_json({**alert.to_dict(), "events": history, "notifications": sent})
            return 0
        print(f"alert {alert.id} [{alert.level}, {alert.status()}] {alert.message}")
        print(f"  key {alert.key}, category {alert.category}, seen {alert.count} time(s)")
        for event in history:
            who = f" by {event['actor']}" if event["actor"] else ""
            print(f"  {when(event['at'])} {event['event']}{who}")
        for n in sent:
            print(f"  notification {n['id']} to channel {n['channel_id']}: {n['state']} {n['last_error'] or ''}")
        return 0
    finally:
        store.close()


def cmd_alert_ack(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        alert = alerts.acknowledge(store, args.id, by=ACTOR)
        store.audit(ACTOR, "alert.acknowledge", str(alert.id))
        print_json(alert.to_dict()) if args.json else print(f"alert {alert.id} acknowledged")
        return 0
    finally:
        store.close()


def cmd_alert_snooze(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        until = alerts.snooze_end(until=args.until, duration=args.for_, tz=_timezone(store))
        alert = alerts.snooze(store, args.id, until=until, by=ACTOR)
        store.audit(ACTOR, "alert.snooze", str(alert.id), until=until)
        print_json(alert.to_dict()) if args.json else print(f"alert {alert.id} snoozed until {when(until)}")
        return 0
    finally:
        store.close()


def cmd_alert_unsnooze(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        alert = alerts.unsnooze(store, args.id, by=ACTOR)
        store.audit(ACTOR, "alert.unsnooze", str(alert.id))
        print_json(alert.to_dict()) if args.json else print(f"alert {alert.id} is active again")
        return 0
    finally:
        store.close()


def cmd_alert_test(args: argparse.Namespace, paths: Paths) -> int:
    """Queue a test message per channel and deliver it from here (bulwarkd may take it first: then wait)."""
    store = open_store(paths)
    try:
        chosen = [channels.get(store, args.channel)] if args.channel else channels.list_channels(store)
        if not chosen:
            raise InvalidInput("there is no alert channel yet: add one with 'bulwark channel add'")
        results = []
        for channel in chosen:
            queued = outbox.enqueue_test(store, channel, by=ACTOR)
            store.audit(ACTOR, "channel.test", channel.name)
            started = time.monotonic()
            done = delivery.deliver(store, queued) or delivery.wait_for(store, queued, TEST_WAIT)
            results.append((channel, done, time.monotonic() - started))
        if args.json:
            print_json([{"channel": c.name, **n.to_dict(), "seconds": round(s, 3)} for c, n, s in results])
        else:
            for channel, n, seconds in results:
                detail = n.note if n.state == "sent" else n.last_error or n.note or ""
                print(f"{channel.name:20} {channel.kind:8} {n.state:7} {seconds:6.2f} s  {detail}")
        failed = sum(1 for _, n, _ in results if n.state != "sent")
        if failed:
            raise ChannelTestFailed(failed, len(results))
        return 0
    finally:
        store.close()


def _config(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("host", "port", "security", "username", "sender", "to", "url", "transport", "facility")
    out: dict[str, Any] = {("from" if k == "sender" else k): getattr(args, k) for k in keys if getattr(args, k, None)}
    if args.no_verify_tls:
        out["verify_tls"] = False
    if args.ca_file:
        with open(args.ca_file, encoding="utf-8") as fh:
            out["ca_pem"] = fh.read()
    return out


def _secret(args: argparse.Namespace) -> str | None:
    if not args.secret_stdin:
        return None
    secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise InvalidInput("--secret-stdin was given but standard input had no secret on its first line")
    return secret


def cmd_channel_add(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        channel = channels.create(
            store,
            args.name,
            args.kind,
            _config(args),
            secret=_secret(args),
            min_level=args.level or "warning",
            notify_cleared=not args.no_cleared,
            quiet_hours=args.quiet_hours,
        )
        store.audit(ACTOR, "channel.create", channel.name, kind=channel.kind)
        print_json(channel.to_dict()) if args.json else print(f"channel {channel.name} ({channel.kind}) added")
        return 0
    finally:
        store.close()


def cmd_channel_set(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        changes: dict[str, Any] = {}
        config = _config(args)
        if config:
            changes["config"] = config
        if args.secret_stdin:
            changes["secret"] = _secret(args)
        if args.clear_secret:
            changes["secret"] = None
        if args.level:
            changes["min_level"] = args.level
        if args.quiet_hours is not None:
            changes["quiet_hours"] = args.quiet_hours
        if args.enable or args.disable:
            changes["enabled"] = bool(args.enable)
        if args.no_cleared:
            changes["notify_cleared"] = False
        channel = channels.update(store, args.name, **changes)
        store.audit(ACTOR, "channel.update", channel.name, fields=sorted(changes))
        print_json(channel.to_dict()) if args.json else print(f"channel {channel.name} updated")
        return 0
    finally:
        store.close()


def cmd_channel_list(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        found = channels.list_channels(store)
        if args.json:
            print_json([c.to_dict() for c in found])
            return 0
        for c in found:
            state = "enabled" if c.enabled else "disabled"
            health = f"last error: {c.last_error}" if c.last_error else f"last success {when(c.last_success_at)}"
            print(f"{c.name:20} {c.kind:8} {state:8} >={c.min_level:8} {c.target()}  ({health})")
        return 0
    finally:
        store.close()


def cmd_channel_remove(args: argparse.Namespace, paths: Paths) -> int:
    store = open_store(paths)
    try:
        channel = channels.delete(store, args.name)
        store.audit(ACTOR, "channel.delete", channel.name)
        print_json({"removed": channel.name}) if args.json else print(f"channel {channel.name} removed")
        return 0
    finally:
        store.close()


def _channel_options(p: argparse.ArgumentParser, *, adding: bool) -> None:
    if adding:
        p.add_argument("--kind", required=True, choices=channels.KINDS)
    p.add_argument("--level", choices=alerts.LEVELS, help="the lowest alert level it receives (default warning)")
    p.add_argument("--quiet-hours", metavar="WINDOW", help="e.g. '22:00-07:00': only critical alerts then")
    p.add_argument("--no-cleared", action="store_true", help="do not tell it when an alert clears")
    p.add_argument("--host", help="SMTP server or syslog host")
    p.add_argument("--port", type=int)
    p.add_argument("--security", choices=channels.SECURITY, help="SMTP: starttls (default), tls or none")
    p.add_argument("--username", help="SMTP user name (the password from --secret-stdin)")
    p.add_argument("--from", dest="sender", metavar="ADDRESS", help="SMTP sender address")
    p.add_argument("--to", help="SMTP recipients, separated by commas")
    p.add_argument("--url", help="webhook address (http:// or https://)")
    p.add_argument("--transport", choices=["udp", "tcp"], help="syslog transport (default udp)")
    p.add_argument("--facility", choices=sorted(channels.FACILITIES), help="syslog facility (default local0)")
    p.add_argument("--ca-file", help="trust this PEM certificate for the server's TLS (a private CA)")
    p.add_argument("--no-verify-tls", action="store_true", help="do not verify the server's certificate")
    p.add_argument("--secret-stdin", action="store_true", help="read the SMTP password or webhook HMAC key from stdin")
    p.add_argument("--json", action="store_true")


def register(sub: Any) -> None:
    alert = add_group(sub, "alert", "conditions that need attention")
    p = add_command(alert, "list", cmd_alert_list, "open alerts (with --all, cleared ones too)")
    p.add_argument("--all", action="store_true")
    p.add_argument("--status", choices=alerts.STATUSES, help="only alerts of this status")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--json", action="store_true")
    p = add_command(alert, "show", cmd_alert_show, "one alert with its history and notifications")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p = add_command(alert, "ack", cmd_alert_ack, "acknowledge an alert: someone is on it")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p = add_command(alert, "snooze", cmd_alert_snooze, "silence an alert until a time or for a while")
    p.add_argument("id", type=int)
    when_group = p.add_mutually_exclusive_group(required=True)
    when_group.add_argument("--until", help="e.g. '2026-11-27 08:00' or '08:00' (appliance time)")
    when_group.add_argument("--for", dest="for_", metavar="DURATION", help="e.g. 4h, 2d")
    p.add_argument("--json", action="store_true")
    p = add_command(alert, "unsnooze", cmd_alert_unsnooze, "end a snooze early")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p = add_command(alert, "test", cmd_alert_test, "send a test message to every channel, or one")
    p.add_argument("--channel", metavar="NAME")
    p.add_argument("--json", action="store_true")

    channel = add_group(sub, "channel", "where alerts are sent: e-mail, webhooks, syslog")
    p = add_command(channel, "add", cmd_channel_add, "add a notification channel")
    p.add_argument("name")
    _channel_options(p, adding=True)
    p = add_command(channel, "set", cmd_channel_set, "change a channel")
    p.add_argument("name")
    _channel_options(p, adding=False)
    p.add_argument("--clear-secret", action="store_true")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--enable", action="store_true")
    state.add_argument("--disable", action="store_true")
    p = add_command(channel, "list", cmd_channel_list, "channels with their last delivery")
    p.add_argument("--json", action="store_true")
    p = add_command(channel, "remove", cmd_channel_remove, "remove a channel")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
