"""The durable job queue in SQLite.

A job is a row: queued → running → succeeded | failed | cancelled. The web process only enqueues and
reads; ``bulwarkd`` claims and runs. A job left ``running`` by a daemon that died is found at the next
start by :func:`recover`, logged as interrupted, and queued again if it has attempts left, otherwise
marked ``interrupted`` for a person to look at. Nothing is silently lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from appliance.store import Store
from appliance.system.errors import BulwarkError, Conflict, InvalidInput, NotFound

STATES = ("queued", "running", "succeeded", "failed", "interrupted", "cancelled")
FINAL_STATES = ("succeeded", "failed", "interrupted", "cancelled")
BACKOFF_BASE = 30.0
BACKOFF_MAX = 3600.0


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    params: dict[str, Any]
    state: str
    resource: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    progress_done: int | None
    progress_total: int | None
    progress_text: str | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    attempts: int
    max_attempts: int
    cancel_requested: bool
    not_before: float | None
    created_by: str | None

    @property
    def percent(self) -> float | None:
        if self.progress_total and self.progress_done is not None:
            return max(0.0, min(100.0, 100.0 * self.progress_done / self.progress_total))
        return None

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Remaining time at the average rate so far (None until there is a rate)."""
        if self.state != "running" or not self.started_at or not self.progress_total or not self.progress_done:
            return None
        elapsed = (now or time.time()) - self.started_at
        if elapsed <= 0:
            return None
        rate = self.progress_done / elapsed
        return max(0.0, (self.progress_total - self.progress_done) / rate)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "params": self.params,
            "state": self.state,
            "resource": self.resource,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "progress": {
                "done": self.progress_done,
                "total": self.progress_total,
                "text": self.progress_text,
                "percent": self.percent,
                "eta_seconds": self.eta_seconds(),
            },
            "result": self.result,
            "error": self.error,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "cancel_requested": self.cancel_requested,
            "created_by": self.created_by,
        }


