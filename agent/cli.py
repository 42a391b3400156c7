"""``bulwark-agent``: the client agent (enroll, backup, restore, status)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from appliance import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bulwark-agent", description="Bulwark backup agent")
    parser.add_argument("--version", action="version", version=f"bulwark-agent {__version__}")
    parser.add_argument("command", nargs="?", choices=["enroll", "backup", "restore", "status"])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    sys.stderr.write(f"bulwark-agent: '{args.command}' is not available in this version of the agent yet\n")
    return 11


if __name__ == "__main__":
    sys.exit(main())
