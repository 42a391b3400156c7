"""The appliance's own ed25519 key pair, the jump host's pinned host key, and the line the MSP installs.

The private key lives in ``<data dir>/tunnel/id_ed25519`` (mode 0600, directory 0700) and is made by
``ssh-keygen``. The jump host's key is pinned in a known_hosts file of Bulwark's own, under a fixed alias, so
that ``ssh`` compares exactly that key (``StrictHostKeyChecking=yes``) and nothing in root's files matters."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from appliance.system.errors import InvalidInput, UnexpectedOutput
from appliance.system.paths import Paths
from appliance.system.runner import Runner
from appliance.tunnel.errors import HostKeyScanFailed

HOST_ALIAS = "bulwark-jump"
HOST_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
SCAN_TIMEOUT = 5
NO_OPEN = "127.0.0.1:1"  # the only local-forward target the key line permits: a closed privileged port
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_COMMENT = re.compile(r"[A-Za-z0-9@._-]{1,64}")


def tunnel_dir(paths: Paths) -> Path:
    return paths.data_dir / "tunnel"


def private_key_path(paths: Paths) -> Path:
    return tunnel_dir(paths) / "id_ed25519"


def known_hosts_path(paths: Paths) -> Path:
    return tunnel_dir(paths) / "known_hosts"


@dataclass(frozen=True)
class PublicKey:
    """An OpenSSH public key: its type, its base64 blob and an optional comment."""

    type: str
    blob: str
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.blob)

    def line(self) -> str:
        return f"{self.type} {self.blob}" + (f" {self.comment}" if self.comment else "")

    def bare(self) -> str:
        return f"{self.type} {self.blob}"


def fingerprint_of(blob: str) -> str:
    """``SHA256:…`` as ``ssh-keygen -l`` and ``ssh`` print it."""
    raw = base64.b64decode(blob, validate=True)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def check_fingerprint(text: str) -> str:
    value = text.strip() if isinstance(text, str) else ""
    if not _FINGERPRINT.fullmatch(value):
        raise InvalidInput("a fingerprint looks like SHA256: followed by 43 characters, as 'ssh-keygen -lf' prints it")
    return value


def _wire_strings(raw: bytes) -> list[bytes]:
    """A key blob is a run of length-prefixed strings that ends exactly at its end; else it is damaged."""
    out = []
    at = 0
    while at < len(raw):
        if at + 4 > len(raw):
            return []
        size = int.from_bytes(raw[at : at + 4], "big")
        if at + 4 + size > len(raw):
            return []
        out.append(raw[at + 4 : at + 4 + size])
        at += 4 + size
    return out


def parse_public_key(text: str, *, allowed: tuple[str, ...] = HOST_KEY_TYPES) -> PublicKey:
    """One key as ``TYPE BASE64 [comment]``, or a known_hosts / ssh-keyscan line ``HOST TYPE BASE64``. The blob
    must decode and name its own type (a key pasted with a character missing is refused, not half-trusted)."""
    if not isinstance(text, str) or "\n" in text.strip() or "\0" in text:
        raise InvalidInput("paste exactly one key line, such as 'ssh-ed25519 AAAA…'")
    parts = text.split()
    if len(parts) >= 3 and parts[0] not in allowed and parts[1] in allowed:
        parts = parts[1:]  # a known_hosts or ssh-keyscan line: the host field first
    if len(parts) < 2 or parts[0] not in allowed:
        raise InvalidInput(f"a key must start with one of {', '.join(allowed)}")
    key_type, blob = parts[0], parts[1]
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("the key's base64 part is damaged (a character missing or extra?)") from None
    fields = _wire_strings(raw)
    if not fields or fields[0].decode("ascii", "replace") != key_type:
        raise InvalidInput("the key's data does not match its type (a damaged or mixed-up paste?)")
    if key_type == "ssh-ed25519" and (len(fields) != 2 or len(fields[1]) != 32):
        raise InvalidInput("the ed25519 key is damaged (its data has the wrong length)")
    comment = parts[2] if len(parts) > 2 and _COMMENT.fullmatch(parts[2]) else ""
    return PublicKey(key_type, blob, comment)


# -- the appliance's key pair -------------------------------------------------------------------------------------


def ensure_key_pair(paths: Paths, runner: Runner, comment: str) -> PublicKey:
    """The appliance's key, made with ``ssh-keygen`` the first time. The private key is 0600 in a 0700 folder."""
    if not _COMMENT.fullmatch(comment):
        raise InvalidInput(f"key comment {comment!r} must be letters, digits, '@', '.', '_' or '-'")
    folder = tunnel_dir(paths)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key = private_key_path(paths)
    if not key.exists():
        with contextlib.suppress(FileNotFoundError):
            key.with_name(key.name + ".pub").unlink()
        runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], timeout=30)
    os.chmod(key, 0o600)
    return public_key(paths)


