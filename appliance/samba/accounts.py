"""SMB accounts: one per client, a Unix account without a shell or home plus an entry in Bulwark's own tdbsam.

The account name is the client's name behind a prefix (``bw-`` on an appliance), cut and suffixed with a short
digest when that would exceed Linux's 32 characters. Passwords reach ``smbpasswd`` on stdin only, never argv.
"""

from __future__ import annotations

import hashlib
import pwd
import secrets
import string

from appliance.samba.conf import Layout, check_account
from appliance.system.errors import CommandFailed, InvalidInput
from appliance.system.runner import Runner

DEFAULT_PREFIX = "bw-"
MIN_PASSWORD = 12
MAX_PASSWORD = 128
_ALPHABET = string.ascii_letters + string.digits


def account_name(client: str, prefix: str = DEFAULT_PREFIX) -> str:
    name = prefix + client
    if len(name) > 32:
        digest = hashlib.sha256(client.encode()).hexdigest()[:6]
        name = f"{prefix}{client[: 32 - len(prefix) - 7]}-{digest}"
    return check_account(name)


def generate_password() -> str:
    """24 letters and digits (about 143 bits)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(24))


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"an SMB password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    if any(not ch.isprintable() for ch in password):
        raise InvalidInput("an SMB password must not contain line breaks or control characters")
    return password


def unix_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def ensure_unix(runner: Runner, name: str) -> int:
    """The account's uid, creating it (no home, no shell, no password) if missing."""
    check_account(name)
    if not unix_exists(name):
        runner.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
             "/usr/sbin/nologin", "--user-group", "--comment", "Bulwark SMB client account", name],
            timeout=30,
        )  # fmt: skip
    return pwd.getpwnam(name).pw_uid


def listed(runner: Runner, layout: Layout) -> set[str]:
    """Accounts in Bulwark's tdbsam."""
    result = runner.run(["pdbedit", "-s", str(layout.conf), "-L"], ok_codes=range(256), timeout=30)
    if result.returncode != 0:
        return set()
    return {line.split(":", 1)[0] for line in result.out.splitlines() if ":" in line}


def set_password(runner: Runner, layout: Layout, name: str, password: str) -> None:
    """Create the tdbsam entry or change its password (the Unix account must exist)."""
    check_account(name)
    check_password(password)
    data = f"{password}\n{password}\n".encode()
    runner.run(["smbpasswd", "-c", str(layout.conf), "-s", "-a", name], input=data, timeout=30)
    runner.run(["smbpasswd", "-c", str(layout.conf), "-e", name], timeout=30)


def remove(runner: Runner, layout: Layout, name: str) -> None:
    """Remove the account from tdbsam and the Unix account (both may already be gone)."""
    check_account(name)
    if name in listed(runner, layout):
        runner.run(["smbpasswd", "-c", str(layout.conf), "-x", name], timeout=30)
    if unix_exists(name):
        try:
            runner.run(["userdel", name], timeout=30)
        except CommandFailed:
            if unix_exists(name):
                raise
