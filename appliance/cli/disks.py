"""``bulwark disk``: the inventory, SMART reports and verdicts, offline analysis of a saved report, self-tests."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from appliance.cli.common import add_command, add_group, open_store, print_json
from appliance.disks import inventory, overview, smart, smartctl
from appliance.disks.verdict import judge
from appliance.system import settings
from appliance.system.errors import BulwarkError, InvalidInput, NotFound, UnexpectedOutput
from appliance.system.paths import Paths
from appliance.system.runner import local_runner
from appliance.zfs import units
from appliance.zfs.host import ZfsHost

MAX_REPORT_BYTES = 16 * 1024 * 1024


def register(sub: Any) -> None:
    group = add_group(sub, "disk", "disks: inventory, SMART health, self-tests")
    p = add_command(group, "list", cmd_list, "list the disks with model, serial, size and pool membership")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add_command(group, "show", cmd_show, "read a disk's SMART report now and judge it")
    p.add_argument("device", help="device path, e.g. /dev/sda")
    p.add_argument("--type", dest="device_type", help="smartctl device type (e.g. sat, nvme, megaraid,0)")
    p.add_argument("--json", action="store_true", help="the whole parsed report as JSON")
    p = add_command(group, "check", cmd_check, "judge a disk, or a saved 'smartctl -j' output (offline analysis)")
    p.add_argument("device", nargs="?", help="device path (omit with --smartctl-json)")
    p.add_argument("--smartctl-json", metavar="FILE", help="a saved 'smartctl -j -x' output ('-' for stdin)")
    p.add_argument("--type", dest="device_type", help="smartctl device type")
    p.add_argument("--json", action="store_true", help='print {"verdict", "reasons", "device"}')
    p = add_command(group, "test", cmd_test, "start a SMART self-test inside the drive")
    p.add_argument("device", help="device path, e.g. /dev/sda")
    p.add_argument("--kind", choices=smartctl.TEST_KINDS, default="short", help="short (minutes) or long (hours)")
    p.add_argument("--type", dest="device_type", help="smartctl device type")


def _load(path: str) -> smart.SmartReport:
    if path == "-":
        data = sys.stdin.buffer.read(MAX_REPORT_BYTES + 1)
    else:
        file = Path(path)
        if not file.is_file():
            raise NotFound(f"file {path!r}")
        with file.open("rb") as fh:
            data = fh.read(MAX_REPORT_BYTES + 1)
    if len(data) > MAX_REPORT_BYTES:
        raise InvalidInput(f"{path!r} is larger than {MAX_REPORT_BYTES} bytes: not a smartctl report")
    try:
        return smart.parse_text(data)
    except UnexpectedOutput:
        raise InvalidInput(
            f"{path!r} is not the JSON output of 'smartctl -j' (save it with smartctl -j -x DEVICE)"
        ) from None


def _print_verdict(report: smart.SmartReport, as_json: bool) -> None:
    verdict = judge(report)
    if as_json:
        print_json({**verdict.to_dict(), "device": report.device_dict()})
        return
    who = " ".join(filter(None, (report.name, report.model, report.serial))) or "device"
    print(f"{who}: {verdict.verdict}")
    for reason in verdict.sorted_reasons():
        print(f"  - {reason}")


def cmd_check(args: argparse.Namespace, paths: Paths) -> int:
    if args.smartctl_json and args.device:
        raise InvalidInput("give either a device or --smartctl-json FILE, not both")
    if args.smartctl_json:
        report = _load(args.smartctl_json)
    elif args.device:
        report = smartctl.read(local_runner(), args.device, args.device_type)
    else:
        raise InvalidInput("give a device (e.g. /dev/sda) or --smartctl-json FILE")
    _print_verdict(report, args.json)
    return 0


def cmd_show(args: argparse.Namespace, paths: Paths) -> int:
    report = smartctl.read(local_runner(), args.device, args.device_type)
    if args.json:
        print_json({**judge(report).to_dict(), "report": report.to_dict()})
        return 0
    _print_verdict(report, False)
    print(f"  protocol {report.protocol or '?'}, firmware {report.firmware or '?'}, wwn {report.wwn or '?'}")
    if report.temperature is not None:
        print(f"  temperature {report.temperature} °C, {report.power_on_hours or '?'} power-on hours")
    for attr in report.attributes:
        print(
            f"  {attr.id:>3} {attr.name:<28} value {attr.value} worst {attr.worst} thresh {attr.thresh} "
            f"raw {attr.raw_string}"
        )
    return 0


def _rows(paths: Paths) -> list[dict[str, Any]]:
    """The inventory; on an initialized appliance with pool membership and the last SMART verdicts too."""
    if not paths.is_initialized():
        return [{**d.to_dict(), "smart": None} for d in inventory.scan()]
    store = open_store(paths)
    try:
        config = settings.load(store)
        try:
            zfs = ZfsHost.detect(local_runner()) if config is not None else None
        except BulwarkError:
            zfs = None
        return overview.disks(store, zfs, config.pool.name if config else None)
    finally:
        store.close()


def cmd_list(args: argparse.Namespace, paths: Paths) -> int:
    rows = _rows(paths)
    if args.json:
        print_json(rows)
        return 0
    print(f"{'NAME':<10} {'SIZE':>9} {'KIND':<7} {'MODEL':<28} {'SERIAL':<20} {'POOL':<20} SMART")
    for d in rows:
        pool = f"{d['pool']['pool']}/{d['pool']['vdev']}" if d["pool"] else "-"
        size = units.format_size(d["size_bytes"]) if d["size_bytes"] else "-"
        verdict = d["smart"]["verdict"] if d["smart"] else "no SMART" if d["kind"] == "loop" else "not read"
        print(
            f"{d['name']:<10} {size:>9} {d['kind']:<7} {d['model'] or '-':<28} {d['serial'] or '-':<20} "
            f"{pool:<20} {verdict}"
        )
    return 0


def cmd_test(args: argparse.Namespace, paths: Paths) -> int:
    report = smartctl.start_self_test(local_runner(), args.device, args.kind, args.device_type)
    if report.exit_status.command_failed:
        detail = "; ".join(report.messages) or "; ".join(report.exit_status.meanings())
        raise InvalidInput(f"smartctl could not start a {args.kind} self-test on {args.device}: {detail}")
    print(f"{args.kind} self-test started on {args.device}; 'bulwark disk show {args.device}' shows its progress")
    return 0
