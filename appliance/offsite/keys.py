"""Offsite data keys: created on demand, stored wrapped for unattended use, exported as a recovery kit.

A data key is 32 random bytes named by an 8-byte key id. The database keeps each key wrapped with AES-256-GCM
under the *appliance key* (a file of the data directory, mode 0600), so bulwarkd can replicate unattended and a
copy of the database alone reveals nothing; and wrapped by the passphrase with scrypt (memory-hard) as the
key's recovery-kit entry. The passphrase itself is never stored. See docs/offsite-format.md §3.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from appliance.offsite.errors import ApplianceKeyMissing, BadKit, KeyMissing, NoDataKey, WrongPassphrase
from appliance.store import Store
from appliance.system.errors import AlreadyExists, InvalidInput
from appliance.system.paths import Paths
from appliance.users import WEAK_KDF_ENV

MIN_PASSPHRASE = 12
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
LOCAL_AAD = b"bulwark-offsite local key"
KIT_AAD = b"bulwark-offsite kit v1"
KIT_FORMAT = "bulwark-offsite-kit"


@dataclass(frozen=True)
class KeyInfo:
    id: str  # 16 hex digits
    created_at: float
    retired_at: float | None
    kit_exported_at: float | None

    @property
    def active(self) -> bool:
        return self.retired_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "retired_at": self.retired_at,
            "active": self.active,
            "kit_exported_at": self.kit_exported_at,
        }


def check_passphrase(passphrase: str) -> str:
    if not isinstance(passphrase, str) or len(passphrase) < MIN_PASSPHRASE:
        raise InvalidInput(f"the recovery passphrase must have at least {MIN_PASSPHRASE} characters")
    if any(ch in passphrase for ch in "\r\n\0"):
        raise InvalidInput("the recovery passphrase must be one line")
    return passphrase


def _scrypt_params() -> tuple[int, int, int]:
    if os.environ.get(WEAK_KDF_ENV) == "1":  # tests only: the same algorithm, 1 MiB instead of 128 MiB
        return 2**10, 8, 1
    return SCRYPT_N, SCRYPT_R, SCRYPT_P


# -- the appliance key ---------------------------------------------------------------------------------------


def appliance_key_path(paths: Paths) -> Path:
    return paths.data_dir / "offsite" / "appliance.key"


def _appliance_key(paths: Paths, *, create: bool = False) -> bytes:
    path = appliance_key_path(paths)
    if not path.exists() and create:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(f".appliance.key.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    try:
        key = path.read_bytes()
    except OSError:
        raise ApplianceKeyMissing(str(path)) from None
    if len(key) != 32:
        raise ApplianceKeyMissing(str(path))
    return key


def _wrap_local(paths: Paths, key_id: bytes, data_key: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_appliance_key(paths, create=True)).encrypt(nonce, data_key, LOCAL_AAD + key_id)


def _unwrap_local(paths: Paths, key_id: bytes, blob: bytes) -> bytes:
    try:
        return AESGCM(_appliance_key(paths)).decrypt(blob[:12], blob[12:], LOCAL_AAD + key_id)
    except InvalidTag:
        raise ApplianceKeyMissing(str(appliance_key_path(paths))) from None


# -- kit entries ---------------------------------------------------------------------------------------------


def wrap_for_kit(key_id: bytes, data_key: bytes, passphrase: str, created_at: float) -> dict[str, Any]:
    n, r, p = _scrypt_params()
    salt, nonce = os.urandom(16), os.urandom(12)
    kek = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())
    wrapped = AESGCM(kek).encrypt(nonce, data_key, KIT_AAD + key_id)
    return {
        "key_id": key_id.hex(),
        "created_at": created_at,
        "kdf": "scrypt",
        "n": n,
        "r": r,
        "p": p,
        "salt": salt.hex(),
        "nonce": nonce.hex(),
        "wrapped": wrapped.hex(),
    }


def unwrap_kit_entry(entry: dict[str, Any], passphrase: str) -> tuple[bytes, bytes]:
    """(key id, data key) of one kit entry; :class:`WrongPassphrase` if the passphrase does not open it."""
    try:
        key_id = bytes.fromhex(entry["key_id"])
        if entry["kdf"] != "scrypt" or len(key_id) != 8:
            raise BadKit(f"key entry {entry.get('key_id')!r} uses an unknown key derivation")
        n, r, p = int(entry["n"]), int(entry["r"]), int(entry["p"])
        if not (2**10 <= n <= 2**22 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
            raise BadKit(f"key entry {entry['key_id']} has scrypt parameters out of range")
        salt, nonce, wrapped = (bytes.fromhex(entry[k]) for k in ("salt", "nonce", "wrapped"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadKit(f"a key entry is malformed ({exc})") from None
    kek = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())
    try:
        return key_id, AESGCM(kek).decrypt(nonce, wrapped, KIT_AAD + key_id)
    except InvalidTag:
        raise WrongPassphrase(key_id.hex()) from None


# -- the key store -------------------------------------------------------------------------------------------


def _info(row: Any) -> KeyInfo:
    return KeyInfo(row["id"], row["created_at"], row["retired_at"], row["kit_exported_at"])


def list_keys(store: Store) -> list[KeyInfo]:
    rows = store.query("SELECT * FROM offsite_keys ORDER BY created_at, id")
    return [_info(r) for r in rows]


def active_info(store: Store) -> KeyInfo | None:
    row = store.query_one("SELECT * FROM offsite_keys WHERE retired_at IS NULL")
    return _info(row) if row else None


def _add_key(store: Store, paths: Paths, key_id: bytes, data_key: bytes, entry: dict[str, Any], now: float) -> None:
    with store.write() as tx:
        tx.execute("UPDATE offsite_keys SET retired_at = ? WHERE retired_at IS NULL", (now,))
        tx.execute(
            "INSERT INTO offsite_keys (id, created_at, retired_at, local_wrapped, kit_entry) VALUES (?, ?, NULL, ?, ?)",
            (key_id.hex(), now, _wrap_local(paths, key_id, data_key), json.dumps(entry, sort_keys=True)),
        )


def init_key(store: Store, paths: Paths, passphrase: str) -> KeyInfo:
    """Create the appliance's first data key (refused if one exists: rotate instead)."""
    check_passphrase(passphrase)
    if list_keys(store):
        raise AlreadyExists("an offsite data key (use 'bulwark offsite key rotate' for a new one)")
    return _new_key(store, paths, passphrase)


