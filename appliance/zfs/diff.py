"""``zfs diff`` (OpenZFS only): which files a recovery point added, removed, modified or renamed.

Read with ``-F -H -t``: one line per change, tab-separated ``time, change, type, path[, new path]``. Paths are
the absolute paths of the mounted filesystem, with every byte that is not printable ASCII (spaces, tabs,
non-ASCII letters, backslashes) written as ``\\`` and four octal digits; they are decoded back to the exact
name (bytes that are not UTF-8 are kept as surrogates, as Bulwark's other paths). The dataset must be mounted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.system.errors import InvalidInput, UnexpectedOutput
from appliance.zfs import names
from appliance.zfs.host import ZfsHost

CHANGES = {"+": "added", "-": "removed", "M": "modified", "R": "renamed"}
KINDS = {
    "F": "file",
    "/": "directory",
    "@": "symlink",
    "|": "fifo",
    "=": "socket",
    "B": "block_device",
    "C": "char_device",
    ">": "door",
    "P": "event_port",
}
_ESCAPE = re.compile(rb"\\([0-7]{4})")
_TIME = re.compile(r"\d+\.\d{9}")


@dataclass(frozen=True)
class Change:
    change: str  # "added", "removed", "modified", "renamed"
    kind: str  # "file", "directory", "symlink", …
    path: str  # absolute, as mounted (for a rename: the old path)
    new_path: str | None  # for a rename: the new path
    changed_at: float  # epoch seconds of the inode's change time

    def to_dict(self) -> dict[str, object]:
        return {
            "change": self.change,
            "kind": self.kind,
            "path": self.path,
            "new_path": self.new_path,
            "changed_at": self.changed_at,
        }


def unescape(field: bytes) -> str:
    """A path as ``zfs diff`` prints it → the exact name."""
    raw = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), field)
    return raw.decode("utf-8", "surrogateescape")


def parse_diff(stdout: bytes) -> list[Change]:
    """The output of ``zfs diff -F -H -t``."""
    changes = []
    for line in stdout.split(b"\n"):
        if not line:
            continue
        fields = line.split(b"\t")
        text = line.decode("utf-8", "replace")
        if len(fields) not in (4, 5):
            raise UnexpectedOutput("zfs diff", text)
        when, change, kind = (f.decode("ascii", "replace") for f in fields[:3])
        if not _TIME.fullmatch(when) or change not in CHANGES or kind not in KINDS:
            raise UnexpectedOutput("zfs diff", text)
        if (change == "R") != (len(fields) == 5):
            raise UnexpectedOutput("zfs diff", text)
        changes.append(
            Change(
                change=CHANGES[change],
                kind=KINDS[kind],
                path=unescape(fields[3]),
                new_path=unescape(fields[4]) if len(fields) == 5 else None,
                changed_at=float(when),
            )
        )
    return changes


def diff(host: ZfsHost, snapshot: str, later: str | None = None) -> list[Change]:
    """The changes from ``snapshot`` to ``later``: a later snapshot of the same dataset, or (``None``) the
    dataset as it is now."""
    host.caps.require("diff")
    dataset, _ = names.split_snapshot(snapshot)
    args = ["diff", "-F", "-H", "-t", snapshot]
    if later is not None:
        later_dataset = names.split_snapshot(later)[0] if "@" in later else names.dataset_name(later)
        if later_dataset != dataset:
            raise InvalidInput(f"{later} is not of the same dataset as {snapshot}")
        if later == snapshot:
            return []  # (zfs diff refuses to compare a snapshot with itself; nothing changed)
        args.append(later)
    result = host.zfs(*args, subject=dataset, timeout=600)
    return parse_diff(result.stdout)
