"""``bulwark-agent``: the client agent (enroll, backup, restore, status)."""

from __future__ import annotations

import argparse
import base64
import json
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__, backup, image, policy, restore, state
from agent.transport import AgentError, Connection

MALFORMED = ("the enrollment code is malformed", "copy it again from 'bulwark client enroll-code'")


def _fingerprint_from_code(code: str) -> str:
    parts = code.strip().lower().split("-")
    if len(parts) != 3 or parts[0] != "bw1" or len(parts[2]) != 52:
        raise AgentError(*MALFORMED)
    try:
        return base64.b32decode(parts[2].upper() + "====").hex()
    except ValueError:
        raise AgentError(
            "the enrollment code is malformed", "copy it again from 'bulwark client enroll-code'"
        ) from None


def cmd_enroll(args: argparse.Namespace) -> dict[str, Any]:
    fingerprint = _fingerprint_from_code(args.code)
    conn = Connection(args.server, fingerprint)
    try:
        got = conn.request("POST", "/enroll", {"code": args.code, "hostname": args.hostname or socket.gethostname()})
    finally:
        conn.close()
    path = state.save_enrollment(
        args.state_dir,
        {
            "server": args.server,
            "fingerprint": fingerprint,
            "credential": f"{got['agent_id']}:{got['secret']}",
            "agent_id": got["agent_id"],
            "client": got["client"],
        },
    )
    return {"agent_id": got["agent_id"], "client": got["client"], "state": str(path)}


def cmd_backup(args: argparse.Namespace) -> dict[str, Any]:
    settings = policy.fetch(state.load_enrollment(args.state_dir))  # the appliance's paths, limit and window
    paths = policy.paths(args.paths, settings)
    policy.check_window(settings)
    limit = policy.bwlimit(args.bwlimit, settings)
    report = backup.run(args.state_dir, backup.check_paths(paths), bwlimit=limit, quiet=args.json)
    return report.to_dict()


def cmd_restore(args: argparse.Namespace) -> dict[str, Any]:
    return restore.run(args.state_dir, args.point, Path(args.to), args.paths)


def cmd_image_backup(args: argparse.Namespace) -> dict[str, Any]:
    settings = policy.fetch(state.load_enrollment(args.state_dir))
    policy.check_window(settings)
    return image.backup(
        args.state_dir,
        args.source,
        name=args.name,
        require_consistent=args.require_consistent,
        bwlimit=policy.bwlimit(args.bwlimit, settings),
        quiet=args.json,
    )


def cmd_image_restore(args: argparse.Namespace) -> dict[str, Any]:
    return image.restore(args.state_dir, args.point, args.target, name=args.image, quiet=args.json)


def cmd_status(args: argparse.Namespace) -> dict[str, Any]:
    enrolled = state.load_enrollment(args.state_dir)
    conn = Connection(enrolled["server"], enrolled["fingerprint"], enrolled["credential"])
    try:
        hello = conn.request("GET", "/hello")
        found = conn.request("GET", "/points")["points"]
        imaged = conn.request("GET", "/images")["images"]
    finally:
        conn.close()
    latest = max(found, key=lambda p: p["created_at"])["id"] if found else None
    images = {i["image"]: i["latest"] for i in imaged}
    return {"server": enrolled["server"], **hello, "points": len(found), "latest": latest, "images": images}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bulwark-agent", description="Bulwark backup agent")
    parser.add_argument("--version", action="version", version=f"bulwark-agent {__version__}")
    parser.add_argument("--state-dir", type=Path, default=None, help="credential and cache (default per OS)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("enroll", help="enroll with a one-time code from the appliance")
    p.add_argument("--server", required=True, help="https://HOST:PORT of the appliance")
    p.add_argument("--code", required=True)
    p.add_argument("--hostname", help="the name shown on the appliance (default: this machine's)")
    p.set_defaults(handler=cmd_enroll)
    p = sub.add_parser("backup", help="back up files: only what changed is sent")
    p.add_argument("paths", nargs="*", help="default: the client's paths set on the appliance")
    p.add_argument("--bwlimit", type=int, default=0, metavar="KIB_PER_S", help="bandwidth limit (0: none)")
    p.set_defaults(handler=cmd_backup)
    p = sub.add_parser("restore", help="restore files of a recovery point, verified by hash")
    p.add_argument("--point", default="latest", help="a point name or 'latest'")
    p.add_argument("--to", required=True, help="directory to restore into")
    p.add_argument("paths", nargs="*", help="only these paths (as they were backed up)")
    p.set_defaults(handler=cmd_restore)
    p = sub.add_parser("image-backup", help="back up a block device or disk image: only changed blocks are sent")
    p.add_argument("source", metavar="DEVICE|FILE")
    p.add_argument("--name", help="the image's name on the appliance (default: from the device, e.g. sda)")
    p.add_argument(
        "--require-consistent",
        action="store_true",
        help="refuse a device mounted read-write or being written (instead of a crash-consistent image)",
    )
    p.add_argument("--bwlimit", type=int, default=0, metavar="KIB_PER_S", help="bandwidth limit (0: none)")
    p.set_defaults(handler=cmd_image_backup)
    p = sub.add_parser("image-restore", help="write an image point onto a device or file, verified by hash")
    p.add_argument("--point", default="latest", help="a point (images/NAME@bw-…) or 'latest'")
    p.add_argument("--image", help="which image, when the client has several and --point is 'latest'")
    p.add_argument("target", metavar="DEVICE|FILE")
    p.set_defaults(handler=cmd_image_restore)
    p = sub.add_parser("status", help="enrollment and the latest recovery point")
    p.set_defaults(handler=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.state_dir is None:
        args.state_dir = state.default_state_dir()
    try:
        result = args.handler(args)
    except AgentError as exc:
        sys.stderr.write(f"bulwark-agent: error: {exc}\n")
        if exc.code in policy.RETRY_LATER:
            return policy.TEMPFAIL
        return 2 if exc.status in (401, 403) else 1
    except (OSError, KeyboardInterrupt) as exc:
        sys.stderr.write(f"bulwark-agent: error: {exc}\n")
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