def _load(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _record(row: Any) -> JobRecord:
    return JobRecord(
        id=row["id"],
        kind=row["kind"],
        params=json.loads(row["params"]),
        state=row["state"],
        resource=row["resource"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        progress_done=row["progress_done"],
        progress_total=row["progress_total"],
        progress_text=row["progress_text"],
        result=_load(row["result"]),
        error=_load(row["error"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        cancel_requested=bool(row["cancel_requested"]),
        not_before=row["not_before"],
        created_by=row["created_by"],
    )


def enqueue(
    store: Store,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    resource: str | None = None,
    created_by: str | None = None,
    max_attempts: int = 1,
) -> int:
    if max_attempts < 1:
        raise InvalidInput("max_attempts must be at least 1")
    with store.write() as conn:
        cur = conn.execute(
            "INSERT INTO jobs (kind, params, state, resource, created_at, created_by, max_attempts) "
            "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
            (kind, json.dumps(params or {}), resource, time.time(), created_by, max_attempts),
        )
        job_id = int(cur.lastrowid or 0)
        conn.execute(
            "INSERT INTO job_log (job_id, at, level, message) VALUES (?, ?, 'info', ?)",
            (job_id, time.time(), f"queued by {created_by or 'system'}"),
        )
    return job_id


def get(store: Store, job_id: int) -> JobRecord:
    row = store.query_one("SELECT * FROM jobs WHERE id = ?", (job_id,))
    if row is None:
        raise NotFound(f"job {job_id}")
    return _record(row)


def list_jobs(
    store: Store, *, states: Iterable[str] = (), kind: str | None = None, limit: int = 100
) -> list[JobRecord]:
    sql = "SELECT * FROM jobs"
    where: list[str] = []
    params: list[Any] = []
    state_list = list(states)
    if state_list:
        where.append(f"state IN ({','.join('?' * len(state_list))})")
        params += state_list
    if kind:
        where.append("kind = ?")
        params.append(kind)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [_record(r) for r in store.query(sql, tuple(params))]


def counts(store: Store) -> dict[str, int]:
    out = dict.fromkeys(STATES, 0)
    for row in store.query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"):
        out[row["state"]] = row["n"]
    return out


def claim(store: Store, kinds: Iterable[str], now: float | None = None) -> JobRecord | None:
    """Take the oldest runnable queued job of one of ``kinds`` whose resource is free."""
    kind_list = list(kinds)
    if not kind_list:
        return None
    now = time.time() if now is None else now
    with store.write() as conn:
        rows = [
            r
            for r in conn.execute(
                "SELECT * FROM jobs WHERE state = 'queued' AND (not_before IS NULL OR not_before <= ?) ORDER BY id",
                (now,),
            ).fetchall()
            if r["kind"] in kind_list
        ]
        busy = {
            r["resource"]
            for r in conn.execute("SELECT resource FROM jobs WHERE state = 'running' AND resource IS NOT NULL")
        }
        for row in rows:
            if row["resource"] is not None and row["resource"] in busy:
                continue
            conn.execute(
                "UPDATE jobs SET state = 'running', started_at = ?, attempts = attempts + 1, "
                "progress_done = NULL, progress_total = NULL, progress_text = NULL WHERE id = ?",
                (now, row["id"]),
            )
            conn.execute(
                "INSERT INTO job_log (job_id, at, level, message) VALUES (?, ?, 'info', ?)",
                (row["id"], now, f"started (attempt {row['attempts'] + 1} of {row['max_attempts']})"),
            )
            return _record(conn.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())
    return None


def set_progress(store: Store, job_id: int, done: int | None, total: int | None, text: str | None = None) -> None:
    with store.write() as conn:
        conn.execute(
            "UPDATE jobs SET progress_done = ?, progress_total = ?, progress_text = ? WHERE id = ?",
            (done, total, text, job_id),
        )


def update_params(store: Store, job_id: int, params: dict[str, Any]) -> None:
    """Replace a job's parameters while it runs: what a retried attempt must find, such as the name of the
    snapshot it is about to take (an idempotency key written before the work it describes)."""
    with store.write() as conn:
        conn.execute("UPDATE jobs SET params = ? WHERE id = ?", (json.dumps(params), job_id))


def log(store: Store, job_id: int, message: str, level: str = "info") -> None:
    with store.write() as conn:
        conn.execute(
            "INSERT INTO job_log (job_id, at, level, message) VALUES (?, ?, ?, ?)",
            (job_id, time.time(), level, message),
        )


def log_lines(store: Store, job_id: int) -> list[dict[str, Any]]:
    return [
        {"at": r["at"], "level": r["level"], "message": r["message"]}
        for r in store.query("SELECT at, level, message FROM job_log WHERE job_id = ? ORDER BY id", (job_id,))
    ]


def succeed(store: Store, job_id: int, result: dict[str, Any] | None = None) -> None:
    with store.write() as conn:
        conn.execute(
            "UPDATE jobs SET state = 'succeeded', finished_at = ?, result = ? WHERE id = ? AND state = 'running'",
            (time.time(), json.dumps(result or {}), job_id),
        )
        conn.execute(
            "INSERT INTO job_log (job_id, at, level, message) VALUES (?, ?, 'info', 'succeeded')",
            (job_id, time.time()),
        )


def fail(store: Store, job_id: int, error: BulwarkError) -> str:
    """Record a failure; a retryable error with attempts left goes back to the queue with backoff.
    Returns the job's new state."""
    now = time.time()
    with store.write() as conn:
        row = conn.execute("SELECT attempts, max_attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id}")
        body = json.dumps(error.to_dict())
        if error.retryable and row["attempts"] < row["max_attempts"]:
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (row["attempts"] - 1))
            conn.execute(
                "UPDATE jobs SET state = 'queued', error = ?, not_before = ? WHERE id = ?",
                (body, now + delay, job_id),
            )
            message = f"failed, will retry in {delay:.0f} s: {error.message}"
            state = "queued"
        else:
            conn.execute(
                "UPDATE jobs SET state = 'failed', finished_at = ?, error = ? WHERE id = ?", (now, body, job_id)
            )
            message = f"failed: {error.message}"
            state = "failed"
        conn.execute(
            "INSERT INTO job_log (job_id, at, level, message) VALUES (?, ?, 'error', ?)", (job_id, now, message)
        )
    return state


def request_cancel(store: Store, job_id: int, by: str | None = None) -> str:
    """Cancel a queued job at once; ask a running one to stop. Returns the resulting state."""
    with store.write() as conn:
        row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id}")
        state = row["state"]
        if state in FINAL_STATES:
            raise Conflict(f"job {job_id} has already ended ({state})")
        who = by or "system"
        if state == "queued":
            conn.execute("UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ?", (time.time(), job_id))
            conn.execute(
                "INSERT INTO job_log (job_id, at, level, message) VALUES (?, ?, 'info', ?)",
                (job_id, time.time(), f"cancelled by {who}"),
            )
            return "cancelled"
        conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        conn.execute(
            "INSERT INTO job_log (job_id, at, level, message) VALUES (?, ?, 'info', ?)",
            (job_id, time.time(), f"cancel requested by {who}"),
        )
        return "running"


def cancel_requested(store: Store, job_id: int) -> bool:
    row = store.query_one("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
    return bool(row and row["cancel_requested"])


def mark_cancelled(store: Store, job_id: int) -> None:
    with store.write() as conn:
        conn.execute("UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ?", (time.time(), job_id))
        conn.execute(
            "INSERT INTO job_log (job_id, at, level, message) VALUES (?, ?, 'info', 'stopped on request')",
            (job_id, time.time()),
        )


def recover(store: Store, reason: str = "the daemon stopped while it ran") -> list[int]:
    """At daemon start: every job still ``running`` was interrupted. Cancel those whose cancel was asked
    for, requeue those with attempts left, mark the others ``interrupted``. Returns the ids handled."""
    now = time.time()
    handled = []
    with store.write() as conn:
        for row in conn.execute(
            "SELECT id, attempts, max_attempts, cancel_requested FROM jobs WHERE state = 'running'"
        ).fetchall():
            handled.append(row["id"])
            if row["cancel_requested"]:  # someone asked it to stop: do not start it again
                conn.execute("UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ?", (now, row["id"]))
                message = f"interrupted ({reason}); cancelled as requested"
            elif row["attempts"] < row["max_attempts"]:
                conn.execute("UPDATE jobs SET state = 'queued', not_before = NULL WHERE id = ?", (row["id"],))
                message = f"interrupted ({reason}); queued again"
            else:
                conn.execute(
                    "UPDATE jobs SET state = 'interrupted', finished_at = ?, error = ? WHERE id = ?",
                    (
                        now,
                        json.dumps(
                            {
                                "code": "interrupted",
                                "message": f"Interrupted: {reason}.",
                                "hint": "Start the job again.",
                                "retryable": True,
                            }
                        ),
                        row["id"],
                    ),
                )
                message = f"interrupted ({reason}); no attempts left"
            conn.execute(
                "INSERT INTO job_log (job_id, at, level, message) VALUES (?, ?, 'warning', ?)",
                (row["id"], now, message),
            )
    return handled
