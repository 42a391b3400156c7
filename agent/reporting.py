"""Telling the appliance how an open job is going: ``POST /jobs/JOB/progress`` every few seconds from a thread on
its own connection (so a long upload does not delay it), and ``POST /jobs/JOB/fail`` when the agent gives up.

Reports are best effort: one that does not arrive changes nothing about the backup itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from agent.transport import AgentError, Connection

PERIOD = 3.0

Counts = Callable[[], dict[str, int]]


def _none() -> dict[str, int]:
    return {}


class JobReporter:
    def __init__(self, enrolled: dict[str, Any], job: str, *, period: float = PERIOD) -> None:
        self.enrolled, self.job, self.period = enrolled, job, period
        self._phase = "scanning"
        self._counts: Counts = _none
        self._last: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._thread = threading.Thread(target=self._run, name=f"report-{job}", daemon=True)
        self.sent = 0  # reports that arrived (for tests and the curious)

    def _connection(self) -> Connection:
        if self._conn is None:
            e = self.enrolled
            self._conn = Connection(e["server"], e["fingerprint"], e["credential"])
        return self._conn

    def start(self, phase: str, counts: Counts = _none) -> JobReporter:
        self.phase(phase, counts)
        self._thread.start()
        return self

    def phase(self, phase: str, counts: Counts = _none) -> None:
        """Enter ``phase``; ``counts`` is read at each report (``files_done``, ``bytes_done``, … as the protocol
        names them; without it the counts so far are kept). A new phase is reported at once."""
        with self._lock:
            self._phase = phase
            if counts is not _none:
                self._counts = counts
        self._wake.set()

    def _body(self) -> dict[str, Any]:
        with self._lock:
            phase, counts = self._phase, self._counts
        body: dict[str, Any] = {"phase": phase}
        body.update({k: int(v) for k, v in counts().items() if v is not None})
        return body

    def _report(self) -> None:
        body = self._body()
        if body == self._last:
            return
        try:
            self._connection().request("POST", f"/jobs/{self.job}/progress", body)
        except (AgentError, OSError):
            self.close()  # a fresh connection next time; the backup's own requests say what is wrong
            return
        self._last = body
        self.sent += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._report()
            self._wake.wait(self.period)
            self._wake.clear()

    def stop(self) -> None:
        """Stop reporting (the commit's answer or a failure report ends the job's story)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.close()

    def fail(self, error: str) -> None:
        """Stop, and mark the job failed on the appliance with ``error`` (best effort)."""
        self.stop()
        try:
            self._connection().request("POST", f"/jobs/{self.job}/fail", {"error": error[:1000]})
        except (AgentError, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
