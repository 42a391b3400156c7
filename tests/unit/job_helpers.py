"""Waiting for jobs in tests: until a condition holds, until a job ends, and a job's log messages."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from appliance.jobs import queue
from appliance.jobs.queue import FINAL_STATES, JobRecord
from appliance.store import Store

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def wait_final(store: Store, job_id: int, timeout: float = 10.0) -> JobRecord:
    def final() -> JobRecord | None:
        job = queue.get(store, job_id)
        return job if job.state in FINAL_STATES else None

    return wait_for(final, timeout, f"job {job_id} to end")


def messages(store: Store, job_id: int) -> list[str]:
    return [line["message"] for line in queue.log_lines(store, job_id)]
