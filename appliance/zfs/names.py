"""Strict validation of every name and value that reaches zfs or zpool.

ZFS itself accepts more than Bulwark does (zfs-fuse even accepts spaces); Bulwark accepts only a
conservative subset so that a name can never be mistaken for an option, split a tab-separated
output line, or carry a newline into a config file.
"""

from __future__ import annotations

import re

from appliance.system.errors import InvalidInput

MAX_NAME = 255
_COMPONENT = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"
_POOL_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,62}")
_COMPONENT_RE = re.compile(_COMPONENT)
_DATASET_RE = re.compile(rf"[A-Za-z][A-Za-z0-9_.-]{{0,62}}(/{_COMPONENT})*")
_SNAPSHOT_RE = re.compile(rf"(?P<ds>[^@]+)@(?P<snap>{_COMPONENT})")
_NATIVE_PROP_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_USER_PROP_RE = re.compile(r"bulwark:[a-z0-9][a-z0-9_.:-]{0,127}")
_HOLD_TAG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# 'zpool create' refuses names that merely begin with mirror, raidz, draid or spare ("name is reserved").
_RESERVED_POOL = re.compile(r"(mirror|raidz|draid|spare).*|log|cache|special|dedup|c\d.*")
USER_NAMESPACE = "bulwark:"
MAX_USER_VALUE = 8191


def _describe(value: object) -> str:
    return repr(value) if isinstance(value, str) and len(value) < 80 else "the given value"


def pool_name(name: str) -> str:
    """A pool name: a letter, then letters, digits, ``_ . -``; not a vdev keyword (nor begins with one)."""
    if not isinstance(name, str) or not _POOL_RE.fullmatch(name) or _RESERVED_POOL.fullmatch(name):
        raise InvalidInput(
            f"pool name {_describe(name)} must start with a letter and contain only letters, digits, "
            "'_', '.' and '-' (at most 63), and must not be a vdev keyword such as 'mirror'"
        )
    return name


def component(name: str) -> str:
    """One path component of a dataset or snapshot name."""
    if not isinstance(name, str) or not _COMPONENT_RE.fullmatch(name):
        raise InvalidInput(
            f"name {_describe(name)} must start with a letter or digit and contain only letters, "
            "digits, '_', '.', ':' and '-' (at most 128)"
        )
    return name


def dataset_name(name: str) -> str:
    """A filesystem or volume name ``pool/a/b``."""
    if not isinstance(name, str) or len(name) > MAX_NAME or not _DATASET_RE.fullmatch(name):
        raise InvalidInput(
            f"dataset name {_describe(name)} must be 'pool/child/…' with components of letters, "
            "digits, '_', '.', ':' and '-'"
        )
    pool_name(name.split("/", 1)[0])
    return name


def snapshot_name(name: str) -> str:
    """A snapshot name ``pool/a@snap``."""
    m = _SNAPSHOT_RE.fullmatch(name) if isinstance(name, str) else None
    if m is None or len(name) > MAX_NAME:
        raise InvalidInput(f"snapshot name {_describe(name)} must be 'dataset@name'")
    dataset_name(m.group("ds"))
    return name


def split_snapshot(name: str) -> tuple[str, str]:
    """``pool/a@s`` → ``("pool/a", "s")``, validated."""
    snapshot_name(name)
    ds, snap = name.split("@", 1)
    return ds, snap


def bookmark_name(name: str) -> str:
    """A bookmark name ``pool/a#mark``."""
    ds, sep, mark = name.partition("#") if isinstance(name, str) else ("", "", "")
    if not sep or len(name) > MAX_NAME or not _COMPONENT_RE.fullmatch(mark):
        raise InvalidInput(f"bookmark name {_describe(name)} must be 'dataset#name'")
    dataset_name(ds)
    return name


def any_name(name: str) -> str:
    """A dataset or snapshot name."""
    return snapshot_name(name) if isinstance(name, str) and "@" in name else dataset_name(name)


def property_name(name: str) -> str:
    """A native property (``compression``) or a Bulwark user property (``bulwark:client``)."""
    if isinstance(name, str) and (_NATIVE_PROP_RE.fullmatch(name) or _USER_PROP_RE.fullmatch(name)):
        return name
    raise InvalidInput(
        f"property name {_describe(name)} must be a native property name or 'bulwark:' followed by "
        "lowercase letters, digits, '_', '.', ':' and '-'"
    )


def user_property_name(name: str) -> str:
    if not isinstance(name, str) or not _USER_PROP_RE.fullmatch(name):
        raise InvalidInput(f"user property {_describe(name)} must be in the 'bulwark:' namespace")
    return name


def property_value(name: str, value: str) -> str:
    """A property value: printable text without tabs or line breaks (they would split ``-H``
    output), at most 8191 bytes."""
    if not isinstance(value, str):
        raise InvalidInput(f"value of {name} must be text")
    if any(ch in value for ch in "\t\n\r\0") or not value.isprintable():
        raise InvalidInput(f"value of {name} must not contain tabs, line breaks or control characters")
    if len(value.encode()) > MAX_USER_VALUE:
        raise InvalidInput(f"value of {name} is longer than {MAX_USER_VALUE} bytes")
    if value == "" and not name.startswith(USER_NAMESPACE):
        raise InvalidInput(f"value of {name} must not be empty")
    return value


def hold_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _HOLD_TAG_RE.fullmatch(tag):
        raise InvalidInput(f"hold tag {_describe(tag)} must contain only letters, digits, '_', '.', ':' and '-'")
    return tag


def device_path(path: str) -> str:
    """A vdev path: absolute, no whitespace or control characters, not an option."""
    if (
        not isinstance(path, str)
        or not path.startswith("/")
        or len(path) > 4096
        or any(ch.isspace() or not ch.isprintable() for ch in path)
        or "/../" in path
        or path.endswith("/..")
    ):
        raise InvalidInput(f"device {_describe(path)} must be an absolute path without spaces or '..'")
    return path
