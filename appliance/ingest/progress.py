"""What agent jobs are doing: the progress an agent reports while it runs, the failure it reports when it gives
up, and the per-job report (files, bytes scanned and sent, duration, state, error, point) the UI shows."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from appliance.ingest.credentials import Credential
from appliance.ingest.errors import JobNotFound, JobNotOpen, ProtocolError
from appliance.store import Store

PHASES = ("scanning", "sending", "committing")
MAX_COUNT = 2**62
MAX_ERROR = 1000
STALLED_SECONDS = 5 * 60.0  # an open job with no sign of life for this long is shown as stalled


@dataclass(frozen=True)
class AgentJob:
    id: str
    client: str
    agent_id: str
    hostname: str
    kind: str
    image: str | None
    state: str
    base_point: str | None
    point: str | None
    files: int
    bytes_scanned: int
    bytes_sent: int
    error: str | None
    started_at: float
    finished_at: float | None
    phase: str | None
    files_done: int | None
    files_total: int | None
    bytes_done: int | None
    bytes_total: int | None
    phase_started_at: float | None
    progress_at: float | None

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def label(self) -> str:
        return f"image {self.image}" if self.kind == "image" and self.image else self.kind

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else max(0.0, self.finished_at - self.started_at)

    @property
    def last_sign_of_life(self) -> float:
        return self.progress_at or self.started_at

    def stalled(self, now: float) -> bool:
        return self.is_open and now - self.last_sign_of_life > STALLED_SECONDS

    @property
    def percent(self) -> float | None:
        if not self.is_open or self.phase != "sending" or not self.bytes_total or self.bytes_done is None:
            return None
        return min(100.0, 100.0 * self.bytes_done / self.bytes_total)

    def eta_seconds(self) -> float | None:
        """Seconds left at the rate of the current phase so far (None when it cannot be told yet)."""
        if self.percent is None or not self.bytes_done or self.phase_started_at is None or self.progress_at is None:
            return None
        spent = self.progress_at - self.phase_started_at
        if spent <= 0:
            return None
        assert self.bytes_total is not None
        return max(0.0, (self.bytes_total - self.bytes_done) * spent / self.bytes_done)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.update(duration=self.duration, percent=self.percent, eta_seconds=self.eta_seconds())
        return out


def _job(row: Any) -> AgentJob:
    return AgentJob(
        id=row["id"],
        client=row["client"],
        agent_id=row["agent_id"],
        hostname=row["hostname"] or "",
        kind=row["kind"],
        image=row["image"],
        state=row["state"],
        base_point=row["base_point"],
        point=row["point"],
        files=row["files"],
        bytes_scanned=row["bytes_scanned"],
        bytes_sent=row["bytes_sent"],
        error=row["error"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        phase=row["phase"],
        files_done=row["files_done"],
        files_total=row["files_total"],
        bytes_done=row["bytes_done"],
        bytes_total=row["bytes_total"],
        phase_started_at=row["phase_started_at"],
        progress_at=row["progress_at"],
    )


_SELECT = "SELECT j.*, c.hostname FROM agent_jobs j LEFT JOIN agent_credentials c ON c.id = j.agent_id"


def list_jobs(store: Store, *, client: str | None = None, open_only: bool = False, limit: int = 50) -> list[AgentJob]:
    """Agent jobs, open ones first, then newest first."""
    where, args = [], []
    if client is not None:
        where.append("j.client = ?")
        args.append(client)
    if open_only:
        where.append("j.state = 'open'")
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY (j.state = 'open') DESC, j.started_at DESC LIMIT ?"
    return [_job(r) for r in store.query(sql, (*args, max(1, min(limit, 1000))))]


def get_job(store: Store, job_id: str) -> AgentJob:
    row = store.query_one(_SELECT + " WHERE j.id = ?", (str(job_id)[:64],))
    if row is None:
        raise JobNotFound(str(job_id)[:64])
    return _job(row)


def _count(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ProtocolError(f"{key!r} must be a whole number from 0 to 2^62")
    return value


def _open_job(store: Store, cred: Credential, job_id: str) -> Any:
    row = store.query_one(
        "SELECT id, state, phase FROM agent_jobs WHERE id = ? AND client = ?", (str(job_id)[:64], cred.client)
    )
    if row is None:
        raise JobNotFound(str(job_id)[:64])
    if row["state"] != "open":
        raise JobNotOpen(row["id"], row["state"])
    return row


def record(store: Store, cred: Credential, job_id: str, body: Any, now: float | None = None) -> dict[str, Any]:
    """Store an agent's progress report ``{"phase", "files_done", "files_total", "bytes_done", "bytes_total"}``
    (all optional but ``phase``) for its open job; a malformed report changes nothing."""
    if not isinstance(body, dict):
        raise ProtocolError("the progress report must be a JSON object")
    phase = body.get("phase")
    if phase not in PHASES:
        raise ProtocolError(f"'phase' must be one of {', '.join(PHASES)}")
    counts = {k: _count(body, k) for k in ("files_done", "files_total", "bytes_done", "bytes_total")}
    for done, total in (("files_done", "files_total"), ("bytes_done", "bytes_total")):
        if counts[done] is not None and counts[total] is not None and counts[done] > counts[total]:  # type: ignore[operator]
            raise ProtocolError(f"'{done}' must not exceed '{total}'")
    at = time.time() if now is None else now
    row = _open_job(store, cred, job_id)
    with store.write() as db:
        db.execute(
            "UPDATE agent_jobs SET phase = ?, files_done = ?, files_total = ?, bytes_done = ?, bytes_total = ?,"
            " phase_started_at = CASE WHEN phase IS ? THEN phase_started_at ELSE ? END, progress_at = ?"
            " WHERE id = ? AND state = 'open'",
            (phase, *counts.values(), phase, at, at, row["id"]),
        )
    return {"job": row["id"], "phase": phase, **counts}


def fail(store: Store, cred: Credential, job_id: str, body: Any, now: float | None = None) -> dict[str, Any]:
    """The agent gave up on its open job (``{"error": text}``): the job becomes ``failed`` with that error.
    What it staged is kept, so the next job does not send it again."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"].strip():
        raise ProtocolError('the failure report must be {"error": "what went wrong"}')
    text = " ".join(body["error"].split())[:MAX_ERROR]
    at = time.time() if now is None else now
    row = _open_job(store, cred, job_id)
    with store.write() as db:
        db.execute(
            "UPDATE agent_jobs SET state = 'failed', error = ?, finished_at = ? WHERE id = ? AND state = 'open'",
            (text, at, row["id"]),
        )
    store.audit(f"agent:{cred.id}", "agent.job_failed", f"client:{cred.client}", job=row["id"], error=text)
    return {"job": row["id"], "state": "failed", "error": text}
