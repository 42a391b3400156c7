"""Reading the audit trail (writing is ``Store.audit``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from appliance.store import Store

MAX_PAGE = 500


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    action: str
    target: str | None
    address: str | None
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "address": self.address,
            "details": self.details,
        }


SQLITE_MAX_INT = 2**63 - 1


def entries(
    store: Store,
    *,
    limit: int = 100,
    before_id: int | None = None,
    actor: str | None = None,
    action_prefix: str | None = None,
) -> list[AuditEntry]:
    """Newest first; page with ``before_id``; filter by actor or action prefix (``user.``)."""
    where: list[str] = []
    params: list[Any] = []
    if before_id is not None:
        where.append("id < ?")
        params.append(min(before_id, SQLITE_MAX_INT))  # (ids never get that far; a larger one means "all")
    if actor:
        where.append("actor = ?")
        params.append(actor)
    if action_prefix:
        where.append("action LIKE ? ESCAPE '\\'")
        params.append(action_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    sql = "SELECT * FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(max(1, min(limit, MAX_PAGE)))
    return [
        AuditEntry(r["id"], r["at"], r["actor"], r["action"], r["target"], r["address"], json.loads(r["details"]))
        for r in store.query(sql, tuple(params))
    ]
