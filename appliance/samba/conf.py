"""smb.conf from data: validation of everything that reaches the file, a pure builder, a logic-free template.

:func:`build` turns the appliance's SMB settings and its shares into sections (a name and ordered key/value
pairs); :func:`render` fills the template with them. Nothing else writes smb.conf text, and every value that
comes from a person (share names, comments, paths, account names) is checked by the ``check_*`` functions
first: a newline, a ``[``, a ``%`` substitution or a path outside the pool's clients tree is refused with
:class:`InvalidInput`, before anything is written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from appliance.system.errors import InvalidInput

TEMPLATE = Path(__file__).resolve().parent / "templates" / "smb.conf.j2"
# A share's name: what Windows shows as \\appliance\NAME. Client names already satisfy it.
_SHARE_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
_ACCOUNT = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_RESERVED_SHARES = frozenset({"global", "homes", "printers", "print$", "ipc$"})
MAX_COMMENT = 200
# Previous Versions names of snapshot folders: shadow_copy2's format (UTC).
SHADOW_FORMAT = "bw-%Y%m%dT%H%M%SZ"
PROTOCOLS = ("SMB2_10", "SMB3", "SMB3_11")


def check_share_name(name: str) -> str:
    if not isinstance(name, str) or not _SHARE_NAME.fullmatch(name) or name in _RESERVED_SHARES:
        shown = repr(name) if isinstance(name, str) and len(name) < 80 else "the given value"
        raise InvalidInput(
            f"share name {shown} must be 1 to 63 lowercase letters, digits and hyphens starting with a letter "
            "(no spaces, brackets, '%' or line breaks)"
        )
    return name


def check_account(name: str) -> str:
    if not isinstance(name, str) or not _ACCOUNT.fullmatch(name):
        raise InvalidInput(f"SMB account name {name!r} must be 1 to 32 lowercase letters, digits, '-' or '_'")
    return name


def check_comment(comment: str) -> str:
    """A share comment: one printable line without ``%`` (Samba's substitutions) or ``[``, ``]``, ``\\``."""
    if not isinstance(comment, str):
        raise InvalidInput("a share comment must be text")
    if len(comment) > MAX_COMMENT:
        raise InvalidInput(f"a share comment is limited to {MAX_COMMENT} characters")
    if any(not ch.isprintable() for ch in comment):
        raise InvalidInput("a share comment must be one line without control characters")
    bad = sorted(set(comment) & set("%[]\\;#"))
    if bad or comment != comment.strip():
        raise InvalidInput(
            f"a share comment must not contain {' '.join(bad) or 'leading or trailing spaces'} "
            "(Samba would read them as substitutions, sections or comments)"
        )
    return comment


def check_path(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    """An absolute, normalized path strictly inside ``root`` (the pool's clients tree), safe for smb.conf."""
    text = os.fspath(path)
    root_text = os.path.normpath(os.fspath(root))
    if not isinstance(text, str) or any(not ch.isprintable() or ch in "%[]\\;#\"'" for ch in text):
        raise InvalidInput(f"share path {text!r} contains characters smb.conf cannot hold safely")
    if not text.startswith("/") or os.path.normpath(text) != text.rstrip("/") or "/../" in text + "/":
        raise InvalidInput(f"share path {text!r} must be an absolute path without '..'")
    if not text.startswith(root_text.rstrip("/") + "/"):
        raise InvalidInput(f"share path {text!r} is outside the pool's clients tree {root_text}")
    return text


def check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidInput(f"SMB port {port!r} must be a number from 1 to 65535")
    return port


@dataclass(frozen=True)
class Layout:
    """Where this smbd keeps its state, and how it listens."""

    state_dir: Path  # Bulwark's own: private, lock, state, cache, pid and ncalrpc directories live here
    port: int = 445
    interfaces: tuple[str, ...] = ()  # empty: every interface
    min_protocol: str = "SMB2_10"
    server_string: str = "Bulwark backup appliance"

    @property
    def conf(self) -> Path:
        return self.state_dir / "smb.conf"

    def dir(self, what: str) -> Path:
        return self.state_dir / what

    @property
    def passdb(self) -> Path:
        return self.dir("private") / "passdb.tdb"

    def dirs(self) -> list[Path]:
        return [self.dir(d) for d in ("private", "lock", "state", "cache", "pid", "ncalrpc")]


@dataclass(frozen=True)
class ShareSpec:
    """One share as a person or a client's settings describe it (checked by :func:`build`)."""

    name: str
    path: str
    account: str  # the only account allowed in
    comment: str = ""
    encrypt: bool = False  # SMB3 encryption required on this share
    read_only: bool = False
    shadow: bool = False  # Previous Versions through shadow_copy2 from snapdir
    snapdir: str | None = None  # absolute (zfs-fuse read-only clones) or relative (".zfs/snapshot" on OpenZFS)


@dataclass(frozen=True)
class Section:
    name: str
    options: tuple[tuple[str, str], ...]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def global_section(layout: Layout) -> Section:
    if layout.min_protocol not in PROTOCOLS:
        raise InvalidInput(f"minimum SMB protocol {layout.min_protocol!r} must be one of {', '.join(PROTOCOLS)}")
    check_port(layout.port)
    for iface in layout.interfaces:
        if not re.fullmatch(r"[0-9a-fA-F.:/]+|[a-z][a-z0-9]{0,14}", iface):
            raise InvalidInput(f"interface {iface!r} must be an address or an interface name")
    state = os.fspath(layout.state_dir)
    if any(not ch.isprintable() or ch in "%[]\\;#" for ch in state):
        raise InvalidInput("the SMB state directory path contains characters smb.conf cannot hold")
    options: list[tuple[str, str]] = [
        ("server string", check_comment(layout.server_string)),
        ("server role", "standalone server"),
        ("smb ports", str(layout.port)),
    ]
    if layout.interfaces:
        options += [("interfaces", " ".join(layout.interfaces)), ("bind interfaces only", "yes")]
    options += [
        ("disable netbios", "yes"),
        ("server min protocol", layout.min_protocol),
        ("server max protocol", "SMB3"),
        ("server signing", "mandatory"),
        ("server smb encrypt", "if_required"),
        ("map to guest", "Never"),
        ("restrict anonymous", "2"),
        ("usershare max shares", "0"),
        ("load printers", "no"),
        ("printing", "bsd"),
        ("printcap name", "/dev/null"),
        ("disable spoolss", "yes"),
        ("passdb backend", f"tdbsam:{layout.passdb}"),
        ("private dir", f"{state}/private"),
        ("lock directory", f"{state}/lock"),
        ("state directory", f"{state}/state"),
        ("cache directory", f"{state}/cache"),
        ("pid directory", f"{state}/pid"),
        ("ncalrpc dir", f"{state}/ncalrpc"),
        ("log level", "1"),
        ("logging", "stdout"),
        ("unix password sync", "no"),
        ("obey pam restrictions", "no"),
        ("ntlm auth", "ntlmv2-only"),
        ("server services", "-nbt"),
        ("dns proxy", "no"),
        ("host msdfs", "no"),
        ("wide links", "no"),
        ("allow insecure wide links", "no"),
        ("unix extensions", "no"),
        ("store dos attributes", "no"),  # zfs-fuse has no xattrs
    ]
    return Section("global", tuple(options))


def share_section(spec: ShareSpec, root: str) -> Section:
    name = check_share_name(spec.name)
    path = check_path(spec.path, root)
    account = check_account(spec.account)
    options: list[tuple[str, str]] = [
        ("path", path),
        ("comment", check_comment(spec.comment)),
        ("valid users", account),
        ("read only", _yes(spec.read_only)),
        ("browseable", "no"),
        ("guest ok", "no"),
        ("smb encrypt", "required" if spec.encrypt else "if_required"),
        ("create mask", "0600"),
        ("directory mask", "0700"),
        ("inherit owner", "no"),
        ("strict sync", "yes"),
        ("kernel share modes", "no"),
        ("posix locking", "no"),
    ]
    if spec.shadow:
        snapdir = spec.snapdir or ".zfs/snapshot"
        if snapdir.startswith("/"):
            check_path(snapdir, root)
        elif snapdir != ".zfs/snapshot":
            raise InvalidInput(f"snapshot folder {snapdir!r} must be absolute or .zfs/snapshot")
        options += [
            ("vfs objects", "shadow_copy2"),
            ("shadow:snapdir", snapdir),
            ("shadow:mountpoint", path),
            ("shadow:format", SHADOW_FORMAT),
            ("shadow:sort", "desc"),
            ("shadow:localtime", "no"),
        ]
    return Section(name, tuple(options))


def build(layout: Layout, shares: Sequence[ShareSpec], root: str) -> list[Section]:
    """The whole configuration (pure: the same input always gives the same sections)."""
    sections = [global_section(layout)]
    seen: set[str] = set()
    for spec in sorted(shares, key=lambda s: s.name):
        if spec.name in seen:
            raise InvalidInput(f"two shares are named {spec.name!r}")
        seen.add(spec.name)
        sections.append(share_section(spec, root))
    return sections


_ENV = jinja2.Environment(  # noqa: S701 - smb.conf text, not HTML
    loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render(sections: Sequence[Section]) -> str:
    """smb.conf text. A value that could break out of its line is refused even here (defence in depth)."""
    for section in sections:
        for key, value in section.options:
            if any(ch in value for ch in "\n\r\0") or any(ch in key for ch in "\n\r\0=["):
                raise InvalidInput(f"smb.conf value for {key!r} in [{section.name}] contains a line break")
        if any(not ch.isprintable() or ch in "[]" for ch in section.name):
            raise InvalidInput(f"smb.conf section name {section.name!r} is malformed")
    return _ENV.get_template(TEMPLATE.name).render(sections=sections)
