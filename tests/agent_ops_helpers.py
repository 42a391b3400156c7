"""Agent clients, credentials and jobs made straight in the database (no pool needed), for the tests of the
agent operations (settings, limits, progress, the Agents section, the agent jobs page) and the permission walk."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from appliance.clients import service
from appliance.clients.model import Client, ClientSettings
from appliance.ingest import credentials
from appliance.store import Store

FINGERPRINT = "ab" * 32


def db_client(db: Store, name: str, kind: str = "agent") -> Client:
    """A client row only (its datasets are not made): enough for credentials, settings and job rows."""
    now = time.time()
    client = Client(
        name, str(uuid.uuid4()), f"tank/clients/{name}", "active", ClientSettings.build(kind=kind), now, now
    )
    service.save_row(db, client)
    return client


def agent_credential(db: Store, client: str, hostname: str = "fs1.example") -> tuple[str, str]:
    """An enrolled agent of ``client`` through the real code and redeem steps: (agent id, 'id:secret')."""
    code = credentials.create_code(db, client, FINGERPRINT, by="test")
    cred, secret = credentials.redeem(db, code.code, hostname, address="192.0.2.1")
    return cred.id, f"{cred.id}:{secret}"


def agent_job(db: Store, client: str, agent_id: str, **columns: Any) -> str:
    """An agent job row (``open`` unless ``state`` says otherwise)."""
    job_id = f"j-{secrets.token_hex(8)}"
    row = {"id": job_id, "client": client, "agent_id": agent_id, "kind": "files", "state": "open",
           "started_at": time.time(), **columns}  # fmt: skip
    with db.write() as conn:
        conn.execute(
            f"INSERT INTO agent_jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",  # noqa: S608
            tuple(row.values()),
        )
    return job_id


def walk_argument(db: Store, name: str) -> str:
    """``agent_id`` or ``agent_job`` for one request of the permission walk, on a fresh database-only client."""
    client = db_client(db, f"walk-ag-{secrets.token_hex(3)}")
    agent_id, _ = agent_credential(db, client.name)
    if name == "agent_id":
        return agent_id
    return agent_job(db, client.name, agent_id, state="committed", point="files@bw-walk", finished_at=time.time())