def rotate(store: Store, paths: Paths, passphrase: str) -> KeyInfo:
    """A new data key for new streams; the passphrase must open the current kit (one passphrase per kit)."""
    check_passphrase(passphrase)
    current = store.query_one("SELECT kit_entry FROM offsite_keys WHERE retired_at IS NULL")
    if current is None:
        raise NoDataKey()
    unwrap_kit_entry(json.loads(current["kit_entry"]), passphrase)
    return _new_key(store, paths, passphrase)


def _new_key(store: Store, paths: Paths, passphrase: str) -> KeyInfo:
    now = time.time()
    key_id, data_key = os.urandom(8), os.urandom(32)
    _add_key(store, paths, key_id, data_key, wrap_for_kit(key_id, data_key, passphrase, now), now)
    info = active_info(store)
    assert info is not None
    return info


def active_key(store: Store, paths: Paths) -> tuple[bytes, bytes]:
    """(key id, data key) that new streams use; :class:`NoDataKey` if none was made."""
    row = store.query_one("SELECT id, local_wrapped FROM offsite_keys WHERE retired_at IS NULL")
    if row is None:
        raise NoDataKey()
    key_id = bytes.fromhex(row["id"])
    return key_id, _unwrap_local(paths, key_id, bytes(row["local_wrapped"]))


def all_keys(store: Store, paths: Paths) -> dict[bytes, bytes]:
    """Every data key of the appliance by key id (to read streams written under older keys)."""
    out = {}
    for row in store.query("SELECT id, local_wrapped FROM offsite_keys"):
        key_id = bytes.fromhex(row["id"])
        out[key_id] = _unwrap_local(paths, key_id, bytes(row["local_wrapped"]))
    return out


def kit_document(store: Store, hostname: str) -> dict[str, Any]:
    rows = store.query("SELECT * FROM offsite_keys ORDER BY created_at, id")
    if not rows:
        raise NoDataKey()
    active = next((r["id"] for r in rows if r["retired_at"] is None), rows[-1]["id"])
    return {
        "format": KIT_FORMAT,
        "version": 1,
        "appliance": hostname,
        "created_at": time.time(),
        "active_key": active,
        "keys": [json.loads(r["kit_entry"]) for r in rows],
    }


def mark_exported(store: Store) -> None:
    with store.write() as tx:
        tx.execute("UPDATE offsite_keys SET kit_exported_at = ?", (time.time(),))


def keys_from_kit(document: dict[str, Any], passphrase: str) -> dict[bytes, bytes]:
    """Every data key of a kit, opened with its passphrase."""
    if not isinstance(document, dict) or document.get("format") != KIT_FORMAT:
        raise BadKit("it is not a Bulwark offsite recovery kit")
    if document.get("version") != 1:
        raise BadKit(f"kit version {document.get('version')!r} is not supported (1 is)")
    entries = document.get("keys")
    if not isinstance(entries, list) or not entries:
        raise BadKit("it holds no keys")
    return dict(unwrap_kit_entry(entry, passphrase) for entry in entries)


def import_kit(store: Store, paths: Paths, document: dict[str, Any], passphrase: str) -> list[KeyInfo]:
    """Adopt the keys of a kit on this appliance (after a disaster, to continue with the same keys)."""
    opened = keys_from_kit(document, passphrase)
    known = {k.id for k in list_keys(store)}
    entries = {e["key_id"]: e for e in document["keys"]}
    active = document.get("active_key")
    order = sorted(opened, key=lambda kid: (kid.hex() == active, entries[kid.hex()].get("created_at", 0)))
    for key_id in order:
        if key_id.hex() in known:
            continue
        created = float(entries[key_id.hex()].get("created_at", time.time()))
        with store.write() as tx:
            retired = None if key_id.hex() == active else time.time()
            if retired is None:
                tx.execute("UPDATE offsite_keys SET retired_at = ? WHERE retired_at IS NULL", (time.time(),))
            tx.execute(
                "INSERT INTO offsite_keys (id, created_at, retired_at, local_wrapped, kit_entry)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    key_id.hex(),
                    created,
                    retired,
                    _wrap_local(paths, key_id, opened[key_id]),
                    json.dumps(entries[key_id.hex()]),
                ),
            )
    return list_keys(store)


def require_key(keys: dict[bytes, bytes], key_id: bytes, what: str) -> bytes:
    try:
        return keys[key_id]
    except KeyError:
        raise KeyMissing(what, key_id.hex()) from None
