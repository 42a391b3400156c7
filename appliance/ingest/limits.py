"""Rate limits of ``/agent/v1`` (docs/agent-protocol.md, "Limits"), each refused with ``429`` and a retry hint.

- **Failed authentications per source address** (a wrong, unknown or revoked credential, a bad enrollment code):
  after ``MAX_ADDRESS_FAILURES`` within ``WINDOW``, every request from that address is refused until
  ``LOCKOUT_SECONDS`` after the last failure — the same figures as the web sign-in (:mod:`appliance.auth.throttle`),
  shared by every web worker through the database.
- **Requests of one credential at once**: at most ``MAX_REQUESTS`` in each web worker (a worker has a fixed number
  of threads; one agent must not take them all).
- **Open jobs of one credential**: at most ``MAX_OPEN_JOBS`` open jobs that showed life (opened or reported
  progress) within ``JOB_IDLE_SECONDS``; a job an agent abandoned stops counting after that.
"""

from __future__ import annotations

import math
import threading
import time

from appliance.auth.throttle import LOCKOUT_SECONDS, WINDOW
from appliance.store import Store
from appliance.system.errors import Busy

MAX_ADDRESS_FAILURES = 20
MAX_REQUESTS = 5  # an agent's three uploads, its progress report and its prepare (first backups)
MAX_OPEN_JOBS = 4
JOB_IDLE_SECONDS = 30 * 60.0
KEEP_FAILURES = 24 * 3600.0


class RateLimited(Busy):
    """Too many requests: {}."""

    code = "rate_limited"
    http_status = 429
    hint = "Wait and try again; the Retry-After header says how many seconds."

    def __init__(self, *args: object, retry_after: float) -> None:
        super().__init__(*args)
        self.retry_after = max(1, math.ceil(retry_after))


class AuthThrottled(RateLimited):
    """Too many failed agent authentications from {} ({} within {} minutes)."""

    code = "auth_throttled"
    hint = (
        "Requests from this address are refused for a while. Check the agent's credential (enroll it again with a "
        "new code if it was revoked) and try again after the Retry-After seconds."
    )


class TooManyJobs(RateLimited):
    """Agent {} already has {} open backup jobs (at most {})."""

    code = "too_many_jobs"
    hint = (
        "Let the running backups finish (or stop them) and try again; an abandoned job stops counting after 30 minutes."
    )


# -- failed authentications per address --------------------------------------------------------------------


def check_address(store: Store, address: str, now: float | None = None) -> None:
    """Refuse (:class:`AuthThrottled`) an address with too many recent failed authentications."""
    at = time.time() if now is None else now
    row = store.query_one(
        "SELECT COUNT(*) AS n, MAX(at) AS last FROM agent_auth_failures WHERE address = ? AND at > ?",
        (address, at - WINDOW),
    )
    if row is not None and row["n"] >= MAX_ADDRESS_FAILURES:
        retry = row["last"] + LOCKOUT_SECONDS - at
        if retry > 0:
            raise AuthThrottled(address or "an unknown address", row["n"], int(WINDOW // 60), retry_after=retry)


def record_failure(store: Store, address: str, now: float | None = None) -> None:
    at = time.time() if now is None else now
    with store.write() as db:
        db.execute("INSERT INTO agent_auth_failures (address, at) VALUES (?, ?)", (address[:64], at))
        db.execute("DELETE FROM agent_auth_failures WHERE at < ?", (at - KEEP_FAILURES,))


# -- requests of one credential at once (per web worker) -----------------------------------------------------


class InFlight:
    """Counts the requests each credential has running in this process."""

    def __init__(self, limit: int = MAX_REQUESTS) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def acquire(self, agent_id: str) -> None:
        with self._lock:
            count = self._counts.get(agent_id, 0)
            if count >= self.limit:
                raise RateLimited(
                    f"agent {agent_id} already has {count} requests running (at most {self.limit})", retry_after=1
                )
            self._counts[agent_id] = count + 1

    def release(self, agent_id: str) -> None:
        with self._lock:
            count = self._counts.get(agent_id, 0) - 1
            if count > 0:
                self._counts[agent_id] = count
            else:
                self._counts.pop(agent_id, None)

    def running(self, agent_id: str) -> int:
        with self._lock:
            return self._counts.get(agent_id, 0)


IN_FLIGHT = InFlight()


# -- open jobs of one credential ------------------------------------------------------------------------------


def check_open_jobs(store: Store, agent_id: str, now: float | None = None) -> None:
    """Refuse (:class:`TooManyJobs`) a new job while the credential has ``MAX_OPEN_JOBS`` live open jobs."""
    at = time.time() if now is None else now
    rows = store.query(
        "SELECT COALESCE(progress_at, started_at) AS alive FROM agent_jobs"
        " WHERE agent_id = ? AND state = 'open' AND COALESCE(progress_at, started_at) > ? ORDER BY alive",
        (agent_id, at - JOB_IDLE_SECONDS),
    )
    if len(rows) >= MAX_OPEN_JOBS:
        raise TooManyJobs(agent_id, len(rows), MAX_OPEN_JOBS, retry_after=rows[0]["alive"] + JOB_IDLE_SECONDS - at)
