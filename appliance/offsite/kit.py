"""The recovery kit as a text file: a readable header, the kit armoured in base64, and a printable form.

The printable form is the same bytes in base32, in numbered lines of 8 groups of 5 characters, each line ending
with 4 hex digits of SHA-256 over "<number>:<groups>" so that a mistyped line is found (docs/offsite-format.md §3).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from typing import Any

from appliance.offsite.errors import BadKit

BEGIN = "-----BEGIN BULWARK OFFSITE KIT-----"
END = "-----END BULWARK OFFSITE KIT-----"
GROUP, GROUPS = 5, 8
_GROUP = re.compile(r"[A-Z2-7]{1,5}")
_HEX4 = re.compile(r"[0-9a-f]{4}")


def _check(number: int, groups: str) -> str:
    return hashlib.sha256(f"{number}:{groups}".encode()).hexdigest()[:4]


def printable_lines(blob: bytes) -> list[str]:
    text = base64.b32encode(blob).decode().rstrip("=")
    per_line = GROUP * GROUPS
    lines = []
    for number, start in enumerate(range(0, len(text), per_line), start=1):
        part = text[start : start + per_line]
        groups = " ".join(part[i : i + GROUP] for i in range(0, len(part), GROUP))
        lines.append(f"{number:03d}  {groups}  {_check(number, groups)}")
    return lines


def render(document: dict[str, Any]) -> str:
    blob = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    armoured = base64.b64encode(blob).decode()
    keys = document.get("keys", [])
    made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(document.get("created_at", time.time())))
    parts = [
        "BULWARK OFFSITE RECOVERY KIT",
        "",
        f"Appliance:  {document.get('appliance', '')}",
        f"Written:    {made}",
        f"Keys:       {len(keys)} (active {document.get('active_key', '')})",
        "",
        "With this kit, the passphrase (NOT written here) and the offsite target's credentials, every recovery",
        "point replicated offsite can be restored on a new appliance:",
        "  bulwark offsite restore --target NAME --client CLIENT --point latest --kit FILE --passphrase-stdin",
        "Keep it apart from the appliance: a safe, a password manager, a printed copy.",
        "",
        BEGIN,
        *[armoured[i : i + 64] for i in range(0, len(armoured), 64)],
        END,
        "",
        "Printable form (the same kit, to type back in: line number, 8 groups, check digits):",
        "",
        *printable_lines(blob),
        "",
    ]
    return "\n".join(parts)


def _decode_json(blob: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadKit(f"its contents are not a kit document ({exc})") from None
    if not isinstance(doc, dict):
        raise BadKit("its contents are not a kit document")
    return doc


def parse(text: str) -> dict[str, Any]:
    """The kit document from a kit file's text (the armoured block, else the printable lines)."""
    if len(text) > 4 * 1024 * 1024:
        raise BadKit("the file is far larger than any kit")
    if BEGIN in text:
        if END not in text:
            raise BadKit(f"the block starting with {BEGIN} has no end line")
        body = text.split(BEGIN, 1)[1].split(END, 1)[0]
        try:
            return _decode_json(base64.b64decode("".join(body.split()), validate=True))
        except binascii.Error as exc:
            raise BadKit(f"the armoured block is damaged ({exc})") from None
    return parse_printable(text)


def parse_printable(text: str) -> dict[str, Any]:
    chars: list[str] = []
    expected = 1
    for raw in text.splitlines():
        tokens = raw.split()
        if len(tokens) < 3 or not tokens[0].isdigit() or not _HEX4.fullmatch(tokens[-1].lower()):
            continue
        if not all(_GROUP.fullmatch(t.upper()) for t in tokens[1:-1]):
            continue
        number, groups, check = int(tokens[0]), " ".join(t.upper() for t in tokens[1:-1]), tokens[-1].lower()
        if number != expected:
            raise BadKit(f"printable line {expected:03d} is missing (found {number:03d})")
        if _check(number, groups) != check:
            raise BadKit(f"printable line {number:03d} is mistyped (its check digits do not match)")
        chars.append(groups.replace(" ", ""))
        expected += 1
    if not chars:
        raise BadKit(f"neither the {BEGIN} block nor printable lines were found")
    data = "".join(chars)
    try:
        blob = base64.b32decode(data + "=" * (-len(data) % 8))
    except binascii.Error as exc:
        raise BadKit(f"the printable lines do not decode ({exc})") from None
    return _decode_json(blob)
