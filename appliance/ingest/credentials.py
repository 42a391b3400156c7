"""Enrollment codes and per-agent credentials.

A code is ``bw1-<secret>-<fingerprint>``: the secret (single use, 24 hours) and the base32 SHA-256 of the
appliance's TLS certificate, so the agent pins the certificate without trusting whatever answers first. The
appliance keeps only SHA-256 hashes of secrets. A credential is ``<agent id>:<secret>``; revoking it refuses
the agent at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from appliance.clients import service
from appliance.clients.model import check_name
from appliance.ingest.errors import AgentUnauthorized, CredentialNotFound, EnrollCodeInvalid
from appliance.store import Store
from appliance.system.errors import InvalidInput

CODE_LIFETIME = 24 * 3600
_CODE = re.compile(r"^bw1-([a-z2-7]{26})-([a-z2-7]{52})$")
_AGENT_ID = re.compile(r"^ag-[0-9a-f]{16}$")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def fingerprint_b32(fingerprint_hex: str) -> str:
    """The certificate's SHA-256 (hex, with or without ':') in the code's lowercase base32 form."""
    raw = bytes.fromhex(fingerprint_hex.replace(":", ""))
    return base64.b32encode(raw).decode().rstrip("=").lower()


@dataclass(frozen=True)
class EnrollCode:
    code: str
    client: str
    expires_at: float


def create_code(store: Store, client: str, fingerprint_hex: str, *, by: str, now: float | None = None) -> EnrollCode:
    """A new single-use code for an active agent client."""
    at = time.time() if now is None else now
    found = service.get_client(store, check_name(client))
    if found.kind not in ("agent", "both"):
        raise InvalidInput(f"client {found.name} is backed up over SMB only; set --kind agent or both first")
    if not found.active:
        raise InvalidInput(f"client {found.name} is removed; reattach it first")
    secret = base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()
    code = f"bw1-{secret}-{fingerprint_b32(fingerprint_hex)}"
    with store.write() as db:
        db.execute(
            "INSERT INTO agent_enroll_codes (code_hash, client, created_by, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (_hash(secret), found.name, by, at, at + CODE_LIFETIME),
        )
    store.audit(by, "agent.enroll_code", f"client:{found.name}", expires_at=at + CODE_LIFETIME)
    return EnrollCode(code, found.name, at + CODE_LIFETIME)


@dataclass(frozen=True)
class Credential:
    id: str
    client: str
    hostname: str
    state: str
    created_at: float
    last_seen_at: float | None
    revoked_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _credential(row: Any) -> Credential:
    return Credential(
        row["id"],
        row["client"],
        row["hostname"],
        row["state"],
        row["created_at"],
        row["last_seen_at"],
        row["revoked_at"],
    )


def redeem(store: Store, code: str, hostname: str, *, address: str, now: float | None = None) -> tuple[Credential, str]:
    """Use ``code`` (once) and create a credential; returns it with its secret (shown only now)."""
    at = time.time() if now is None else now
    m = _CODE.match(code.strip().lower()) if isinstance(code, str) else None
    if m is None:
        raise EnrollCodeInvalid("malformed")
    if not isinstance(hostname, str) or len(hostname) > 253 or any(c in hostname for c in "\0\r\n"):
        raise InvalidInput("the hostname must be a single line of at most 253 characters")
    agent_id = f"ag-{secrets.token_hex(8)}"
    secret = secrets.token_urlsafe(32)
    with store.write() as db:
        row = db.execute("SELECT * FROM agent_enroll_codes WHERE code_hash = ?", (_hash(m.group(1)),)).fetchone()
        if row is None:
            raise EnrollCodeInvalid("unknown")
        if row["used_at"] is not None:
            raise EnrollCodeInvalid("already used")
        if row["expires_at"] < at:
            raise EnrollCodeInvalid("expired")
        db.execute("UPDATE agent_enroll_codes SET used_at = ? WHERE code_hash = ?", (at, row["code_hash"]))
        db.execute(
            "INSERT INTO agent_credentials (id, client, secret_hash, hostname, created_at) VALUES (?, ?, ?, ?, ?)",
            (agent_id, row["client"], _hash(secret), hostname, at),
        )
        client = row["client"]
    store.audit(f"agent:{agent_id}", "agent.enroll", f"client:{client}", address=address, hostname=hostname)
    return get(store, agent_id), secret


def get(store: Store, agent_id: str) -> Credential:
    row = store.query_one("SELECT * FROM agent_credentials WHERE id = ?", (agent_id,))
    if row is None:
        raise CredentialNotFound(agent_id)
    return _credential(row)


def list_for(store: Store, client: str | None = None) -> list[Credential]:
    if client is None:
        rows = store.query("SELECT * FROM agent_credentials ORDER BY created_at")
    else:
        rows = store.query("SELECT * FROM agent_credentials WHERE client = ? ORDER BY created_at", (client,))
    return [_credential(r) for r in rows]


def revoke(store: Store, agent_id: str, *, by: str, now: float | None = None) -> Credential:
    at = time.time() if now is None else now
    found = get(store, agent_id)
    with store.write() as db:
        db.execute(
            "UPDATE agent_credentials SET state = 'revoked', revoked_at = ?, revoked_by = ? WHERE id = ?"
            " AND state = 'active'",
            (at, by, agent_id),
        )
    store.audit(by, "agent.revoke", f"client:{found.client}", agent=agent_id)
    return get(store, agent_id)


def authenticate(store: Store, header: str, now: float | None = None) -> Credential:
    """The credential named by an ``Authorization: BulwarkAgent <id>:<secret>`` header, or AgentUnauthorized."""
    scheme, _, value = header.partition(" ")
    if scheme != "BulwarkAgent" or ":" not in value:
        raise AgentUnauthorized("missing (send 'Authorization: BulwarkAgent <id>:<secret>')")
    agent_id, _, secret = value.partition(":")
    if not _AGENT_ID.match(agent_id):
        raise AgentUnauthorized("malformed")
    row = store.query_one("SELECT * FROM agent_credentials WHERE id = ?", (agent_id,))
    if row is None or not hmac.compare_digest(row["secret_hash"], _hash(secret)):
        raise AgentUnauthorized("wrong or unknown")
    if row["state"] != "active":
        raise AgentUnauthorized("revoked")
    at = time.time() if now is None else now
    if row["last_seen_at"] is None or at - row["last_seen_at"] > 60:  # not a database write per request
        with store.write() as db:
            db.execute("UPDATE agent_credentials SET last_seen_at = ? WHERE id = ?", (at, agent_id))
    return _credential(row)
