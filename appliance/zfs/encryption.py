"""Native encryption (OpenZFS only): encrypted filesystems, loading and unloading their keys, key state.

A key never appears on a command line: ``zfs`` reads it from its stdin (``keylocation=prompt``), so that no
other process can see it in ``/proc``. Key formats: ``passphrase`` (8 to 512 bytes, one line; the wrapping key
is derived with PBKDF2), ``hex`` (64 hexadecimal digits) and ``raw`` (32 bytes).

A raw send (``transfer.SendOptions(raw=True)``, ``zfs send -w``) carries the blocks as ciphertext: the
receiving side stores them without the key (the received dataset's key is "unavailable" and it cannot be
mounted) until :func:`load_key` is given the source's key, after which it mounts and reads as the source did.
Offsite copies therefore hold only ciphertext.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from appliance.system.errors import InvalidInput, UnexpectedOutput
from appliance.zfs import datasets, names, properties
from appliance.zfs.errors import DatasetNotFound
from appliance.zfs.host import ZfsHost

KEY_FORMATS = ("passphrase", "hex", "raw")
KEY_STATUSES = ("available", "unavailable", "none")
ENCRYPTION_PROPS = ("encryption", "keyformat", "keylocation", "keystatus", "encryptionroot", "pbkdf2iters")
# set by create() itself; a caller's props must not repeat them
_OWN_PROPS = {"encryption", "keyformat", "keylocation", "pbkdf2iters"}
_HEX_KEY = re.compile(rb"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class EncryptionInfo:
    dataset: str
    encryption: str  # "off", or the cipher ("aes-256-gcm")
    key_format: str | None  # "passphrase", "hex", "raw"; None when not encrypted
    key_location: str | None  # "prompt", "file:///…"; None when not encrypted or not an encryption root
    key_status: str  # "available" (loaded), "unavailable" (not loaded), "none" (not encrypted)
    encryption_root: str | None  # the dataset whose key this one uses
    pbkdf2_iterations: int | None  # for passphrases

    @property
    def encrypted(self) -> bool:
        return self.encryption != "off"

    @property
    def key_loaded(self) -> bool:
        return self.key_status == "available"

    def to_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "encryption": self.encryption,
            "key_format": self.key_format,
            "key_location": self.key_location,
            "key_status": self.key_status,
            "encryption_root": self.encryption_root,
            "pbkdf2_iterations": self.pbkdf2_iterations,
        }


def _none(value: str) -> str | None:
    return None if value in ("-", "none", "") else value


def parse_info(name: str, props: properties.PropertyMap) -> EncryptionInfo:
    """Build :class:`EncryptionInfo` from ``zfs get -H -p`` values of :data:`ENCRYPTION_PROPS`."""
    missing = [p for p in ENCRYPTION_PROPS if p not in props]
    if missing:
        raise UnexpectedOutput("zfs get", f"{name}: missing {', '.join(missing)}")
    status = props["keystatus"].value
    status = "none" if status == "-" else status
    key_format = _none(props["keyformat"].value)
    iterations = props["pbkdf2iters"].value
    if status not in KEY_STATUSES or (key_format is not None and key_format not in KEY_FORMATS):
        raise UnexpectedOutput("zfs get keystatus,keyformat", f"{name}\t{status}\t{key_format}")
    if not iterations.isdigit():
        raise UnexpectedOutput("zfs get pbkdf2iters", f"{name}\t{iterations}")
    return EncryptionInfo(
        dataset=name,
        encryption=props["encryption"].value,
        key_format=key_format,
        key_location=_none(props["keylocation"].value),
        key_status=status,
        encryption_root=_none(props["encryptionroot"].value),
        pbkdf2_iterations=int(iterations) or None,
    )


def info(host: ZfsHost, name: str) -> EncryptionInfo:
    """Whether ``name`` is encrypted, and the state of its key."""
    host.caps.require("native_encryption")
    values = properties.get_one(host, names.dataset_name(name), ENCRYPTION_PROPS)
    if not values:
        raise DatasetNotFound(name)
    return parse_info(name, values)


def check_key(key: bytes, key_format: str) -> bytes:
    """The key as ``zfs`` reads it from stdin for ``key_format`` (validated here, so that a malformed key is
    refused before anything runs)."""
    if not isinstance(key, bytes):
        raise InvalidInput("a key must be bytes")
    if key_format == "passphrase":
        if not 8 <= len(key) <= 512 or b"\n" in key or b"\0" in key:
            raise InvalidInput("a passphrase must be 8 to 512 bytes on one line")
        return key
    if key_format == "hex":
        if not _HEX_KEY.fullmatch(key):
            raise InvalidInput("a hex key must be 64 hexadecimal digits")
        return key
    if key_format == "raw":
        if len(key) != 32:
            raise InvalidInput("a raw key must be exactly 32 bytes")
        return key
    raise InvalidInput(f"key format {key_format!r} must be one of {', '.join(KEY_FORMATS)}")


def create(
    host: ZfsHost,
    name: str,
    key: bytes,
    *,
    key_format: str = "passphrase",
    pbkdf2_iterations: int | None = None,
    props: Mapping[str, str] | None = None,
    parents: bool = False,
) -> datasets.Dataset:
    """Create an encrypted filesystem (an encryption root) whose key is ``key``, read from stdin."""
    host.caps.require("native_encryption")
    names.dataset_name(name)
    if "/" not in name:
        raise InvalidInput("a dataset name needs a pool and at least one child: 'pool/name'")
    material = check_key(key, key_format)
    clashing = _OWN_PROPS & set(props or {})
    if clashing:
        raise InvalidInput(f"{', '.join(sorted(clashing))} are set by the encryption itself")
    args = ["create"]
    if parents:
        args.append("-p")
    args += ["-o", "encryption=on", "-o", f"keyformat={key_format}", "-o", "keylocation=prompt"]
    if pbkdf2_iterations is not None:
        if key_format != "passphrase" or pbkdf2_iterations < 100_000:
            raise InvalidInput("PBKDF2 iterations apply to passphrases only, and must be at least 100000")
        args += ["-o", f"pbkdf2iters={pbkdf2_iterations}"]
    for prop, value in (props or {}).items():
        args += ["-o", f"{names.property_name(prop)}={names.property_value(prop, value)}"]
    host.zfs(*args, name, subject=name, input=material)
    return datasets.get_dataset(host, name)


def load_key(host: ZfsHost, name: str, key: bytes) -> None:
    """Load the key of an encryption root (``IncorrectKey`` if it is not the one; then nothing changes)."""
    host.caps.require("native_encryption")
    if not isinstance(key, bytes) or not 0 < len(key) <= 512:
        raise InvalidInput("a key must be 1 to 512 bytes")
    host.zfs("load-key", "-L", "prompt", names.dataset_name(name), subject=name, input=key)


def unload_key(host: ZfsHost, name: str) -> None:
    """Forget the key of an (unmounted) encryption root: its data can no longer be read until it is loaded."""
    host.caps.require("native_encryption")
    host.zfs("unload-key", names.dataset_name(name), subject=name)