def has_key_pair(paths: Paths) -> bool:
    return private_key_path(paths).exists()


def public_key(paths: Paths) -> PublicKey:
    path = private_key_path(paths).with_name("id_ed25519.pub")
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        from appliance.tunnel.errors import TunnelNotConfigured

        raise TunnelNotConfigured() from None
    try:
        return parse_public_key(text, allowed=("ssh-ed25519",))
    except InvalidInput as exc:
        raise UnexpectedOutput("ssh-keygen", text) from exc


def authorized_keys_line(key: PublicKey, remote_port: int) -> str:
    """The one line the MSP adds to the jump host user's authorized_keys: this key may open exactly one remote
    forward, on the jump host's loopback at ``remote_port``, and nothing else. ``restrict`` turns everything off;
    ``port-forwarding`` turns forwarding on again in BOTH directions, so ``permitlisten`` limits the remote side
    and ``permitopen`` the local side (``ssh -L``/``-W``) to a closed port — authorized_keys has no "none" for it;
    ``restrict`` alone would still run a command, which ``command=`` closes."""
    options = (
        f'restrict,port-forwarding,permitlisten="127.0.0.1:{remote_port}",permitopen="{NO_OPEN}",command="/bin/false"'
    )
    return f"{options} {key.line()}"


# -- the jump host's key ------------------------------------------------------------------------------------------


def parse_keyscan(text: str) -> list[PublicKey]:
    """``ssh-keyscan`` output: ``HOST TYPE BASE64`` lines, ``#`` comments. Anything else is unexpected."""
    keys = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise UnexpectedOutput("ssh-keyscan", line)
        try:
            keys.append(parse_public_key(" ".join(parts[1:])))
        except InvalidInput as exc:
            raise UnexpectedOutput("ssh-keyscan", line) from exc
    return keys


def scan_host_key(runner: Runner, host: str, port: int) -> PublicKey:
    """Ask the jump host for its key (ed25519 preferred). The caller shows the fingerprint for confirmation."""
    result = runner.run(
        ["ssh-keyscan", "-T", str(SCAN_TIMEOUT), "-p", str(port), "-t", "ed25519,ecdsa,rsa", host],
        timeout=SCAN_TIMEOUT * 4,
        ok_codes=range(256),
    )
    keys = parse_keyscan(result.out)
    if not keys:
        reason = " ".join(line for line in result.err.splitlines() if not line.startswith("#")).strip()
        raise HostKeyScanFailed(f"{host}:{port}", reason or "no answer")
    for wanted in HOST_KEY_TYPES:
        for key in keys:
            if key.type == wanted:
                return key
    return keys[0]


def write_known_hosts(paths: Paths, key_line: str | None) -> Path:
    """Bulwark's own known_hosts: the pinned key under a fixed alias, or empty (then nothing is trusted)."""
    folder = tunnel_dir(paths)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    target = known_hosts_path(paths)
    tmp = target.with_name(target.name + ".tmp")
    content = ""
    if key_line:
        content = f"{HOST_ALIAS} {parse_public_key(key_line).bare()}\n"
    tmp.write_text(content)
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    return target
