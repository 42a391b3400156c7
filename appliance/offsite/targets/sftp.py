"""An SFTP server as an offsite target, through the system's OpenSSH ``sftp`` client (via the command runner).

The server's host key is pinned: it is written to a known-hosts file of the target's own, under an alias, with
strict checking, so a server showing any other key is refused (:class:`HostKeyMismatch`). The account needs only
SFTP (``internal-sftp``, no shell). Each operation is one ``sftp -b -`` batch; connections are shared through an
OpenSSH control master that exits by itself after a few idle seconds. A put uploads to ``<path>.tmp-<random>``
and renames it into place (POSIX rename), so an interrupted upload never leaves a half object under its name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from appliance.offsite.errors import HostKeyMismatch, ObjectMissing, TargetUnreachable
from appliance.offsite.targets.base import check_path, check_prefix
from appliance.system.errors import CommandFailed, CommandTimeout, InvalidInput
from appliance.system.runner import Runner, local_runner

_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9a-fA-F:]+\]")
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_REMOTE_ROOT = re.compile(r"/?[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*|/")
_HOST_KEY = re.compile(
    r"(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|rsa-sha2-(256|512)|ssh-rsa) [A-Za-z0-9+/=]{40,1000}"
)
TIMEOUT = 300.0
CONTROL_PERSIST = "10"


@dataclass(frozen=True)
class SftpConfig:
    host: str
    port: int
    user: str
    path: str  # the repository's folder on the server
    host_key: str  # "ssh-ed25519 AAAA…": the pinned key

    def check(self) -> SftpConfig:
        if not _HOST.fullmatch(self.host):
            raise InvalidInput(f"SFTP host {self.host!r} must be a host name or an IP address")
        if not 1 <= self.port <= 65535:
            raise InvalidInput("the SFTP port must be between 1 and 65535")
        if not _USER.fullmatch(self.user):
            raise InvalidInput(f"SFTP user {self.user!r} must be a plain account name")
        if not _REMOTE_ROOT.fullmatch(self.path) or ".." in self.path.split("/"):
            raise InvalidInput("the SFTP path must be a plain folder path (letters, digits, '._~-', no '..')")
        key = " ".join(self.host_key.split()[:2])
        if not _HOST_KEY.fullmatch(key):
            raise InvalidInput("the host key must be a public key line such as 'ssh-ed25519 AAAA…' (ssh-keyscan)")
        return SftpConfig(self.host, self.port, self.user, self.path.rstrip("/") or "/", key)


class SftpTarget:
    kind = "sftp"

    def __init__(
        self, name: str, config: SftpConfig, identity: str, workdir: Path, runner: Runner | None = None
    ) -> None:
        self.name = name
        self.config = config.check()
        self.runner = runner or local_runner()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.alias = f"bulwark-offsite-{name}"
        self.known_hosts = workdir / "known_hosts"
        self.known_hosts.write_text(f"{self.alias} {self.config.host_key}\n")
        self.identity = workdir / "id"
        if not identity.strip().startswith("-----BEGIN OPENSSH PRIVATE KEY-----"):
            raise InvalidInput("the SFTP identity must be an OpenSSH private key without a passphrase")
        fd = os.open(self.identity, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(identity.strip() + "\n")
        # The control socket needs a short path (sockets are limited to 108 bytes).
        sockets = Path(tempfile.gettempdir()) / f"bwssh-{os.getuid()}"
        sockets.mkdir(mode=0o700, exist_ok=True)
        digest = hashlib.sha256(str(workdir).encode()).hexdigest()[:16]
        self.control = sockets / digest
        self._made: set[str] = set()

    # -- running sftp ----------------------------------------------------------------------------------------

    def _argv(self) -> list[str]:
        return [
            "sftp", "-b", "-", "-o", "LogLevel=ERROR", "-P", str(self.config.port),
            "-o", f"HostKeyAlias={self.alias}", "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no",
            "-o", "CheckHostIP=no", "-o", f"IdentityFile={self.identity}", "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no", "-o", "ConnectTimeout=15",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3", "-o", f"User={self.config.user}",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control}", "-o", f"ControlPersist={CONTROL_PERSIST}",
            self.config.host,
        ]  # fmt: skip

    def _batch(self, commands: list[str], subject: str) -> str:
        script = "".join(c + "\n" for c in commands).encode()
        try:
            return self.runner.run(self._argv(), input=script, timeout=TIMEOUT).out
        except CommandFailed as exc:
            err = exc.stderr
            if "Host key verification failed" in err or "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
                raise HostKeyMismatch(self.name) from exc
            if "not found" in err or "No such file" in err:
                raise ObjectMissing(subject, self.name) from exc
            raise TargetUnreachable(self.name, _last_line(err)) from exc
        except CommandTimeout as exc:
            raise TargetUnreachable(self.name, f"no answer within {TIMEOUT:.0f} s") from exc

    def _remote(self, path: str) -> str:
        root = self.config.path
        return f"{root}/{path}" if root != "/" else f"/{path}"

    def _spool(self) -> Path:
        spool = self.workdir / "spool"
        spool.mkdir(exist_ok=True, mode=0o700)
        return spool / secrets.token_hex(8)

    # -- the target --------------------------------------------------------------------------------------------

    def put(self, path: str, data: bytes | bytearray) -> None:
        check_path(path)
        local = self._spool()
        local.write_bytes(data)
        parts = path.split("/")
        dirs = ["/".join(parts[:i]) for i in range(1, len(parts))]
        commands = [f'-mkdir "{self._remote(d)}"' for d in dirs if d not in self._made]
        if self.config.path not in ("/", ".") and not self._made:
            commands.insert(0, f'-mkdir "{self.config.path}"')
        tmp = f"{self._remote(path)}.tmp-{secrets.token_hex(4)}"
        commands += [f'put "{local}" "{tmp}"', f'rename "{tmp}" "{self._remote(path)}"']
        try:
            self._batch(commands, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                local.unlink()
        self._made.update(dirs)

    def get(self, path: str) -> bytes:
        check_path(path)
        local = self._spool()
        try:
            self._batch([f'get "{self._remote(path)}" "{local}"'], path)
            return local.read_bytes()
        finally:
            with contextlib.suppress(FileNotFoundError):
                local.unlink()

    def list(self, prefix: str = "") -> list[str]:
        check_prefix(prefix)
        found: list[str] = []
        level = [prefix.rstrip("/")]
        while level:
            commands = [f'-ls -la "{self._remote(d) if d else self.config.path}"' for d in level]
            out = self._batch(commands, prefix or "/")
            entries = _parse_listings(out, len(level))
            nxt = []
            for base, listing in zip(level, entries, strict=True):
                for kind, name in listing:
                    rel = f"{base}/{name}" if base else name
                    if name.startswith(".") or ".tmp-" in name:
                        continue
                    if kind == "d":
                        nxt.append(rel)
                    elif kind == "-":
                        found.append(rel)
            level = nxt
        return sorted(found)

    def delete(self, path: str) -> bool:
        check_path(path)
        try:
            self._batch([f'rm "{self._remote(path)}"'], path)
        except ObjectMissing:
            return False
        return True

    def close(self) -> None:
        """Ask the control master (if one is up) to exit now."""
        if self.control.exists():
            argv = ["ssh", "-O", "exit", "-o", f"ControlPath={self.control}", self.config.host]
            with contextlib.suppress(CommandFailed, CommandTimeout):
                self.runner.run(argv, timeout=10, ok_codes=range(256))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "sftp failed without a message"


def _parse_listings(out: str, count: int) -> list[list[tuple[str, str]]]:
    """Split the output of ``count`` ``ls -la`` commands (each echoed as ``sftp> ls …``) into (type, name) lists;
    a folder that does not exist gives an empty list."""
    listings: list[list[tuple[str, str]]] = []
    for line in out.splitlines():
        if line.startswith("sftp> "):
            listings.append([])
            continue
        fields = line.split()
        if not listings or len(fields) < 9 or fields[0][:1] not in "d-l":
            continue
        name = fields[-1].rsplit("/", 1)[-1]
        if name in (".", ".."):
            continue
        listings[-1].append((fields[0][0], name))
    if len(listings) != count:
        raise TargetUnreachable("sftp", f"unexpected listing output ({len(listings)} listings for {count} folders)")
    return listings
